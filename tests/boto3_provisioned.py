"""The emulator's Provisioned Throughput API through boto3's `bedrock` client (endpoint from
AWS_ENDPOINT_URL_BEDROCK alone): create, get by name and ARN, list with filters and pages,
update, delete, the typed errors (conflict, quota, committed deletion, unknown), and the
runtime following it (served once InService, throttled beyond its tokens per minute, refused
once deleted). Run by scripts/integration.sh against the stack in the environment."""

import json
import os
import sys
import time
import urllib.request

import boto3
from botocore.config import Config

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
FOUNDATION_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"
# Retries off, so that each throttled or refused call is seen once.
no_retries = Config(retries={"mode": "standard", "total_max_attempts": 1})
bedrock = boto3.client("bedrock", config=no_retries)
runtime = boto3.client("bedrock-runtime", config=no_retries)
checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"boto3 provisioned: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


def emulator(path, patch=None):
    data = None if patch is None else json.dumps(patch).encode()
    request = urllib.request.Request(os.environ["EMULATOR_URL"] + path, data=data, method="POST" if data is not None or path.endswith("reset") else "GET")
    with urllib.request.urlopen(request) as response:
        body = response.read()
    return json.loads(body) if body else None


def fails_with(code, call, **kwargs):
    try:
        call(**kwargs)
    except bedrock.exceptions.ClientError as error:
        return error.response["Error"]["Code"] == code, error
    return False, "no error"


def converse(model_id, text="hello from boto3", max_tokens=20):
    return runtime.converse(modelId=model_id, messages=[{"role": "user", "content": [{"text": text}]}],
                            inferenceConfig={"maxTokens": max_tokens})


def wait_in_service(identifier):
    """Polls get_provisioned_model_throughput, at most 30 s."""
    deadline = time.monotonic() + 30
    while True:
        status = bedrock.get_provisioned_model_throughput(provisionedModelId=identifier)["status"]
        if status == "InService" or time.monotonic() > deadline:
            return status
        time.sleep(0.01)


check(bedrock.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL_BEDROCK"], "bedrock endpoint from the environment")
emulator("/_emulator/reset")
try:
    emulator("/_emulator/config", {"provisioned": {"createMs": 1000, "updateMs": 0, "noCommitmentUnitQuota": 4,
                                                   "tokensPerMinuteByModel": {HAIKU: 300}}})
    created = bedrock.create_provisioned_model_throughput(
        provisionedModelName="boto3-pt", modelId=HAIKU, modelUnits=1, clientRequestToken="boto3-pt-token",
        tags=[{"key": "plan", "value": "boto3"}])
    arn = created["provisionedModelArn"]
    check(created["ResponseMetadata"]["HTTPStatusCode"] == 201, "create answers 201")
    again = bedrock.create_provisioned_model_throughput(
        provisionedModelName="boto3-pt", modelId=HAIKU, modelUnits=1, clientRequestToken="boto3-pt-token")
    check(again["provisionedModelArn"] == arn, "the same clientRequestToken gives the same ARN")
    pt = bedrock.get_provisioned_model_throughput(provisionedModelId=arn)
    check(pt["status"] == "Creating" and pt["modelArn"] == FOUNDATION_ARN, f"get by ARN while creating: {pt}")
    try:
        converse(arn)
        check(False, "a Creating Provisioned Throughput must not serve")
    except runtime.exceptions.ModelNotReadyException:
        checks += 1
    check(wait_in_service("boto3-pt") == "InService", "InService after provisioned.createMs")
    pt = bedrock.get_provisioned_model_throughput(provisionedModelId="boto3-pt")
    check(pt["provisionedModelArn"] == arn and pt["creationTime"].tzinfo is not None, f"get by name: {pt}")
    check(converse(arn)["usage"]["totalTokens"] > 0, "served once InService")

    ok, error = fails_with("ConflictException", bedrock.create_provisioned_model_throughput,
                           provisionedModelName="boto3-pt", modelId=HAIKU, modelUnits=1)
    check(ok, f"a taken name conflicts: {error}")
    ok, error = fails_with("ServiceQuotaExceededException", bedrock.create_provisioned_model_throughput,
                           provisionedModelName="boto3-big", modelId=HAIKU, modelUnits=4)
    check(ok, f"no-commitment units beyond the quota: {error}")
    emulator("/_emulator/config", {"provisioned": {"createMs": 0}})
    committed = bedrock.create_provisioned_model_throughput(
        provisionedModelName="boto3-committed", modelId=HAIKU, modelUnits=1, commitmentDuration="SixMonths")
    second = bedrock.create_provisioned_model_throughput(
        provisionedModelName="boto3-second", modelId=HAIKU, modelUnits=1)["provisionedModelArn"]

    listed = bedrock.list_provisioned_model_throughputs(nameContains="boto3", sortBy="CreationTime", sortOrder="Ascending")
    names = [s["provisionedModelName"] for s in listed["provisionedModelSummaries"]]
    check(names == ["boto3-pt", "boto3-committed", "boto3-second"], f"list sorted by creation: {names}")
    paged = [s["provisionedModelArn"] for page in bedrock.get_paginator("list_provisioned_model_throughputs").paginate(
        statusEquals="InService", modelArnEquals=FOUNDATION_ARN, PaginationConfig={"PageSize": 1})
        for s in page["provisionedModelSummaries"]]
    check(paged == [second, committed["provisionedModelArn"], arn], f"paginated, newest first: {paged}")

    bedrock.update_provisioned_model_throughput(provisionedModelId=arn, desiredProvisionedModelName="boto3-renamed")
    check(bedrock.get_provisioned_model_throughput(provisionedModelId="boto3-renamed")["provisionedModelArn"] == arn,
          "update renames")
    tags = bedrock.list_tags_for_resource(resourceARN=arn)["tags"]
    check(tags == [{"key": "plan", "value": "boto3"}], f"tags kept: {tags}")

    # Beyond 300 tokens a minute the Provisioned Throughput throttles.
    throttled = 0
    for i in range(20):
        try:
            converse(arn, f"load {i}", 100)
        except runtime.exceptions.ThrottlingException:
            throttled += 1
    check(throttled > 0, "calls beyond the tokens per minute are throttled")
    stats = emulator("/_emulator/stats")["provisionedThroughputs"][arn]
    check(stats["capacityThrottled"] == throttled and stats["tokensLastMinute"] <= 300, f"stats: {stats}")

    ok, error = fails_with("ValidationException", bedrock.delete_provisioned_model_throughput,
                           provisionedModelId="boto3-committed")
    check(ok and "commitment" in str(error), f"committed capacity is not deleted before its term: {error}")
    bedrock.delete_provisioned_model_throughput(provisionedModelId=arn)
    ok, error = fails_with("ResourceNotFoundException", bedrock.get_provisioned_model_throughput, provisionedModelId=arn)
    check(ok, f"a deleted one is not found: {error}")
    try:
        converse(arn)
        check(False, "a deleted Provisioned Throughput must not serve")
    except runtime.exceptions.ResourceNotFoundException:
        checks += 1
finally:
    emulator("/_emulator/reset")

print(f"boto3 provisioned: {checks} passed, 0 failed")
