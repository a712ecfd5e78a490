//! Bounded load on both servers (the 500-request runs behind RELIABILITY.md are `just load`):
//! every request succeeds and the server's memory does not grow beyond its warm-up.

use edge_llm_tests::http::Server;
use edge_llm_tests::load::{self, memory_kib};
use edge_llm_tests::{http_bundle_wasm, temp_dir};
use serde_json::{json, Value};

fn short_chat(i: usize) -> Value {
    json!({
        "messages": [{"role": "user", "content": format!("Say {i}.")}],
        "max_tokens": 4,
        "temperature": 0,
    })
}

/// The server's resident memory once the requests have settled (`wasmtime serve` keeps an
/// idle instance for a second before dropping it).
fn settled_rss_kib(server: &Server) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(1500));
    memory_kib(server.pid(), "VmRSS")
}

/// Warm-up, then `total` requests at concurrency 8: no errors, RSS growth within `slack_mib`.
fn steady_under_load(server: &Server, warm_up: usize, total: usize, slack_mib: u64) {
    let path = "/v1/chat/completions";
    let warm = load::run(server.addr, path, warm_up, 8, short_chat);
    assert_eq!(warm.errors, 0);
    let before = settled_rss_kib(server);
    let report = load::run(server.addr, path, total, 8, |i| short_chat(warm_up + i));
    let after = settled_rss_kib(server);
    eprintln!(
        "{total} requests: {} errors, p50 {:.0} ms, p99 {:.0} ms, {:.1} req/s, RSS {before} -> {after} KiB",
        report.errors,
        report.percentile_ms(0.5),
        report.percentile_ms(0.99),
        report.requests_per_s()
    );
    assert_eq!(report.errors, 0, "{}", server.log());
    assert!(
        after <= before + slack_mib * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn edge_llm_serve_stays_steady_under_load() {
    let server = Server::edge_llm(&[], &temp_dir("load-native"));
    steady_under_load(&server, 48, 200, 16);
}

#[test]
fn wasmtime_serve_stays_steady_under_load() {
    let server = Server::wasmtime(&http_bundle_wasm(), &[]);
    steady_under_load(&server, 24, 96, 16);
}
