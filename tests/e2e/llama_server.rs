//! llama.cpp's own server tests, adapted (`tests/clients/llama_server_cases.py`), against both
//! servers: `edge-llm serve` (native backend) and the stock `wasmtime serve` running the
//! single-file bundle (the guest's own kernel). Each runs with an API key, a CORS origin and
//! the model alias `*`, as llama.cpp's tests run `llama-server`; the script also checks that
//! every test in llama.cpp's suite (`just llama-server-tests`) is adapted or listed as not
//! applicable with the reason.

use std::path::PathBuf;
use std::time::Instant;

use edge_llm_tests::http::Server;
use edge_llm_tests::{http_bundle_wasm, root, temp_dir};
use serde_json::Value;

const MODEL: &str = "smollm2-135m-instruct";
const KEY: &str = "sk-this-is-the-secret-key";
const ORIGIN: &str = "http://web.mydomain.fr";

/// `build/llama-server-tests`, unpacked from the llama-cpp-python sdist.
fn llama_tests() -> PathBuf {
    let dir = root().join("build/llama-server-tests");
    assert!(
        dir.join(".complete").exists(),
        "llama.cpp's server tests are missing from {}: run `just llama-server-tests`",
        dir.display()
    );
    dir
}

/// Runs the cases against `server`; returns the script's summary.
fn run_cases(server: &Server, warm_cache: bool) -> Value {
    let started = Instant::now();
    let tests = llama_tests();
    let mut args = vec![
        MODEL.as_ref(),
        KEY.as_ref(),
        ORIGIN.as_ref(),
        tests.as_os_str(),
    ];
    if warm_cache {
        args.push("--warm-cache".as_ref());
    }
    let summary = server.client("llama_server_cases.py", &args);
    eprintln!("{summary} in {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(summary["failed"], 0, "{summary}");
    assert!(
        summary["adapted"].as_u64().is_some_and(|n| n >= 70),
        "{summary}"
    );
    summary
}

#[test]
fn llama_cpp_server_tests_pass_against_edge_llm_serve() {
    let cache = temp_dir("llama-server-native");
    // One instance, so that a repeated prompt finds its prefix in that instance's cache.
    let server = Server::edge_llm(
        &[
            "--api-key",
            KEY,
            "--cors-origin",
            ORIGIN,
            "--model-alias",
            "*",
            "--concurrency",
            "1",
        ],
        &cache,
    );
    run_cases(&server, true);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn llama_cpp_server_tests_pass_against_wasmtime_serve() {
    let component = http_bundle_wasm();
    let server = Server::wasmtime(
        &component,
        &[
            "--env",
            &format!("EDGE_LLM_API_KEYS={KEY}"),
            "--env",
            &format!("EDGE_LLM_CORS_ORIGINS={ORIGIN}"),
            "--env",
            "EDGE_LLM_MODEL_ALIASES=*",
        ],
    );
    run_cases(&server, false);
}
