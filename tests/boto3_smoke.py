"""The Bedrock emulator through boto3 (the AWS CLI uses the same botocore), unchanged but for
the endpoint: Converse, ConverseStream, InvokeModel, a typed error and a typed mid-stream
error; tool use (a call and its result, buffered and streamed); batch inference jobs (create, get, list, stop, a typed error) through the `bedrock`
client, whose endpoint comes from AWS_ENDPOINT_URL_BEDROCK alone. Run by
scripts/integration.sh against the stack in the environment."""

import json
import os
import sys
import urllib.request

import boto3
from botocore.exceptions import EventStreamError

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
client = boto3.client("bedrock-runtime", endpoint_url=os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"])
messages = [{"role": "user", "content": [{"text": "hello from boto3"}]}]
checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"boto3 smoke: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


answer = client.converse(modelId=HAIKU, messages=messages, inferenceConfig={"maxTokens": 40})
text = answer["output"]["message"]["content"][0]["text"]
check(text and answer["usage"]["outputTokens"] <= 40, "converse answers within maxTokens")

streamed = ""
usage = None
for event in client.converse_stream(modelId=HAIKU, messages=messages, inferenceConfig={"maxTokens": 40})["stream"]:
    streamed += event.get("contentBlockDelta", {}).get("delta", {}).get("text", "")
    usage = event.get("metadata", {}).get("usage", usage)
check(streamed == text, "converse_stream streams the same text")
check(usage == answer["usage"], "converse_stream reports usage")

body = {"prompt": "\n\nHuman: hi\n\nAssistant:", "max_tokens_to_sample": 20}
legacy = json.loads(client.invoke_model(modelId="anthropic.claude-v2", body=json.dumps(body))["body"].read())
check(legacy["completion"].strip(), "invoke_model answers the legacy completion body")

try:
    client.converse(modelId="vendor.unknown-v1", messages=messages)
    check(False, "unknown model must fail")
except client.exceptions.ValidationException:
    checks += 1


def configure_emulator(path, patch=None):
    data = None if patch is None else json.dumps(patch).encode()
    request = urllib.request.Request(os.environ["EMULATOR_URL"] + path, data=data, method="POST")
    urllib.request.urlopen(request).close()


configure_emulator("/_emulator/config", {"streamError": {"exception": "modelStreamErrorException", "afterDeltas": 2}})
deltas = 0
try:
    for event in client.converse_stream(modelId=HAIKU, messages=messages)["stream"]:
        deltas += "contentBlockDelta" in event
    check(False, "a stream error must interrupt converse_stream")
except EventStreamError as error:
    check(deltas == 2, f"converse_stream sends 2 deltas before its error, got {deltas}")
    check(error.response["Error"]["Code"] == "modelStreamErrorException", f"typed stream error: {error}")
finally:
    configure_emulator("/_emulator/reset")

# Tool use: the model calls the tool the prompt names, with input shaped by its schema; the
# client sends the result and the model concludes with text. Streamed, the input arrives as
# JSON fragments that rebuild the same input.
tool_config = {
    "tools": [{"toolSpec": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "inputSchema": {"json": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        }},
    }}],
    "toolChoice": {"auto": {}},
}
ask = [{"role": "user", "content": [{"text": "What is the weather in Paris? Use get_weather."}]}]
called = client.converse(modelId=HAIKU, messages=ask, toolConfig=tool_config)
call = called["output"]["message"]["content"][0].get("toolUse", {})
check(called["stopReason"] == "tool_use" and call.get("name") == "get_weather", f"converse calls the tool: {called}")
check(call["input"]["unit"] == "celsius" and isinstance(call["input"]["city"], str), f"schema-shaped input: {call}")
result = {"toolResult": {"toolUseId": call["toolUseId"], "content": [{"json": {"sky": "sunny"}}], "status": "success"}}
followed = ask + [called["output"]["message"], {"role": "user", "content": [result]}]
concluded = client.converse(modelId=HAIKU, messages=followed, toolConfig=tool_config)
check(concluded["stopReason"] == "end_turn" and concluded["output"]["message"]["content"][0]["text"], "the result is concluded with text")
fragments, start, stop = "", None, None
for event in client.converse_stream(modelId=HAIKU, messages=ask, toolConfig=tool_config)["stream"]:
    start = event.get("contentBlockStart", {}).get("start", {}).get("toolUse", start)
    fragments += event.get("contentBlockDelta", {}).get("delta", {}).get("toolUse", {}).get("input", "")
    stop = event.get("messageStop", {}).get("stopReason", stop)
check(start == {"toolUseId": call["toolUseId"], "name": "get_weather"}, f"contentBlockStart names the call: {start}")
check(json.loads(fragments) == call["input"] and stop == "tool_use", "converse_stream rebuilds the same input")
try:
    client.converse(modelId=HAIKU, messages=followed)
    check(False, "tool blocks without toolConfig must fail")
except client.exceptions.ValidationException as error:
    check("toolConfig field must be defined" in str(error), f"typed tool error: {error}")

# Batch inference: the `bedrock` control plane, endpoint from AWS_ENDPOINT_URL_BEDROCK.
batch = boto3.client("bedrock")
check(batch.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL_BEDROCK"], "bedrock endpoint from the environment")
configure_emulator("/_emulator/config", {"batchStepMs": 60000})
try:
    created = batch.create_model_invocation_job(
        jobName="boto3-smoke",
        roleArn="arn:aws:iam::123456789012:role/BedrockBatchRole",
        modelId=HAIKU,
        modelInvocationType="Converse",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://boto3-smoke/in.jsonl", "s3InputFormat": "JSONL"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://boto3-smoke/out/"}},
        clientRequestToken="boto3-smoke-token",
    )
    arn = created["jobArn"]
    again = batch.create_model_invocation_job(
        jobName="boto3-smoke",
        roleArn="arn:aws:iam::123456789012:role/BedrockBatchRole",
        modelId=HAIKU,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://boto3-smoke/in.jsonl"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://boto3-smoke/out/"}},
        clientRequestToken="boto3-smoke-token",
    )
    check(again["jobArn"] == arn, "the same clientRequestToken gives the same job")
    job = batch.get_model_invocation_job(jobIdentifier=arn)
    check(job["status"] == "Submitted" and job["jobName"] == "boto3-smoke", f"get_model_invocation_job: {job}")
    check(job["submitTime"].tzinfo is not None and job["modelInvocationType"] == "Converse", "timestamps parse")
    listed = batch.list_model_invocation_jobs(nameContains="boto3", sortOrder="Ascending")
    check([j["jobArn"] for j in listed["invocationJobSummaries"]] == [arn], f"list_model_invocation_jobs: {listed}")
    batch.stop_model_invocation_job(jobIdentifier=arn.rsplit("/", 1)[1])
    check(batch.get_model_invocation_job(jobIdentifier=arn)["status"] == "Stopping", "stop_model_invocation_job")
    try:
        batch.get_model_invocation_job(jobIdentifier="abcdefghijkl")
        check(False, "an unknown job must fail")
    except batch.exceptions.ResourceNotFoundException:
        checks += 1
finally:
    configure_emulator("/_emulator/reset")

print(f"boto3 smoke: {checks} passed, 0 failed")
