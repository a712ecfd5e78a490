"""llama.cpp's own server tests, adapted to edge-llm's OpenAI-compatible API.

Usage: llama_server_cases.py BASE_URL MODEL KEY ORIGIN LLAMA_TESTS_DIR [--warm-cache]

The server must run with the API key KEY, the CORS origin ORIGIN and the model alias `*` (any
model name is accepted, as llama.cpp's server accepts any). LLAMA_TESTS_DIR holds llama.cpp's
`tools/server/tests/unit/test_*.py` (`just llama-server-tests` unpacks them from the
llama-cpp-python 0.3.36 sdist). Those files show what clients send and what they expect; the
cases below are written for this server from them (none of their code is used). Every test
function in LLAMA_TESTS_DIR must be accounted for in ADAPTED, REFUSED_FIELDS,
NOT_APPLICABLE or NOT_APPLICABLE_FILES below, so a test added to llama.cpp's suite is noticed.
--warm-cache: the server keeps one instance's KV cache between requests (`edge-llm serve`), so
a repeated prompt must be found in it.

Runs every case, prints one JSON object (cases run, llama.cpp tests accounted for, seconds),
and exits non-zero listing every case that failed and why.
"""

import base64
import json
import math
import pathlib
import re
import struct
import sys
import threading
import time

import openai

import plain_http

base_url, model, key, origin, llama_tests = sys.argv[1:6]
warm_cache = "--warm-cache" in sys.argv[6:]
client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=300)
bearer = {"authorization": f"Bearer {key}"}


class Failed(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failed(what)


def http(method, path, body=None, headers=None, auth=True):
    """(status, headers, body bytes) of one plain request, with the API key unless `auth` is false."""
    return plain_http.request(base_url + path, method, body, {**(bearer if auth else {}), **(headers or {})})


def post(path, body, **kw):
    """(status, JSON body) of a POST."""
    status, _, raw = http("POST", path, body, **kw)
    return status, json.loads(raw) if raw else None


def events(path, body):
    """The JSON events of a streamed POST (which must answer 200 and end with [DONE])."""
    status, headers, raw = http("POST", path, body)
    check(status == 200, f"stream {path}: {status} {raw[:300]!r}")
    check(headers.get("content-type", "").startswith("text/event-stream"), f"content-type {headers.get('content-type')}")
    lines = [line[len("data: "):] for line in raw.decode().split("\n") if line.startswith("data: ")]
    check(lines and lines[-1] == "[DONE]", f"stream does not end with [DONE]: {lines[-1:]}")
    return [json.loads(line) for line in lines[:-1]]


def refused(status_body, param):
    """A 400 whose error names `param` (exactly, or a field inside it)."""
    status, body = status_body
    check(status == 400, f"expected a 400 naming {param!r}, got {status}: {body}")
    got = (body or {}).get("error", {}).get("param") or ""
    check(got == param or got.startswith(param + ".") or got.startswith(param + "["), f"the 400 names {got!r}, not {param!r}: {body}")
    check(body["error"].get("message"), f"no message: {body}")


def chat_body(content="What is the best book", system="Book", **extra):
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": content}], **extra}


def chat_text(body):
    status, v = post("/v1/chat/completions", body)
    check(status == 200, f"chat: {status} {v}")
    return v


CASES = []


def case(*llama_tests):
    """Registers a case and the llama.cpp tests (FILE::FUNCTION) it adapts."""

    def register(f):
        CASES.append((f, llama_tests))
        return f

    return register


# --- test_basic.py, test_security.py -------------------------------------------------------


@case("test_basic.py::test_server_start_simple", "test_security.py::test_access_public_endpoint")
def health_is_public():
    status, _, body = http("GET", "/health", auth=False)
    check(status == 200 and "error" not in json.loads(body), f"/health: {status} {body!r}")


@case("test_basic.py::test_server_models")
def models_are_listed():
    for path in ["/v1/models", "/models"]:
        status, _, body = http("GET", path)
        check(status == 200, f"{path}: {status}")
        check(json.loads(body)["data"][0]["id"] == model, f"{path}: {body!r}")


@case("test_security.py::test_incorrect_api_key", "test_security.py::test_correct_api_key_anthropic_header")
def wrong_or_missing_keys_get_401():
    # OpenAI answers a bad key with type `invalid_request_error` and code `invalid_api_key`
    # (llama.cpp: type `authentication_error`); Anthropic's X-Api-Key header is not OpenAI's.
    for headers in [{}, {"authorization": "Bearer invalid-key"}, {"x-api-key": key}]:
        for path in ["/v1/completions", "/completions"]:
            status, _, raw = http("POST", path, {"prompt": "I believe the meaning of life is"}, headers, auth=False)
            check(status == 401, f"{path} with {headers}: {status}")
            error = json.loads(raw)["error"]
            check(error["code"] == "invalid_api_key" and error["message"], f"401 body {error}")


@case("test_security.py::test_correct_api_key")
def the_key_opens_the_routes():
    for path in ["/v1/completions", "/completions"]:
        status, v = post(path, {"prompt": "I believe the meaning of life is", "max_tokens": 4})
        check(status == 200 and "error" not in v and v["choices"][0]["text"], f"{path}: {status} {v}")


@case("test_security.py::test_openai_library_correct_api_key")
def openai_library_with_the_key():
    r = client.chat.completions.create(
        model="gpt-3.5-turbo",
        messages=[{"role": "system", "content": "You are a chatbot."}, {"role": "user", "content": "What is the meaning of life?"}],
        max_tokens=8,
    )
    check(len(r.choices) == 1 and r.model == "gpt-3.5-turbo", f"{r}")


@case("test_security.py::test_cors_options", "test_security.py::test_cors_origins_localhost_rejects")
def cors_preflight():
    ask = {"access-control-request-method": "POST", "access-control-request-headers": "Authorization"}
    for path in ["/v1/completions", "/completions"]:
        status, headers, _ = http("OPTIONS", path, None, {"origin": origin, **ask}, auth=False)
        check(status in (200, 204), f"preflight {path}: {status}")
        check(headers.get("access-control-allow-origin") == origin, f"preflight {dict(headers)}")
        check("POST" in headers.get("access-control-allow-methods", ""), f"preflight {dict(headers)}")
        check("authorization" in headers.get("access-control-allow-headers", "").lower(), f"preflight {dict(headers)}")
        status, headers, _ = http("OPTIONS", path, None, {"origin": "http://evil.com", **ask}, auth=False)
        check(headers.get("access-control-allow-origin") is None, f"another origin allowed: {dict(headers)}")


# --- test_chat_completion.py ---------------------------------------------------------------


@case("test_chat_completion.py::test_chat_completion")
def chat_completion():
    for name in [None, "codellama70b"]:
        body = chat_body(max_tokens=8, temperature=0)
        if name:
            body["model"] = name
        v = chat_text(body)
        check("cmpl" in v["id"] and v["system_fingerprint"], f"id/fingerprint {v}")
        check(v["model"] == (name or model), f"model {v['model']!r}")
        c = v["choices"][0]
        check(c["message"]["role"] == "assistant" and c["message"]["content"], f"{c}")
        u = v["usage"]
        check(u["prompt_tokens"] > 5 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], f"usage {u}")
        if c["finish_reason"] == "length":
            check(u["completion_tokens"] == 8, f"length after {u['completion_tokens']} tokens")
        else:
            check(c["finish_reason"] == "stop" and u["completion_tokens"] <= 8, f"{c['finish_reason']} {u}")
    # Text parts are the text they spell, one after another.
    parts = chat_text(chat_body([{"type": "text", "text": "What is"}, {"type": "text", "text": " the best book"}], max_tokens=8, temperature=0))
    whole = chat_text(chat_body("What is the best book", max_tokens=8, temperature=0))
    check(parts["choices"][0]["message"] == whole["choices"][0]["message"], f"parts {parts['choices']} vs {whole['choices']}")
    check(parts["usage"]["prompt_tokens"] == whole["usage"]["prompt_tokens"], "parts tokenized differently")


