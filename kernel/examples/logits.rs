//! Teacher-forced logits of a model at chosen token ids, for comparisons against other
//! implementations (`tests/peers/fidelity.py`).
//!
//! Reads one JSON object per line on stdin, `{"tokens": [...], "from": F, "ids": [[...], ...]}`,
//! runs `tokens` through a fresh session and prints one JSON line per position `i >= F`:
//! `{"argmax": A, "logits": [...]}`, the id of the largest logit after token `i` and the logits
//! at `ids[i - F]`.
//!
//! Usage: `cargo run -p edge-llm-kernel --release --example logits -- MODEL.gguf [THREADS]`

use std::io::BufRead;
use std::sync::Arc;

use edge_llm_kernel::{Model, Session, SessionOptions};
use serde_json::{json, Value};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: logits MODEL.gguf [THREADS] < requests.jsonl");
        std::process::exit(2);
    };
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    if let Err(e) = run(&path, threads) {
        eprintln!("logits: {e}");
        std::process::exit(1);
    }
}

fn run(path: &str, threads: usize) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let model = Arc::new(Model::load(Arc::new(bytes)).map_err(|e| format!("{path}: {e}"))?);
    let n_vocab = model.config().n_vocab;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let req: Value = serde_json::from_str(&line).map_err(|e| format!("request: {e}"))?;
        let ids = |v: &Value| -> Vec<u32> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_u64())
                        .map(|t| t as u32)
                        .collect()
                })
                .unwrap_or_default()
        };
        let tokens = ids(&req["tokens"]);
        let from = req["from"].as_u64().unwrap_or(0) as usize;
        let wanted: Vec<Vec<u32>> = req["ids"]
            .as_array()
            .map(|a| a.iter().map(ids).collect())
            .unwrap_or_default();
        let n_ctx = tokens.len().max(1);
        let mut session = Session::new(model.clone(), SessionOptions { n_ctx, threads })
            .map_err(|e| format!("session: {e}"))?;
        let logits = session
            .forward_all(&tokens, &|| false)
            .map_err(|e| format!("forward: {e}"))?;
        for (i, row) in logits.chunks_exact(n_vocab).enumerate().skip(from) {
            let argmax = (0..n_vocab)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            let at: Vec<f32> = wanted
                .get(i - from)
                .map(|w| w.iter().map(|&t| row[t as usize]).collect())
                .unwrap_or_default();
            println!("{}", json!({ "argmax": argmax, "logits": at }));
        }
    }
    Ok(())
}
