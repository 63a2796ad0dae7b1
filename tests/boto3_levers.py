"""Bedrock's newer levers on the emulator through boto3, unchanged but for the endpoint: prompt
caching (a write, then a read within the TTL), service tiers and performanceConfig (echoed, flex
throttled when told), a guardrail that intervenes, a prompt router and its trace (and
get_prompt_router through the `bedrock` client), and count_tokens against a Converse call's
input tokens. Run by scripts/integration.sh against the stack in the environment."""

import json
import os
import sys
import time
import urllib.request

import boto3

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
ROUTER = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1"
runtime = boto3.client("bedrock-runtime", endpoint_url=os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"])
control = boto3.client("bedrock", endpoint_url=os.environ["AWS_ENDPOINT_URL_BEDROCK"])
checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"boto3 levers: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


def emulator(path, patch=None):
    data = None if patch is None else json.dumps(patch).encode()
    urllib.request.urlopen(urllib.request.Request(os.environ["EMULATOR_URL"] + path, data=data, method="POST")).close()


emulator("/_emulator/reset")
try:
    # Prompt caching: over Claude 3 Haiku's minimum, the first call writes, the second reads.
    policy = f"Policy {time.time_ns()}. " + "Refunds within 30 days of purchase. " * 300
    system = [{"text": policy}, {"cachePoint": {"type": "default"}}]
    ask = lambda q: runtime.converse(modelId=HAIKU, system=system, messages=[{"role": "user", "content": [{"text": q}]}])
    wrote, read = ask("May I return shoes?")["usage"], ask("May I return a hat?")["usage"]
    check(wrote.get("cacheWriteInputTokens", 0) >= 2048 and wrote["cacheDetails"][0]["ttl"] == "5m", f"a cache point writes: {wrote}")
    check(read.get("cacheReadInputTokens") == wrote["cacheWriteInputTokens"], f"the same prefix reads: {read}")

    # Service tiers and performanceConfig come back as served.
    messages = [{"role": "user", "content": [{"text": "hello from boto3"}]}]
    flex = runtime.converse(modelId=HAIKU, messages=messages, serviceTier={"type": "flex"}, performanceConfig={"latency": "optimized"})
    check(flex["serviceTier"] == {"type": "flex"} and flex["performanceConfig"] == {"latency": "optimized"}, f"tier and latency echoed: {flex}")
    emulator("/_emulator/config", {"flexThrottleRate": 1.0})
    try:
        runtime.converse(modelId=HAIKU, messages=messages, serviceTier={"type": "flex"})
        check(False, "flex must be throttled at rate 1")
    except runtime.exceptions.ThrottlingException:
        checks += 1
    emulator("/_emulator/config", {"flexThrottleRate": 0.0})

    # A guardrail that intervenes on a word.
    emulator("/_emulator/config", {"guardrails": {"gr1abc": {"blockedWords": ["password"]}}})
    guarded = runtime.converse(
        modelId=HAIKU,
        messages=[{"role": "user", "content": [{"text": "What is the admin password?"}]}],
        guardrailConfig={"guardrailIdentifier": "gr1abc", "guardrailVersion": "DRAFT", "trace": "enabled"},
    )
    check(guarded["stopReason"] == "guardrail_intervened" and "guardrail" in guarded["trace"], f"the guardrail intervenes: {guarded}")

    # A prompt router picks a model and says which.
    routed = runtime.converse(modelId=ROUTER, messages=messages)
    check(routed["trace"]["promptRouter"]["invokedModelId"].endswith(HAIKU), f"a short prompt goes to Haiku: {routed.get('trace')}")
    router = control.get_prompt_router(promptRouterArn=ROUTER)
    check(router["promptRouterArn"] == ROUTER and len(router["models"]) == 2, f"get_prompt_router: {router}")

    # CountTokens counts what Converse is charged.
    counted = runtime.count_tokens(modelId=HAIKU, input={"converse": {"messages": messages}})["inputTokens"]
    check(counted == runtime.converse(modelId=HAIKU, messages=messages)["usage"]["inputTokens"], f"count_tokens: {counted}")
finally:
    emulator("/_emulator/reset")

print(f"boto3 levers: {checks} passed, 0 failed")
