#!/usr/bin/env bash
# The local AWS stack: moto (DynamoDB, S3, EventBridge, SQS) and the Bedrock emulator (Bedrock,
# CloudWatch), on loopback.
#
#   scripts/stack.sh up     start both (if not already running), create the template's
#                           resources (tables, buckets, event buses), write $STACK_DIR/env
#   scripts/stack.sh down   stop exactly the processes `up` started
#
# STACK_DIR (default .local), MOTO_PORT (5000), EMULATOR_PORT (4010), AWS_REGION (us-east-1).
set -euo pipefail
cd "$(dirname "$0")/.."

STACK_DIR=${STACK_DIR:-.local}
MOTO_PORT=${MOTO_PORT:-5000}
EMULATOR_PORT=${EMULATOR_PORT:-4010}
REGION=${AWS_REGION:-us-east-1}
EMULATOR_BIN=${EMULATOR_BIN:-target/debug/bedrock-emulator}
mkdir -p "$STACK_DIR"

# A pid file names a running process of ours only if that process is still the program we
# started (pids are reused).
running() { # pidfile program
  [ -f "$1" ] || return 1
  local pid
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o args= 2>/dev/null | grep -q -- "$2"
}

wait_for() { # name url log
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$1 did not answer on $2 within 30 s; its log ($3):" >&2
  tail -n 20 "$3" >&2 || true
  return 1
}

up() {
  if running "$STACK_DIR/moto.pid" moto_server; then
    echo "moto already running (pid $(cat "$STACK_DIR/moto.pid"))"
  else
    .venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$STACK_DIR/moto.log" 2>&1 &
    echo $! >"$STACK_DIR/moto.pid"
  fi
  if running "$STACK_DIR/emulator.pid" bedrock-emulator; then
    echo "bedrock-emulator already running (pid $(cat "$STACK_DIR/emulator.pid"))"
  else
    [ -x "$EMULATOR_BIN" ] || cargo build -q -p bedrock-emulator
    # Batch jobs read and write S3 through the SDK's own variables: moto, dummy credentials.
    env AWS_ENDPOINT_URL_S3="http://127.0.0.1:$MOTO_PORT" AWS_REGION="$REGION" \
      AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
      "$EMULATOR_BIN" --host 127.0.0.1 --port "$EMULATOR_PORT" >"$STACK_DIR/emulator.log" 2>&1 &
    echo $! >"$STACK_DIR/emulator.pid"
  fi
  wait_for moto "http://127.0.0.1:$MOTO_PORT/moto-api/" "$STACK_DIR/moto.log"
  wait_for bedrock-emulator "http://127.0.0.1:$EMULATOR_PORT/_emulator/health" "$STACK_DIR/emulator.log"

  local common
  common=$(cat <<ENV
export AWS_REGION=$REGION
export AWS_DEFAULT_REGION=$REGION
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$MOTO_PORT
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MOTO_PORT
export AWS_ENDPOINT_URL_EVENTBRIDGE=http://127.0.0.1:$MOTO_PORT
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$MOTO_PORT
export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:$EMULATOR_PORT
export AWS_ENDPOINT_URL_BEDROCK=http://127.0.0.1:$EMULATOR_PORT
export AWS_ENDPOINT_URL_CLOUDWATCH=http://127.0.0.1:$EMULATOR_PORT
export EMULATOR_URL=http://127.0.0.1:$EMULATOR_PORT
ENV
)
  local resources
  resources=$(eval "$common" && .venv/bin/python scripts/local_resources.py infra/template.yaml)
  printf '%s\n%s\n' "$common" "$resources" >"$STACK_DIR/env"
  echo "local stack up: moto on 127.0.0.1:$MOTO_PORT, bedrock-emulator on 127.0.0.1:$EMULATOR_PORT"
  echo "environment: source $STACK_DIR/env"
}

down() {
  for entry in emulator:bedrock-emulator moto:moto_server; do
    local pidfile="$STACK_DIR/${entry%%:*}.pid" program="${entry#*:}"
    if running "$pidfile" "$program"; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      for _ in $(seq 1 50); do running "$pidfile" "$program" || break; sleep 0.1; done
      if running "$pidfile" "$program"; then kill -9 "$(cat "$pidfile")" 2>/dev/null || true; fi
    fi
    rm -f "$pidfile"
  done
  echo "local stack down ($STACK_DIR)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
