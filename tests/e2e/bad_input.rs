//! The bad-input suite: hostile model files and out-of-range requests, through the CLI (one
//! line on stderr, non-zero exit, no panic) and through the WIT API (a typed error, and the same
//! instance serves the next request). The HTTP cases are in `serve.rs`.

use std::path::Path;
use std::process::Output;

use edge_llm_host::{api, greedy, HostError, Instance, Runtime};
use edge_llm_tests::fixtures::{hostile_models, tiny_model};
use edge_llm_tests::{edge_llm, runtime_options, temp_dir};

/// A failed CLI run: non-zero exit, one line on stderr naming the problem (one of `needles`),
/// no panic.
fn assert_one_line_error(what: &str, out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!out.status.success(), "{what}: succeeded");
    assert!(!err.contains("panicked"), "{what}: panicked: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
    assert!(
        needles.iter().any(|n| err.contains(n)),
        "{what}: expected one of {needles:?} in {err}"
    );
}

#[test]
fn hostile_model_files_are_refused_by_the_cli_on_both_backends() {
    let dir = temp_dir("hostile-cli");
    let cache = temp_dir("hostile-cli-cache");
    for h in hostile_models(&dir) {
        let model = h.path.to_str().expect("utf-8 path");
        for backend in ["native", "wasm"] {
            let mut args = vec!["run", "--backend", backend, "--model", model];
            if h.template {
                args.push("--chat");
            }
            args.extend(["--max-tokens", "2", "hi"]);
            let out = edge_llm(&args, &cache);
            assert_one_line_error(&format!("{} ({backend})", h.name), &out, h.needles);
        }
    }
}

#[test]
fn bad_command_lines_fail_with_one_line() {
    let cache = temp_dir("bad-cli-cache");
    let dir = temp_dir("bad-cli");
    // A file named like the default model whose bytes are not it.
    let impostor = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::copy(tiny_model(&dir), &impostor).expect("copy");
    let impostor = impostor.to_str().expect("utf-8 path");
    let stops: Vec<String> = (0..10_000)
        .flat_map(|_| ["--stop".into(), "x".into()])
        .collect();
    let mut many_stops: Vec<&str> = vec!["run", "--max-tokens", "2"];
    many_stops.extend(stops.iter().map(String::as_str));
    many_stops.push("hi");
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("empty prompt", vec!["run", ""], "no tokens"),
        (
            "unknown model name",
            vec!["run", "--model", "no-such-model", "hi"],
            "not found",
        ),
        (
            "wrong sha256",
            vec!["run", "--model", impostor, "hi"],
            "integrity",
        ),
        (
            "max-tokens 1e9",
            vec!["run", "--max-tokens", "1000000000", "hi"],
            "context",
        ),
        (
            "infinite repeat penalty",
            vec!["run", "--repeat-penalty", "1e39", "hi"],
            "repeat_penalty",
        ),
        ("NaN top-p", vec!["run", "--top-p", "NaN", "hi"], "top"),
        ("negative min-p", vec!["run", "--min-p=-0.5", "hi"], "min"),
        ("10,000 stop strings", many_stops, "stop sequences"),
        ("negative ctx", vec!["run", "--ctx-size=-1", "hi"], "ctx"),
        (
            "bad timeout",
            vec!["run", "--timeout-ms", "soon", "hi"],
            "soon",
        ),
    ];
    for (what, args, needle) in cases {
        assert_one_line_error(what, &edge_llm(&args, &cache), &[needle]);
    }
    // Arguments that are not UTF-8 at all.
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let out = std::process::Command::new(edge_llm_tests::edge_llm_bin())
            .arg("run")
            .arg(std::ffi::OsStr::from_bytes(b"\xff\xfe"))
            .env("EDGE_LLM_CACHE_DIR", &cache)
            .output()
            .expect("running edge-llm");
        assert_one_line_error("invalid UTF-8", &out, &["utf-8"]);
    }
}

fn runtime(model_dir: &Path, cache: &Path) -> Runtime {
    Runtime::new(runtime_options(model_dir, cache)).expect("runtime")
}

fn open(
    instance: &mut Instance,
    path: &str,
    backend: api::Backend,
    context_length: Option<u32>,
) -> Result<edge_llm_host::ModelHandle, HostError> {
    instance.open(
        path,
        &api::OpenOptions {
            backend: Some(backend),
            context_length,
        },
    )
}

