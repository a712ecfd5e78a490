//! The host library against the real component: streaming, cancellation, typed errors,
//! deadlines, the component cache and memory over many calls — on both backends.

use std::time::Duration;

use edge_llm_host::{api, greedy, HostError, Instance, ModelHandle, Runtime};
use edge_llm_tests::{
    default_model, default_model_dir, default_model_guest_path, runtime, runtime_options, temp_dir,
};

fn open(instance: &mut Instance, backend: api::Backend) -> ModelHandle {
    let options = api::OpenOptions {
        backend: Some(backend),
        context_length: Some(512),
    };
    instance
        .open(&default_model_guest_path(), &options)
        .expect("open model")
}

fn both_backends(test: impl Fn(&Runtime, api::Backend)) {
    let cache = temp_dir("host-api");
    let rt = runtime(true, &cache);
    for backend in [api::Backend::WasiNn, api::Backend::Kernel] {
        test(&rt, backend);
    }
}

fn stream_text(
    instance: &mut Instance,
    model: &ModelHandle,
    prompt: &str,
    params: &api::Params,
) -> (String, api::Completion) {
    let stream = instance
        .stream_complete(model, prompt, params)
        .expect("stream");
    let mut text = String::new();
    while let Some(chunk) = instance.next_chunk(&stream).expect("chunk") {
        text.push_str(&chunk.text);
    }
    let done = instance
        .finish(&stream)
        .expect("finish")
        .expect("summary after the end");
    instance.drop_stream(stream).expect("drop");
    (text, done)
}

#[test]
fn streamed_chunks_concatenate_to_the_one_shot_text() {
    both_backends(|rt, backend| {
        let mut instance = rt.instantiate().expect("instance");
        let model = open(&mut instance, backend);
        let mut params = greedy(24);
        params.stop = vec!["\n\n".into()];
        let one_shot = instance
            .complete(&model, "Ελληνικά and русский текст are", &params)
            .expect("complete");
        let (streamed, summary) = stream_text(
            &mut instance,
            &model,
            "Ελληνικά and русский текст are",
            &params,
        );
        assert_eq!(streamed, one_shot.text);
        assert_eq!(summary.text, one_shot.text);
        assert_eq!(summary.tokens, one_shot.tokens);
        assert!(
            !one_shot.text.contains("\n\n"),
            "the stop string leaked: {:?}",
            one_shot.text
        );
        assert_eq!(summary.backend, backend);
    });
}

#[test]
fn warm_up_caches_the_chat_preamble_and_changes_no_answer() {
    both_backends(|rt, backend| {
        let chat = |instance: &mut Instance, model: &ModelHandle, text: &str| {
            let messages = [api::Message {
                role: "user".into(),
                content: text.into(),
            }];
            instance.chat(model, &messages, &greedy(8)).expect("chat")
        };
        let mut cold = rt.instantiate().expect("instance");
        let model = open(&mut cold, backend);
        let first = chat(&mut cold, &model, "Colours: name one.");
        assert_eq!(
            first.usage.cached_prompt_tokens, 0,
            "a fresh session has nothing cached"
        );
        // A second chat (whose text starts differently) shares the preamble with the first
        // one's cache, and nothing else.
        let second = chat(&mut cold, &model, "Fruit: name one.");
        let preamble = second.usage.cached_prompt_tokens;
        assert!(
            preamble > 0 && preamble < second.usage.prompt_tokens,
            "{:?}",
            second.usage
        );

        let mut warm = rt.instantiate().expect("instance");
        let model = open(&mut warm, backend);
        warm.warm_up(&model).expect("warm-up");
        warm.warm_up(&model).expect("a second warm-up is a no-op");
        let warmed = chat(&mut warm, &model, "Colours: name one.");
        assert_eq!(warmed.usage.cached_prompt_tokens, preamble);
        assert_eq!(
            warmed.tokens, first.tokens,
            "the cached preamble changed the answer"
        );
    });
}

