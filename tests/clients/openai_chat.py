"""Drives an edge-llm server with the official `openai` Python client (installed by `just tools`).

Usage: openai_chat.py BASE_URL MODEL PROMPT MAX_TOKENS
Prints one JSON object: the one-shot and streamed greedy texts, the streamed usage and finish
reason, the served model ids, the status codes of four bad requests, and the model a request
by the alias `gpt-3.5-turbo` is answered as (the servers are started with that alias).
"""

import json
import sys

import openai

base_url, model, prompt, max_tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=300)
messages = [{"role": "user", "content": prompt}]

one_shot = client.chat.completions.create(
    model=model, messages=messages, max_tokens=max_tokens, temperature=0
)

parts, usage, finish = [], None, None
stream = client.chat.completions.create(
    model=model,
    messages=messages,
    max_tokens=max_tokens,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
)
def counts(u):
    """The usage's token counts, and its cached prompt tokens apart (a later request may find an
    earlier one's prompt in the server's cache, so those may differ between two requests)."""
    d = u.model_dump()
    details = d.pop("prompt_tokens_details", None) or {}
    return d, details.get("cached_tokens")


for chunk in stream:
    if chunk.usage is not None:
        usage = counts(chunk.usage)
    for choice in chunk.choices:
        if choice.delta.content:
            parts.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason


def status_of(**overrides):
    args = dict(model=model, messages=messages, max_tokens=max_tokens, temperature=0)
    args.update(overrides)
    try:
        client.chat.completions.create(**args)
        return 200
    except openai.APIStatusError as e:
        return e.status_code


print(
    json.dumps(
        {
            "text": one_shot.choices[0].message.content,
            "finish_reason": one_shot.choices[0].finish_reason,
            "usage": counts(one_shot.usage)[0],
            "cached_tokens": counts(one_shot.usage)[1],
            "stream_text": "".join(parts),
            "stream_finish_reason": finish,
            "stream_usage": usage and usage[0],
            "stream_cached_tokens": usage and usage[1],
            "models": [m.id for m in client.models.list()],
            "bad_temperature": status_of(temperature=-1),
            "unknown_model": status_of(model="no-such-model"),
            "unknown_field": status_of(extra_body={"mirostat": 2}),
            "bad_format": status_of(response_format={"type": "xml"}),
            "alias_model": client.chat.completions.create(
                model="gpt-3.5-turbo", messages=messages, max_tokens=1, temperature=0
            ).model,
        }
    )
)
