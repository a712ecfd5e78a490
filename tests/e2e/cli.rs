//! The `edge-llm` CLI end to end, against llama.cpp's reference outputs.

use edge_llm_tests::fixtures::tiny_model;
use edge_llm_tests::{
    check_against_reference, default_model, edge_llm, guest_wasm, preinit_guest_wasm, read_ref,
    stdout_json, temp_dir,
};

#[test]
fn tokenize_matches_llama_cpp() {
    default_model();
    let cache = temp_dir("tokenize");
    let refs = read_ref("tokens.json");
    for item in refs["items"].as_array().expect("items") {
        let text = item["text"].as_str().expect("text");
        let out = edge_llm(&["tokenize", "--backend", "wasm", text], &cache);
        let got = stdout_json(&out);
        assert_eq!(got, item["ids"], "token ids of {text:?}");
    }
}

#[test]
fn info_describes_the_model_and_counts_its_tensor_types() {
    default_model();
    let cache = temp_dir("info");
    let info = stdout_json(&edge_llm(&["info", "--backend", "wasm"], &cache));
    assert_eq!(info["architecture"], "llama");
    assert_eq!(info["quantization"], "Q4_1");
    // 210 Q4_1 matrices, 61 F32 norms, the Q8_0 token embedding (as `gguf` lists them).
    assert_eq!(
        info["tensor_types"],
        serde_json::json!({"F32": 61, "Q4_1": 210, "Q8_0": 1})
    );
}

/// The default model with its matrices requantized the way llama.cpp's Q4_K_M comes out for
/// 576-wide rows: mostly Q5_0, Q4_K and Q6_K where rows are whole 256-blocks (`ffn_down`), Q8_0
/// for the embedding and `attn_v`.
fn q4_k_m_like(dir: &std::path::Path) -> std::path::PathBuf {
    use edge_llm_kernel::gguf::GgmlType;
    let bytes = std::fs::read(default_model()).expect("the default model");
    let file = edge_llm_kernel::requantize::requantize(&bytes, |t| {
        let name = t.name.as_str();
        match name {
            "token_embd.weight" => GgmlType::Q8_0,
            n if n.ends_with("ffn_down.weight") && t.dims[0] % 256 == 0 => {
                if n.starts_with("blk.0.") || n.starts_with("blk.1.") {
                    GgmlType::Q6_K
                } else {
                    GgmlType::Q4_K
                }
            }
            n if n.ends_with("attn_v.weight") => GgmlType::Q8_0,
            _ => GgmlType::Q5_0,
        }
    })
    .expect("requantizes");
    let path = dir.join("smollm2-q4_k_m-like.gguf");
    std::fs::write(&path, file).expect("writes");
    path
}

#[test]
fn a_file_of_mixed_quant_types_runs_the_same_on_both_backends() {
    let cache = temp_dir("mixed-types");
    let model = q4_k_m_like(&cache);
    let model = model.to_str().expect("a UTF-8 path");
    let info = stdout_json(&edge_llm(
        &["info", "--backend", "wasm", "--model", model],
        &cache,
    ));
    let types = &info["tensor_types"];
    for ty in ["Q4_K", "Q5_0", "Q6_K", "Q8_0", "F32"] {
        assert!(types[ty].as_u64().unwrap_or(0) > 0, "{ty} in {types}");
    }
    let run = |backend: &str| {
        stdout_json(&edge_llm(
            &[
                "run",
                "--backend",
                backend,
                "--model",
                model,
                "--temperature",
                "0",
                "--max-tokens",
                "16",
                "--ignore-eos",
                "--json",
                "The capital of France is",
            ],
            &cache,
        ))
    };
    let (native, wasm) = (run("native"), run("wasm"));
    assert_eq!(native["backend"], "native");
    assert_eq!(wasm["backend"], "wasm");
    assert_eq!(
        native["tokens"], wasm["tokens"],
        "the same tokens on both backends"
    );
    assert_eq!(native["tokens"].as_array().map(Vec::len), Some(16));
    eprintln!("Q4_K_M-like: {}", native["text"]);
}

