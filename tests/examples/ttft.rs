//! Time to first token under load (`cargo run --release -p edge-llm-tests --example ttft`):
//! `edge-llm serve --concurrency 8` ($EDGE_LLM_BIN, else this checkout's), and for each of
//! two loads the p50/p95 time from sending a streamed chat to its first text event:
//!
//! - **idle**: one client at a time;
//! - **burst**: 8 clients that start their chats at the same moment (as `just bench-serve`'s
//!   8-client row does), 3 rounds;
//! - **joining**: 7 clients keep streaming long chats while an 8th sends a short chat every
//!   300 ms: what a request arriving at a server busy decoding waits.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Duration;

use edge_llm_tests::http::{post_streamed, Server};
use edge_llm_tests::temp_dir;
use serde_json::{json, Value};

fn chat(n: usize, max_tokens: usize) -> Value {
    json!({
        "messages": [{"role": "user", "content": format!("Write a long story about a town called Number {n}.")}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": true,
    })
}

fn first_ms(addr: SocketAddr, n: usize, max_tokens: usize) -> f64 {
    let r = post_streamed(addr, "/v1/chat/completions", &chat(n, max_tokens));
    assert!(r.status == 200 && r.complete, "request {n}: {r:?}");
    r.first_text.expect("a text event").as_secs_f64() * 1e3
}

fn report(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} |",
        v.len(),
        p(0.5),
        p(0.95),
        v[v.len() - 1]
    );
}

fn main() {
    // $TTFT_ADDR: a server already running (started with `--concurrency 8`).
    let (server, addr) = match std::env::var("TTFT_ADDR") {
        Ok(a) => (None, a.parse().expect("TTFT_ADDR: host:port")),
        Err(_) => {
            let server = Server::edge_llm(&["--concurrency", "8"], &temp_dir("ttft"));
            let addr = server.addr;
            (Some(server), addr)
        }
    };
    let next = AtomicUsize::new(0);
    let id = || next.fetch_add(1, Ordering::Relaxed);
    // Every instance serves once first.
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| first_ms(addr, id(), 8));
        }
    });
    println!("| load | requests | first token p50 ms | p95 ms | max ms |");
    println!("|---|---|---|---|---|");
    report("idle", (0..12).map(|_| first_ms(addr, id(), 16)).collect());

    let barrier = Barrier::new(8);
    let burst: Vec<f64> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..3)
                        .map(|_| {
                            barrier.wait();
                            first_ms(addr, id(), 64)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client thread"))
            .collect()
    });
    report("burst of 8", burst);

    let stop = AtomicBool::new(false);
    let joining: Vec<f64> = std::thread::scope(|s| {
        for _ in 0..7 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    first_ms(addr, id(), 256);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        let probes = (0..20)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(300));
                first_ms(addr, id(), 16)
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        probes
    });
    report("joining 7 decoding", joining);
    drop(server);
}
