"""The real `openai` package against invoke-with-cache's OpenAI-compatible API.

Run by `tests/tests/openai_sdk.rs` (a private stack) and by `scripts/dev-check.sh` (`make dev`):

  OPENAI_BASE_URL=http://127.0.0.1:9000/openai/v1 OPENAI_API_KEY=bgw_... \
  BUDGET_KEY=bgw_... EMULATOR_URL=http://127.0.0.1:4010 .venv/bin/python tests/openai_sdk.py

OPENAI_API_KEY: a key without budget. BUDGET_KEY: a key whose budget holds one short answer's
reservation, and not the reservation of an answer without max_tokens.
Every check prints a line; the exit status is the number of failures.
"""

import json
import os
import sys
import time
import urllib.request

import openai
from openai import OpenAI

BASE_URL = os.environ["OPENAI_BASE_URL"]
KEY = os.environ["OPENAI_API_KEY"]
BUDGET_KEY = os.environ["BUDGET_KEY"]
EMULATOR_URL = os.environ["EMULATOR_URL"]
# A prompt of its own per run, so a rerun against a warm cache still starts with a miss.
RUN = f"{time.time_ns()}"

failures = 0


def check(name, condition, detail=""):
    global failures
    print(f"{'ok  ' if condition else 'FAIL'} {name}" + (f": {detail}" if detail and not condition else ""))
    if not condition:
        failures += 1


def bedrock_calls():
    with urllib.request.urlopen(f"{EMULATOR_URL}/_emulator/stats") as response:
        return json.load(response)["totalCalls"]


client = OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0)
question = [
    {"role": "system", "content": "Answer in one sentence."},
    {"role": "user", "content": f"What does a cache TTL do? (run {RUN})"},
]

# A buffered answer (a miss), then the same question streamed: a hit, in several chunks.
raw = client.chat.completions.with_raw_response.create(model="auto", messages=question)
completion = raw.parse()
text = completion.choices[0].message.content
check("buffered answer", completion.object == "chat.completion" and bool(text), completion)
check("buffered answer is a miss", raw.headers.get("x-cache") == "MISS", raw.headers.get("x-cache"))
check("finish_reason stop", completion.choices[0].finish_reason == "stop", completion.choices[0].finish_reason)
check("usage reported", completion.usage.total_tokens > 0, completion.usage)

calls_before_hits = bedrock_calls()
stream = client.chat.completions.create(
    model="auto", messages=question, stream=True, stream_options={"include_usage": True}
)
chunks = list(stream)
joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
check("streamed hit joins to the same text", joined == text, (joined, text))
check("streamed hit comes in several chunks", len(content_chunks) > 1, len(content_chunks))
check("first chunk carries the role", chunks[0].choices[0].delta.role == "assistant", chunks[0])
check("one id per response", len({c.id for c in chunks}) == 1)
check(
    "usage chunk last, with empty choices",
    chunks[-1].choices == [] and chunks[-1].usage.total_tokens == completion.usage.total_tokens,
    chunks[-1],
)
again = client.chat.completions.with_raw_response.create(model="auto", messages=question)
check("second identical request is a hit", again.headers.get("x-cache") == "HIT", again.headers.get("x-cache"))
check("hits never reached Bedrock", bedrock_calls() == calls_before_hits, (bedrock_calls(), calls_before_hits))

# A streamed miss joins to the text the buffered (now cached) answer gives.
other = [{"role": "user", "content": f"Name three uses of a CDN. (run {RUN})"}]
streamed = "".join(
    c.choices[0].delta.content or ""
    for c in client.chat.completions.create(model="auto", messages=other, stream=True)
    if c.choices
)
buffered = client.chat.completions.create(model="auto", messages=other).choices[0].message.content
check("streamed miss joins to the buffered text", streamed == buffered and bool(streamed), (streamed, buffered))

# A tool call round trip: the model asks for the tool, the client answers, the model concludes.
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
conversation = [{"role": "user", "content": f"What is the weather in Paris? (run {RUN})"}]
asked = client.chat.completions.create(model="auto", messages=conversation, tools=tools, tool_choice="required")
calls = asked.choices[0].message.tool_calls or []
check("model asks for the tool", asked.choices[0].finish_reason == "tool_calls" and len(calls) == 1, asked)
if calls:
    call = calls[0]
    arguments = json.loads(call.function.arguments)
    check("tool arguments follow the schema", isinstance(arguments.get("city"), str), arguments)
    conversation += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"celsius": 21})},
    ]
    concluded = client.chat.completions.create(model="auto", messages=conversation, tools=tools)
    check(
        "model concludes after the tool result",
        concluded.choices[0].finish_reason == "stop" and bool(concluded.choices[0].message.content),
        concluded,
    )
    streamed_call = [
        c for c in client.chat.completions.create(
            model="auto", messages=conversation[:1], tools=tools, tool_choice="required", stream=True
        )
        if c.choices and c.choices[0].delta.tool_calls
    ]
    check("streamed tool call deltas carry index 0", all(tc.index == 0 for c in streamed_call for tc in c.choices[0].delta.tool_calls) and bool(streamed_call))

