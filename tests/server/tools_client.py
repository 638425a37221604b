"""Tool calls and structured output through the official `openai` client
against `infer serve` (SmolLM2) on 127.0.0.1: a tool round-trip (call, tool
result, final answer) streamed and not, `tool_choice: "required"`, a named
function, parallel calls, `response_format` json_schema output that
validates, and the 400s for a bad schema and an unknown tool.

Usage: tools_client.py BASE_URL
"""

import json
import sys

import openai
from openai import OpenAI

BASE = sys.argv[1]
client = OpenAI(base_url=BASE + "/v1", api_key="none", max_retries=0, timeout=120)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 20}},
            "required": ["zone"],
        },
    },
}
TOOLS = [WEATHER, TIME]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)
    print("ok:", what)


def no_markup(text):
    return text is None or ("<tool_call>" not in text and "</tool_call>" not in text)


def checked_calls(message, names):
    """The message's calls: each well-formed, ids distinct, arguments a JSON object."""
    calls = message.tool_calls or []
    for c in calls:
        check(c.id.startswith("call_") and c.type == "function", f"call {c.id} has an id and type function")
        check(c.function.name in names, f"call names a known tool ({c.function.name})")
        args = json.loads(c.function.arguments)
        check(isinstance(args, dict), f"arguments {c.function.arguments} are a JSON object")
    check(len({c.id for c in calls}) == len(calls), "call ids are distinct")
    return calls


def stream_reply(**kw):
    """Streams a chat request; returns (content, calls as dicts by index, finish reasons, chunks)."""
    content, calls, reasons, n = "", {}, [], 0
    for chunk in client.chat.completions.create(stream=True, **kw):
        n += 1
        for ch in chunk.choices:
            d = ch.delta
            if d.content:
                content += d.content
            for tc in d.tool_calls or []:
                if tc.index not in calls:
                    # The first delta of a call carries its id, type and name.
                    check(tc.id and tc.type == "function" and tc.function.name, f"first delta of call {tc.index} has id, type, name")
                    calls[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments or ""}
                else:
                    check(tc.id is None and tc.function.name is None, "later deltas carry only arguments")
                    calls[tc.index]["arguments"] += tc.function.arguments or ""
            if ch.finish_reason:
                reasons.append(ch.finish_reason)
    return content, calls, reasons, n


# 1. A round-trip, not streamed: the call, the tool's result, the answer.
# SmolLM2-135M never calls a tool on its own (with "auto" it answers in
# prose), so the calling turn uses "required"; one call (parallel off), as
# with several allowed it keeps writing calls until max_tokens.
ONE = dict(tool_choice="required", parallel_tool_calls=False)
r = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, temperature=0, max_tokens=48, **ONE)
msg = r.choices[0].message
check(r.choices[0].finish_reason == "tool_calls", "required: finish_reason tool_calls")
calls = checked_calls(msg, ["get_weather", "get_time"])
check(len(calls) == 1, "required: one call")
check(msg.content is None, "content is null when the answer is only calls")
call = calls[0]
history = ASK + [
    msg.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"city": "Paris", "sky": "sunny", "temp_c": 18})},
]
r = client.chat.completions.create(model="m", messages=history, tools=TOOLS, temperature=0, max_tokens=24)
final = r.choices[0]
print("final answer:", repr(final.message.content))
check(final.finish_reason in ("stop", "length") and final.message.content, "after the tool result the model answers in text")
check(not final.message.tool_calls and no_markup(final.message.content), "the answer holds no call markup")

# 2. The same round-trip, streamed.
content, scalls, reasons, n = stream_reply(model="m", messages=ASK, tools=TOOLS, temperature=0, max_tokens=48, **ONE)
check(reasons == ["tool_calls"], f"streamed: last finish_reason tool_calls ({reasons})")
check(content == "" and len(scalls) == 1, "streamed: one call, no content")
check(n > 3, f"streamed in {n} chunks")
first = scalls[0]
check(json.loads(first["arguments"]) == json.loads(call.function.arguments) and first["name"] == call.function.name,
      "streamed call equals the non-streamed one (greedy)")
history = ASK + [
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": first["id"], "type": "function", "function": {"name": first["name"], "arguments": first["arguments"]}}]},
    {"role": "tool", "tool_call_id": first["id"], "content": json.dumps({"city": "Paris", "sky": "sunny", "temp_c": 18})},
]
content, scalls, reasons, _ = stream_reply(model="m", messages=history, tools=TOOLS, temperature=0, max_tokens=24)
print("streamed final answer:", repr(content))
check(content and not scalls and reasons[-1] in ("stop", "length"), "streamed: the answer after the tool result is text")
check(no_markup(content), "streamed: no call markup leaked into content")

# 3. A named function is the one called.
r = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, temperature=0, max_tokens=48, parallel_tool_calls=False,
                                   tool_choice={"type": "function", "function": {"name": "get_time"}})
