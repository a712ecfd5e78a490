//! The server conveniences and embeddings of the HTTP component under both servers, through
//! the official `openai` Python client (`tests/clients/openai_extras.py`): `/v1/embeddings`
//! (float and base64, against llama.cpp's vectors), API keys (401 without, 200 with), CORS
//! (preflight and response headers), `/tokenize` and `/detokenize`, and, under `edge-llm
//! serve`, `/metrics`.

use std::process::Command;

use edge_llm_tests::http::Server;
use edge_llm_tests::{http_bundle_wasm, root, temp_dir};
use serde_json::Value;

const MODEL: &str = "smollm2-135m-instruct";
const KEY: &str = "sk-test-key";
const ORIGIN: &str = "http://localhost:3000";

/// Runs the client script against `server`; returns what it saw.
fn check_extras(server: &Server, metrics: bool) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("tests/clients/openai_extras.py"))
        .arg(format!("http://{}", server.addr))
        .args([MODEL, KEY, ORIGIN])
        .arg(edge_llm_refs::path("embeddings.json"));
    if metrics {
        cmd.arg("--metrics");
    }
    let out = cmd.output().expect("running python3");
    assert!(
        out.status.success(),
        "the client checks failed (`just tools` installs openai and prometheus-client): {}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
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
