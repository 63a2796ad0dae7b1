"""The real `openai` package runs a batch file end to end on invoke-with-cache's OpenAI Batch API.

Run by `tests/tests/deferred.rs` (a private stack, with batch-status's schedule running beside):

  OPENAI_BASE_URL=http://127.0.0.1:9000/openai/v1 OPENAI_API_KEY=bgw_... MODEL=... \
  REQUESTS=120 .venv/bin/python tests/openai_batch.py

Uploads a JSONL of REQUESTS chat completions (files.create), creates a batch of it
(batches.create), polls batches.retrieve until it ends, reads the output file (files.content)
and lists the batches. Every check prints a line; the exit status is the number of failures.
"""

import json
import os
import sys
import time

from openai import OpenAI

MODEL = os.environ["MODEL"]
REQUESTS = int(os.environ.get("REQUESTS", "120"))
RUN = f"{time.time_ns()}"

failures = 0


def check(name, condition, detail=""):
    global failures
    print(f"{'ok  ' if condition else 'FAIL'} {name}" + (f": {detail}" if detail and not condition else ""))
    if not condition:
        failures += 1


client = OpenAI(max_retries=0, timeout=30)
lines = [
    json.dumps(
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"{RUN}: question {i}"}],
                "max_tokens": 20,
            },
        }
    )
    for i in range(REQUESTS)
]
uploaded = client.files.create(file=("requests.jsonl", "\n".join(lines).encode()), purpose="batch")
check("files.create answers a batch file", uploaded.purpose == "batch" and uploaded.id.startswith("file-"), uploaded)
check("files.retrieve finds it", client.files.retrieve(uploaded.id).bytes == uploaded.bytes)

batch = client.batches.create(
    input_file_id=uploaded.id,
    endpoint="/v1/chat/completions",
    completion_window="24h",
    metadata={"run": RUN},
)
check("batches.create answers in_progress", batch.status == "in_progress", batch.status)
check("the batch counts every request", batch.request_counts.total == REQUESTS, batch.request_counts)

# The schedule places the requests (a Bedrock batch job for this many) while we poll.
ends = time.monotonic() + 120
while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < ends:
    time.sleep(0.25)
    batch = client.batches.retrieve(batch.id)
check("the batch completes", batch.status == "completed", batch.status)
check(
    "every request is answered",
    batch.request_counts.completed == REQUESTS and batch.request_counts.failed == 0,
    batch.request_counts,
)
check("no error file", batch.error_file_id is None, batch.error_file_id)

output = client.files.content(batch.output_file_id).text.splitlines()
answers = [json.loads(line) for line in output]
check("the output file holds one line a request", len(answers) == REQUESTS, len(answers))
check(
    "each custom_id once",
    sorted(a["custom_id"] for a in answers) == sorted(f"req-{i}" for i in range(REQUESTS)),
)
check(
    "each line a chat.completion with content",
    all(
        a["response"]["status_code"] == 200
        and a["response"]["body"]["object"] == "chat.completion"
        and a["response"]["body"]["choices"][0]["message"]["content"]
        for a in answers
    ),
)
listed = [b.id for b in client.batches.list(limit=10)]
check("batches.list shows it", batch.id in listed, listed)

print(f"openai batch: {failures} failed")
sys.exit(failures)
