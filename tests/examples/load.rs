//! The load runs behind RELIABILITY.md (`just load`): N requests (default 500) at concurrency 8
//! against `edge-llm serve` and the stock `wasmtime serve`, after a warm-up; errors, latency
//! percentiles, requests/s and RSS before and after, as a markdown table, plus the RSS after
//! each fifth of the run (growth that does not level off would show there).

use edge_llm_tests::http::Server;
use edge_llm_tests::load::{self, memory_kib};
use edge_llm_tests::{http_bundle_wasm, temp_dir};
use serde_json::json;

/// Resident memory once idle instances are gone (`wasmtime serve` keeps one for a second).
fn settled_rss_mib(server: &Server) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(1500));
    memory_kib(server.pid(), "VmRSS") / 1024
}

fn run(name: &str, server: &Server, total: usize) {
    let body = |i: usize| {
        json!({
            "messages": [{"role": "user", "content": format!("Say {i}.")}],
            "max_tokens": 4,
            "temperature": 0,
        })
    };
    let path = "/v1/chat/completions";
    let warm = load::run(server.addr, path, 48, 8, body);
    let before = settled_rss_mib(server);
    let mut rss = Vec::new();
    let mut reports = Vec::new();
    for part in 0..5 {
        let offset = 1000 + part * total / 5;
        reports.push(load::run(server.addr, path, total / 5, 8, |i| {
            body(offset + i)
        }));
        rss.push(settled_rss_mib(server));
    }
    let errors: usize = warm.errors + reports.iter().map(|r| r.errors).sum::<usize>();
    let mut all = load::LoadReport {
        latencies: reports.iter().flat_map(|r| r.latencies.clone()).collect(),
        errors,
        wall: reports.iter().map(|r| r.wall).sum(),
    };
    all.latencies.sort();
    println!(
        "| {name} | {total} | {errors} | {:.0} | {:.0} | {:.0} | {:.1} | {} | {} | {:?} |",
        all.percentile_ms(0.5),
        all.percentile_ms(0.95),
        all.percentile_ms(0.99),
        all.requests_per_s(),
        before,
        rss.last().copied().unwrap_or_default(),
        rss,
    );
}

fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    println!("| server | requests | errors | p50 ms | p95 ms | p99 ms | req/s | RSS before MiB | RSS after MiB | RSS after each fifth |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let native = Server::edge_llm(&[], &temp_dir("load-native"));
    run("edge-llm serve", &native, total);
    drop(native);
    let wasmtime = Server::wasmtime(&http_bundle_wasm(), &[]);
    run("wasmtime serve", &wasmtime, total);
}