#[test]
fn hostile_model_files_are_typed_errors_through_the_api_and_the_instance_survives() {
    let dir = temp_dir("hostile-api");
    let hostile = hostile_models(&dir);
    tiny_model(&dir);
    let runtime = runtime(&dir, &temp_dir("hostile-api-cache"));
    let mut instance = runtime.instantiate().expect("instance");
    let user = [api::Message {
        role: "user".into(),
        content: "hi".into(),
    }];
    for h in &hostile {
        let file = h.path.file_name().and_then(|f| f.to_str()).expect("name");
        let guest_path = format!("/models/{file}");
        // The guest's kernel parses it; with `wasi-nn` the guest hands the bytes to the host's
        // native backend (`load`), which parses it.
        for backend in [api::Backend::Kernel, api::Backend::WasiNn] {
            let what = format!("{} ({backend:?})", h.name);
            let result = open(&mut instance, &guest_path, backend, None).and_then(|model| {
                let r = instance.chat(&model, &user, &greedy(2));
                instance.drop_model(model)?;
                r.map(|_| ())
            });
            match result {
                Err(HostError::Inference(e)) => {
                    let message = HostError::Inference(e).to_string().to_lowercase();
                    assert!(
                        h.needles.iter().any(|n| message.contains(n)),
                        "{what}: {message}"
                    );
                }
                other => panic!("{what}: expected a typed error, got {other:?}"),
            }
        }
    }
    let model = open(
        &mut instance,
        "/models/tiny.gguf",
        api::Backend::Kernel,
        None,
    )
    .expect("the same instance still opens a good model");
    instance
        .complete(&model, "hello", &greedy(4))
        .expect("and still generates");
}

#[test]
fn bad_requests_are_typed_errors_through_the_api_and_the_instance_survives() {
    let dir = temp_dir("bad-requests-api");
    tiny_model(&dir);
    let runtime = runtime(&dir, &temp_dir("bad-requests-api-cache"));
    let mut instance = runtime.instantiate().expect("instance");
    let model = open(
        &mut instance,
        "/models/tiny.gguf",
        api::Backend::Kernel,
        Some(32),
    )
    .expect("open");
    let params = |edit: &dyn Fn(&mut api::Params)| {
        let mut p = greedy(4);
        edit(&mut p);
        p
    };
    let long_prompt = "hello world ".repeat(64);
    let cases: Vec<(&str, &str, api::Params, &str)> = vec![
        ("empty prompt", "", greedy(4), "no tokens"),
        (
            "prompt longer than the context",
            &long_prompt,
            greedy(4),
            "context",
        ),
        ("max-tokens 0", "hi", params(&|p| p.max_tokens = 0), "max"),
        (
            "max-tokens 1e9",
            "hi",
            params(&|p| p.max_tokens = 1_000_000_000),
            "context",
        ),
        (
            "NaN temperature",
            "hi",
            params(&|p| p.temperature = f32::NAN),
            "temperature",
        ),
        (
            "negative temperature",
            "hi",
            params(&|p| p.temperature = -1.0),
            "temperature",
        ),
        (
            "infinite temperature",
            "hi",
            params(&|p| p.temperature = f32::INFINITY),
            "temperature",
        ),
        ("top-p 0", "hi", params(&|p| p.top_p = 0.0), "top_p"),
        ("top-p 2", "hi", params(&|p| p.top_p = 2.0), "top_p"),
        ("min-p -1", "hi", params(&|p| p.min_p = -1.0), "min_p"),
        (
            "zero repeat penalty",
            "hi",
            params(&|p| p.repeat_penalty = 0.0),
            "repeat_penalty",
        ),
        (
            "10,000 stop strings",
            "hi",
            params(&|p| p.stop = vec!["x".into(); 10_000]),
            "stop sequences",
        ),
        (
            "empty stop string",
            "hi",
            params(&|p| p.stop = vec![String::new()]),
            "empty",
        ),
        (
            "a 1 MB stop string",
            "hi",
            params(&|p| p.stop = vec!["y".repeat(1 << 20)]),
            "bytes long",
        ),
    ];
    for (what, prompt, params, needle) in cases {
        match instance.complete(&model, prompt, &params) {
            Err(e @ HostError::Inference(_)) => {
                let message = e.to_string().to_lowercase();
                assert!(message.contains(needle), "{what}: {message}");
            }
            other => panic!("{what}: expected a typed error, got {other:?}"),
        }
    }
    let malformed = [
        vec![],
        vec![api::Message {
            role: String::new(),
            content: "hi".into(),
        }],
    ];
    for messages in malformed {
        let r = instance.chat(&model, &messages, &greedy(2));
        assert!(
            matches!(r, Err(HostError::Inference(api::Error::InvalidInput(_)))),
            "{messages:?}: {r:?}"
        );
    }
    instance
        .complete(&model, "hello", &greedy(4))
        .expect("the instance still serves");
}
