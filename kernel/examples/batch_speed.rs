//! Aggregate decode tokens/s of B sessions stepping together ([`Batch`]) against one session:
//! each session first caches a 32-token prompt, then 64 steps of one token each are timed (in
//! all, and each step alone: its fastest and median time, which a busy machine moves less).
//!
//! Usage: `cargo run -p edge-llm-kernel --release --example batch_speed -- MODEL.gguf [THREADS]
//! [B...]` (default B: 1 8 32).

use std::sync::Arc;
use std::time::Instant;

use edge_llm_kernel::{Batch, Model, Session, SessionOptions, Step};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: batch_speed MODEL.gguf [THREADS] [B...]");
        std::process::exit(2);
    };
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let mut widths: Vec<usize> = args.filter_map(|b| b.parse().ok()).collect();
    if widths.is_empty() {
        widths = vec![1, 8, 32];
    }
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("cannot read {path}: {e}");
        std::process::exit(1);
    });
    let model = Arc::new(Model::load_packed(bytes).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    }));
    let n_vocab = model.config().n_vocab as u32;
    let options = SessionOptions {
        n_ctx: 256,
        threads,
    };
    let never = || false;
    for b in widths {
        let mut sessions: Vec<Session> = (0..b)
            .map(|i| {
                let mut s = Session::new(model.clone(), options).expect("session");
                let prompt: Vec<u32> = (0..32)
                    .map(|t| (i as u32 * 97 + t * 13) % n_vocab)
                    .collect();
                s.forward(&prompt, &never).expect("prompt");
                s
            })
            .collect();
        let mut batch = Batch::new();
        let steps = 64;
        let started = Instant::now();
        let mut times = Vec::with_capacity(steps as usize);
        for step in 0..steps {
            let step_started = Instant::now();
            let tokens: Vec<[u32; 1]> = (0..b)
                .map(|i| [(i as u32 * 31 + step * 7 + 5) % n_vocab])
                .collect();
            let mut st: Vec<Step<'_>> = sessions
                .iter_mut()
                .zip(&tokens)
                .map(|(session, t)| Step {
                    session,
                    tokens: t,
                    from: 0,
                    cancel: &never,
                })
                .collect();
            for r in batch.forward(&mut st) {
                r.expect("step");
            }
            times.push(step_started.elapsed().as_secs_f64() * 1e3);
        }
        let secs = started.elapsed().as_secs_f64();
        times.sort_by(f64::total_cmp);
        println!(
            "B={b:>3}: {:.1} ms a step, {:.0} tokens/s in all, {threads} thread(s); step min {:.2} ms, median {:.2} ms",
            secs * 1e3 / f64::from(steps),
            (b * steps as usize) as f64 / secs,
            times[0],
            times[times.len() / 2],
        );
    }
}
