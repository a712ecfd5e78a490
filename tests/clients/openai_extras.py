"""Embeddings, API keys, CORS, tokenize/detokenize and /metrics of a server started with
`--api-key KEY --cors-origin ORIGIN` (or their EDGE_LLM_* variables), through the official
`openai` Python client where it has a call, plain HTTP (urllib) where it has none.

Usage: openai_extras.py BASE_URL MODEL KEY ORIGIN REFS_JSON [--metrics]
REFS_JSON is tests/refs/embeddings.json (llama.cpp's vectors). With --metrics, /metrics is
checked too (`edge-llm serve` answers it; `wasmtime serve` runs no server of ours).
Checks what must hold (exits non-zero with the reason otherwise) and prints one JSON object
with the figures it saw.
"""

import base64
import json
import math
import struct
import sys

import openai

import plain_http
from prometheus_client.openmetrics.parser import text_string_to_metric_families

base_url, model, key, origin, refs_path = sys.argv[1:6]
with_metrics = "--metrics" in sys.argv[6:]
refs = json.load(open(refs_path))["cases"]
seen = {}


def check(condition, what):
    if not condition:
        raise SystemExit(f"openai_extras.py: {what}")


def http(method, path, body=None, headers=None):
    """(status, headers, body bytes) of one plain request."""
    return plain_http.request(base_url + path, method, body, headers)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


bearer = {"authorization": f"Bearer {key}"}

# API keys: the client without the key gets 401 (AuthenticationError), with it 200.
try:
    openai.OpenAI(base_url=base_url + "/v1", api_key="wrong", max_retries=0).models.list()
    check(False, "a wrong key was accepted")
except openai.AuthenticationError as e:
    check(e.status_code == 401, f"status {e.status_code}")
    check(e.body.get("code") == "invalid_api_key", f"error body {e.body}")
status, _, _ = http("GET", "/v1/models")
check(status == 401, f"no key: {status}")
status, _, _ = http("GET", "/health")
check(status == 200, f"/health needs no key: {status}")
client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=300)
check([m.id for m in client.models.list().data][0] == model, "the served model is listed")

# Embeddings, float and base64 (the client asks for base64 unless told otherwise and decodes
# it), against llama.cpp's vectors.
texts = [c["text"] for c in refs]
floats = client.embeddings.create(model=model, input=texts, encoding_format="float")
check(len(floats.data) == len(texts), f"{len(floats.data)} vectors for {len(texts)} inputs")
cosines = []
for i, (d, ref) in enumerate(zip(floats.data, refs)):
    check(d.index == i, f"index {d.index} at {i}")
    check(len(d.embedding) == len(ref["embedding"]), f"width {len(d.embedding)}")
    check(abs(math.sqrt(sum(x * x for x in d.embedding)) - 1) < 1e-5, "not normalized")
    cosines.append(cosine(d.embedding, ref["embedding"]))
check(min(cosines) > 0.9995, f"cosines with llama.cpp: {cosines}")
n_tokens = sum(len(c["tokens"]) for c in refs)
check(floats.usage.prompt_tokens == n_tokens and floats.usage.total_tokens == n_tokens, f"usage {floats.usage}")
decoded = client.embeddings.create(model=model, input=texts)  # base64 on the wire
check([d.embedding for d in decoded.data] == [d.embedding for d in floats.data], "base64 differs from float")
status, _, body = http("POST", "/v1/embeddings", {"input": texts[0], "encoding_format": "base64"}, bearer)
raw = base64.b64decode(json.loads(body)["data"][0]["embedding"])
check(list(struct.unpack(f"<{len(raw) // 4}f", raw)) == floats.data[0].embedding, "base64 is not little-endian f32")
by_ids = client.embeddings.create(model=model, input=[refs[1]["tokens"]], encoding_format="float")
check(by_ids.data[0].embedding == floats.data[1].embedding, "token ids embed as their text")
width = len(floats.data[0].embedding)
client.embeddings.create(model=model, input="x", dimensions=width)
try:
    client.embeddings.create(model=model, input="x", dimensions=64)
    check(False, "dimensions 64 was accepted")
except openai.BadRequestError as e:
    check(e.body.get("param") == "dimensions", f"error body {e.body}")
