"""Log probabilities and `n` answers through the official `openai` Python client.

Usage: openai_features.py BASE_URL MODEL
Checks what must hold whatever the model says (exits non-zero with the reason otherwise) and
prints one JSON object with the figures it saw.
"""

import json
import math
import sys

import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=300)
messages = [{"role": "user", "content": "Name three colours."}]


def check(condition, what):
    if not condition:
        raise SystemExit(f"openai_features.py: {what}")


# Chat logprobs, greedy: one entry per generated token, their texts spell the answer, each
# chosen token is its position's most likely one, and the alternatives come most likely first.
r = client.chat.completions.create(
    model=model, messages=messages, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3
)
choice = r.choices[0]
content = choice.logprobs.content
check(len(content) == r.usage.completion_tokens, f"{len(content)} logprobs for {r.usage.completion_tokens} tokens")
check("".join(t.token for t in content) == choice.message.content, "token texts do not spell the answer")
for t in content:
    check(len(t.top_logprobs) == 3, f"top_logprobs has {len(t.top_logprobs)} entries")
    check(t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == t.logprob, f"greedy chose {t.token!r}, not the most likely {t.top_logprobs[0].token!r}")
    lps = [a.logprob for a in t.top_logprobs]
    check(lps == sorted(lps, reverse=True), f"alternatives out of order: {lps}")
    check(all(-9999 <= lp <= 0 for lp in lps), f"logprobs out of range: {lps}")
    check(bytes(t.bytes or []).decode("utf-8", "replace") == t.token, f"bytes do not match {t.token!r}")
# Sampled at temperature 1 with top_k 5: the alternatives are the 5 kept tokens at most, and
# their probabilities (renormalised over those kept) sum to 1.
s = client.chat.completions.create(
    model=model, messages=messages, max_tokens=8, temperature=1.0, seed=3, logprobs=True,
    top_logprobs=20, extra_body={"top_k": 5},
)
for t in s.choices[0].logprobs.content:
    check(1 <= len(t.top_logprobs) <= 5, f"{len(t.top_logprobs)} alternatives after top_k 5")
    total = sum(math.exp(a.logprob) for a in t.top_logprobs)
    check(abs(total - 1) < 1e-3, f"kept probabilities sum to {total}")
    check(any(a.token == t.token for a in t.top_logprobs), "the chosen token is not among the kept ones")

# Streamed logprobs equal the one-shot ones.
streamed = []
for chunk in client.chat.completions.create(
    model=model, messages=messages, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3,
    stream=True,
):
    for c in chunk.choices:
        if c.logprobs and c.logprobs.content:
            streamed.extend((t.token, t.logprob) for t in c.logprobs.content)
check(streamed == [(t.token, t.logprob) for t in content], "streamed logprobs differ")

# /v1/completions' integer logprobs.
t = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0, logprobs=2)
tl = t.choices[0].logprobs
check("".join(tl.tokens) == t.choices[0].text, "completion tokens do not spell the text")
check(all(len(d) <= 2 for d in tl.top_logprobs), "more than 2 alternatives")
check(tl.text_offset[0] == 0 and tl.text_offset == sorted(tl.text_offset), f"text offsets {tl.text_offset}")

# n answers: indices 0..n-1, answer 0 equals the same request with n = 1, completion tokens add
# up, and streaming gives the same answers.
args = dict(model=model, messages=messages, max_tokens=10, temperature=1.0, seed=11)
three = client.chat.completions.create(n=3, **args)
one = client.chat.completions.create(**args)
check([c.index for c in three.choices] == [0, 1, 2], f"indices {[c.index for c in three.choices]}")
check(three.choices[0].message.content == one.choices[0].message.content, "answer 0 differs from n=1")
texts = [c.message.content for c in three.choices]
check(len(set(texts)) > 1, f"three samples at temperature 1 are all equal: {texts}")
check(three.usage.prompt_tokens == one.usage.prompt_tokens, "prompt counted more than once")
parts = {}
for chunk in client.chat.completions.create(n=3, stream=True, **args):
    for c in chunk.choices:
        parts.setdefault(c.index, []).append(c.delta.content or "")
check(["".join(parts[i]) for i in range(3)] == texts, "streamed answers differ")

print(json.dumps({
    "chat_logprobs": [[t.token, t.logprob] for t in content],
    "completion_logprobs": tl.token_logprobs,
    "n_texts": texts,
    "n_completion_tokens": three.usage.completion_tokens,
}))
