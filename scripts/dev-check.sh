#!/usr/bin/env bash
# Runs `make dev` on free ports, sends the README's request twice and expects a MISS then a
# HIT, then stops everything `make dev` started.
set -euo pipefail
cd "$(dirname "$0")/.."
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export STACK_DIR MOTO_PORT EMULATOR_PORT DEV_PORT
STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/bedrock-dev.XXXXXX")
MOTO_PORT=$(free_port)
EMULATOR_PORT=$(free_port)
DEV_PORT=$(free_port)
log="$STACK_DIR/dev.log"

setsid make dev >"$log" 2>&1 &
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
echo "dev check: 2 passed, 0 failed"
