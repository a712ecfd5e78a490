//! Forward-pass tokens/s on the real model: prefill 32 and 128 tokens, decode 64 tokens, at 1
//! and 2 threads (llama-bench's pp32 / pp128 / tg64). Skips if the model is missing.
#![allow(clippy::unwrap_used, clippy::cast_lossless)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edge_llm_kernel::{Model, Session, SessionOptions};

fn bench(c: &mut Criterion) {
    let path = std::env::var("EDGE_LLM_MODEL").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/SmolLM2-135M-Instruct.Q4_1.gguf"
        )
        .into()
    });
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("model missing at {path}: run `just model`; skipping forward benches");
        return;
    };
    // As the native backend loads it: Q4_1 repacked where that pays.
    let model = Arc::new(Model::load_packed(bytes).expect("model loads"));
    let toks: Vec<u32> = (0..128).map(|i| 200 + i * 13).collect();
    let mut g = c.benchmark_group("forward");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for threads in [1usize, 2] {
        let opts = SessionOptions {
            n_ctx: 512,
            threads,
        };
        let mut s = Session::new(model.clone(), opts).expect("session");
        for n in [32usize, 128] {
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(format!("pp{n}/t{threads}"), |b| {
                b.iter(|| {
                    s.truncate(0);
                    s.forward(&toks[..n], &|| false).expect("prefill")[0]
                })
            });
        }
        g.throughput(Throughput::Elements(64));
        g.bench_function(format!("tg64/t{threads}"), |b| {
            b.iter(|| {
                s.truncate(0);
                let mut t = 1u32;
                for _ in 0..64 {
                    let l = s.forward(&[t], &|| false).expect("decode");
                    t = (l
                        .iter()
                        .enumerate()
                        .fold((0, f32::MIN), |m, (i, &v)| if v > m.1 { (i, v) } else { m })
                        .0) as u32;
                }
                t
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
