//! Serving benchmarks (`just bench-serve`), two tables:
//!
//! 1. Streaming under load: 64-token greedy streamed chats, each client with its own question,
//!    at 1, 8 and 32 concurrent clients, against `edge-llm serve --concurrency N` (native
//!    backend, whose concurrent sessions decode in batches) and llama.cpp's `llama-server -np
//!    N` (continuous batching; the binary in $LLAMA_SERVER, threads $LLAMA_SERVER_THREADS or
//!    the cores) in the same run: aggregate tokens/s
//!    (text events of all requests over the wall time of the run), aggregate decode tokens/s
//!    (see [`decode_tok_s`]), p50/p95 request latency, p50
//!    and p95 time to first token, and each server's peak RSS. Each row is a fresh server,
//!    first warmed up by one request per client at once. Then edge-llm's 8-against-1 ratio
//!    again, as the median of [`PAIRS`] pairs of its 1- and 8-stream rows run back to back.
//! 2. Requests: 16-token greedy chat completions at client concurrency 1 and 8, against `edge-llm
//!    serve` and the stock `wasmtime serve` running the single-file component (a fresh instance
//!    per request, the guest's own kernel).
//!
//! Both servers run the default model, or the file named by `EDGE_LLM_MODEL` (then the second
//! table, whose bundle holds the default model, is not run).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edge_llm_tests::http::{post_streamed, Server, Streamed};
use edge_llm_tests::load::{self, memory_kib};
use edge_llm_tests::{default_model, http_bundle_wasm, temp_dir};
use serde_json::{json, Value};

/// Requests per client (16-token table).
const PER_CLIENT: usize = 6;

/// Pairs of edge-llm rows (1 and 8 streams) run back to back for the 8-against-1 ratio (odd, so
/// the median is one of them).
const PAIRS: usize = 5;

/// Tokens each streamed chat asks for.
const STREAM_TOKENS: usize = 64;

/// Context positions per slot given to llama-server (prompt + 64 tokens fit).
const SLOT_CTX: usize = 512;

fn question(n: usize) -> Value {
    json!({
        "messages": [{"role": "user", "content": format!("Question {n}: what is {n} plus {n}?")}],
        "max_tokens": 16,
        "temperature": 0,
    })
}

/// A chat that runs to its token limit (a long answer asked for).
fn story(n: usize) -> Value {
    json!({
        "messages": [{"role": "user", "content": format!("Write a long story about a town called Number {n}.")}],
        "max_tokens": STREAM_TOKENS,
        "temperature": 0,
        "stream": true,
    })
}

/// `clients` clients each streaming `per_client` chats one after another.
fn stream_load(addr: SocketAddr, clients: usize, per_client: usize) -> (Vec<Streamed>, Duration) {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let results = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    (0..per_client)
                        .map(|_| {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            post_streamed(addr, "/v1/chat/completions", &story(i))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("client thread"))
            .collect()
    });
    (results, started.elapsed())
}

