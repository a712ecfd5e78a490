//! Faults fail only their own request: a generation interrupted at its deadline (a guest trap
//! mid-generation; the instance is discarded and replaced) under `edge-llm serve`, and a guest
//! that runs out of memory at its store limit (a typed error; the instance stays usable)
//! through the API. Requests in flight elsewhere finish untouched, and the next request
//! succeeds. A deadline also stops the native backend's compute between layers, through the
//! store's call state (and `host_api.rs` through the embedding API).

use edge_llm_host::{api, greedy, HostError, Runtime};
use edge_llm_tests::http::{post_json, Server};
use edge_llm_tests::{
    default_model, default_model_dir, default_model_guest_path, runtime_options, temp_dir,
};
use serde_json::{json, Value};

fn chat(max_tokens: u32, stream: bool) -> Value {
    json!({
        "messages": [{"role": "user", "content": "Tell me about the sea."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": true,
        "stream": stream,
    })
}

#[test]
fn a_request_past_its_deadline_fails_alone_and_the_server_recovers() {
    let cache = temp_dir("faults-deadline");
    // 2,000 tokens take over ten seconds; 8 take tens of milliseconds (well under the deadline
    // even on a machine busy with other tests).
    let server = Server::edge_llm(&["--concurrency", "3", "--timeout-ms", "2000"], &cache);
    let addr = server.addr;
    let expected_short = post_json(addr, "/v1/chat/completions", &chat(8, false)).json()["choices"]
        [0]["message"]["content"]
        .clone();
    let (streamed, one_shot, short) = std::thread::scope(|s| {
        let streamed = s.spawn(|| post_json(addr, "/v1/chat/completions", &chat(2000, true)));
        let one_shot = s.spawn(|| post_json(addr, "/v1/chat/completions", &chat(2000, false)));
        std::thread::sleep(std::time::Duration::from_millis(300));
        let short = post_json(addr, "/v1/chat/completions", &chat(8, false));
        (
            streamed.join().expect("client"),
            one_shot.join().expect("client"),
            short,
        )
    });
    // The stream had started: it is cut, never finished with [DONE].
    assert_eq!(streamed.status, 200);
    assert!(
        !streamed.events().contains(&json!("[DONE]")),
        "the interrupted stream must not claim completion"
    );
    // The one-shot request had no response yet: it gets a 500 saying why.
    assert_eq!(one_shot.status, 500);
    let message = one_shot.json()["error"]["message"].to_string();
    assert!(message.contains("deadline"), "{message}");
    // The short request in flight alongside is untouched.
    assert_eq!(short.status, 200);
    assert_eq!(
        short.json()["choices"][0]["message"]["content"],
        expected_short
    );
    // Replacement instances serve the next requests.
    for _ in 0..3 {
        let next = post_json(addr, "/v1/chat/completions", &chat(8, false));
        assert_eq!(next.status, 200);
    }
    let log = server.log();
    assert_eq!(
        log.matches("instance discarded: interrupted at its deadline")
            .count(),
        2,
        "{log}"
    );
}

#[test]
fn the_server_deadline_stops_a_long_native_prefill() {
    let cache = temp_dir("faults-native-deadline");
    // 1 s: room for the follow-up chat below on a fresh instance on a busy machine (at 300 ms
    // it failed once at load average 9).
    let server = Server::edge_llm(&["--concurrency", "1", "--timeout-ms", "1000"], &cache);
    // ~7,000 tokens (the context holds 8,192): one compute call of 38-56 s of native prefill
    // (AMD EPYC 2 vCPU, `edge-llm serve` without a deadline), most of it attention.
    let prompt = "the quick brown fox jumps over the lazy dog ".repeat(780);
    let started = std::time::Instant::now();
    let response = post_json(
        server.addr,
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 1, "temperature": 0}),
    );
    let elapsed = started.elapsed();
    assert_eq!(
        response.status,
        500,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let message = response.json()["error"]["message"].to_string();
    assert!(message.contains("deadline"), "{message}");
    // The native compute stops at its next layer: a few ticks past 1 s, not the prefill's tens
    // of seconds. The bound leaves room for a machine busy with other tests (3.6 s once at
    // load average 7).
    assert!(
        elapsed < std::time::Duration::from_secs(10),
        "the request took {elapsed:?}"
    );
    let discarded = "instance discarded: interrupted at its deadline";
    let log = server.log_with(discarded, std::time::Duration::from_secs(2));
    assert!(log.contains(discarded), "{log}");
    // The server serves on.
    let next = post_json(server.addr, "/v1/chat/completions", &chat(4, false));
    assert_eq!(next.status, 200);
}

#[test]
fn a_guest_out_of_memory_fails_its_own_call_and_others_continue() {
    let model = default_model();
    let mut options = runtime_options(&default_model_dir(), &temp_dir("faults-oom"));
    // Enough for the tokenizer and a wasi:nn session, not for the 78 MB of weights.
    options.memory_limit = 64 << 20;
    let mut runtime = Runtime::new(options).expect("runtime");
    runtime
        .preload(&model, &[default_model_guest_path()])
        .expect("preload");
    let open = |instance: &mut edge_llm_host::Instance, backend| {
        instance.open(
            &default_model_guest_path(),
            &api::OpenOptions {
                backend: Some(backend),
                context_length: Some(256),
            },
        )
    };
    let prompt = "The capital of France is";
    let mut reference = runtime.instantiate().expect("instance");
    let m = open(&mut reference, api::Backend::WasiNn).expect("open on wasi-nn fits");
    let want = reference
        .complete(&m, prompt, &greedy(12))
        .expect("reference")
        .text;

    // A stream in flight on one instance...
    let mut busy = runtime.instantiate().expect("instance");
    let m = open(&mut busy, api::Backend::WasiNn).expect("open");
    let stream = busy
        .stream_complete(&m, prompt, &greedy(12))
        .expect("stream");
    let mut text = busy
        .next_chunk(&stream)
        .expect("first chunk")
        .map(|c| c.text)
        .unwrap_or_default();

    // ...while another instance runs out of memory loading the weights into the guest: a typed
    // error, and that instance keeps serving what fits.
    let mut victim = runtime.instantiate().expect("instance");
    match open(&mut victim, api::Backend::Kernel) {
        Err(HostError::Inference(api::Error::RuntimeError(m))) => {
            assert!(m.contains("memory"), "{m}");
        }
        other => panic!("expected an out-of-memory error, got {other:?}"),
    }
    let m = open(&mut victim, api::Backend::WasiNn).expect("the victim still serves");
    assert_eq!(
        victim
            .complete(&m, prompt, &greedy(12))
            .expect("complete")
            .text,
        want
    );

    // The stream finishes as if nothing happened, and a fresh instance serves.
    while let Some(chunk) = busy.next_chunk(&stream).expect("chunk") {
        text.push_str(&chunk.text);
    }
    assert_eq!(text, want);
    let mut fresh = runtime.instantiate().expect("a replacement instance");
    let m = open(&mut fresh, api::Backend::WasiNn).expect("open");
    assert_eq!(
        fresh
            .complete(&m, prompt, &greedy(12))
            .expect("serves")
            .text,
        want
    );
}