@case("test_chat_completion.py::test_chat_completion_cached_tokens")
def cached_prompt_tokens():
    seen = []
    for user in ["1 2 3 4 5 6", "1 2 3 4 5 6", "1 2 3 4 5 9", "1 2 3 9 9 9"]:
        u = chat_text(chat_body(user, system="Test", max_tokens=8))["usage"]
        cached = u["prompt_tokens_details"]["cached_tokens"]
        check(0 <= cached < u["prompt_tokens"], f"cached {cached} of {u['prompt_tokens']}")
        seen.append((u["prompt_tokens"], cached))
    if warm_cache:
        # The same prompt again: all of it but the last token (which is run to get logits).
        check(seen[1][1] == seen[1][0] - 1, f"repeat: {seen}")
        check(seen[3][1] < seen[2][1] < seen[1][1], f"diverging later keeps more: {seen}")
        # An embedding in between runs on a session of its own: the chat's cache stays.
        embed("I believe the meaning of life is")
        u = chat_text(chat_body("1 2 3 9 9 9", system="Test", max_tokens=8))["usage"]
        check(u["prompt_tokens_details"]["cached_tokens"] == u["prompt_tokens"] - 1, f"after an embedding: {u}")


@case("test_chat_completion.py::test_chat_completion_stream")
def chat_stream():
    for max_tokens in [8, 64]:
        body = chat_body(max_tokens=max_tokens, temperature=0, model="llama-test-model")
        whole = chat_text(body)
        evs = events("/v1/chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}})
        content, finish, ids = "", None, set()
        for i, e in enumerate(evs):
            ids.add(e["id"])
            check(e["model"] == "llama-test-model" and e["object"] == "chat.completion.chunk", f"chunk {e}")
            if not e["choices"]:
                check(e["usage"] == whole["usage"] | {"prompt_tokens_details": e["usage"]["prompt_tokens_details"]}, f"usage {e['usage']} vs {whole['usage']}")
                continue
            c = e["choices"][0]
            if i == 0:
                check(c["delta"].get("role") == "assistant" and not c["delta"].get("content"), f"first chunk {e}")
            else:
                check("role" not in c["delta"], f"role again: {e}")
            if c["finish_reason"]:
                check("content" not in c["delta"], f"finish chunk with content: {e}")
                finish = c["finish_reason"]
            else:
                content += c["delta"].get("content") or ""
        check(len(ids) == 1, f"ids {ids}")
        check(evs[-1]["choices"] == [], "the usage chunk comes last")
        check(content == whole["choices"][0]["message"]["content"], f"streamed {content!r} vs {whole['choices'][0]['message']['content']!r}")
        check(finish == whole["choices"][0]["finish_reason"], f"finish {finish}")


@case("test_chat_completion.py::test_chat_completion_with_openai_library")
def chat_openai_library():
    ask = dict(model="gpt-3.5-turbo-instruct", messages=chat_body()["messages"], max_tokens=8, seed=42, temperature=0.8)
    r = client.chat.completions.create(**ask)
    check(r.system_fingerprint and r.choices[0].finish_reason == "length" and r.choices[0].message.content, f"{r}")
    again = client.chat.completions.create(**ask)
    check(again.choices[0].message.content == r.choices[0].message.content, "the same seed gave another answer")


@case("test_chat_completion.py::test_completion_with_response_format")
def response_formats():
    ask = chat_body("Write an example", system="You are a coding assistant.")
    for fmt, n, expect in [
        ({"type": "json_object", "schema": {"const": "42"}}, 6, '"42"'),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"const": "foooooo"}}}, 10, '"foooooo"'),
        ({"type": "json_object"}, 10, None),
        ({"type": "json_object", "schema": {"type": "array", "items": {"type": "integer"}}}, 10, None),
    ]:
        v = chat_text({**ask, "max_tokens": n, "response_format": fmt})
        c = v["choices"][0]
        if expect is not None:
            check(c["message"]["content"] == expect, f"{fmt}: {c}")
        elif c["finish_reason"] == "stop":
            json.loads(c["message"]["content"])
    # OpenAI's json_schema needs a name (llama.cpp's server does without).
    refused(post("/v1/chat/completions", {**ask, "response_format": {"type": "json_schema", "json_schema": {"schema": {"const": "f"}}}}), "response_format.json_schema.name")
    for fmt in [{"type": "sound"}, {"type": "json_object", "schema": 123}, {"type": "json_object", "schema": {"type": 123}}, {"type": "json_object", "schema": {"type": "hiccup"}}]:
        for stream in [False, True]:
            refused(post("/v1/chat/completions", {**ask, "max_tokens": 4, "response_format": fmt, "stream": stream}), "response_format")