fn percentile_ms(mut v: Vec<Duration>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

/// Aggregate decode tokens/s of `clients` clients streaming `results`: the tokens after each
/// request's first over the time from its first token to its last, summed over the requests,
/// times the clients streaming at once. Each request's prefill (its time to first token) is
/// left out; the other clients' prompts that run while a request decodes are not.
fn decode_tok_s(results: &[Streamed], clients: usize) -> f64 {
    let (mut tokens, mut secs) = (0usize, 0f64);
    for r in results {
        if let Some(first) = r.first_text {
            tokens += r.text_events.saturating_sub(1);
            secs += (r.total - first).as_secs_f64();
        }
    }
    clients as f64 * tokens as f64 / secs
}

/// One streaming row measured: aggregate tokens/s, all and decode ([`decode_tok_s`]), and the
/// requests.
struct Row {
    tok_s: f64,
    decode: f64,
    results: Vec<Streamed>,
}

/// One streaming row: one warm-up request per client, all at once (every instance or slot
/// has then served once), then the load.
fn measure_row(name: &str, server: &Server, clients: usize) -> Row {
    let (warm, _) = stream_load(server.addr, clients, 1);
    let failed = warm.iter().filter(|r| !r.complete).count();
    assert_eq!(failed, 0, "{name}: warm-up failed: {}", server.log());
    // At least 4 requests a row, at least 2 per client below 32 clients.
    let per_client = if clients >= 32 {
        1
    } else {
        (4 / clients).max(2)
    };
    let (results, wall) = stream_load(server.addr, clients, per_client);
    let failed = results
        .iter()
        .filter(|r| r.status != 200 || !r.complete)
        .count();
    assert_eq!(
        failed,
        0,
        "{name}: {failed} requests failed: {}",
        server.log()
    );
    let tokens: usize = results.iter().map(|r| r.text_events).sum();
    Row {
        tok_s: tokens as f64 / wall.as_secs_f64(),
        decode: decode_tok_s(&results, clients),
        results,
    }
}

/// [`measure_row`], printed as a table row; returns the aggregate tokens/s, all and decode.
fn stream_row(name: &str, server: &Server, clients: usize) -> (f64, f64) {
    let Row {
        tok_s,
        decode,
        results,
    } = measure_row(name, server, clients);
    let tokens: usize = results.iter().map(|r| r.text_events).sum();
    let total: Vec<Duration> = results.iter().map(|r| r.total).collect();
    let first: Vec<Duration> = results.iter().filter_map(|r| r.first_text).collect();
    println!(
        "| {name} | {clients} | {tok_s:.0} | {decode:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
        tokens as f64 / results.len() as f64,
        percentile_ms(total.clone(), 0.5),
        percentile_ms(total, 0.95),
        percentile_ms(first.clone(), 0.5),
        percentile_ms(first, 0.95),
        memory_kib(server.pid(), "VmHWM") / 1024,
    );
    (tok_s, decode)
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
    let chosen = std::env::var_os("EDGE_LLM_MODEL")
        .filter(|m| !m.is_empty())
        .map(PathBuf::from);
    let model = chosen.clone().unwrap_or_else(default_model);
    let llama_server = std::env::var_os("LLAMA_SERVER").map(PathBuf::from);
    // llama-server's threads (default: the cores). On a machine shared with other work its
    // threads spin at each barrier against the other processes: there `-t 2` on 2 cores
    // decoded 5-11 tokens/s and `-t 1` 124-153, so LLAMA_SERVER_THREADS may set it.
    let llama_threads = std::env::var("LLAMA_SERVER_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!(
        "Streamed {STREAM_TOKENS}-token greedy chats, N clients at once, a fresh server per row:\n"
    );
    println!("| server | clients | tokens/s (all) | decode tokens/s | tokens/request | p50 ms | p95 ms | first token p50 ms | first token p95 ms | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let cache = temp_dir("serve-bench");
    let model_arg = model.to_string_lossy();
    // `edge-llm serve --concurrency N`, on the chosen model if one is.
    let edge_llm = |clients: usize| {
        let n = clients.to_string();
        let mut args = vec!["--concurrency", &n];
        if chosen.is_some() {
            args.extend(["--model", &model_arg]);
        }
        Server::edge_llm(&args, &cache)
    };
    for clients in [1, 8, 32] {
        let n = clients.to_string();
        let server = edge_llm(clients);
        ours.push(stream_row(
            &format!("edge-llm serve --concurrency {n}"),
            &server,
            clients,
        ));
        drop(server);
        let Some(bin) = &llama_server else { continue };
        let ctx = (clients * SLOT_CTX).to_string();
        let threads = llama_threads.to_string();
        let args = ["-np", &n, "-c", &ctx, "-t", &threads, "--no-webui"];
        let server = Server::llama_server(bin, &model, &args);
        theirs.push(stream_row(
            &format!("llama-server -np {n} -t {threads}"),
            &server,
            clients,
        ));
    }
    println!();
    // (all, decode) tokens/s of `a` over those of `b`, and printed.
    let over = |a: (f64, f64), b: (f64, f64)| (a.0 / b.0, a.1 / b.1);
    let show = |(all, decode): (f64, f64)| format!("{all:.2}x (decode {decode:.2}x)");
    let ratio = |a, b| show(over(a, b));
    println!("edge-llm, 8 streams against 1: {}", ratio(ours[1], ours[0]));
    if theirs.len() == ours.len() {
        println!(
            "edge-llm against llama-server at 8 streams: {}",
            ratio(ours[1], theirs[1])
        );
        println!(
            "edge-llm against llama-server at 32 streams: {}",
            ratio(ours[2], theirs[2])
        );
    } else {
        println!("(llama-server not measured: set LLAMA_SERVER to its binary)");
    }
    // The machine's speed drifts between rows, and one stream's row is short: the 8-against-1
    // ratio again from pairs of rows run one after the other, and their median.
    println!("\nedge-llm, 8 streams against 1 in {PAIRS} pairs of rows run back to back:");
    let (all, decode): (Vec<f64>, Vec<f64>) = (0..PAIRS)
        .map(|_| {
            let [one, eight] = [1, 8].map(|clients| {
                let row = measure_row("pair", &edge_llm(clients), clients);
                (row.tok_s, row.decode)
            });
            println!(
                "  {:.0} and {:.0} tokens/s: {}",
                one.0,
                eight.0,
                ratio(eight, one)
            );
            over(eight, one)
        })
        .unzip();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("  median {}", show((median(all), median(decode))));

    if chosen.is_some() {
        return;
    }
    println!("\n16-token chat completions:\n");
    println!("| server | clients | p50 ms | p95 ms | requests/s | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    let native = Server::edge_llm(&[], &cache);
    bench("edge-llm serve (native)", &native);
    drop(native);
    let wasmtime = Server::wasmtime(&http_bundle_wasm(), &[]);
    bench("wasmtime serve (bundle, kernel)", &wasmtime);
}
