//! The OpenAI-compatible HTTP component (`just compose-http`) under both servers: `edge-llm
//! serve` (native backend) and the stock `wasmtime serve` running the single-file bundle (the
//! guest's own kernel). Each is started on a loopback port it picks, driven with raw HTTP and
//! with the official `openai` Python client, and must answer with exactly the text `edge-llm
//! run --chat --temperature 0` gives on the same backend.

use std::net::SocketAddr;
use std::path::Path;

use edge_llm_tests::http::{post_json, request, request_with, Response, Server};
use edge_llm_tests::{edge_llm, http_bundle_wasm, stdout_json, temp_dir};
use serde_json::{json, Value};

const MODEL: &str = "smollm2-135m-instruct";
const PROMPT: &str = "What is the capital of France?";
const MAX_TOKENS: u32 = 24;
/// The other name the servers are started with (`--model-alias`, `EDGE_LLM_MODEL_ALIASES`).
const ALIAS: &str = "gpt-3.5-turbo";
/// The body limit the servers are started with, so the oversized-body case stays small.
const BODY_LIMIT: usize = 64 * 1024;

/// `edge-llm run --chat --temperature 0` on `backend` (`native` or `wasm`).
fn cli_text(backend: &str, cache: &Path) -> String {
    let max = MAX_TOKENS.to_string();
    let out = edge_llm(
        &[
            "run",
            "--chat",
            "--backend",
            backend,
            "--temperature",
            "0",
            "--max-tokens",
            &max,
            "--json",
            PROMPT,
        ],
        cache,
    );
    let text = stdout_json(&out)["text"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(!text.is_empty());
    text
}

fn chat(stream: bool) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": stream,
        "stream_options": {"include_usage": stream},
    })
}

fn chat_request(addr: SocketAddr, body: &Value) -> Response {
    post_json(addr, "/v1/chat/completions", body)
}

/// `refused` is a request turned away for want of memory (`what` names the case): 503 with
/// `Retry-After: 1` and one line of JSON whose code is `kv_memory_exhausted`; its message.
fn check_memory_refusal(refused: &Response, what: &str) -> String {
    let text = String::from_utf8_lossy(&refused.body).into_owned();
    assert_eq!(refused.status, 503, "{what}: {text}");
    assert_eq!(refused.header("retry-after"), Some("1"), "{what}: {text}");
    assert_eq!(text.trim().lines().count(), 1, "{what}: {text}");
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "kv_memory_exhausted", "{what}: {text}");
    error["message"].as_str().expect("a message").to_string()
}

/// Sends a chat on a thread of its own and returns once its response has begun: the thread
/// gives the whole response.
fn start_chat(addr: SocketAddr, body: &Value) -> std::thread::JoinHandle<Response> {
    let body = body.to_string();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let running = std::thread::spawn(move || {
        request_with(
            addr,
            "POST",
            "/v1/chat/completions",
            body.as_bytes(),
            move || {
                let _ = started_tx.send(());
            },
        )
    });
    started_rx.recv().expect("the response began");
    running
}

/// One-shot and streamed greedy chats give `expected`, in OpenAI's shapes.
fn check_chat(addr: SocketAddr, expected: &str, fingerprint: &str) {
    let one = chat_request(addr, &chat(false));
    assert_eq!(one.status, 200, "{}", String::from_utf8_lossy(&one.body));
    let v = one.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    assert!(v["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-")));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], expected);
    assert_eq!(v["system_fingerprint"], fingerprint);
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().expect("prompt_tokens")
                + usage["completion_tokens"]
                    .as_u64()
                    .expect("completion_tokens")
        )
    );

    let streamed = chat_request(addr, &chat(true));
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.header("content-type"), Some("text/event-stream"));
    let events = streamed.events();
    assert_eq!(events.last(), Some(&json!("[DONE]")), "ends with [DONE]");
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(events.len() > 4, "one event per chunk: {events:?}");
    assert_eq!(streamed.streamed_text(), expected);
    let finish = &events[events.len() - 3];
    assert_eq!(
        finish["choices"][0]["finish_reason"],
        v["choices"][0]["finish_reason"]
    );
    let usage_chunk = &events[events.len() - 2];
    assert_eq!(usage_chunk["choices"], json!([]));
    // The same counts, but for the cached prompt tokens: the second request may find the
    // first one's prompt in the instance's cache.
    let counts = |u: &Value| {
        let cached = u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .expect("cached_tokens");
        assert!(cached < u["prompt_tokens"].as_u64().expect("prompt_tokens"));
        [
            &u["prompt_tokens"],
            &u["completion_tokens"],
            &u["total_tokens"],
        ]
        .map(Value::clone)
    };
    assert_eq!(counts(&usage_chunk["usage"]), counts(&v["usage"]));
}

