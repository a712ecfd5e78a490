//! Latency and throughput of the two servers (`just bench-serve`): 16-token greedy chat
//! completions, each with its own question, at client concurrency 1 and 8, against `edge-llm
//! serve` (native backend, default settings) and the stock `wasmtime serve` running the
//! single-file component (a fresh instance per request, the guest's own kernel). Prints a
//! markdown table: p50/p95 latency, requests/s, and the server's peak RSS.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edge_llm_tests::http::{post_json, Server};
use edge_llm_tests::{http_bundle_wasm, temp_dir};
use serde_json::json;

/// Requests per client thread.
const PER_CLIENT: usize = 6;

fn chat(addr: SocketAddr, n: usize) -> Duration {
    let body = json!({
        "messages": [{"role": "user", "content": format!("Question {n}: what is {n} plus {n}?")}],
        "max_tokens": 16,
        "temperature": 0,
    });
    let started = Instant::now();
    let r = post_json(addr, "/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    started.elapsed()
}

/// Latencies of `clients * PER_CLIENT` requests and the wall time they took.
fn run(addr: SocketAddr, clients: usize) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    (0..PER_CLIENT)
                        .map(|i| chat(addr, 1000 + c * PER_CLIENT + i))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client"))
            .collect()
    });
    let wall = started.elapsed();
    latencies.sort();
    (latencies, wall)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Peak resident memory of a process, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn bench(name: &str, server: &Server) {
    // Warm-up: the first request of a fresh server compiles nothing but touches everything.
    chat(server.addr, 0);
    for clients in [1, 8] {
        let (latencies, wall) = run(server.addr, clients);
        println!(
            "| {name} | {clients} | {:.0} | {:.0} | {:.2} | {:.0} |",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.95),
            latencies.len() as f64 / wall.as_secs_f64(),
            peak_rss_mib(server.pid()),
        );
    }
}

fn main() {
    println!("| server | clients | p50 ms | p95 ms | requests/s | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    let cache = temp_dir("serve-bench");
    let native = Server::edge_llm(&[], &cache);
    bench("edge-llm serve (native)", &native);
    drop(native);
    let wasmtime = Server::wasmtime(&http_bundle_wasm(), &[]);
    bench("wasmtime serve (bundle, kernel)", &wasmtime);
}
