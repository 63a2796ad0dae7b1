#!/usr/bin/env python3
"""Starts every packaged `bootstrap` of a built template under the Runtime API stand-in, with
the environment the template gives that function (scripts/template_env.py: references resolved
to the local stack's names) plus the stack's endpoints, and hands it one smoke event. Run it
inside a stack (scripts/with-stack.sh sets STACK_DIR):

    scripts/with-stack.sh .venv/bin/python scripts/package_smoke.py [TEMPLATE]

TEMPLATE defaults to .aws-sam/build/template.yaml. A function passes when it starts, polls for
its event and answers it (an HTTP answer below 500). Exits 1 naming every function that fails.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "target" / "debug" / "lambda-standin"
FIXTURES = ROOT / "test-support" / "fixtures"
# The one value the local stack has no resource for: Bedrock's batch service role.
ROLE_ARN = "arn:aws:iam::123456789012:role/bedrock-batch"


def http_api(method, path, body=""):
    event = json.loads((FIXTURES / "apigw-v2-iam.json").read_text())
    event.update({"body": body, "rawPath": path, "rawQueryString": "", "routeKey": f"{method} {path}"})
    event["requestContext"]["http"].update({"method": method, "path": path})
    return event


def rest_invoke(body):
    event = json.loads((FIXTURES / "apigw-rest-v1.json").read_text())
    event["body"] = json.dumps(body)
    return event


SCHEDULED = {
    "version": "0", "id": "package-smoke", "detail-type": "Scheduled Event", "source": "aws.events",
    "account": "123456789012", "time": "2026-12-01T00:00:00Z", "region": "us-east-1",
    "resources": [], "detail": {},
}

# One event a function: what its template routes to it first.
SMOKE_EVENTS = {
    "invoke-with-cache": rest_invoke({"prompt": "package smoke"}),
    "batch-submit": http_api("POST", "/v1/batches", json.dumps({"records": []})),
    "batch-status": http_api("GET", "/v1/batches"),
    "capacity": http_api("GET", "/v1/capacity"),
    "metrics-publisher": SCHEDULED,
}


def stack_env():
    path = Path(os.environ["STACK_DIR"]) / "env"
    pairs = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export "):].split("=", 1)
            pairs[name] = value.strip('"')
    return pairs


def main(argv):
    template = argv[1] if len(argv) > 1 else ".aws-sam/build/template.yaml"
    if "STACK_DIR" not in os.environ:
        sys.exit("package_smoke.py: STACK_DIR is not set; run it through scripts/with-stack.sh")
    if not STANDIN.exists():
        sys.exit(f"package_smoke.py: {STANDIN} is missing; `cargo build -p lambda-standin` builds it")
    resolved = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "template_env.py"), template, "--set", f"BATCH_ROLE_ARN={ROLE_ARN}"],
        check=True, capture_output=True, text=True,
    )
    functions = json.loads(resolved.stdout)
    failed = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "stack.json").write_text(json.dumps(stack_env()))
        for logical_id, function in sorted(functions.items()):
            name = function["Binary"]
            event = SMOKE_EVENTS.get(name)
            if event is None:
                failed.append(f"{logical_id}: no smoke event for {name}")
                continue
            (scratch / f"{name}.env.json").write_text(json.dumps(function["env"]))
            (scratch / f"{name}.event.json").write_text(json.dumps(event))
            run = subprocess.run(
                [str(STANDIN), "--binary", function["bootstrap"], "--name", name,
                 "--env-json", str(scratch / "stack.json"), "--env-json", str(scratch / f"{name}.env.json"),
                 "--event", str(scratch / f"{name}.event.json")],
                capture_output=True, text=True, timeout=120,
            )
            if run.returncode == 0:
                outcome = json.loads(run.stdout.splitlines()[-1])
                print(f"ok    {logical_id} ({function['bootstrap']}): HTTP {outcome['httpStatus']} in {outcome['ms']:.1f} ms"
                      if outcome["httpStatus"] else f"ok    {logical_id} ({function['bootstrap']}): answered in {outcome['ms']:.1f} ms")
            else:
                failed.append(logical_id)
                print(f"FAIL  {logical_id}:\n{run.stdout}{run.stderr}")
    if failed:
        sys.exit("package_smoke.py: failed: " + ", ".join(failed))
    print(f"package smoke: {len(functions)} functions started from the template's environment and answered")


if __name__ == "__main__":
    main(sys.argv)