@case("test_chat_completion.py::test_completion_with_json_schema")
def json_schema_field():
    v = chat_text({**chat_body("Write an example", system="You are a coding assistant."), "max_tokens": 6, "json_schema": {"const": "42"}})
    check(v["choices"][0]["message"]["content"] == '"42"', f"{v['choices']}")
    status, v = post("/v1/completions", {"prompt": "x", "max_tokens": 6, "json_schema": {"const": "42"}})
    check(status == 200 and v["choices"][0]["text"] == '"42"', f"{status} {v}")
    refused(post("/v1/completions", {"prompt": "x", "json_schema": {"type": "hiccup"}}), "json_schema")


@case("test_chat_completion.py::test_completion_with_grammar", "test_chat_completion.py::test_completion_with_invalid_grammar")
def gbnf_grammar():
    ask = {"messages": [{"role": "user", "content": "Does not matter what I say, does it?"}]}
    v = chat_text({**ask, "max_tokens": 6, "grammar": 'root ::= "a"{5,5}'})
    check(v["choices"][0]["message"]["content"] == "aaaaa" and v["choices"][0]["finish_reason"] == "stop", f"{v['choices']}")
    for stream in [False, True]:
        refused(post("/v1/chat/completions", {**ask, "max_tokens": 8, "grammar": "root ::= this is (not valid GBNF", "stream": stream}), "grammar")


@case("test_chat_completion.py::test_invalid_chat_completion_req")
def invalid_chat_requests():
    for messages in [None, "string", [123], [{}], [{"role": 123}], [{"role": "system", "content": 123}], [{"role": "system", "content": "test"}, {}], [{"content": "hello"}]]:
        refused(post("/v1/chat/completions", {"messages": messages}), "messages")
    # Two assistant messages in a row: OpenAI's API takes them (and the chat template renders
    # them), where llama.cpp's server refuses them.
    two = [{"role": "user", "content": "test"}, {"role": "assistant", "content": "test"}, {"role": "assistant", "content": "test"}]
    status, v = post("/v1/chat/completions", {"messages": two, "max_tokens": 2})
    check(status == 200, f"consecutive assistant messages: {status} {v}")


@case("test_chat_completion.py::test_logprobs")
def chat_logprobs():
    r = client.chat.completions.create(model="gpt-3.5-turbo-instruct", temperature=0.0, messages=chat_body()["messages"], max_tokens=5, logprobs=True, top_logprobs=10)
    lp = r.choices[0].logprobs
    check(lp is not None and lp.content, f"no logprobs: {r}")
    for t in lp.content:
        check(t.logprob <= 0.0 and t.bytes is not None and len(t.top_logprobs) == 10, f"{t}")
        check(all(a.logprob <= t.top_logprobs[0].logprob for a in t.top_logprobs), "alternatives not most likely first")
    check("".join(t.token for t in lp.content) == r.choices[0].message.content, "the tokens do not spell the content")


@case("test_chat_completion.py::test_logprobs_stream")
def chat_logprobs_stream():
    text, spelled = "", ""
    for i, chunk in enumerate(client.chat.completions.create(model="gpt-3.5-turbo-instruct", temperature=0.0, messages=chat_body()["messages"], max_tokens=5, logprobs=True, top_logprobs=10, stream=True)):
        if not chunk.choices:
            continue
        c = chunk.choices[0]
        if i == 0:
            check(c.delta.role == "assistant" and not c.delta.content, f"first chunk {chunk}")
            continue
        check(c.delta.role is None, f"role again: {chunk}")
        if c.finish_reason is None:
            text += c.delta.content or ""
            check(c.logprobs is not None and c.logprobs.content, f"chunk without logprobs: {chunk}")
            for t in c.logprobs.content:
                check(t.logprob <= 0.0 and t.bytes is not None and len(t.top_logprobs) == 10, f"{t}")
                spelled += t.token
    check(text and spelled == text, f"tokens spell {spelled!r}, text {text!r}")


@case("test_chat_completion.py::test_context_size_exceeded", "test_chat_completion.py::test_context_size_exceeded_stream", "test_completion.py::test_nocache_long_input_prompt")
def context_exceeded():
    long = chat_body()["messages"] * 100 + [{"role": "user", "content": "What is the best book " * 2000}]
    for stream in [False, True]:
        status, v = post("/v1/chat/completions", {"messages": long, "stream": stream})
        check(status == 400 and v["error"]["code"] == "context_length_exceeded", f"stream={stream}: {status} {v}")
        check(re.search(r"\d+ tokens", v["error"]["message"]), f"message names no counts: {v}")
    status, v = post("/v1/completions", {"prompt": "I believe the meaning of life is" * 1200})
    check(status == 400 and v["error"]["code"] == "context_length_exceeded", f"completion: {status} {v}")


