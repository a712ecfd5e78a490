"""Tool calls through the official `openai` Python client.

Usage: openai_tools.py BASE_URL MODEL
With `tool_choice` "required" and a named function (one-shot and streamed, temperature 1) every
answer must be a call of a listed tool whose arguments validate against its schema, with
`finish_reason` "tool_calls"; streamed, the arguments must come in pieces that join into the
one-shot call's; the call and the tool's result sent back must give a text answer;
bad tool fields must be refused with a 400 naming the field. Exits non-zero with the reason
otherwise, and prints one JSON object with what it saw.
"""

import json
import sys

import jsonschema
import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=300)

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 40},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
CONVERT = {
    "type": "object",
    "properties": {"value": {"type": "number", "minimum": 0, "maximum": 1000}, "to": {"type": "string", "maxLength": 10}},
    "required": ["value"],
}
tools = [
    {"type": "function", "function": {"name": "get_weather", "description": "The current weather in a city", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "convert", "description": "Convert a temperature", "parameters": CONVERT}},
]
schemas = {"get_weather": WEATHER, "convert": CONVERT}
ask = [{"role": "user", "content": "What is the weather in Paris today?"}]


def check(condition, what):
    if not condition:
        raise SystemExit(f"openai_tools.py: {what}")


def check_call(name, arguments, choice):
    check(name in schemas, f"called an unknown tool {name!r}")
    if isinstance(choice, dict):
        check(name == choice["function"]["name"], f"called {name!r}, not the named function")
    jsonschema.Draft202012Validator(schemas[name]).validate(json.loads(arguments))


summary = {"calls": 0, "streamed_calls": 0, "answers": []}
choices = ["required", {"type": "function", "function": {"name": "get_weather"}}, {"type": "function", "function": {"name": "convert"}}]
for seed, choice in enumerate(choices * 2):
    r = client.chat.completions.create(
        model=model, messages=ask, tools=tools, tool_choice=choice, temperature=1.0, seed=seed, max_tokens=200
    )
    c = r.choices[0]
    check(c.finish_reason == "tool_calls", f"finish_reason {c.finish_reason!r}: {c.message}")
    check(c.message.content is None, f"content {c.message.content!r} beside the calls")
    check(len(c.message.tool_calls) >= 1, "no tool call")
    for call in c.message.tool_calls:
        check(call.type == "function" and call.id.startswith("call_"), f"call {call}")
        check_call(call.function.name, call.function.arguments, choice)
        summary["calls"] += 1
    # The call and the tool's result sent back: the model answers in text.
    history = ask + [c.message.model_dump(exclude_none=True)] + [
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 18, "sky": "clear"})}
        for call in c.message.tool_calls
    ]
    a = client.chat.completions.create(
        model=model, messages=history, tools=tools, tool_choice="none", temperature=0, max_tokens=40
    )
    check(a.choices[0].finish_reason in ("stop", "length"), f"finish_reason {a.choices[0].finish_reason!r}")
    check(a.choices[0].message.tool_calls is None, "tool_choice none gave a call")
    check((a.choices[0].message.content or "").strip() != "", "no answer after the tool's result")
    summary["answers"].append(a.choices[0].message.content)

    # Streamed: OpenAI's deltas (index, id, type, name, then the arguments in pieces as they
    # are generated: the call is forced), then tool_calls; joined as the client joins them,
    # the pieces are the one-shot call's arguments (the same seed draws the same tokens).
    calls, finish, role = {}, None, None
    for chunk in client.chat.completions.create(
        model=model, messages=ask, tools=tools, tool_choice=choice, temperature=1.0, seed=seed, max_tokens=200, stream=True
    ):
        for ch in chunk.choices:
            role = role or ch.delta.role
            for d in ch.delta.tool_calls or []:
                entry = calls.setdefault(d.index, {"id": None, "name": None, "arguments": "", "pieces": 0})
                if d.id:
                    entry["id"] = d.id
                if d.function and d.function.name:
                    entry["name"] = d.function.name
                if d.function and d.function.arguments:
                    entry["arguments"] += d.function.arguments
                    entry["pieces"] += 1
            finish = ch.finish_reason or finish
    check(role == "assistant", f"streamed role {role!r}")
    check(finish == "tool_calls", f"streamed finish_reason {finish!r}")
    check(len(calls) >= 1, "no streamed tool call")
    check(sorted(calls) == list(range(len(calls))), f"call indices {sorted(calls)}")
    for entry in calls.values():
        check(entry["id"] and entry["id"].startswith("call_"), f"streamed call {entry}")
        check_call(entry["name"], entry["arguments"], choice)
        check(entry["pieces"] >= 2, f"the arguments came whole, not as they were generated: {entry}")
        summary["streamed_calls"] += 1
    streamed = [(e["name"], json.loads(e["arguments"])) for _, e in sorted(calls.items())]
    oneshot = [(t.function.name, json.loads(t.function.arguments)) for t in c.message.tool_calls]
    check(streamed == oneshot, f"streamed calls {streamed} differ from one-shot {oneshot}")

# `auto`: either a text answer or a valid call, never anything else.
r = client.chat.completions.create(model=model, messages=ask, tools=tools, temperature=0, max_tokens=200)
c = r.choices[0]
if c.message.tool_calls:
    check(c.finish_reason == "tool_calls", f"auto: finish_reason {c.finish_reason!r}")
    for call in c.message.tool_calls:
        check_call(call.function.name, call.function.arguments, "auto")
else:
    check(c.finish_reason in ("stop", "length") and c.message.content, f"auto: {c}")
summary["auto"] = "call" if c.message.tool_calls else "text"


def refused(param, **fields):
    try:
        client.chat.completions.create(model=model, messages=ask, max_tokens=4, **fields)
    except openai.BadRequestError as e:
        got = e.response.json()["error"]["param"]
        check(got == param, f"{fields}: 400 names {got!r}, not {param!r}")
        return
    raise SystemExit(f"openai_tools.py: {fields} was not refused")


refused("tool_choice.function.name", tools=tools, tool_choice={"type": "function", "function": {"name": "nope"}})
refused("tools", tools={"type": "function"})
refused("tools[0].function.parameters", tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}])
refused("tool_choice", tool_choice="required")
# A schema keyword the constraint cannot enforce, found when the call's grammar is compiled.
unique = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}
refused("tools", tools=[{"type": "function", "function": {"name": "tag", "parameters": unique}}], tool_choice="required")
refused("tools", tools=[{"type": "function", "function": {"name": "tag", "parameters": unique}}], tool_choice="required", stream=True)
try:
    client.chat.completions.create(model=model, messages=[{"role": "tool", "content": "x"}], max_tokens=4)
    raise SystemExit("openai_tools.py: a tool message without tool_call_id was not refused")
except openai.BadRequestError as e:
    check(e.response.json()["error"]["param"] == "messages[0].tool_call_id", f"tool message: {e}")
print(json.dumps(summary))
