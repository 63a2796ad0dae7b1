#!/usr/bin/env bash
# Runs the integration tests against a private local stack on free ports, then stops it,
# whatever the outcome. Extra arguments go to `cargo test` (e.g. a test name).
set -euo pipefail
cd "$(dirname "$0")/.."

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

export STACK_DIR
STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/bedrock-stack.XXXXXX")
export MOTO_PORT EMULATOR_PORT
MOTO_PORT=$(free_port)
EMULATOR_PORT=$(free_port)
while [ "$EMULATOR_PORT" = "$MOTO_PORT" ]; do EMULATOR_PORT=$(free_port); done

cleanup() { scripts/stack.sh down >/dev/null; rm -rf "$STACK_DIR"; }
trap cleanup EXIT

cargo build -q -p bedrock-emulator
scripts/stack.sh up
# shellcheck disable=SC1091
source "$STACK_DIR/env"
# One test at a time: they share the emulator's counters and fault settings.
cargo test -p integration-tests "$@" -- --test-threads=1
.venv/bin/python tests/boto3_smoke.py