/// The same through the official `openai` Python client.
fn check_openai_client(server: &Server, expected: &str) {
    let max_tokens = MAX_TOKENS.to_string();
    let v = server.client(
        "openai_chat.py",
        &[MODEL.as_ref(), PROMPT.as_ref(), max_tokens.as_ref()],
    );
    assert_eq!(v["text"], expected);
    assert_eq!(v["stream_text"], expected);
    assert_eq!(v["stream_finish_reason"], v["finish_reason"]);
    assert_eq!(v["stream_usage"], v["usage"]);
    let prompt_tokens = v["usage"]["prompt_tokens"].as_u64().expect("prompt_tokens");
    for cached in [&v["cached_tokens"], &v["stream_cached_tokens"]] {
        assert!(cached.as_u64().is_some_and(|n| n < prompt_tokens), "{v}");
    }
    assert_eq!(v["models"], json!([MODEL, ALIAS]));
    assert_eq!(v["bad_temperature"], 400);
    assert_eq!(v["unknown_model"], 404);
    assert_eq!(v["unknown_field"], 400);
    assert_eq!(v["bad_format"], 400);
    assert_eq!(v["alias_model"], ALIAS);
}

/// Log probabilities (chat and completions, one-shot and streamed) and `n` answers through the
/// `openai` client; the script checks what must hold and fails with the reason otherwise.
fn check_logprobs_and_n(server: &Server) {
    let v = server.client("openai_features.py", &[MODEL.as_ref()]);
    assert_eq!(v["n_texts"].as_array().map(Vec::len), Some(3), "{v}");
}

/// Structured output through the `openai` client: every answer of the JSON Schema suite
/// (tests/clients/json_schemas.json, one-shot and streamed, temperature 1), of `json_object`
/// and of a GBNF grammar is valid.
fn check_structured_output(server: &Server) {
    let v = server.client("openai_schemas.py", &[MODEL.as_ref()]);
    eprintln!(
        "structured output: {}/{} valid; masks {} ms of {} ms generating {} tokens",
        v["valid"], v["total"], v["mask_ms"], v["generation_ms"], v["tokens"]
    );
    assert!(v["schemas"].as_u64().is_some_and(|n| n >= 30), "{v}");
    assert_eq!(v["failures"], json!([]), "{v}");
    assert_eq!(v["valid"], v["total"], "{v}");
}

/// Tool calls through the `openai` client (tests/clients/openai_tools.py): `required` and named
/// functions give valid calls, one-shot and streamed as OpenAI's deltas; the call and the tool's
/// result sent back give a text answer; bad tool fields are 400s naming them.
fn check_tool_calls(server: &Server) {
    let v = server.client("openai_tools.py", &[MODEL.as_ref()]);
    eprintln!("tool calls: {v}");
    assert!(v["calls"].as_u64().is_some_and(|n| n >= 6), "{v}");
    assert_eq!(v["calls"], v["streamed_calls"], "{v}");
}

/// 8 streamed chats at once all complete with the expected text.
fn check_concurrent_streams(addr: SocketAddr, expected: &str) {
    let texts: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| chat_request(addr, &chat(true))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let r = h.join().expect("client thread");
                assert_eq!(r.status, 200);
                assert_eq!(r.events().last(), Some(&json!("[DONE]")));
                r.streamed_text()
            })
            .collect()
    });
    for t in texts {
        assert_eq!(t, expected);
    }
}