#[test]
fn dropping_a_stream_cancels_it_and_the_model_stays_usable() {
    both_backends(|rt, backend| {
        let mut instance = rt.instantiate().expect("instance");
        let model = open(&mut instance, backend);
        let params = greedy(16);
        let reference = instance
            .complete(&model, "Once upon a time", &params)
            .expect("complete");
        let stream = instance
            .stream_complete(&model, "The capital of France is", &greedy(200))
            .expect("stream");
        for _ in 0..3 {
            instance.next_chunk(&stream).expect("chunk");
        }
        instance.drop_stream(stream).expect("drop mid-way");
        let again = instance
            .complete(&model, "Once upon a time", &params)
            .expect("complete after cancel");
        assert_eq!(again.tokens, reference.tokens);
    });
}

#[test]
fn bad_parameters_and_overflow_are_typed_errors() {
    both_backends(|rt, backend| {
        let mut instance = rt.instantiate().expect("instance");
        let model = open(&mut instance, backend);
        let bad = |f: &dyn Fn(&mut api::Params)| {
            let mut p = greedy(8);
            f(&mut p);
            p
        };
        for (name, params) in [
            ("NaN temperature", bad(&|p| p.temperature = f32::NAN)),
            ("negative temperature", bad(&|p| p.temperature = -0.5)),
            ("top-p above 1", bad(&|p| p.top_p = 1.5)),
            ("max-tokens 0", bad(&|p| p.max_tokens = 0)),
            ("negative repeat penalty", bad(&|p| p.repeat_penalty = -1.0)),
        ] {
            match instance.complete(&model, "Hello", &params) {
                Err(HostError::Inference(api::Error::InvalidInput(_))) => {}
                other => panic!("{name}: expected invalid-input, got {other:?}"),
            }
        }
        match instance.complete(&model, &"word ".repeat(600), &greedy(8)) {
            Err(HostError::Inference(api::Error::ContextOverflow(o))) => {
                assert_eq!(o.context_length, 512);
                assert!(o.prompt_tokens > 500);
            }
            other => panic!("expected context-overflow, got {other:?}"),
        }
        // Nothing above broke the instance.
        instance
            .complete(&model, "Hello", &greedy(4))
            .expect("still serving");
    });
}

#[test]
fn a_deadline_ends_a_runaway_generation_and_the_host_keeps_serving() {
    both_backends(|rt, backend| {
        let mut instance = rt.instantiate().expect("instance");
        let model = open(&mut instance, backend);
        instance.set_timeout(Some(Duration::from_millis(30)));
        let mut params = greedy(400);
        params.ignore_eos = true;
        match instance.complete(&model, "Count to a million: 1, 2, 3,", &params) {
            Err(HostError::Deadline(after)) => assert!(after < Duration::from_secs(2), "{after:?}"),
            other => panic!("{backend:?}: expected a deadline error, got {other:?}"),
        }
        // A trapped instance is discarded; a fresh one from the same runtime serves.
        let mut instance = rt.instantiate().expect("instance");
        let model = open(&mut instance, backend);
        instance
            .complete(&model, "Hello", &greedy(4))
            .expect("the next call succeeds");
    });
}

#[test]
fn the_component_cache_is_hit_and_a_tampered_entry_is_rebuilt() {
    let cache = temp_dir("cache");
    let first = runtime(false, &cache);
    assert!(
        matches!(
            first.cache_status(),
            edge_llm_host::cache::CacheStatus::Miss
        ),
        "{}",
        first.cache_status()
    );
    drop(first);
    let second = runtime(false, &cache);
    assert_eq!(
        second.cache_status(),
        &edge_llm_host::cache::CacheStatus::Hit
    );
    drop(second);
    let entry = std::fs::read_dir(cache.join("components"))
        .expect("cache dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a .cwasm entry");
    let mut bytes = std::fs::read(&entry).expect("read entry");
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&entry, &bytes).expect("tamper");
    let third = runtime(false, &cache);
    assert!(
        matches!(
            third.cache_status(),
            edge_llm_host::cache::CacheStatus::Rebuilt(_)
        ),
        "{}",
        third.cache_status()
    );
    let mut instance = third
        .instantiate()
        .expect("the rebuilt component instantiates");
    let model = open(&mut instance, api::Backend::Kernel);
    instance
        .complete(&model, "Hi", &greedy(2))
        .expect("and runs");
}

