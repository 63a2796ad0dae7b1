#!/usr/bin/env bash
# The Bedrock emulator through the AWS CLI, by endpoint alone (AWS_ENDPOINT_URL_BEDROCK_RUNTIME
# and AWS_ENDPOINT_URL_BEDROCK from the stack's environment): an answer with usage, a typed
# error, then batch inference jobs: create, list, and a typed error for an unknown job.
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

curl -fsS -o /dev/null "$EMULATOR_URL/_emulator/config" -d '{"batchStepMs": 60000}'
arn=$($aws bedrock create-model-invocation-job --job-name cli-smoke \
  --role-arn arn:aws:iam::123456789012:role/BedrockBatchRole \
  --model-id anthropic.claude-3-haiku-20240307-v1:0 \
  --input-data-config '{"s3InputDataConfig":{"s3Uri":"s3://cli-smoke/in.jsonl"}}' \
  --output-data-config '{"s3OutputDataConfig":{"s3Uri":"s3://cli-smoke/out/"}}' \
  --query jobArn --output text)
jobs=$($aws bedrock list-model-invocation-jobs --name-contains cli-smoke --output json)
.venv/bin/python -c 'import json,sys; j=json.loads(sys.argv[1])["invocationJobSummaries"]; assert [x["jobArn"] for x in j] == [sys.argv[2]] and j[0]["status"] == "Submitted", j' "$jobs" "$arn"
$aws bedrock stop-model-invocation-job --job-identifier "$arn"
if error=$($aws bedrock get-model-invocation-job --job-identifier abcdefghijkl 2>&1); then
  echo "AWS CLI smoke: FAILED: an unknown job was found" >&2
  exit 1
fi
case "$error" in
  *ResourceNotFoundException*) ;;
  *) echo "AWS CLI smoke: FAILED: expected ResourceNotFoundException, got: $error" >&2; exit 1 ;;
esac
curl -fsS -o /dev/null -X POST "$EMULATOR_URL/_emulator/reset"
echo "AWS CLI smoke: 4 passed, 0 failed"