@case("test_chat_completion.py::test_chat_completions_multiple_choices")
def multiple_choices():
    for _ in range(2):
        v = chat_text(chat_body(max_tokens=8, n=2))
        check(len(v["choices"]) == 2 and [c["index"] for c in v["choices"]] == [0, 1], f"{v['choices']}")
        for c in v["choices"]:
            check(c["message"]["role"] == "assistant", f"{c}")
            check(c["finish_reason"] == "length" or c["finish_reason"] == "stop", f"{c}")
        check(v["usage"]["completion_tokens"] <= 16, f"{v['usage']}")


@case("test_ignore_eos.py::test_ignore_eos_populates_logit_bias", "test_ignore_eos.py::test_ignore_eos_false_no_logit_bias")
def ignore_eos():
    ask = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 48, "temperature": 0}
    plain = chat_text(ask)
    check(plain["choices"][0]["finish_reason"] == "stop", f"the model stops by itself: {plain['choices']}")
    forced = chat_text({**ask, "ignore_eos": True})
    check(forced["choices"][0]["finish_reason"] == "length" and forced["usage"]["completion_tokens"] == 48, f"{forced['choices']} {forced['usage']}")


# Fields of llama.cpp's own that this server does not implement: each is a 400 naming it, not
# silently ignored. (llama.cpp test, endpoint, the field and a value its test sends)
REFUSED_FIELDS = {
    "test_chat_completion.py::test_chat_completion_with_timings_per_token": ("/v1/chat/completions", "timings_per_token", True),
    "test_chat_completion.py::test_return_progress": ("/v1/chat/completions", "return_progress", True),
    "test_chat_completion.py::test_verbose_debug": ("/v1/chat/completions", "verbose", True),
    "test_chat_completion.py::test_chat_template_continue_final_message_vllm_compat": ("/v1/chat/completions", "continue_final_message", True),
    "test_chat_completion.py::test_chat_template_continue_final_message_mutual_exclusion": ("/v1/chat/completions", "add_generation_prompt", True),
    "test_chat_completion.py::test_logit_bias": ("/v1/chat/completions", "logit_bias", {"1780": -100}),
    "test_completion.py::test_logit_bias": ("/v1/completions", "logit_bias", {"1780": -100}),
    "test_completion.py::test_completion_response_fields": ("/v1/completions", "response_fields", ["content"]),
    "test_completion.py::test_n_probs_post_backend_sampling": ("/v1/completions", "backend_sampling", True),
    "test_completion.py::test_cache_vs_nocache_prompt": ("/v1/completions", "cache_prompt", False),
    "test_completion.py::test_json_prompt_no_mtmd": ("/v1/completions", "prompt", {"prompt_string": "I believe"}),
    "test_completion.py::test_json_prompt_mtm_error_when_not_supported": ("/v1/completions", "prompt", {"prompt_string": "x", "multimodal_data": "AAAA"}),
    "test_completion.py::test_completion_with_tokens_input": ("/v1/completions", "prompt", [1780, 314, 260]),
}


@case(*REFUSED_FIELDS)
def llama_cpp_only_fields_are_refused_by_name():
    for endpoint, field, value in REFUSED_FIELDS.values():
        base = chat_body(max_tokens=2) if "chat" in endpoint else {"prompt": "I believe", "max_tokens": 2}
        refused(post(endpoint, {**base, field: value}), field)
    # A batch of prompts: one request, one prompt.
    refused(post("/v1/completions", {"prompt": ["I believe", "I believe"], "max_tokens": 2}), "prompt")
    for field in ["n_probs", "post_sampling_probs", "return_tokens", "id_slot", "chat_template_kwargs"]:
        refused(post("/v1/completions", {"prompt": "x", "max_tokens": 2, field: 1}), field)


# --- test_completion.py --------------------------------------------------------------------


@case("test_completion.py::test_completion", "test_completion.py::test_completion_with_openai_library")
def completion_openai_library():
    r = client.completions.create(model="davinci-002", prompt="I believe the meaning of life is", max_tokens=8, temperature=0)
    c = r.choices[0]
    check(r.system_fingerprint and c.text and r.model == "davinci-002", f"{r}")
    check((c.finish_reason, r.usage.completion_tokens) in [("length", 8)] or (c.finish_reason == "stop" and r.usage.completion_tokens <= 8), f"{r}")
    # llama.cpp's spelling of max_tokens.
    status, v = post("/v1/completions", {"prompt": "I believe the meaning of life is", "n_predict": 8, "temperature": 0})
    check(status == 200 and v["choices"][0]["text"] == c.text and v["usage"]["completion_tokens"] == r.usage.completion_tokens, f"n_predict: {status} {v}")
    refused(post("/v1/completions", {"prompt": "x", "n_predict": -1}), "n_predict")


@case("test_completion.py::test_completion_stream", "test_completion.py::test_completion_stream_vs_non_stream", "test_completion.py::test_completion_stream_with_openai_library")
def completion_stream():
    ask = dict(model="davinci-002", prompt="Write a joke about AI from a very long prompt which will not be truncated", max_tokens=64, temperature=0)
    whole = client.completions.create(**ask)
    text, finish = "", None
    for chunk in client.completions.create(**ask, stream=True):
        c = chunk.choices[0]
        check(c.text is not None, f"{chunk}")
        text += c.text
        finish = c.finish_reason or finish
    check(text == whole.choices[0].text and finish == whole.choices[0].finish_reason, f"streamed {text!r} {finish} vs {whole.choices[0]}")


