#!/usr/bin/env bash
# Serves the functions on 127.0.0.1:9000 with `cargo lambda watch`, against the local stack
# that `scripts/stack.sh up` started (its variables come from .local/env).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source .local/env
export PATH="$PWD/.venv/bin:$PATH"
export CACHE_SCOPE=${CACHE_SCOPE:-shared}

if ! ls functions/*/Cargo.toml >/dev/null 2>&1; then
  echo "No function yet: the Bedrock emulator serves alone on $EMULATOR_URL. Try:"
  echo "  curl -s $EMULATOR_URL/model/anthropic.claude-3-haiku-20240307-v1:0/converse \\"
  echo "    -H 'content-type: application/json' -d '{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"Hello\"}]}]}'"
  tail -f .local/emulator.log
fi

cat <<MSG

Serving the functions on http://127.0.0.1:9000 (Ctrl-C to stop; \`make stack-down\` stops the stack).
Paste this twice: the first answer is a MISS, the second a HIT.

  curl -s -i http://127.0.0.1:9000/v1/invoke -H 'content-type: application/json' \\
    -d '{"prompt": "What does a cache TTL do?"}'

MSG
exec cargo lambda watch --invoke-address 127.0.0.1 --invoke-port 9000 \
  --env-var "CACHE_TABLE_NAME=$CACHE_TABLE_NAME" --env-var "CACHE_SCOPE=$CACHE_SCOPE"
