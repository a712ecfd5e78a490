//! Latency and throughput of the two servers (`just bench-serve`): 16-token greedy chat
//! completions, each with its own question, at client concurrency 1 and 8, against `edge-llm
//! serve` (native backend, default settings) and the stock `wasmtime serve` running the
//! single-file component (a fresh instance per request, the guest's own kernel). Prints a
//! markdown table: p50/p95 latency, requests/s, and the server's peak RSS.

use edge_llm_tests::http::Server;
use edge_llm_tests::load::{self, memory_kib};
use edge_llm_tests::{http_bundle_wasm, temp_dir};
use serde_json::{json, Value};

/// Requests per client.
const PER_CLIENT: usize = 6;

fn question(n: usize) -> Value {
    json!({
        "messages": [{"role": "user", "content": format!("Question {n}: what is {n} plus {n}?")}],
        "max_tokens": 16,
        "temperature": 0,
    })
}

fn bench(name: &str, server: &Server) {
    let path = "/v1/chat/completions";
    // One warm-up request: the first of a fresh server touches everything once.
    assert_eq!(load::run(server.addr, path, 1, 1, question).errors, 0);
    for clients in [1, 8] {
        let r = load::run(server.addr, path, clients * PER_CLIENT, clients, |i| {
            question(1000 * clients + i)
        });
        assert_eq!(r.errors, 0, "{}", server.log());
        println!(
            "| {name} | {clients} | {:.0} | {:.0} | {:.2} | {} |",
            r.percentile_ms(0.5),
            r.percentile_ms(0.95),
            r.requests_per_s(),
            memory_kib(server.pid(), "VmHWM") / 1024,
        );
    }
}

fn main() {
    println!("| server | clients | p50 ms | p95 ms | requests/s | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    let native = Server::edge_llm(&[], &temp_dir("serve-bench"));
    bench("edge-llm serve (native)", &native);
    drop(native);
    let wasmtime = Server::wasmtime(&http_bundle_wasm(), &[]);
    bench("wasmtime serve (bundle, kernel)", &wasmtime);
}
