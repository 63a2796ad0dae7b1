#!/usr/bin/env bash
# The Bedrock emulator through the AWS CLI, by endpoint alone (AWS_ENDPOINT_URL_BEDROCK_RUNTIME
# from the stack's environment): an answer with usage, then a typed error.
set -euo pipefail
aws=.venv/bin/aws
answer=$($aws bedrock-runtime converse --model-id anthropic.claude-3-haiku-20240307-v1:0 \
  --messages '[{"role":"user","content":[{"text":"hello from the AWS CLI"}]}]' \
  --inference-config maxTokens=30 --output json)
.venv/bin/python -c 'import json,sys; a=json.loads(sys.argv[1]); assert a["output"]["message"]["content"][0]["text"] and 0 < a["usage"]["outputTokens"] <= 30, a' "$answer"
if error=$($aws bedrock-runtime converse --model-id vendor.unknown-v1 \
  --messages '[{"role":"user","content":[{"text":"hi"}]}]' 2>&1); then
  echo "AWS CLI smoke: FAILED: an unknown model was accepted" >&2
  exit 1
fi
case "$error" in
  *ValidationException*) ;;
  *) echo "AWS CLI smoke: FAILED: expected ValidationException, got: $error" >&2; exit 1 ;;
esac
echo "AWS CLI smoke: 2 passed, 0 failed"