@case("test_completion.py::test_completion_stream_with_openai_library_stops")
def stop_strings():
    prompt = "System: You are helpful assistant.\nAssistant:\nHey! How could I help?\nUser:\nTell me a joke.\nAssistant:\n"
    free = client.completions.create(model=model, prompt=prompt, max_tokens=48, temperature=0).choices[0].text
    words = re.findall(r" [A-Za-z]{3,}", free)
    check(len(words) >= 3, f"too short an answer to cut: {free!r}")
    stop = words[2]
    expected = free[: free.index(stop)]
    one = client.completions.create(model=model, prompt=prompt, max_tokens=48, temperature=0, stop=[stop, "never appears"])
    check(one.choices[0].text == expected and one.choices[0].finish_reason == "stop", f"stop {stop!r}: {one.choices[0]} vs {expected!r}")
    text, finish = "", None
    for chunk in client.completions.create(model=model, prompt=prompt, max_tokens=48, temperature=0, stop=[stop], stream=True):
        text += chunk.choices[0].text
        finish = chunk.choices[0].finish_reason or finish
    check(text == expected and finish == "stop", f"streamed stop {stop!r}: {text!r} {finish}")
    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell me a joke."}], max_tokens=48, temperature=0)
    words = re.findall(r" [A-Za-z]{3,}", chat.choices[0].message.content)
    cut = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell me a joke."}], max_tokens=48, temperature=0, stop=words[1])
    check(cut.choices[0].message.content == chat.choices[0].message.content.split(words[1])[0] and cut.choices[0].finish_reason == "stop", f"chat stop: {cut.choices[0]}")


@case("test_completion.py::test_consistent_result_same_seed", "test_completion.py::test_different_result_different_seed")
def seeds():
    ask = {"prompt": "I believe the meaning of life is", "max_tokens": 16}
    texts = {post("/v1/completions", {**ask, "seed": 42, "temperature": 0.0})[1]["choices"][0]["text"] for _ in range(3)}
    check(len(texts) == 1, f"greedy answers differ: {texts}")
    texts = {post("/v1/completions", {**ask, "seed": 42, "temperature": 1.0})[1]["choices"][0]["text"] for _ in range(2)}
    check(len(texts) == 1, f"one seed, two answers: {texts}")
    texts = {post("/v1/completions", {**ask, "seed": seed, "temperature": 1.0})[1]["choices"][0]["text"] for seed in range(4)}
    check(len(texts) >= 2, f"four seeds, one answer: {texts}")


@case("test_completion.py::test_completion_parallel_slots")
def parallel_requests():
    results = [None] * 4
    prompts = ["Write a very long book.", "Write another a poem.", "What is LLM?", "The sky is blue and I love it."]

    def run(i):
        results[i] = post("/v1/completions", {"prompt": prompts[i], "seed": 42, "temperature": 1.0, "max_tokens": 24})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for status, v in results:
        check(status == 200 and len(v["choices"][0]["text"]) > 10, f"{status} {v}")


@case("test_completion.py::test_n_probs", "test_completion.py::test_n_probs_stream", "test_completion.py::test_n_probs_post_sampling")
def completion_logprobs():
    # llama.cpp's `n_probs` is OpenAI's integer `logprobs` on /v1/completions (at most 5).
    status, v = post("/v1/completions", {"prompt": "I believe the meaning of life is", "logprobs": 5, "temperature": 0.0, "max_tokens": 5})
    check(status == 200, f"{status} {v}")
    lp = v["choices"][0]["logprobs"]
    check(len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 5, f"{lp}")
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        check(logprob <= 0.0 and len(top) == 5 and all(p <= 0.0 for p in top.values()), f"{token} {logprob} {top}")
    check("".join(lp["tokens"]) == v["choices"][0]["text"], "tokens do not spell the text")
    streamed = []
    for e in events("/v1/completions", {"prompt": "I believe the meaning of life is", "logprobs": 5, "temperature": 0.0, "max_tokens": 5, "stream": True}):
        c = e["choices"][0]
        if c["logprobs"]:
            check(all(len(t) == 5 for t in c["logprobs"]["top_logprobs"]), f"{c}")
            streamed += c["logprobs"]["tokens"]
    check(streamed == lp["tokens"], f"streamed tokens {streamed} vs {lp['tokens']}")
    # Sampled at temperature 1 with top_k 3: the alternatives are the kept tokens, whose
    # probabilities (renormalized after the filters) sum to 1.
    status, v = post("/v1/completions", {"prompt": "Today was the day. Today I would finally become a", "logprobs": 5, "temperature": 1.0, "top_k": 3, "max_tokens": 5, "seed": 1})
    for top in v["choices"][0]["logprobs"]["top_logprobs"]:
        check(len(top) <= 3 and abs(sum(math.exp(p) for p in top.values()) - 1) < 1e-3, f"post-sampling alternatives {top}")


# --- test_tokenize.py ----------------------------------------------------------------------


@case("test_tokenize.py::test_tokenize_detokenize")
def tokenize_detokenize():
    content = "What is the capital of France ?"
    status, t = post("/tokenize", {"content": content})
    check(status == 200 and len(t["tokens"]) > 5, f"{status} {t}")
    status, d = post("/detokenize", {"tokens": t["tokens"]})
    check(status == 200 and d["content"] == content, f"{status} {d}")
    refused(post("/detokenize", {"tokens": [1, 2, 99999999]}), "tokens")


@case("test_tokenize.py::test_tokenize_with_bos")
def tokenize_add_special():
    # The default model adds no BOS (`tokenizer.ggml.add_bos_token = false`), so `add_special`
    # adds nothing; llama.cpp's tiny llama adds id 1.
    content = "What is the capital of France ?"
    plain = post("/tokenize", {"content": content})[1]["tokens"]
    special = post("/tokenize", {"content": content, "add_special": True})[1]["tokens"]
    check(special == plain, f"{special} vs {plain}")


@case("test_tokenize.py::test_tokenize_with_pieces")
def tokenize_with_pieces():
    content = "This is a test string with unicode 媽 and emoji 🤗"
    status, t = post("/tokenize", {"content": content, "with_pieces": True})
    check(status == 200, f"{status} {t}")
    spelled = b""
    for tok in t["tokens"]:
        check(tok["id"] > 0 and len(tok["piece"]) > 0, f"{tok}")
        # A piece that is not UTF-8 on its own comes as its bytes.
        spelled += tok["piece"].encode() if isinstance(tok["piece"], str) else bytes(tok["piece"])
    check(spelled == content.encode(), f"the pieces spell {spelled!r}")