# Prompt caching: a cache_control mark after a long system prompt (over every model's minimum
# cacheable size) writes Bedrock's prompt cache, the next question with the same prefix reads
# it, and the first question without the mark is the same response-cache entry.
policy = f"Refund policy of run {RUN}. " + "Refunds are granted within 30 days of purchase. " * 600


def with_policy(question_text, marked=True):
    part = {"type": "text", "text": policy}
    if marked:
        part["cache_control"] = {"type": "ephemeral"}
    return [{"role": "system", "content": [part]}, {"role": "user", "content": question_text}]


wrote = client.chat.completions.create(model="auto", messages=with_policy("May I return shoes?"))
details = wrote.usage.prompt_tokens_details
check("a cache point writes: cached_tokens 0", details is not None and details.cached_tokens == 0, wrote.usage)
read = client.chat.completions.create(model="auto", messages=with_policy("May I return a hat?"))
details = read.usage.prompt_tokens_details
check(
    "the same prefix reads: cached_tokens counted in prompt_tokens",
    details is not None and 0 < details.cached_tokens < read.usage.prompt_tokens,
    read.usage,
)
plain = client.chat.completions.with_raw_response.create(model="auto", messages=with_policy("May I return shoes?", marked=False))
check("without the mark, the same response-cache entry", plain.headers.get("x-cache") == "HIT", plain.headers.get("x-cache"))

# Bedrock's flex tier, asked as OpenAI's service_tier, is the tier the answer reports.
raw_flex = client.chat.completions.with_raw_response.create(
    model="auto", messages=[{"role": "user", "content": f"Name a flexible tier. (run {RUN})"}], service_tier="flex"
)
flex = raw_flex.parse()
check("service_tier flex is served as flex", flex.service_tier == "flex", flex.service_tier)
# At the flex price: half the default price of the model that answered (the tier models' list
# prices, USD per 1,000 input and output tokens).
PRICES = {
    "anthropic.claude-haiku-4-5-20251001-v1:0": (0.001, 0.005),
    "anthropic.claude-3-haiku-20240307-v1:0": (0.00025, 0.00125),
    "anthropic.claude-sonnet-4-5-20250929-v1:0": (0.003, 0.015),
    "anthropic.claude-opus-4-1-20250805-v1:0": (0.015, 0.075),
}
model_id = raw_flex.headers.get("x-model-id", "")
region, _, rest = model_id.partition(".")
answered_by = rest if region in ("us", "eu", "apac", "jp", "au", "ca", "global") else model_id  # an inference profile
price_in, price_out = PRICES.get(answered_by, (None, None))
if price_in is not None:
    expected = 0.5 * (flex.usage.prompt_tokens * price_in + flex.usage.completion_tokens * price_out) / 1000
    charged = float(raw_flex.headers.get("x-cost-usd", "nan"))
    check("flex is charged half the default price", abs(charged - expected) < 1e-9, (charged, expected, answered_by))
else:
    check("the flex answer names a priced model", False, raw_flex.headers.get("x-model-id"))

# Refusals, as the SDK's exception classes.
try:
    OpenAI(base_url=BASE_URL, api_key="bgw_nope", max_retries=0).chat.completions.create(model="auto", messages=question)
    check("bad key raises AuthenticationError", False, "no error")
except openai.AuthenticationError as error:
    check("bad key raises AuthenticationError", error.status_code == 401)

try:
    client.chat.completions.create(model="auto", messages=question, seed=7)
    check("unsupported field raises BadRequestError", False, "no error")
except openai.BadRequestError as error:
    check("unsupported field raises BadRequestError naming it", "seed" in str(error) and error.body.get("param") == "seed", error.body)

budget_client = OpenAI(base_url=BASE_URL, api_key=BUDGET_KEY, max_retries=0)
budget_client.chat.completions.create(model="auto", messages=[{"role": "user", "content": f"spend {RUN}"}], max_tokens=5)
try:
    budget_client.chat.completions.create(model="auto", messages=[{"role": "user", "content": f"spend more {RUN}"}])
    check("over budget raises RateLimitError", False, "no error")
except openai.RateLimitError as error:
    check("over budget raises RateLimitError", error.body.get("code") == "BudgetExceeded", error.body)

models = [m.id for m in client.models.list()]
check("models lists auto and the tier models", "auto" in models and len(models) > 1, models)

print(f"openai sdk: {failures} failed")
sys.exit(failures)
