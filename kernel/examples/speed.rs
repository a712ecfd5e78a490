//! Rough tokens/s of prefill (32, 128) and decode (64) on a model, for targets where criterion
//! does not run (wasm32-wasip2 under wasmtime).
//!
//! Usage: `cargo run -p edge-llm-kernel --release --example speed -- MODEL.gguf [THREADS] [gguf]
//! [decode] [depth=N] [vnni-256 | vnni-off]` (`gguf`: keep the file's Q4_1 layout instead of
//! repacking it, to compare the two; `decode`: only the decode run, once, e.g. under a profiler;
//! `depth=N`: decode after a prompt of N tokens instead of from an empty cache, as `llama-bench
//! -d N` does; `vnni-256`, `vnni-off`: the AVX2 kernels' widest AVX-512 VNNI, see
//! `simd::allow_vnni`).

use std::sync::Arc;
use std::time::Instant;

use edge_llm_kernel::simd::{self, Vnni};
use edge_llm_kernel::{Model, Session, SessionOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: speed MODEL.gguf [THREADS] [gguf] [decode]");
        std::process::exit(2);
    };
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let flags: Vec<String> = args.collect();
    let gguf_layout = flags.iter().any(|f| f == "gguf");
    let decode_only = flags.iter().any(|f| f == "decode");
    let depth: usize = flags
        .iter()
        .find_map(|f| f.strip_prefix("depth=")?.parse().ok())
        .unwrap_or(0);
    if flags.iter().any(|f| f == "vnni-256") {
        simd::allow_vnni(Vnni::Bits256);
    } else if flags.iter().any(|f| f == "vnni-off") {
        simd::allow_vnni(Vnni::Off);
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(1);
        }
    };
    let t_load = Instant::now();
    let loaded = if gguf_layout {
        Model::load(Arc::new(bytes))
    } else {
        Model::load_packed(bytes)
    };
    let model = match loaded {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("load: {:.1} ms", t_load.elapsed().as_secs_f64() * 1e3);
    let opts = SessionOptions {
        n_ctx: depth + 512,
        threads,
    };
    let Ok(mut s) = Session::new(model, opts) else {
        eprintln!("cannot create a session");
        std::process::exit(1);
    };
    let toks: Vec<u32> = (0..128).map(|i| 200 + i * 13).collect();
    let (prefill, rounds): (&[usize], usize) = if decode_only {
        (&[], 1)
    } else {
        (&[32, 128], 3)
    };
    for &n in prefill {
        let mut best = f64::MAX;
        for _ in 0..3 {
            s.truncate(0);
            let t0 = Instant::now();
            let _ = s.forward(&toks[..n], &|| false);
            best = best.min(t0.elapsed().as_secs_f64());
        }
        println!("pp{n}: {:.1} tok/s", n as f64 / best);
    }
    // The depth's prompt, run once in chunks; each round decodes after it.
    let prompt: Vec<u32> = (0..depth as u32).map(|i| 200 + (i * 13) % 40_000).collect();
    s.truncate(0);
    for chunk in prompt.chunks(512) {
        if let Err(e) = s.forward(chunk, &|| false) {
            eprintln!("the {depth}-token prompt: {e}");
            std::process::exit(1);
        }
    }
    let mut best = f64::MAX;
    for _ in 0..rounds {
        s.truncate(depth);
        let t0 = Instant::now();
        for i in 0..64u32 {
            let _ = s.forward(&[1 + i], &|| false);
        }
        best = best.min(t0.elapsed().as_secs_f64());
    }
    match depth {
        0 => println!("tg64: {:.1} tok/s", 64.0 / best),
        d => println!("tg64 @ d{d}: {:.1} tok/s", 64.0 / best),
    }
}
