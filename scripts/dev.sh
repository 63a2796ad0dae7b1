#!/usr/bin/env bash
# Serves the functions on 127.0.0.1:${DEV_PORT:-9000} with `cargo lambda watch`, against the
# local stack that `scripts/stack.sh up` started (its variables come from $STACK_DIR/env).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
STACK_DIR=${STACK_DIR:-.local}
DEV_PORT=${DEV_PORT:-9000}
source "$STACK_DIR/env"
export PATH="$PWD/.venv/bin:$PATH"
export CACHE_SCOPE=${CACHE_SCOPE:-shared}
# The emulator checks the role's shape only; on AWS the template passes its batch service role.
export BATCH_ROLE_ARN=${BATCH_ROLE_ARN:-arn:aws:iam::123456789012:role/local-bedrock-batch}
# The capacity function's plan: none unless given (see docs/api-capacity.md). Nothing schedules it
# here: a run is one POST to its Invoke API (printed below).
export CAPACITY_PLAN=${CAPACITY_PLAN:-'{}'}
# cargo lambda watch sends no authorizer context, and every batch belongs to its caller: here a
# request without an identity is this role's (never set in AWS, where IAM always names one).
export LOCAL_CALLER_ARN=${LOCAL_CALLER_ARN:-arn:aws:sts::123456789012:assumed-role/local-dev/dev}
# The emulator's batch jobs run Claude 3 Haiku, besides the tier models.
export ALLOWED_MODELS=${ALLOWED_MODELS:-anthropic.claude-3-haiku-20240307-v1:0}

# Bedrock's job state-change events go to batch-status through cargo lambda's Invoke API, as
# the EventBridge rule delivers them in AWS.
curl -fsS -o /dev/null "$EMULATOR_URL/_emulator/config" \
  -d "{\"eventTarget\": \"http://127.0.0.1:$DEV_PORT/2015-03-31/functions/batch-status/invocations\"}" \
  || echo "warning: the emulator's batch events will not reach batch-status" >&2

# batch-status's schedule (every 5 minutes in AWS): one run every BATCH_SCHEDULE_SECONDS (60; 0
# for none) through the same Invoke API, so a batch whose job event was missed still advances
# and an announcement EventBridge refused is retried. The loop ends with this script.
BATCH_SCHEDULE_SECONDS=${BATCH_SCHEDULE_SECONDS:-60}
if [ "$BATCH_SCHEDULE_SECONDS" -gt 0 ]; then
  (
    while sleep "$BATCH_SCHEDULE_SECONDS" && kill -0 $$ 2>/dev/null; do
      curl -fsS -o /dev/null --max-time 120 \
        "http://127.0.0.1:$DEV_PORT/2015-03-31/functions/batch-status/invocations" \
        -d '{"detail-type": "Scheduled Event", "source": "aws.events"}' \
        || echo "warning: batch-status's scheduled run failed" >&2
    done
  ) &
  schedule_pid=$!
  trap 'kill "$schedule_pid" 2>/dev/null || true' EXIT
fi

cat <<MSG

Serving the functions on http://127.0.0.1:$DEV_PORT (Ctrl-C to stop; \`make stack-down\` stops the stack).
Paste this twice: the first answer is a MISS, the second a HIT.

  curl -s -i http://127.0.0.1:$DEV_PORT/v1/invoke -H 'content-type: application/json' \\
    -d '{"prompt": "What does a cache TTL do?"}'

Streamed (server-sent events as the model writes; -N turns curl's buffering off):

  curl -sN http://127.0.0.1:$DEV_PORT/v1/invoke -H 'content-type: application/json' \\
    -d '{"prompt": "What does a cache TTL do?", "stream": true}'

The OpenAI-compatible API wants a tenant key (shown once):

  source $STACK_DIR/env && cargo run -q -p tenant-keys -- create --tenant dev
  # then: OpenAI(base_url="http://127.0.0.1:$DEV_PORT/openai/v1", api_key="bgw_...")

Batches: batch-status gets the emulator's job events and a scheduled run every
${BATCH_SCHEDULE_SECONDS}s (0: none); each batch's end is announced on moto's EventBridge (bus
${BATCH_EVENT_BUS:-default}), and a copy of every announcement waits in an SQS queue:

  source $STACK_DIR/env && aws sqs receive-message --queue-url \$BATCH_ANNOUNCEMENTS_QUEUE_URL

Provisioned Throughput by plan (CAPACITY_PLAN, here $CAPACITY_PLAN): one run of the capacity
function (EventBridge runs it every minute in AWS):

  curl -s http://127.0.0.1:$DEV_PORT/2015-03-31/functions/capacity/invocations -d '{"detail-type": "Scheduled Event"}'

MSG

# The functions print one EMF line per request, which CloudWatch Logs turns into metrics in AWS.
# Here every line of the output still reaches the terminal, and the EMF ones are also posted to
# the emulator's CloudWatch (POST /_emulator/emf), so `aws cloudwatch get-metric-data` reads a
# session's metrics back.
feed_emf() {
  local line report
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s\n' "$line"
    case "$line" in
      *'"CloudWatchMetrics"'*)
        if ! report=$(printf '%s\n' "$line" | curl -fs --max-time 2 --data-binary @- \
          "$EMULATOR_URL/_emulator/emf"); then
          echo "warning: an EMF line did not reach the emulator's CloudWatch" >&2
        elif [[ $report != *'"errors":[]'* ]]; then
          echo "warning: CloudWatch would extract no metrics from that EMF line: $report" >&2
        fi ;;
    esac
  done
}

cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$DEV_PORT" \
  --env-var "CACHE_TABLE_NAME=$CACHE_TABLE_NAME" --env-var "CACHE_SCOPE=$CACHE_SCOPE" \
  --env-var "TENANT_KEYS_TABLE_NAME=$TENANT_KEYS_TABLE_NAME" \
  --env-var "SPEND_TABLE_NAME=$SPEND_TABLE_NAME" \
  --env-var "ROUTING_TABLE_NAME=$ROUTING_TABLE_NAME" --env-var "CAPACITY_PLAN=$CAPACITY_PLAN" 2>&1 | feed_emf