seen["cosines"] = [round(c, 6) for c in cosines]

# CORS: a preflight from the allowed origin is answered with the Access-Control-Allow-*
# headers, and responses carry Access-Control-Allow-Origin; another origin gets none.
pre = {"origin": origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type"}
status, headers, _ = http("OPTIONS", "/v1/chat/completions", None, pre)
check(status == 204, f"preflight: {status}")
check(headers.get("access-control-allow-origin") == origin, f"preflight headers {dict(headers)}")
check("POST" in headers.get("access-control-allow-methods", ""), f"preflight headers {dict(headers)}")
check("authorization" in headers.get("access-control-allow-headers", "").lower(), f"preflight headers {dict(headers)}")
status, headers, _ = http("GET", "/v1/models", None, {**bearer, "origin": origin})
check(status == 200 and headers.get("access-control-allow-origin") == origin, f"CORS on a response: {dict(headers)}")
status, headers, _ = http("GET", "/v1/models", None, {**bearer, "origin": "http://elsewhere.example"})
check(headers.get("access-control-allow-origin") is None, "another origin was allowed")
status, headers, _ = http("GET", "/v1/models", None, {"origin": origin})
check(status == 401 and headers.get("access-control-allow-origin") == origin, "a 401 a browser can read")

# tokenize / detokenize round trip, in llama.cpp's shapes.
text = "Hello, world! <|im_end|>"
status, _, body = http("POST", "/tokenize", {"content": text}, bearer)
check(status == 200, f"tokenize: {status} {body!r}")
ids = json.loads(body)["tokens"]
check(all(isinstance(i, int) for i in ids) and 2 in ids, f"control token parsed: {ids}")
status, _, body = http("POST", "/tokenize", {"content": text, "parse_special": False, "with_pieces": True}, bearer)
pieces = json.loads(body)["tokens"]
check(all(set(p) == {"id", "piece"} for p in pieces) and 2 not in [p["id"] for p in pieces], f"pieces {pieces}")
check("".join(p["piece"] for p in pieces) == text, f"pieces spell {pieces}")
status, _, body = http("POST", "/detokenize", {"tokens": ids}, bearer)
check(status == 200 and json.loads(body)["content"] == text, f"detokenize: {status} {body!r}")
status, _, body = http("POST", "/tokenize", {"content": "a", "add_bos": True}, bearer)
check(status == 400 and json.loads(body)["error"]["param"] == "add_bos", f"unknown field: {status} {body!r}")
status, _, _ = http("POST", "/tokenize", {"content": "a"})
check(status == 401, f"tokenize without a key: {status}")
seen["tokens"] = ids

if with_metrics:
    status, _, _ = http("GET", "/metrics")
    check(status == 401, f"/metrics without a key: {status}")
    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
    status, headers, body = http("GET", "/metrics", None, {**bearer, "origin": origin})
    check(status == 200 and headers.get("content-type", "").startswith("application/openmetrics-text"), f"/metrics: {status} {dict(headers)}")
    check(headers.get("access-control-allow-origin") == origin, "the server's own answers carry CORS too")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    ok = lambda route: samples.get(("edge_llm_requests_total", (("route", route), ("status", "200"))), 0)
    check(ok("/v1/chat/completions") >= 1, "the chat is not counted")
    check(ok("/v1/embeddings") >= 5, "the embeddings are not counted")
    check(samples.get(("edge_llm_requests_total", (("route", "/v1/models"), ("status", "401")))) >= 2, "401s are not counted")
    generated = samples.get(("edge_llm_generated_tokens_total", ()), 0)
    check(generated >= chat.usage.completion_tokens, f"generated tokens {generated}")
    prompt = samples.get(("edge_llm_prompt_tokens_total", ()), 0)
    check(prompt >= chat.usage.prompt_tokens + 2 * n_tokens, f"prompt tokens {prompt}")
    check(samples.get(("edge_llm_request_duration_seconds_count", (("route", "/v1/chat/completions"),))) >= 1, "no latency")
    check(("edge_llm_requests_queued", ()) in samples and ("edge_llm_requests_running", ()) in samples, "no load gauges")
    seen["metrics_prompt_tokens"] = prompt
    seen["metrics_generated_tokens"] = generated

print(json.dumps(seen))
