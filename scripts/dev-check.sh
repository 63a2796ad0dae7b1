#!/usr/bin/env bash
# Runs `make dev` on free ports, sends the README's request twice and expects a MISS then a
# HIT, checks the other routes, a small batch answered by the schedule, a batch job run to its
# end and its announcement, then stops
# everything `make dev` started.
set -euo pipefail
cd "$(dirname "$0")/.."
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export STACK_DIR MOTO_PORT EMULATOR_PORT DEV_PORT
STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/bedrock-dev.XXXXXX")
MOTO_PORT=$(free_port)
EMULATOR_PORT=$(free_port)
DEV_PORT=$(free_port)
log="$STACK_DIR/dev.log"

# batch-status's schedule every 5 s: it answers the small batch below.
BATCH_SCHEDULE_SECONDS=5 setsid make dev >"$log" 2>&1 &
dev_pid=$!
cleanup() {
  kill -TERM -- "-$dev_pid" 2>/dev/null || true
  wait "$dev_pid" 2>/dev/null || true
  scripts/stack.sh down >/dev/null 2>&1 || true
  rm -rf "$STACK_DIR"
}
trap cleanup EXIT
fail() { echo "dev check: FAILED: $*" >&2; tail -n 30 "$log" >&2; exit 1; }

request() {
  curl -s -D "$STACK_DIR/headers" -o "$STACK_DIR/body" -w '%{http_code}' \
    "http://127.0.0.1:$DEV_PORT/v1/invoke" -H 'content-type: application/json' \
    -d '{"prompt": "What does a cache TTL do?"}' 2>/dev/null || true
}

# The first request compiles and starts the function: allow up to 10 minutes.
status=000
for _ in $(seq 1 600); do
  kill -0 "$dev_pid" 2>/dev/null || fail "make dev exited"
  status=$(request)
  [ "$status" = 200 ] && break
  sleep 1
done
[ "$status" = 200 ] || fail "no answer from 127.0.0.1:$DEV_PORT (last status $status)"
grep -qi '^x-cache: MISS' "$STACK_DIR/headers" || fail "first answer was not a MISS: $(cat "$STACK_DIR/body")"
[ "$(request)" = 200 ] || fail "second request failed"
grep -qi '^x-cache: HIT' "$STACK_DIR/headers" || fail "second answer was not a HIT: $(cat "$STACK_DIR/body")"

# A streamed answer: server-sent events from start to end, as the model writes them.
curl -sN -D "$STACK_DIR/stream-headers" -o "$STACK_DIR/stream" "http://127.0.0.1:$DEV_PORT/v1/invoke" \
  -H 'content-type: application/json' -d '{"prompt": "Stream the answer, please.", "stream": true}' \
  || fail "the stream request failed"
grep -qi '^content-type: text/event-stream' "$STACK_DIR/stream-headers" || fail "no event stream: $(cat "$STACK_DIR/stream-headers")"
grep -q '^event: start' "$STACK_DIR/stream" && grep -q '^event: text' "$STACK_DIR/stream" \
  && grep -q '^event: end' "$STACK_DIR/stream" || fail "incomplete stream: $(cat "$STACK_DIR/stream")"

# The functions that read their events as JSON answer through the same router.
[ "$(curl -s -o "$STACK_DIR/capacity" -w '%{http_code}' "http://127.0.0.1:$DEV_PORT/v1/capacity")" = 200 ] \
  || fail "GET /v1/capacity: $(cat "$STACK_DIR/capacity")"
status=$(curl -s -o "$STACK_DIR/batch" -w '%{http_code}' "http://127.0.0.1:$DEV_PORT/v1/batches" \
  -H 'content-type: application/json' \
  -d '{"modelId": "anthropic.claude-3-haiku-20240307-v1:0", "records": [{"recordId": "r1", "prompt": "Hello"}]}')
[ "$status" = 202 ] || fail "POST /v1/batches answered $status: $(cat "$STACK_DIR/batch")"
batch_id=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["batchId"])' "$STACK_DIR/batch")
[ "$(curl -s -o "$STACK_DIR/batch-status" -w '%{http_code}' "http://127.0.0.1:$DEV_PORT/v1/batches/$batch_id")" = 200 ] \
  || fail "GET /v1/batches/$batch_id: $(cat "$STACK_DIR/batch-status")"
# A batch of one record is answered later, by batch-status's schedule (no work queue here).
small=""
for _ in $(seq 1 120); do
  curl -s -o "$STACK_DIR/batch-status" "http://127.0.0.1:$DEV_PORT/v1/batches/$batch_id" || true
  small=$(.venv/bin/python -c 'import json,sys
try: b = json.load(open(sys.argv[1]))
except ValueError: b = {}
print(b.get("status"))' "$STACK_DIR/batch-status")
  [ "$small" = "Completed" ] && break
  sleep 1
done
[ "$small" = "Completed" ] || fail "the small batch $batch_id was not answered within 2 minutes: $(cat "$STACK_DIR/batch-status")"

# A batch of Bedrock's per-job minimum (100 records) becomes a job: the emulator's job events
# reach batch-status through cargo lambda's Invoke API, which merges the results and announces
# the end on moto's EventBridge, whose rule copies it to the stack's SQS queue.
.venv/bin/python -c 'import json; print(json.dumps({"modelId": "anthropic.claude-3-haiku-20240307-v1:0",
  "records": [{"recordId": f"r{i:03}", "prompt": f"Question {i}"} for i in range(100)]}))' >"$STACK_DIR/job-request"