# --- test_embedding.py ---------------------------------------------------------------------


def embed(input, **extra):
    status, v = post("/v1/embeddings", {"input": input, **extra})
    check(status == 200, f"embeddings of {input!r}: {status} {v}")
    return v


def unit_length(vec):
    return abs(sum(x * x for x in vec) - 1) < 1e-3


@case("test_embedding.py::test_embedding_single", "test_embedding.py::test_embedding_pooling_mean")
def embedding_single():
    v = embed("I believe the meaning of life is")
    check(len(v["data"]) == 1 and len(v["data"][0]["embedding"]) > 1 and unit_length(v["data"][0]["embedding"]), f"{v['data'][0]['embedding'][:4]}")


@case("test_embedding.py::test_embedding_multiple", "test_embedding.py::test_embedding_pooling_mean_multiple", "test_embedding.py::test_embedding_openai_library_multiple")
def embedding_multiple():
    texts = ["I believe the meaning of life is", "Write a joke about AI from a very long prompt which will not be truncated", "This is a test", "This is another test"]
    r = client.embeddings.create(model="text-embedding-3-small", input=texts)
    check(len(r.data) == 4 and [d.index for d in r.data] == [0, 1, 2, 3], f"{len(r.data)}")
    check(all(len(d.embedding) > 1 and unit_length(d.embedding) for d in r.data), "not unit vectors")


@case("test_embedding.py::test_embedding_openai_library_single")
def embedding_openai_single():
    r = client.embeddings.create(model="text-embedding-3-small", input="I believe the meaning of life is")
    check(len(r.data) == 1 and len(r.data[0].embedding) > 1, f"{r}")


@case("test_embedding.py::test_embedding_mixed_input", "test_embedding.py::test_embedding_content_text_same_as_string")
def embedding_inputs():
    for input, n in [("string", 1), ([12, 34, 56], 1), (["string1", "string2"], 2), ([[12, 34, 56], [12, 34, 56]], 2)]:
        v = embed(input)
        check(len(v["data"]) == n and all(len(d["embedding"]) > 1 for d in v["data"]), f"{input}: {len(v['data'])}")
    same = embed([[12, 34, 56], [12, 34, 56]])["data"]
    check(same[0]["embedding"] == same[1]["embedding"], "the same ids embed differently")
    # llama.cpp's own extensions (strings and ids mixed in one input or list, objects with
    # `prompt_string` or `content` parts) are not OpenAI's: refused, naming `input`.
    for input in [[12, 34, "string", 56, 78], ["string1", [12, 34, 56]], [[12, 34, 56], [12, "string", 34, 56]], {"prompt_string": "string"}, {"content": [{"type": "text", "text": "string"}]}]:
        refused(post("/v1/embeddings", {"input": input}), "input")


@case("test_embedding.py::test_embedding_invalid_input", "test_embedding.py::test_embedding_error_prompt_too_long")
def embedding_bad_inputs():
    # OpenAI refuses an empty input too (llama.cpp's server embeds it).
    for input in ["", [], {"content": "string"}, {"content": [{"type": "unknown"}]}, [-1], [99999999], [[5], [49152]]]:
        refused(post("/v1/embeddings", {"input": input}), "input")
    status, v = post("/v1/embeddings", {"input": "This is a test " * 3000})
    check(status == 400 and v["error"]["code"] == "context_length_exceeded" and v["error"]["param"] == "input", f"{status} {v}")


@case("test_embedding.py::test_same_prompt_give_same_result")
def embedding_same_prompt():
    data = embed(["I believe the meaning of life is"] * 5)["data"]
    check(all(d["embedding"] == data[0]["embedding"] for d in data), "the same text embeds differently")


@case("test_embedding.py::test_embedding_usage_single", "test_embedding.py::test_embedding_usage_multiple")
def embedding_usage():
    for content in ["I believe the meaning of life is", "This is a test"]:
        n = len(post("/tokenize", {"content": content, "add_special": True})[1]["tokens"])
        u = embed(content)["usage"]
        check(u["prompt_tokens"] == u["total_tokens"] == n, f"{content!r}: {u}, {n} tokens")
        u = embed([content, content])["usage"]
        check(u["prompt_tokens"] == u["total_tokens"] == 2 * n, f"two of {content!r}: {u}")


@case("test_embedding.py::test_embedding_openai_library_base64")
def embedding_base64():
    text = "Test base64 embedding output"
    floats = embed(text)["data"][0]["embedding"]
    encoded = embed(text, encoding_format="base64")["data"][0]["embedding"]
    check(isinstance(encoded, str), "not base64 text")
    raw = base64.b64decode(encoded)
    check(list(struct.unpack(f"<{len(raw) // 4}f", raw)) == floats, "base64 differs from float")


# --- test_tool_call.py ---------------------------------------------------------------------

TEST_TOOL = {"type": "function", "function": {"name": "test", "description": "", "parameters": {"type": "object", "properties": {"success": {"type": "boolean", "const": True}}, "required": ["success"]}}}
PYTHON_TOOL = {"type": "function", "function": {"name": "python", "description": "Runs code in an ipython interpreter and returns the result of the execution after 60 seconds.", "parameters": {"type": "object", "properties": {"code": {"type": "string", "description": "The code to run in the ipython interpreter."}}, "required": ["code"]}}}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_current_weather", "description": "Get the current weather in a given location", "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "The city and country/state, e.g. 'San Francisco, CA', or 'Paris, France'"}}, "required": ["location"]}}}