/// Every architecture's tiny model (`just arch-models`; the kernel's tests check its logits
/// against llama.cpp) loads through the CLI with its own tokenizer, `info` names its family,
/// and both backends generate the same tokens.
#[test]
fn every_architecture_runs_the_same_on_both_backends() {
    let cache = temp_dir("arch");
    let families = ["Llama", "Qwen2", "Qwen3", "Gemma3", "Phi3", "Gpt2"];
    for (name, family) in edge_llm_refs::arch::MODELS.into_iter().zip(families) {
        edge_llm_refs::arch::reference(name); // present, and the file the references know
        let path = edge_llm_refs::arch::model_path(name);
        let model = path.to_str().expect("a UTF-8 path");
        let info = stdout_json(&edge_llm(&["info", "--model", model], &cache));
        assert_eq!(info["family"], family, "{name}: {info}");
        let run = |backend: &str| {
            let args = [
                "run",
                "--backend",
                backend,
                "--model",
                model,
                "--temperature",
                "0",
            ];
            let more = ["--max-tokens", "12", "--ignore-eos", "--json", "the cat is"];
            stdout_json(&edge_llm(&[&args[..], &more[..]].concat(), &cache))
        };
        let (native, wasm) = (run("native"), run("wasm"));
        assert_eq!(
            native["tokens"], wasm["tokens"],
            "{name}: the same tokens on both backends"
        );
        assert_eq!(
            native["tokens"].as_array().map(Vec::len),
            Some(12),
            "{name}"
        );
    }
    // The same file of a family we do not know: one line, `model not supported`, both backends.
    let mut bytes = std::fs::read(edge_llm_refs::arch::model_path("qwen2")).expect("qwen2");
    let key = [&5u64.to_le_bytes()[..], b"qwen2"].concat();
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("the architecture's value");
    bytes[at + 8..at + 13].copy_from_slice(b"qwen9");
    let path = cache.join("qwen9.gguf");
    std::fs::write(&path, bytes).expect("writes");
    for backend in ["native", "wasm"] {
        let model = path.to_str().expect("a UTF-8 path");
        let out = edge_llm(
            &["run", "--backend", backend, "--model", model, "hi"],
            &cache,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{backend}: a qwen9 file runs");
        assert_eq!(err.trim_end().lines().count(), 1, "{backend}: {err}");
        assert!(
            err.contains("model not supported") && err.contains("unsupported architecture `qwen9`"),
            "{backend}: {err}"
        );
    }
}

#[test]
fn greedy_native_and_wasm_agree_and_follow_llama_cpp() {
    default_model();
    let cache = temp_dir("greedy");
    let refs = read_ref("greedy.json");
    for item in refs["items"].as_array().expect("items") {
        let prompt = item["prompt"].as_str().expect("prompt");
        let mut runs = Vec::new();
        for backend in ["native", "wasm"] {
            let out = edge_llm(
                &[
                    "run",
                    "--backend",
                    backend,
                    "--temperature",
                    "0",
                    "--max-tokens",
                    "64",
                    "--json",
                    prompt,
                ],
                &cache,
            );
            let json = stdout_json(&out);
            assert_eq!(json["backend"], backend);
            assert_eq!(
                json["usage"]["prompt_tokens"].as_u64(),
                Some(item["prompt_ids"].as_array().expect("ids").len() as u64)
            );
            let tokens: Vec<u64> = json["tokens"]
                .as_array()
                .expect("tokens")
                .iter()
                .map(|v| v.as_u64().expect("id"))
                .collect();
            runs.push(tokens);
        }
        assert_eq!(runs[0], runs[1], "native and wasm differ on {prompt:?}");
        let agreed = check_against_reference(item, &runs[0]);
        eprintln!("{prompt:?}: follows llama.cpp for {agreed} tokens");
    }
}

#[test]
fn seeded_sampling_is_reproducible_across_backends() {
    default_model();
    let cache = temp_dir("seeded");
    let run = |backend: &str, seed: &str| {
        let out = edge_llm(
            &[
                "run",
                "--backend",
                backend,
                "--temperature",
                "0.9",
                "--top-k",
                "40",
                "--top-p",
                "0.95",
                "--seed",
                seed,
                "--max-tokens",
                "24",
                "--json",
                "Once upon a time",
            ],
            &cache,
        );
        stdout_json(&out)["tokens"].clone()
    };
    let native = run("native", "7");
    assert_eq!(native, run("wasm", "7"));
    assert_eq!(native, run("native", "7"));
    assert_ne!(
        native,
        run("native", "8"),
        "a different seed should change the sample"
    );
}

#[test]
fn bad_inputs_fail_with_one_line() {
    let cache = temp_dir("bad-inputs");
    let dir = temp_dir("bad-model");
    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"GGUF\x03\x00\x00\x00truncated").expect("write");
    let garbage = garbage.to_str().expect("utf-8 path");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "--model", "/nonexistent/model.gguf", "hi"],
            "not found",
        ),
        (vec!["run", "--model", garbage, "hi"], "gguf"),
        (vec!["run", "--temperature", "NaN", "hi"], "temperature"),
        (vec!["run", "--temperature=-1", "hi"], "temperature"),
        (vec!["run", "--bogus-flag", "hi"], "bogus"),
        (vec!["run", "--max-tokens", "many", "hi"], "many"),
        (vec!["run", "--top-p", "1.5", "hi"], "top"),
        (vec!["run", "--max-tokens", "0", "hi"], "max"),
        (
            vec!["run", "--ctx-size", "16", "--max-tokens", "32", "hi"],
            "context",
        ),
        (vec!["run", "--threads", "0", "hi"], "threads"),
    ];
    for (args, needle) in cases {
        let out = edge_llm(&args, &cache);
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
    }
}

