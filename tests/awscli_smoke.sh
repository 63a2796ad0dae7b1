#!/usr/bin/env bash
# The Bedrock emulator through the AWS CLI, by endpoint alone (AWS_ENDPOINT_URL_BEDROCK_RUNTIME
# and AWS_ENDPOINT_URL_BEDROCK from the stack's environment): an answer with usage, a typed
# error, a served service tier and count-tokens, then batch inference jobs: create, list, and a typed error for an unknown job; then a
# Provisioned Throughput: create, get, list, update, delete, and a typed error once deleted.
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

# The newer levers: a served tier echoed, and count-tokens against the same call's input.
flex=$($aws bedrock-runtime converse --model-id anthropic.claude-3-haiku-20240307-v1:0 \
  --messages '[{"role":"user","content":[{"text":"hello from the AWS CLI"}]}]' \
  --service-tier type=flex --output json)
counted=$($aws bedrock-runtime count-tokens --model-id anthropic.claude-3-haiku-20240307-v1:0 \
  --input '{"converse":{"messages":[{"role":"user","content":[{"text":"hello from the AWS CLI"}]}]}}' \
  --query inputTokens --output text)
.venv/bin/python -c 'import json,sys; a=json.loads(sys.argv[1]); assert a["serviceTier"] == {"type": "flex"} and a["usage"]["inputTokens"] == int(sys.argv[2]), (a, sys.argv[2])' "$flex" "$counted"

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

# Provisioned Throughput: create, get, list, update, delete, and a typed error once deleted.
curl -fsS -o /dev/null "$EMULATOR_URL/_emulator/config" -d '{"provisioned": {"createMs": 0, "updateMs": 0}}'
pt=$($aws bedrock create-provisioned-model-throughput --provisioned-model-name cli-pt \
  --model-id anthropic.claude-3-haiku-20240307-v1:0 --model-units 1 \
  --query provisionedModelArn --output text)
status=$($aws bedrock get-provisioned-model-throughput --provisioned-model-id cli-pt --query status --output text)
[ "$status" = InService ] || { echo "AWS CLI smoke: FAILED: cli-pt is $status" >&2; exit 1; }
listed=$($aws bedrock list-provisioned-model-throughputs --name-contains cli --status-equals InService --output json)
.venv/bin/python -c 'import json,sys; s=json.loads(sys.argv[1])["provisionedModelSummaries"]; assert [x["provisionedModelArn"] for x in s] == [sys.argv[2]] and s[0]["modelUnits"] == 1, s' "$listed" "$pt"
$aws bedrock update-provisioned-model-throughput --provisioned-model-id "$pt" --desired-provisioned-model-name cli-pt-renamed
renamed=$($aws bedrock get-provisioned-model-throughput --provisioned-model-id cli-pt-renamed --query provisionedModelArn --output text)
[ "$renamed" = "$pt" ] || { echo "AWS CLI smoke: FAILED: the rename answered $renamed" >&2; exit 1; }
$aws bedrock delete-provisioned-model-throughput --provisioned-model-id "$pt"
if error=$($aws bedrock get-provisioned-model-throughput --provisioned-model-id "$pt" 2>&1); then
  echo "AWS CLI smoke: FAILED: a deleted Provisioned Throughput was found" >&2
  exit 1
fi
case "$error" in
  *ResourceNotFoundException*) ;;
  *) echo "AWS CLI smoke: FAILED: expected ResourceNotFoundException, got: $error" >&2; exit 1 ;;
esac
curl -fsS -o /dev/null -X POST "$EMULATOR_URL/_emulator/reset"
echo "AWS CLI smoke: 6 passed, 0 failed"

# CloudWatch in the emulator (AWS_ENDPOINT_URL_CLOUDWATCH; the CLI's botocore speaks awsJson1_0):
# put-metric-data twice, get-metric-data reads back the period's sum, list-metrics filters, and
# an AWS/ namespace is refused with InvalidParameterValue.
start=$(.venv/bin/python -c 'import datetime as d; t=d.datetime.now(d.timezone.utc).replace(second=0, microsecond=0) - d.timedelta(minutes=10); print(t.strftime("%Y-%m-%dT%H:%M:%SZ"))')
end=$(.venv/bin/python -c 'import datetime as d, sys; t=d.datetime.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%SZ") + d.timedelta(minutes=5); print(t.strftime("%Y-%m-%dT%H:%M:%SZ"))' "$start")
$aws cloudwatch put-metric-data --namespace Test/Cli --metric-name Hits --value 2 --unit Count \
  --dimensions ModelId=haiku --timestamp "$start"
$aws cloudwatch put-metric-data --namespace Test/Cli --metric-data \
  "[{\"MetricName\":\"Hits\",\"Dimensions\":[{\"Name\":\"ModelId\",\"Value\":\"haiku\"}],\"Timestamp\":\"$start\",\"Values\":[3,5],\"Counts\":[1,2],\"Unit\":\"Count\"},{\"MetricName\":\"Misses\",\"Value\":1}]"
data=$($aws cloudwatch get-metric-data --start-time "$start" --end-time "$end" --output json \
  --metric-data-queries '[{"Id":"hits","MetricStat":{"Metric":{"Namespace":"Test/Cli","MetricName":"Hits","Dimensions":[{"Name":"ModelId","Value":"haiku"}]},"Period":300,"Stat":"Sum"}}]')
.venv/bin/python -c 'import json,sys; r=json.loads(sys.argv[1])["MetricDataResults"][0]; assert r["Values"] == [15.0] and len(r["Timestamps"]) == 1 and r["StatusCode"] == "Complete", r' "$data"
metrics=$($aws cloudwatch list-metrics --namespace Test/Cli --dimensions Name=ModelId --output json)
.venv/bin/python -c 'import json,sys; m=json.loads(sys.argv[1])["Metrics"]; assert m == [{"Namespace": "Test/Cli", "MetricName": "Hits", "Dimensions": [{"Name": "ModelId", "Value": "haiku"}]}], m' "$metrics"
if error=$($aws cloudwatch put-metric-data --namespace AWS/Cli --metric-name Hits --value 1 2>&1); then
  echo "AWS CLI CloudWatch smoke: FAILED: an AWS/ namespace was accepted" >&2
  exit 1
fi
case "$error" in
  *InvalidParameterValue*"The value AWS/Cli for parameter Namespace is invalid."*) ;;
  *) echo "AWS CLI CloudWatch smoke: FAILED: expected InvalidParameterValue, got: $error" >&2; exit 1 ;;
esac
curl -fsS -o /dev/null -X POST "$EMULATOR_URL/_emulator/reset"
echo "AWS CLI CloudWatch smoke: 4 passed, 0 failed"