def streamed_calls(body):
    """The calls of a streamed answer, accumulated as the openai client does, with the number of
    argument fragments each came in; and the finish reason."""
    calls, finish = {}, None
    for e in events("/v1/chat/completions", {**body, "stream": True}):
        for c in e["choices"]:
            check(not c["delta"].get("content"), f"content beside forced calls: {e}")
            for d in c["delta"].get("tool_calls") or []:
                if d["index"] not in calls:
                    check(d.get("id", "").startswith("call_") and d.get("type") == "function" and d["function"].get("name"), f"a call's first delta lacks id, type or name: {d}")
                    calls[d["index"]] = {"id": d["id"], "name": d["function"]["name"], "arguments": "", "fragments": 0}
                else:
                    check("id" not in d and "name" not in d.get("function", {}), f"a later delta repeats the call's head: {d}")
                if d["function"].get("arguments"):
                    calls[d["index"]]["arguments"] += d["function"]["arguments"]
                    calls[d["index"]]["fragments"] += 1
            finish = c["finish_reason"] or finish
    return [calls[i] for i in sorted(calls)], finish


def forced_call(tool, key, choice="required", user="Write an example", max_tokens=128):
    """A forced call of `tool`, one-shot and streamed (greedy): one call, named, with argument
    `key`; streamed, its arguments come in fragments that join into the one-shot call's."""
    body = {
        "max_tokens": max_tokens,
        "messages": [{"role": "system", "content": "You are a coding assistant."}, {"role": "user", "content": user}],
        "tool_choice": choice,
        "tools": [tool],
        "parallel_tool_calls": False,
        "temperature": 0.0,
        "top_k": 1,
        "top_p": 1.0,
    }
    m = chat_text(body)["choices"][0]
    calls = m["message"].get("tool_calls")
    check(calls and len(calls) == 1 and m["message"].get("content") in (None, ""), f"one call, no content: {m}")
    check(m["finish_reason"] == "tool_calls", f"finish {m['finish_reason']}")
    check(calls[0]["function"]["name"] == tool["function"]["name"], f"{calls}")
    args = json.loads(calls[0]["function"]["arguments"])
    check(key in args, f"{key!r} not in {args}")
    streamed, finish = streamed_calls(body)
    check(len(streamed) == 1 and finish == "tool_calls", f"streamed {streamed} {finish}")
    check(streamed[0]["name"] == tool["function"]["name"] and json.loads(streamed[0]["arguments"]) == args, f"streamed {streamed[0]} vs {args}")
    check(streamed[0]["fragments"] > 2, f"arguments not streamed in pieces: {streamed[0]}")
    return args


@case("test_tool_call.py::test_completion_with_required_tool_real_model", "test_tool_call.py::test_hello_world")
def required_tool():
    check(forced_call(TEST_TOOL, "success")["success"] is True, "const true")
    code = forced_call(PYTHON_TOOL, "code", user="say hello world with python")["code"]
    check(isinstance(code, str), f"code {code!r}")


@case("test_tool_call.py::test_weather")
def weather_tool():
    # The default model is too small to choose a call by itself (`auto`); named, it must make it.
    named = {"type": "function", "function": {"name": "get_current_weather"}}
    location = forced_call(WEATHER_TOOL, "location", choice=named, user="What is the weather in Istanbul?")["location"]
    check(isinstance(location, str) and location, f"location {location!r}")


@case("test_tool_call.py::test_completion_without_tool_call_fast", "test_tool_call.py::test_completion_without_tool_call_slow")
def without_tool_call():
    ask = {"max_tokens": 16, "messages": [{"role": "system", "content": "You are a coding assistant."}, {"role": "user", "content": "say hello world with python"}]}
    for extra in [{"tools": [PYTHON_TOOL], "tool_choice": "none"}, {}, {"tools": None, "tool_choice": None}]:
        m = chat_text({**ask, **extra})["choices"][0]
        check(m["message"].get("tool_calls") is None and m["finish_reason"] != "tool_calls", f"{extra}: {m}")
        for e in events("/v1/chat/completions", {**ask, **extra, "stream": True}):
            check(all("tool_calls" not in c["delta"] for c in e["choices"]), f"streamed call: {e}")


@case("test_tool_call.py::test_calc_result")
def tool_result_in_history():
    calculate = {"type": "function", "function": {"name": "calculate", "description": "A calculator", "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}
    history = [
        {"role": "system", "content": "You are a tools-calling assistant. You express numerical values with at most two decimals."},
        {"role": "user", "content": "What's the y coordinate of a point on the unit sphere at angle 30 degrees?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_6789", "type": "function", "function": {"name": "calculate", "arguments": '{"expression":"sin(30 * pi / 180)"}'}}]},
        {"role": "tool", "name": "calculate", "content": "0.55644242476", "tool_call_id": "call_6789"},
    ]
    m = chat_text({"messages": history, "tools": [calculate], "tool_choice": "none", "max_tokens": 32, "temperature": 0})["choices"][0]
    check(m["message"].get("tool_calls") is None and m["message"]["content"], f"{m}")
    # The result's `name` must be the tool its call called.
    wrong = [*history[:3], {**history[3], "name": "search"}]
    refused(post("/v1/chat/completions", {"messages": wrong, "max_tokens": 4}), "messages[3].name")
    unknown = [*history[:3], {**history[3], "tool_call_id": "call_0000"}]
    refused(post("/v1/chat/completions", {"messages": unknown, "max_tokens": 4}), "messages[3].name")


# --- What does not apply ---------------------------------------------------------------------