#[test]
fn perplexity_is_within_one_percent_of_llama_cpp() {
    default_model();
    let cache = temp_dir("perplexity");
    let text = edge_llm_refs::path("ppl_text.txt");
    let reference = edge_llm_refs::perplexity();
    // llama.cpp's figures with flash attention off (exact f32 attention), tests/refs/ppl.json.
    for (ctx, want) in reference.by_context {
        let ctx = ctx.to_string();
        let out = edge_llm(
            &["perplexity", "--ctx", &ctx, text.to_str().expect("path")],
            &cache,
        );
        let json = stdout_json(&out);
        assert_eq!(
            json["tokens"], reference.tokens,
            "ppl_text.txt is {} tokens for llama.cpp",
            reference.tokens
        );
        let ppl = json["perplexity"].as_f64().expect("perplexity");
        eprintln!(
            "perplexity at ctx {ctx}: {ppl:.4} vs llama.cpp {want} ({:+.2}%)",
            (ppl / want - 1.0) * 100.0
        );
        assert!(
            (ppl - want).abs() / want < 0.01,
            "ctx {ctx}: {ppl} vs {want}"
        );
    }
}

#[test]
fn the_second_process_hits_the_component_cache() {
    default_model();
    let cache = temp_dir("second-process");
    let args = ["-v", "run", "--backend", "wasm", "--max-tokens", "1", "Hi"];
    let first = edge_llm(&args, &cache);
    let second = edge_llm(&args, &cache);
    for out in [&first, &second] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(String::from_utf8_lossy(&first.stderr).contains("cache miss"));
    assert!(String::from_utf8_lossy(&second.stderr).contains("cache hit"));
}

#[test]
fn the_pre_initialized_guest_answers_like_the_plain_one() {
    // `edge-llm` runs the guest whose snapshot holds the default model's tokenizer and chat
    // template; the plain guest builds them when it opens the model. Another model's metadata
    // does not match the built-in one, so it is built as in the plain guest.
    default_model();
    let cache = temp_dir("preinit");
    let tiny = tiny_model(&temp_dir("preinit-tiny"));
    let tiny = tiny.to_str().expect("a UTF-8 path");
    let (preinit, plain) = (preinit_guest_wasm(), guest_wasm());
    for backend in ["native", "wasm"] {
        for model in [None, Some(tiny)] {
            let run = |component: &std::path::Path| {
                let mut args = vec!["run", "--backend", backend, "--component"];
                args.push(component.to_str().expect("a UTF-8 path"));
                args.extend(["--temperature", "0", "--max-tokens", "12", "--json"]);
                match model {
                    Some(m) => args.extend(["--model", m, "hello"]),
                    None => args.extend(["--chat", "What is the capital of France?"]),
                }
                stdout_json(&edge_llm(&args, &cache))
            };
            let (got, want) = (run(&preinit), run(&plain));
            assert_eq!(got["tokens"], want["tokens"], "{backend} {model:?}");
            assert_eq!(got["text"], want["text"], "{backend} {model:?}");
        }
    }
}

