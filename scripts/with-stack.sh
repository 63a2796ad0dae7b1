#!/usr/bin/env bash
# Runs a command against a private local stack on free ports (in a temporary directory), with
# the stack's variables in its environment, then stops the stack whatever the outcome.
#   scripts/with-stack.sh cargo test -p integration-tests
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
"$@"