/// Every bad request gets its 4xx and an OpenAI-style error naming the problem; the server
/// keeps serving.
fn check_bad_requests(addr: SocketAddr) {
    let user = json!([{"role": "user", "content": "hi"}]);
    let with = |extra: Value| {
        let mut body = json!({"messages": user});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body.to_string().into_bytes()
    };
    // (case, method, path, body, status, a word the error message must contain)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Vec<u8>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "bad JSON",
            "POST",
            "/v1/chat/completions",
            b"{bad".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "not an object",
            "POST",
            "/v1/chat/completions",
            b"[]".to_vec(),
            400,
            "JSON object",
        ),
        (
            "no messages",
            "POST",
            "/v1/chat/completions",
            b"{}".to_vec(),
            400,
            "messages",
        ),
        (
            "empty messages",
            "POST",
            "/v1/chat/completions",
            with(json!({"messages": []})),
            400,
            "empty",
        ),
        (
            "unknown role",
            "POST",
            "/v1/chat/completions",
            with(json!({"messages": [{"role": "robot", "content": "x"}]})),
            400,
            "robot",
        ),
        (
            "unknown model",
            "POST",
            "/v1/chat/completions",
            with(json!({"model": "gpt-9"})),
            404,
            "gpt-9",
        ),
        (
            "negative temperature",
            "POST",
            "/v1/chat/completions",
            with(json!({"temperature": -1})),
            400,
            "temperature",
        ),
        (
            "top_p 0",
            "POST",
            "/v1/chat/completions",
            with(json!({"top_p": 0})),
            400,
            "top_p",
        ),
        (
            "max_tokens 0",
            "POST",
            "/v1/chat/completions",
            with(json!({"max_tokens": 0})),
            400,
            "max_tokens",
        ),
        (
            "max_tokens 1e9",
            "POST",
            "/v1/chat/completions",
            with(json!({"max_tokens": 1_000_000_000u64})),
            400,
            "context",
        ),
        (
            "n 17",
            "POST",
            "/v1/chat/completions",
            with(json!({"n": 17})),
            400,
            "`n`: must be from 1 to 16",
        ),
        (
            "unknown field",
            "POST",
            "/v1/chat/completions",
            with(json!({"temprature": 0.5})),
            400,
            "`temprature`: unknown field",
        ),
        (
            "json_schema response format without a name",
            "POST",
            "/v1/chat/completions",
            with(
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
            ),
            400,
            "`response_format.json_schema.name`",
        ),
        (
            "a schema that does not compile",
            "POST",
            "/v1/chat/completions",
            with(json!({"json_schema": {"type": "no-such-type"}})),
            400,
            "JSON schema",
        ),
        (
            "a GBNF grammar without root",
            "POST",
            "/v1/completions",
            json!({"prompt": "x", "grammar": "start ::= \"a\""})
                .to_string()
                .into_bytes(),
            400,
            "no rule `root`",
        ),
        (
            "logprobs",
            "POST",
            "/v1/chat/completions",
            with(json!({"logprobs": true, "top_logprobs": 21})),
            400,
            "`top_logprobs`",
        ),
        (
            "tools not a list",
            "POST",
            "/v1/chat/completions",
            with(json!({"tools": {"type": "function", "function": {"name": "f"}}})),
            400,
            "`tools`",
        ),
        (
            "an unknown tool chosen",
            "POST",
            "/v1/chat/completions",
            with(
                json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            ),
            400,
            "`tool_choice.function.name`",
        ),
        (
            "message name",
            "POST",
            "/v1/chat/completions",
            with(json!({"messages": [{"role": "user", "content": "x", "name": "bob"}]})),
            400,
            "`messages[0].name`",
        ),
        (
            "completion suffix",
            "POST",
            "/v1/completions",
            json!({"prompt": "x", "suffix": "y"})
                .to_string()
                .into_bytes(),
            400,
            "`suffix`",
        ),
        (
            "10,000 stop strings",
            "POST",
            "/v1/chat/completions",
            with(json!({"stop": vec!["x"; 10_000]})),
            400,
            "stop",
        ),
        (
            "invalid UTF-8",
            "POST",
            "/v1/chat/completions",
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}".to_vec(),
            400,
            "JSON",
        ),
        (
            "no prompt",
            "POST",
            "/v1/completions",
            b"{}".to_vec(),
            400,
            "prompt",
        ),
        (
            "oversized body",
            "POST",
            "/v1/chat/completions",
            vec![b' '; BODY_LIMIT + 1],
            413,
            "exceeds",
        ),
        (
            "10 MB body",
            "POST",
            "/v1/chat/completions",
            vec![b' '; 10 << 20],
            413,
            "exceeds",
        ),
        (
            "wrong method",
            "GET",
            "/v1/chat/completions",
            Vec::new(),
            405,
            "POST",
        ),
        (
            "no such route",
            "GET",
            "/v2/nothing",
            Vec::new(),
            404,
            "no route",
        ),
    ];
    for (name, method, path, body, status, needle) in cases {
        let r = request(addr, method, path, &body);
        assert_eq!(
            r.status,
            status,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let error = &r.json()["error"];
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{name}: {message}");
        assert!(error["type"].is_string(), "{name}: {error}");
    }
    let overflow = post_json(
        addr,
        "/v1/chat/completions",
        &json!({"messages": user, "max_tokens": 1_000_000_000u64}),
    );
    assert_eq!(overflow.json()["error"]["code"], "context_length_exceeded");
    let health = request(addr, "GET", "/health", b"");
    assert_eq!(health.status, 200, "still serving after the bad requests");
}

