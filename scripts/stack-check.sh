#!/usr/bin/env bash
# Checks that `stack.sh up` run twice starts nothing twice and that `stack.sh down` stops
# exactly the processes `up` started, on free ports in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export STACK_DIR MOTO_PORT EMULATOR_PORT
STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/bedrock-stack.XXXXXX")
MOTO_PORT=$(free_port)
EMULATOR_PORT=$(free_port)
trap 'scripts/stack.sh down >/dev/null 2>&1 || true; rm -rf "$STACK_DIR"' EXIT
fail() { echo "stack check: FAILED: $*" >&2; exit 1; }

cargo build -q -p bedrock-emulator
scripts/stack.sh up >/dev/null
first="$(cat "$STACK_DIR/moto.pid") $(cat "$STACK_DIR/emulator.pid")"
scripts/stack.sh up >/dev/null || fail "a second stack-up failed"
second="$(cat "$STACK_DIR/moto.pid") $(cat "$STACK_DIR/emulator.pid")"
[ "$first" = "$second" ] || fail "a second stack-up started new processes ($first, then $second)"
grep -q "^export CACHE_TABLE_NAME=cache-table$" "$STACK_DIR/env" || fail "env lacks CACHE_TABLE_NAME"
grep -q "^export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:$EMULATOR_PORT$" "$STACK_DIR/env" || fail "env lacks the emulator endpoint"
# shellcheck disable=SC1091
(source "$STACK_DIR/env" && .venv/bin/python -c '
import boto3, os, sys
table = boto3.client("dynamodb").describe_table(TableName=os.environ["CACHE_TABLE_NAME"])["Table"]
assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}], table["KeySchema"]
ttl = boto3.client("dynamodb").describe_time_to_live(TableName=os.environ["CACHE_TABLE_NAME"])
assert ttl["TimeToLiveDescription"]["AttributeName"] == "expiresAt", ttl
') || fail "the cache table does not have the template's key schema and TTL"
scripts/stack.sh down >/dev/null
for pid in $first; do
  ! kill -0 "$pid" 2>/dev/null || fail "process $pid still runs after stack-down"
done
echo "stack check: 5 passed, 0 failed"
