//! The server conveniences and embeddings of the HTTP component under both servers, through
//! the official `openai` Python client (`tests/clients/openai_extras.py`): `/v1/embeddings`
//! (float and base64, against llama.cpp's vectors), API keys (401 without, 200 with), CORS
//! (preflight and response headers), `/tokenize` and `/detokenize`, and, under `edge-llm
//! serve`, `/metrics`.

use edge_llm_tests::http::Server;
use edge_llm_tests::{http_bundle_wasm, temp_dir};
use serde_json::Value;

const MODEL: &str = "smollm2-135m-instruct";
const KEY: &str = "sk-test-key";
const ORIGIN: &str = "http://localhost:3000";

/// Runs the client script against `server`; returns what it saw.
fn check_extras(server: &Server, metrics: bool) -> Value {
    let refs = edge_llm_refs::path("embeddings.json");
    let mut args = vec![
        MODEL.as_ref(),
        KEY.as_ref(),
        ORIGIN.as_ref(),
        refs.as_os_str(),
    ];
    if metrics {
        args.push("--metrics".as_ref());
    }
    let seen = server.client("openai_extras.py", &args);
    eprintln!("{seen}");
    seen
}

#[test]
fn edge_llm_serve_embeds_and_guards_with_keys_cors_and_metrics() {
    let cache = temp_dir("serve-extras");
    let server = Server::edge_llm(
        &[
            "--api-key",
            "another-key",
            "--api-key",
            KEY,
            "--cors-origin",
            ORIGIN,
        ],
        &cache,
    );
    let native = check_extras(&server, true);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    // The guest's kernel under the stock `wasmtime serve` gives the very same vectors.
    let component = http_bundle_wasm();
    let server = Server::wasmtime(
        &component,
        &[
            "--env",
            &format!("EDGE_LLM_API_KEYS={KEY}"),
            "--env",
            &format!("EDGE_LLM_CORS_ORIGINS={ORIGIN}"),
        ],
    );
    let wasm = check_extras(&server, false);
    assert_eq!(native["cosines"], wasm["cosines"]);
    assert_eq!(native["tokens"], wasm["tokens"]);
}