# Tests of llama.cpp features this server does not have, or whose subject is covered elsewhere.
NOT_APPLICABLE = {
    "test_basic.py::test_server_multiple_addresses": "several listen addresses in one process: both servers bind one `--addr`",
    "test_basic.py::test_server_props": "`/props` is llama.cpp's settings dump (slots, n_ctx per slot)",
    "test_basic.py::test_server_slots": "`/slots`: llama.cpp's slot scheduler; edge-llm serve's instances are internal",
    "test_basic.py::test_load_split_model": "downloads a split GGUF from Hugging Face; models load from local files",
    "test_basic.py::test_no_ui": "llama.cpp's web UI",
    "test_basic.py::test_server_model_aliases_and_tags": "model tags; aliases are covered by tests/e2e/serve.rs (`--model-alias`)",
    "test_security.py::test_access_static_assets_without_api_key": "llama.cpp's web UI assets",
    "test_security.py::test_cors_origins_localhost_reflects": "the `localhost` origin wildcard of llama.cpp's router; origins here are listed exactly",
    "test_security.py::test_cors_origins_defaults_to_localhost_with_tools_enabled": "llama.cpp's built-in server tools",
    "test_security.py::test_cors_proxy_only_forwards_explicit_proxy_headers": "llama.cpp's CORS proxy; the components make no outgoing requests",
    "test_security.py::test_local_media_file": "images (multimodal models)",
    "test_chat_completion.py::test_chat_template": "`--chat-template` overrides and the `__verbose` prompt dump; templates come from the GGUF",
    "test_chat_completion.py::test_chat_template_assistant_prefill": "the `__verbose` prompt dump of a Llama 3.1 template; prefill is covered by guest/tests/chat_templates_jinja2.rs",
    "test_chat_completion.py::test_apply_chat_template": "`/apply-template` is llama.cpp's route (the WIT API has apply-chat-template)",
    "test_chat_completion.py::test_chat_completions_token_count": "`/chat/completions/input_tokens` is llama.cpp's route",
    "test_completion.py::test_cancel_request": "watches llama.cpp's `/slots`; cancellation is covered by tests/e2e/serve.rs edge_llm_serve_stops_the_work_of_clients_that_hang_up",
    "test_completion.py::test_consistent_result_different_batch_size": "llama.cpp's `--batch-size`; the same answer through every path and batch is covered by tests/e2e (serve, cli)",
    "test_completion.py::test_completion_unified": "a KV cache shared by llama.cpp's slots (`--kv-unified`) that requests can overrun together",
    "test_completion.py::test_completion_prompt_cache": "llama.cpp's host-memory prompt cache across slots and its `/completion` timings",
    "test_embedding.py::test_embedding_multiple_with_fa": "llama.cpp's flash-attention kernels on a BERT model",
    "test_embedding.py::test_embedding_pooling_none": "per-token vectors on llama.cpp's own `/embeddings` route; pooling comes from the GGUF",
    "test_embedding.py::test_embedding_pooling_none_oai": "`--pooling none`: pooling comes from the GGUF (none means mean here)",
    "test_tool_call.py::test_thoughts": "reasoning models' thinking blocks",
}

# Whole files about llama.cpp features this server does not have.
NOT_APPLICABLE_FILES = {
    "test_compat_anthropic.py": "Anthropic's Messages API; this server speaks OpenAI's",
    "test_compat_gcp.py": "Google Cloud's predict shape",
    "test_compat_oai_responses.py": "OpenAI's Responses API (`/v1/responses`); chat and text completions are served",
    "test_ctx_shift.py": "context shifting: a prompt plus max_tokens beyond the context is a 400 here",
    "test_infill.py": "fill-in-the-middle (`/infill`) for code models",
    "test_kv_keep_only_active.py": "llama.cpp's slot KV save and restore",
    "test_lora.py": "LoRA adapters",
    "test_mcp_servers.py": "llama.cpp's MCP tool servers",
    "test_metrics.py": "llama.cpp's metric names (`llamacpp:*`, per slot); edge-llm serve's `edge_llm_*` metrics are checked by tests/clients/openai_extras.py",
    "test_proxy.py": "llama.cpp's MCP proxy",
    "test_rerank.py": "rerankers (`/rerank`); a reranker GGUF is refused by /v1/embeddings",
    "test_router.py": "llama.cpp's multi-model router",
    "test_sleep.py": "llama.cpp's idle sleep",
    "test_slot_save.py": "llama.cpp's slot save and restore",
    "test_speculative.py": "speculative decoding with a draft model",
    "test_stream.py": "llama.cpp's resumable streams (`/v1/stream`) through its router",
    "test_template.py": "`/apply-template` with llama.cpp's reasoning templates",
    "test_tools_builtin.py": "llama.cpp's built-in file and shell tools",
    "test_vision_api.py": "images (multimodal models)",
}


def accounting():
    """Every test in llama.cpp's suite is adapted here, refused by name, or not applicable;
    and every one named here still exists."""
    found = set()
    files = sorted(pathlib.Path(llama_tests).glob("test_*.py"))
    check(len(files) >= 20, f"llama.cpp's server tests are missing from {llama_tests}: run `just llama-server-tests`")
    for path in files:
        for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M):
            found.add(f"{path.name}::{name}")
    adapted = {t for _, tests in CASES for t in tests}
    listed = adapted | set(NOT_APPLICABLE)
    unaccounted = sorted(t for t in found if t not in listed and t.split("::")[0] not in NOT_APPLICABLE_FILES)
    check(not unaccounted, f"llama.cpp tests neither adapted nor listed as not applicable: {unaccounted}")
    stale = sorted(t for t in listed if t not in found) + sorted(f for f in NOT_APPLICABLE_FILES if not (pathlib.Path(llama_tests) / f).exists())
    check(not stale, f"listed but not in llama.cpp's suite: {stale}")
    skipped_files = {t for t in found if t.split("::")[0] in NOT_APPLICABLE_FILES}
    return {"llama_tests": len(found), "adapted": len(adapted & found), "not_applicable": len(found) - len(adapted & found)}, len(skipped_files)


started = time.monotonic()
failures = []
summary = {}
try:
    summary, _ = accounting()
except Failed as e:
    failures.append(f"accounting: {e}")
for f, _ in CASES:
    try:
        f()
    except Failed as e:
        failures.append(f"{f.__name__}: {e}")
    except Exception as e:  # a client error, a bad shape: the case failed
        failures.append(f"{f.__name__}: {type(e).__name__}: {e}")
summary.update({"cases": len(CASES), "failed": len(failures), "seconds": round(time.monotonic() - started, 1)})
if failures:
    raise SystemExit("llama_server_cases.py:\n" + "\n".join(failures) + f"\n{json.dumps(summary)}")
print(json.dumps(summary))
