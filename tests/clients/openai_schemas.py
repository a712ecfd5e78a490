"""Structured output through the official `openai` Python client: every schema of
json_schemas.json (nesting, enums, arrays with bounds, numbers with ranges, anyOf, const,
optional fields, $ref, patterns) at temperature 1.0, one-shot and streamed, as OpenAI's
`response_format` (strict and not) and as llama.cpp's `json_schema` field; then `json_object`
and a GBNF `grammar`. Each answer is validated with the `jsonschema` package (installed by
`just tools`).

Usage: openai_schemas.py BASE_URL MODEL [--summary]
Prints one JSON object: how many answers were valid of how many, the failures, and the time
the token masks took against the whole generation (one-shot answers' `timings`); with
`--summary`, one line of those figures instead.
"""

import json
import pathlib
import re
import sys

import jsonschema
import openai

base_url, model = sys.argv[1], sys.argv[2]
summary = sys.argv[3:] == ["--summary"]
client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=600)
cases = json.loads((pathlib.Path(__file__).parent / "json_schemas.json").read_text())

valid, total, failures = 0, 0, []
mask_ms, generation_ms, tokens = 0.0, 0.0, 0


def ask(i, messages, stream, **how):
    """The answer's text and finish reason (an API error as the text, with no finish reason);
    adds a one-shot answer's timings to the totals."""
    try:
        return answer(i, messages, stream, **how)
    except openai.APIError as e:
        return f"API error: {e}", None


def answer(i, messages, stream, **how):
    global mask_ms, generation_ms, tokens
    args = dict(model=model, messages=messages, max_tokens=400, temperature=1.0, seed=i, **how)
    if not stream:
        r = client.chat.completions.create(**args)
        t = r.model_extra.get("timings") or {}
        n = r.usage.completion_tokens
        decode = (n - 1) / t["decode_tokens_per_s"] * 1e3 if n > 1 and t.get("decode_tokens_per_s") else 0.0
        mask_ms += t.get("constraint_ms", 0.0)
        generation_ms += t.get("ttft_ms", 0.0) - t.get("prefill_ms", 0.0) + decode
        tokens += n
        return r.choices[0].message.content, r.choices[0].finish_reason
    parts, finish = [], None
    for chunk in client.chat.completions.create(stream=True, **args):
        for c in chunk.choices:
            parts.append(c.delta.content or "")
            finish = c.finish_reason or finish
    return "".join(parts), finish


def check(name, text, finish, validate, parse=True):
    """Counts the answer valid when it ended by itself and `validate` accepts it (parsed as
    JSON first, unless `parse` is false)."""
    global valid, total
    total += 1
    try:
        if finish != "stop":
            raise ValueError(f"finish_reason {finish}")
        validate(json.loads(text) if parse else text)
        valid += 1
    except Exception as e:  # every kind of failure is reported, with the answer
        failures.append({"case": name, "answer": text, "error": str(e)[:300]})


for i, case in enumerate(cases):
    schema = case["schema"]
    messages = [{"role": "user", "content": case["ask"] + " Answer in JSON."}]
    validator = jsonschema.Draft202012Validator(schema)
    for stream in (False, True):
        if i % 3 == 2:
            how = {"extra_body": {"json_schema": schema}}
        else:
            how = {"response_format": {"type": "json_schema", "json_schema": {
                "name": f"case{i}", "schema": schema, "strict": i % 3 == 0}}}
        text, finish = ask(i, messages, stream, **how)
        check(f"{i} {'streamed' if stream else 'one-shot'}", text, finish, validator.validate)

messages = [{"role": "user", "content": "Describe the weather as JSON."}]
for seed in range(2):
    text, finish = ask(100 + seed, messages, seed == 1, response_format={"type": "json_object"})

    def is_object(v):
        if not isinstance(v, dict):
            raise ValueError("not an object")

    check(f"json_object {seed}", text, finish, is_object)

gbnf = 'root ::= "Answer: " ("yes" | "no") ", because " [a-z ]{1,40} "."\n'
for seed in range(2):
    text, finish = ask(200 + seed, [{"role": "user", "content": "Is the sea salty?"}], seed == 1,
                       extra_body={"grammar": gbnf})

    def matches(t):
        if not re.fullmatch(r"Answer: (yes|no), because [a-z ]{1,40}\.", t):
            raise ValueError("does not match the grammar")

    check(f"grammar {seed}", text, finish, matches, parse=False)

result = {
    "valid": valid,
    "total": total,
    "schemas": len(cases),
    "failures": failures,
    "mask_ms": round(mask_ms, 1),
    "generation_ms": round(generation_ms, 1),
    "tokens": tokens,
}
if summary:
    share = 100 * mask_ms / generation_ms if generation_ms else 0.0
    print(f"{valid}/{total} valid; masks {mask_ms:.0f} ms of {generation_ms:.0f} ms generating "
          f"{tokens} tokens ({share:.1f} %, {mask_ms / max(tokens, 1):.3f} ms per token)")
else:
    print(json.dumps(result))