#[test]
fn the_repacked_model_is_cached_and_a_bad_entry_is_rebuilt() {
    default_model();
    let cache = temp_dir("packed");
    let args = [
        "-v",
        "run",
        "--backend",
        "native",
        "--temperature",
        "0",
        "--max-tokens",
        "8",
        "--json",
        "Hi",
    ];
    let run = || {
        let out = edge_llm(&args, &cache);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        (stdout_json(&out)["tokens"].clone(), log)
    };
    let (want, log) = run();
    if !log.contains("read and repacked") {
        // A machine whose kernels read the GGUF layout as fast maps the file itself.
        assert!(!cache.join("packed").exists(), "{log}");
        return;
    }
    let mapped = |what: &str| {
        let (got, log) = run();
        assert!(log.contains("repacked model mapped"), "{what}: {log}");
        assert_eq!(got, want, "{what}");
    };
    mapped("second run");
    let entry = std::fs::read_dir(cache.join("packed"))
        .expect("the packed cache")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
        .expect("an entry");
    let bytes = std::fs::read(&entry).expect("read the entry");
    let mut garbled = bytes.clone();
    garbled[..4].copy_from_slice(b"JUNK");
    for (what, bad, needle) in [
        ("truncated", &bytes[..bytes.len() / 2], "size differs"),
        ("garbled header", &garbled[..], "does not load"),
    ] {
        std::fs::write(&entry, bad).expect("spoil the entry");
        let (got, log) = run();
        assert!(
            log.contains(needle) && log.contains("read and repacked"),
            "{what}: {log}"
        );
        assert_eq!(got, want, "{what}");
        mapped(what);
    }
}

/// `edge-llm tokenize` reads a vocabulary-only GGUF as `llama-tokenize` does: the first inputs
/// of llama.cpp's tokenizer test pairs (`just vocab-tests`) give the ids of their `.out` lines,
/// after the BOS id for a vocabulary that adds one; generating from such a file is a one-line
/// error naming it.
#[test]
fn tokenize_reads_vocabulary_only_files() {
    let cache = temp_dir("tokenize-vocab");
    let dir = edge_llm_tests::root().join("build/vocab");
    // (vocabulary, the BOS it adds)
    for (vocab, bos) in [
        ("qwen2", None),
        ("llama-spm", Some(1)),
        ("gemma-4", Some(2)),
    ] {
        let file = dir.join(format!("ggml-vocab-{vocab}.gguf"));
        let file = file.to_str().expect("utf-8 path");
        let inputs =
            std::fs::read_to_string(format!("{file}.inp")).expect("run `just vocab-tests`");
        let outputs = std::fs::read_to_string(format!("{file}.out")).expect("the .out file");
        let pairs = inputs
            .split("\n__ggml_vocab_test__\n")
            .zip(outputs.lines())
            .take(8);
        for (text, want) in pairs {
            let out = edge_llm(&["tokenize", "--model", file, "--no-control", text], &cache);
            let mut expected: Vec<u64> = bos.into_iter().collect();
            expected.extend(
                want.split_whitespace()
                    .map(|id| id.parse::<u64>().expect("an id")),
            );
            assert_eq!(
                stdout_json(&out),
                serde_json::json!(expected),
                "{vocab}: {text:?}"
            );
        }
        let out = edge_llm(&["run", "--model", file, "hello"], &cache);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("no weights"),
            "{vocab}: {err}"
        );
    }
}
