#!/usr/bin/env bash
# The integration tests (Rust SDK, then boto3) against a private local stack on free ports.
# Extra arguments go to `cargo test` (e.g. `--test invoke`).
set -euo pipefail
cd "$(dirname "$0")/.."
# tests/tests/mains.rs runs the functions' real binaries under the Runtime API stand-in.
cargo build -q -p invoke-with-cache -p batch-submit -p batch-status -p capacity -p metrics-publisher
# One test at a time: they share the emulator's counters and fault settings.
exec scripts/with-stack.sh bash -c 'cargo test -p integration-tests "$@" -- --test-threads=1 && .venv/bin/python tests/boto3_smoke.py && .venv/bin/python tests/boto3_levers.py && .venv/bin/python tests/boto3_provisioned.py && .venv/bin/python tests/boto3_cloudwatch.py && tests/awscli_smoke.sh' integration "$@"
