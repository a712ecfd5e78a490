//! The composed components under the stock `wasmtime` CLI: the CLI front on the standalone
//! inference component (`just compose`, model from `--dir`) and on the bundled, pre-initialized
//! one (`just bundle`, no directory at all) give the native backend's greedy tokens, which follow
//! llama.cpp's.

use std::path::Path;
use std::process::Output;

use edge_llm_tests::{
    bundled_cli_wasm, check_against_reference, component_wit, composed_cli_wasm, default_model,
    edge_llm, json_tokens, read_ref, root, stdout_json, temp_dir, wasmtime_run, wasmtime_run_with,
};

/// How many greedy.json prompts run the full 64 tokens (the rest run 16) to keep this file
/// under about a minute: each wasm token costs ~25 ms.
const FULL_PROMPTS: usize = 5;

/// `edge-llm run --backend native --temperature 0 --json` token ids.
fn native_greedy(prompt: &str, max_tokens: usize, extra: &[&str], cache: &Path) -> Vec<u64> {
    let max = max_tokens.to_string();
    let mut args = vec![
        "run",
        "--backend",
        "native",
        "--temperature",
        "0",
        "--max-tokens",
        &max,
        "--json",
    ];
    args.extend_from_slice(extra);
    args.push(prompt);
    let json = stdout_json(&edge_llm(&args, cache));
    assert_eq!(json["backend"], "native");
    json_tokens(&json)
}

/// The JSON summary of the CLI front's greedy run of `prompt` under `wasmtime run`.
fn wasmtime_greedy(
    wasm: &Path,
    with_models: bool,
    prompt: &str,
    max_tokens: usize,
    extra: &[&str],
) -> serde_json::Value {
    let models = root().join("models");
    let dirs: Vec<(&Path, &str)> = if with_models {
        vec![(&models, "/models")]
    } else {
        vec![]
    };
    let max = max_tokens.to_string();
    let mut args = vec![prompt, "--temperature", "0", "--max-tokens", &max, "--json"];
    args.extend_from_slice(extra);
    let out = wasmtime_run(wasm, &dirs, &args);
    let json = stdout_json(&out);
    assert_eq!(json["backend"], "wasm", "the component runs its own kernel");
    json
}

fn greedy_matches_native(wasm: &Path, with_models: bool, name: &str) {
    default_model();
    let cache = temp_dir(name);
    let refs = read_ref("greedy.json");
    for (i, item) in refs["items"].as_array().expect("items").iter().enumerate() {
        let prompt = item["prompt"].as_str().expect("prompt");
        let n = if i < FULL_PROMPTS { 64 } else { 16 };
        let json = wasmtime_greedy(wasm, with_models, prompt, n, &[]);
        let ids = item["prompt_ids"].as_array().expect("prompt_ids").len() as u64;
        assert_eq!(
            json["usage"]["prompt_tokens"].as_u64(),
            Some(ids),
            "prompt tokens of {prompt:?}"
        );
        let got = json_tokens(&json);
        assert_eq!(
            got,
            native_greedy(prompt, n, &[], &cache),
            "{name} and native differ on {prompt:?}"
        );
        let agreed = check_against_reference(item, &got);
        eprintln!("{name}: {prompt:?} follows llama.cpp for {agreed} of {n} tokens");
    }
}

fn assert_no_wasi_nn_and_runs(wasm: &Path) {
    let wit = component_wit(wasm);
    assert!(
        !wit.contains("import wasi:nn"),
        "{} imports wasi:nn:\n{wit}",
        wasm.display()
    );
    assert!(
        wit.contains("export wasi:cli/run@0.2"),
        "{} does not export wasi:cli/run:\n{wit}",
        wasm.display()
    );
}

fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert_eq!(err.trim().lines().count(), 1, "more than one line: {err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
}

#[test]
fn composed_cli_greedy_matches_native() {
    let wasm = composed_cli_wasm();
    assert_no_wasi_nn_and_runs(&wasm);
    greedy_matches_native(&wasm, true, "composed");
}

#[test]
fn bundled_cli_greedy_matches_native_without_any_directory() {
    let wasm = bundled_cli_wasm();
    assert_no_wasi_nn_and_runs(&wasm);
    greedy_matches_native(&wasm, false, "bundled");
}

#[test]
fn bundled_cli_chat_matches_native() {
    let wasm = bundled_cli_wasm();
    let cache = temp_dir("bundled-chat");
    let prompt = "What is the capital of France?";
    let json = wasmtime_greedy(&wasm, false, prompt, 12, &["--chat"]);
    assert_eq!(
        json_tokens(&json),
        native_greedy(prompt, 12, &["--chat"], &cache)
    );
    // The bundled model also answers to its file's path in the sandbox, with no file there.
    let by_path = wasmtime_greedy(
        &wasm,
        false,
        prompt,
        12,
        &[
            "--chat",
            "--model",
            "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
        ],
    );
    assert_eq!(by_path["tokens"], json["tokens"]);
}

#[test]
fn cli_front_errors_are_one_line() {
    let composed = composed_cli_wasm();
    // No model directory: the standalone component cannot find the default model.
    assert_one_line_error(&wasmtime_run(&composed, &[], &["hi"]), "not found");
    let bundled = bundled_cli_wasm();
    assert_one_line_error(&wasmtime_run(&bundled, &[], &["hi", "--bogus"]), "bogus");
    assert_one_line_error(
        &wasmtime_run(&bundled, &[], &["hi", "--max-tokens", "many"]),
        "many",
    );
    assert_one_line_error(&wasmtime_run(&bundled, &[], &[]), "prompt");
    assert_one_line_error(
        &wasmtime_run(&bundled, &[], &["hi", "--temperature=-1"]),
        "temperature",
    );
    assert_one_line_error(
        &wasmtime_run(&bundled, &[], &["hi", "--model", "/nope.gguf"]),
        "not found",
    );
}

#[test]
fn a_prompt_whose_cache_does_not_fit_in_memory_is_one_line() {
    // 140 MB hold the model the standalone component reads (its repacked copy and scratch) but
    // not the keys and values of 1,800 more positions (45 MiB): the kernel's cache refuses to
    // grow, and the call fails, where allocating would have trapped.
    let composed = composed_cli_wasm();
    let models = root().join("models");
    let prompt = "The history of the town. ".repeat(300);
    let out = wasmtime_run_with(
        &composed,
        &["-W", "max-memory-size=140000000"],
        &[(&models, "/models")],
        &[&prompt, "--max-tokens", "4"],
    );
    assert_one_line_error(&out, "out of memory: the kv cache of");
}