/// `/v1/models`, `/health` and a raw completion.
fn check_other_routes(addr: SocketAddr) {
    let models = request(addr, "GET", "/v1/models", b"").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL);
    assert_eq!(models["data"][1]["id"], ALIAS);
    let completion = post_json(
        addr,
        "/v1/completions",
        &json!({"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}),
    );
    assert_eq!(completion.status, 200);
    let v = completion.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["usage"]["completion_tokens"].as_u64().map(|n| n <= 8),
        Some(true)
    );
    let streamed = post_json(
        addr,
        "/v1/completions",
        &json!({"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0, "stream": true}),
    );
    assert_eq!(
        streamed.streamed_text(),
        v["choices"][0]["text"].as_str().expect("text")
    );
    // `echo`: the same text after the prompt, one-shot and streamed.
    for stream in [false, true] {
        let echoed = post_json(
            addr,
            "/v1/completions",
            &json!({"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0,
                    "stream": stream, "echo": true}),
        );
        let text = if stream {
            echoed.streamed_text()
        } else {
            echoed.json()["choices"][0]["text"]
                .as_str()
                .expect("text")
                .to_string()
        };
        assert_eq!(
            text,
            format!(
                "The capital of France is{}",
                v["choices"][0]["text"].as_str().expect("text")
            )
        );
    }
}

#[test]
fn edge_llm_serve_answers_like_the_cli_with_the_native_backend() {
    let cache = temp_dir("serve-native");
    let expected = cli_text("native", &cache);
    let limit = BODY_LIMIT.to_string();
    let server = Server::edge_llm(
        &[
            "--max-body-bytes",
            &limit,
            "--concurrency",
            "2",
            "--model-alias",
            ALIAS,
        ],
        &cache,
    );
    check_chat(server.addr, &expected, "edge-llm-wasi-nn");
    check_openai_client(&server, &expected);
    check_logprobs_and_n(&server);
    check_structured_output(&server);
    check_tool_calls(&server);
    check_concurrent_streams(server.addr, &expected);
    check_bad_requests(server.addr);
    check_other_routes(server.addr);
    let log = server.log();
    assert!(
        log.contains("POST /v1/chat/completions 200"),
        "one access-log line per request: {log}"
    );
    let status = server.terminate();
    assert!(status.success(), "SIGTERM stops it cleanly: {status:?}");
}

#[test]
fn wasmtime_serve_answers_like_the_cli_with_the_guest_kernel() {
    let cache = temp_dir("serve-wasmtime");
    let expected = cli_text("wasm", &cache);
    let component = http_bundle_wasm();
    let env = format!("EDGE_LLM_MAX_BODY_BYTES={BODY_LIMIT}");
    let aliases = format!("EDGE_LLM_MODEL_ALIASES={ALIAS}");
    let server = Server::wasmtime(&component, &["--env", &env, "--env", &aliases]);
    check_chat(server.addr, &expected, "edge-llm-kernel");
    check_openai_client(&server, &expected);
    check_logprobs_and_n(&server);
    check_structured_output(&server);
    check_tool_calls(&server);
    check_concurrent_streams(server.addr, &expected);
    check_bad_requests(server.addr);
    check_other_routes(server.addr);
}

#[test]
fn wasmtime_serve_answers_503_when_the_instance_has_no_memory_for_a_request() {
    // An instance of the bundle at these memory limits holds the model and a short chat's
    // cache, but not what a 1,830-token prompt needs: at 140 MB its KV cache (45 MiB), at 165
    // MB the working buffers of its 512-token passes (17 MiB more) once the cache fits. From
    // 175 MB it runs. Where allocating would have trapped the instance, the guest's kernel
    // refuses the call and the front answers as `edge-llm serve` does when its KV budget is
    // spent.
    let long = "The history of the town. ".repeat(300);
    for (limit, needs) in [
        (140, "the KV cache of"),
        (165, "a pass of 512 tokens needs"),
    ] {
        let memory = format!("max-memory-size={}", limit * 1_000_000);
        let server = Server::wasmtime(&http_bundle_wasm(), &["-W", &memory]);
        for stream in [false, true] {
            let body = json!({
                "messages": [{"role": "user", "content": long}],
                "max_tokens": 4, "stream": stream,
            });
            let what = format!("{limit} MB, stream {stream}");
            let message = check_memory_refusal(&chat_request(server.addr, &body), &what);
            assert!(message.starts_with("out of memory: "), "{what}: {message}");
            assert!(message.contains(needs), "{what}: {message}");
        }
        let answered = chat_request(server.addr, &chat(false));
        let text = String::from_utf8_lossy(&answered.body);
        assert_eq!(answered.status, 200, "{limit} MB: {text}");
    }
    // At 125 MB a chat's first 512 positions fit and the next chunk of its cache does not: a
    // stream already answering ends with the error as its last event, whole, without
    // `[DONE]`.
    let server = Server::wasmtime(&http_bundle_wasm(), &["-W", "max-memory-size=125000000"]);
    let body = json!({
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": 600, "temperature": 0, "ignore_eos": true, "stream": true,
    });
    let cut = chat_request(server.addr, &body);
    let events = cut.events();
    assert_eq!(cut.status, 200, "{events:?}");
    assert!(cut.complete, "the stream was aborted: {events:?}");
    assert!(events.len() > 400, "it stopped early: {events:?}");
    let last = events.last().unwrap();
    assert_eq!(last["error"]["code"], "kv_memory_exhausted", "{last}");
    assert!(!events.contains(&json!("[DONE]")), "{last}");
}

#[test]
fn edge_llm_serve_queues_sheds_and_drains() {
    let cache = temp_dir("serve-limits");
    let server = Server::edge_llm(&["--concurrency", "1", "--queue", "0"], &cache);
    let addr = server.addr;
    let long = json!({
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": 96, "temperature": 0, "stream": true,
    });
    let running = start_chat(addr, &long);
    // The only instance is busy and nothing may queue: shed at once.
    let shed = request(addr, "GET", "/health", b"");
    assert_eq!(shed.status, 503, "{}", String::from_utf8_lossy(&shed.body));
    assert!(shed.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("busy"));
    // SIGTERM while the stream runs: it still completes, then the server exits cleanly.
    server.signal_terminate();
    let finished = running.join().expect("client thread");
    assert_eq!(finished.status, 200);
    assert_eq!(
        finished.events().last(),
        Some(&json!("[DONE]")),
        "drained, not cut"
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// Four clients send a ~3000-token chat and hang up before any answer: each call is cancelled
/// (access log status 499) and a short chat sent right after answers at once, on both
/// backends. Without cancellation the abandoned prefills kept the server busy for about 110 s;
/// with it the short chat took 0.36-0.61 s here (`edge-llm serve --concurrency 4`, AMD EPYC 2
/// vCPU), so the 10 s bound below only fails if an abandoned call runs on.
///
/// A latency bound needs the machine to itself, so this test runs alone: `just test` runs it
/// after the rest of the suite (`--ignored --test-threads 1`).
#[test]
#[ignore = "timed: run alone by `just test` (cargo test -p edge-llm-tests --test e2e -- --ignored)"]
fn edge_llm_serve_stops_the_work_of_clients_that_hang_up() {
    use std::io::Write;
    for backend in ["native", "wasm"] {
        let cache = temp_dir(&format!("serve-hangup-{backend}"));
        let server = Server::edge_llm(&["--backend", backend, "--concurrency", "4"], &cache);
        let long = json!({
            "messages": [{"role": "user", "content": "word ".repeat(2900)}],
            "max_tokens": 64,
        })
        .to_string();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: edge-llm\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{long}",
            long.len()
        );
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let mut stream = std::net::TcpStream::connect(server.addr).expect("connects");
                stream.write_all(request.as_bytes()).expect("sends");
                stream
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(clients);
        let started = std::time::Instant::now();
        let short = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4});
        let answer = post_json(server.addr, "/v1/chat/completions", &short);
        let took = started.elapsed();
        assert_eq!(
            answer.status,
            200,
            "{backend}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert!(
            took.as_secs() < 10,
            "{backend}: the short chat waited {took:?}"
        );
        // Each cancelled call is logged as it ends (within a tick of the hang-up).
        let hung_up = || {
            server
                .log()
                .matches("POST /v1/chat/completions 499")
                .count()
        };
        while hung_up() < 4 && started.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let log = server.log();
        assert_eq!(
            hung_up(),
            4,
            "{backend}: four cancelled calls in the access log:\n{log}"
        );
    }
}

/// `--kv-memory 24`: room for one request of a chat prompt plus 600 tokens (three
/// 256-position chunks of the default model's KV cache, 5.6 MiB each), not two. A second such
/// request while the first streams gets 503 with `Retry-After` and a one-line error naming the
/// KV memory, streamed or not, before any token; the first completes; once it is done the same
/// request succeeds (the idle instance's cache is reclaimed).
#[test]
fn edge_llm_serve_answers_503_when_kv_memory_is_spent() {
    let cache = temp_dir("serve-kv");
    let server = Server::edge_llm(&["--concurrency", "2", "--kv-memory", "24"], &cache);
    let addr = server.addr;
    let long = |stream: bool| {
        json!({
            "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
            "max_tokens": 600, "temperature": 0, "ignore_eos": true, "stream": stream,
        })
    };
    let running = start_chat(addr, &long(true));
    for stream in [false, true] {
        let what = format!("stream {stream}");
        let message = check_memory_refusal(&chat_request(addr, &long(stream)), &what);
        assert!(message.contains("KV cache memory"), "{what}: {message}");
    }
    let finished = running.join().expect("client thread");
    assert_eq!(finished.status, 200);
    assert_eq!(finished.events().last(), Some(&json!("[DONE]")));
    let events = finished.events();
    assert!(
        events.iter().all(|e| e.get("error").is_none()),
        "the first request was cut: {events:?}"
    );
    let later = chat_request(addr, &long(false));
    let body = String::from_utf8_lossy(&later.body);
    assert_eq!(later.status, 200, "{body}");
    assert_eq!(later.json()["usage"]["completion_tokens"], 600, "{body}");
}
