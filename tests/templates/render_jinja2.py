"""Renders every chat template in a directory with Python's jinja2, as Hugging Face's
`apply_chat_template` does, for a fixed set of conversations; writes the results as JSON.

The environment is the one transformers builds (`ImmutableSandboxedEnvironment` with
`trim_blocks`, `lstrip_blocks` and the `loopcontrols` extension; `tojson` as `json.dumps`
with its keyword options; the globals `raise_exception` and `strftime_now`). `strftime_now`
reads a fixed instant, CLOCK below, which the Rust side sets too, so renders compare byte for
byte on any day.

Usage: render_jinja2.py TEMPLATE_DIR OUT.json
"""

import datetime
import json
import pathlib
import sys

import jinja2
import jinja2.nodes
import jinja2.ext
import jinja2.sandbox

# 2026-03-14 15:09:26 UTC, a Saturday (the Rust test uses the same instant).
CLOCK = datetime.datetime(2026, 3, 14, 15, 9, 26, tzinfo=datetime.timezone.utc)
BOS = "<s>"
EOS = "</s>"

SYSTEM = {"role": "system", "content": "You are a concise assistant."}
USER = {"role": "user", "content": "What is WebAssembly?"}
ANSWER = {"role": "assistant", "content": "A portable binary format for a stack machine."}
FOLLOW_UP = {"role": "user", "content": "Name one runtime, please."}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }
]
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
        }
    ],
}
RESULT = {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temperature": 21}'}
WEATHER = {"role": "user", "content": "What is the weather in Paris?"}

CONVERSATIONS = {
    "user": {"messages": [USER], "add_generation_prompt": True},
    "system": {"messages": [SYSTEM, USER], "add_generation_prompt": True},
    "multi-turn": {"messages": [SYSTEM, USER, ANSWER, FOLLOW_UP], "add_generation_prompt": True},
    "no-generation-prompt": {"messages": [USER, ANSWER], "add_generation_prompt": False},
    "tools": {"messages": [SYSTEM, WEATHER], "add_generation_prompt": True, "tools": TOOLS},
    "tool-result": {"messages": [WEATHER, CALL, RESULT], "add_generation_prompt": True, "tools": TOOLS},
}


class Generation(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: renders its body unchanged (transformers marks
    the assistant's tokens with it; the spans do not change the text)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return CLOCK.strftime(format)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    directory, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    env = environment()
    cases = []
    for path in sorted(directory.glob("*.jinja")):
        source = path.read_text()
        for name, conversation in CONVERSATIONS.items():
            case = {"template": path.name, "conversation": name, "context": conversation}
            try:
                case["text"] = env.from_string(source).render(bos_token=BOS, eos_token=EOS, **conversation)
            except Exception as e:  # jinja2 raising is an expected outcome: we must refuse too
                case["error"] = f"{type(e).__name__}: {e}"
            cases.append(case)
    out.write_text(json.dumps({"bos_token": BOS, "eos_token": EOS, "clock_unix": int(CLOCK.timestamp()), "cases": cases}, indent=1))
    errors = sum("error" in c for c in cases)
    print(f"{len(cases)} renders of {len(cases) // len(CONVERSATIONS)} templates, {errors} raised in jinja2")


main()