#[test]
fn pooled_short_lived_instances_each_answer() {
    let cache = temp_dir("pooling");
    let model = default_model();
    let mut options = edge_llm_host::RuntimeOptions::new(edge_llm_tests::guest_wasm());
    options.cache_dir = Some(cache);
    options.model_dir = model.parent().map(std::path::Path::to_path_buf);
    options.pooling = Some(4);
    let mut rt = Runtime::new(options).expect("pooled runtime");
    rt.preload(&model, &[default_model_guest_path()])
        .expect("preload");
    let mut answers = Vec::new();
    for _ in 0..6 {
        let mut instance = rt.instantiate().expect("instance from the pool");
        let model = open(&mut instance, api::Backend::WasiNn);
        answers.push(
            instance
                .complete(&model, "Hello", &greedy(4))
                .expect("complete")
                .tokens,
        );
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
}

/// A runtime with the default model preloaded for the native backend and at most `mib` MiB of
/// KV cache for all sessions.
fn bounded_runtime(mib: usize) -> Runtime {
    let mut options = runtime_options(&default_model_dir(), &temp_dir("host-api-kv"));
    options.kv_memory = Some(mib << 20);
    let mut rt = Runtime::new(options).expect("runtime");
    rt.preload(&default_model(), &[default_model_guest_path()])
        .expect("preload");
    rt
}

/// With bounded KV memory (6 MiB: one 256-position chunk of the default model's cache, 5.6
/// MiB), a call that cannot get its cache fails with `HostError::KvMemory` and the instance
/// stays usable; an idle instance's cache is reclaimed for another instance's call, and its
/// next call, reusing its prompt prefix, replays it: the same tokens as without a bound.
#[test]
fn bounded_kv_memory_refuses_reclaims_idle_caches_and_replays_them() {
    let prompts = [
        "The capital of France is",
        "The capital of France is Paris, and the capital of Italy is",
    ];
    let unbounded = runtime(true, &temp_dir("host-api-kv-ref"));
    let mut reference = unbounded.instantiate().expect("instance");
    let model = open(&mut reference, api::Backend::WasiNn);
    let want: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            reference
                .complete(&model, p, &greedy(8))
                .expect("complete")
                .tokens
        })
        .collect();

    let rt = bounded_runtime(6);
    let (mut one, mut two) = (
        rt.instantiate().expect("instance"),
        rt.instantiate().expect("instance"),
    );
    let (m1, m2) = (
        open(&mut one, api::Backend::WasiNn),
        open(&mut two, api::Backend::WasiNn),
    );
    let first = one.complete(&m1, prompts[0], &greedy(8)).expect("complete");
    assert_eq!(first.tokens, want[0]);
    // `one` is idle and holds the only chunk: `two` gets it.
    let second = two.complete(&m2, prompts[1], &greedy(8)).expect("complete");
    assert_eq!(second.tokens, want[1]);
    // `one` reuses its prompt's prefix, which its released cache replays.
    let again = one.complete(&m1, prompts[1], &greedy(8)).expect("complete");
    assert!(again.usage.cached_prompt_tokens > 0, "{:?}", again.usage);
    assert_eq!(
        again.tokens, want[1],
        "the replayed prefix changed the answer"
    );
    // Prompt plus 300 tokens needs two chunks: refused before any compute, typed.
    match one.complete(&m1, prompts[0], &greedy(300)) {
        Err(HostError::KvMemory(e)) => {
            assert!(e.to_string().contains("KV cache memory exhausted"), "{e}")
        }
        other => panic!("expected a KV memory error, got {other:?}"),
    }
    let after = one
        .complete(&m1, prompts[0], &greedy(8))
        .expect("still usable");
    assert_eq!(after.tokens, want[0]);
}