calls = checked_calls(r.choices[0].message, ["get_time"])
check(len(calls) == 1 and calls[0].function.name == "get_time", "named function: get_time is called")
check(r.choices[0].finish_reason == "tool_calls", "named function: finish_reason tool_calls")

# 4. Parallel calls: two cities asked for. With "auto" SmolLM2 writes prose,
# so "required" with parallel_tool_calls: its grammar allows several calls
# and the model writes one per city (it may go on repeating calls until
# max_tokens, hence "length" is accepted beside "tool_calls").
two = [{"role": "user", "content": "What is the weather in Paris and in London?"}]
r = client.chat.completions.create(model="m", messages=two, tools=[WEATHER], tool_choice="required",
                                   parallel_tool_calls=True, temperature=0, max_tokens=80)
calls = checked_calls(r.choices[0].message, ["get_weather"])
print("parallel calls:", [(c.function.name, c.function.arguments) for c in calls])
check(len(calls) >= 2, "parallel: two calls come back")
cities = {json.loads(c.function.arguments).get("city") for c in calls}
check({"Paris", "London"} <= cities, f"parallel: one call per city asked for ({cities})")
check(r.choices[0].finish_reason in ("tool_calls", "length"), "parallel: finish_reason tool_calls or length")
check(r.choices[0].message.content is None, "parallel: no content")
content, scalls, reasons, _ = stream_reply(model="m", messages=two, tools=[WEATHER], tool_choice="required",
                                           parallel_tool_calls=True, temperature=0, max_tokens=80)
check(len(scalls) == len(calls) and sorted(scalls) == list(range(len(calls))), "parallel, streamed: the same calls, indexed 0..n")
check(len({c["id"] for c in scalls.values()}) == len(scalls), "parallel, streamed: distinct ids")
r = client.chat.completions.create(model="m", messages=two, tools=[WEATHER], tool_choice="required",
                                   parallel_tool_calls=False, temperature=0, max_tokens=80)
check(len(r.choices[0].message.tool_calls) == 1, "parallel_tool_calls false: one call")

# 5. response_format json_schema: the output validates.
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "pets": {"type": "array", "items": {"enum": ["cat", "dog", "fish"]}, "minItems": 1, "maxItems": 3},
        "married": {"type": "boolean"},
    },
    "required": ["name", "age", "pets"],
    "additionalProperties": False,
}


def validate(v):
    """The schema above, checked by hand."""
    assert isinstance(v, dict) and set(v) <= set(SCHEMA["properties"]) and {"name", "age", "pets"} <= set(v), v
    assert isinstance(v["name"], str) and len(v["name"]) <= 16, v
    assert isinstance(v["age"], int) and not isinstance(v["age"], bool) and 0 <= v["age"] <= 150, v
    assert isinstance(v["pets"], list) and 1 <= len(v["pets"]) <= 3 and all(p in ("cat", "dog", "fish") for p in v["pets"]), v
    assert isinstance(v.get("married", False), bool), v


person = [{"role": "user", "content": "Describe a person called Ann as JSON."}]
fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}
for temperature in (0, 1.0):
    r = client.chat.completions.create(model="m", messages=person, response_format=fmt, temperature=temperature, seed=7, max_tokens=64)
    text = r.choices[0].message.content
    print(f"json_schema output (temperature {temperature}):", text)
    validate(json.loads(text))
    check(r.choices[0].finish_reason == "stop", f"json_schema (temperature {temperature}): validates and ends when complete")
# Any object: SmolLM2 pads a free-form object until max_tokens on most
# prompts; on this one it closes it.
capital = [{"role": "user", "content": "What is the capital of France?"}]
r = client.chat.completions.create(model="m", messages=capital, response_format={"type": "json_object"}, temperature=0, max_tokens=64)
check(r.choices[0].finish_reason == "stop" and isinstance(json.loads(r.choices[0].message.content), dict), "json_object: a JSON object")

# 6. Bad input: 400s naming the problem.
def bad(what, param, **kw):
    try:
        client.chat.completions.create(model="m", messages=ASK, max_tokens=4, **kw)
    except openai.BadRequestError as e:
        err = e.body if isinstance(e.body, dict) else {}
        print(f"{what}: 400 {err.get('message')!r}")
        check(e.status_code == 400 and err.get("param") == param, f"{what}: 400 with param {param}")
        return err.get("message", "")
    check(False, f"{what}: refused")


msg = bad("invalid schema", "response_format",
          response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strng"}}})
check("strng" in msg, "the message names the bad type")
msg = bad("unsupported schema keyword", "response_format",
          response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "uniqueItems": True}}})
check("uniqueItems" in msg, "the message names the unsupported keyword")
bad("unknown tool in tool_choice", "tool_choice", tools=TOOLS, tool_choice={"type": "function", "function": {"name": "rain"}})

print("all checks passed")