status=$(curl -s -o "$STACK_DIR/job" -w '%{http_code}' "http://127.0.0.1:$DEV_PORT/v1/batches" \
  -H 'content-type: application/json' --data-binary @"$STACK_DIR/job-request")
[ "$status" = 202 ] || fail "POST /v1/batches (100 records) answered $status: $(cat "$STACK_DIR/job")"
job_batch=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["batchId"])' "$STACK_DIR/job")
state=""
for _ in $(seq 1 180); do
  curl -s -o "$STACK_DIR/job-status" "http://127.0.0.1:$DEV_PORT/v1/batches/$job_batch" || true
  state=$(.venv/bin/python -c 'import json,sys
try: b = json.load(open(sys.argv[1]))
except ValueError: b = {}
print(b.get("status"), b.get("announcement"))' "$STACK_DIR/job-status")
  [ "$state" = "Completed Announced" ] && break
  sleep 1
done
[ "$state" = "Completed Announced" ] || fail "batch $job_batch did not complete and get announced within 3 minutes: $(cat "$STACK_DIR/job-status")"
# shellcheck disable=SC1091
(source "$STACK_DIR/env" && .venv/bin/python - "$job_batch" <<'PY'
import json, os, sys
import boto3
sqs = boto3.client("sqs")
events = []
while True:
    got = sqs.receive_message(QueueUrl=os.environ["BATCH_ANNOUNCEMENTS_QUEUE_URL"],
                              MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages", [])
    if not got:
        break
    events += [json.loads(m["Body"]) for m in got]
mine = [e for e in events if e["detail"].get("batchId") == sys.argv[1]]
assert len(mine) == 1, events
assert mine[0]["detail-type"] == "Batch Ended" and mine[0]["detail"]["status"] == "Completed", mine
PY
) >"$STACK_DIR/announcement.log" 2>&1 || fail "no Batch Ended event for $job_batch on EventBridge: $(cat "$STACK_DIR/announcement.log")"

# The real openai package through the OpenAI-compatible API, with keys made by the tool.
# shellcheck disable=SC1091
source "$STACK_DIR/env"
key=$(cargo run -q -p tenant-keys -- create --tenant dev-check 2>/dev/null) || fail "tenant-keys create failed"
# Room for the reservation of one short answer (max_tokens 5), none for a request without
# max_tokens (4,096 output tokens reserved: $0.02 at Claude Haiku 4.5's price).
budget_key=$(cargo run -q -p tenant-keys -- create --tenant dev-check-budget --monthly-budget-usd 0.001 2>/dev/null) \
  || fail "tenant-keys create (budget) failed"
OPENAI_BASE_URL="http://127.0.0.1:$DEV_PORT/openai/v1" OPENAI_API_KEY="$key" BUDGET_KEY="$budget_key" \
  .venv/bin/python tests/openai_sdk.py >"$STACK_DIR/openai.log" 2>&1 || fail "openai package: $(cat "$STACK_DIR/openai.log")"
echo "dev check: 8 passed, 0 failed (MISS, HIT, stream, capacity, batch submit and status, a batch job completed and announced, openai package: $(tail -n 1 "$STACK_DIR/openai.log"))"
