//! Matmul throughput of this target's best kernels for the types that repack eight rows at a
//! time (Q4_1, Q4_0, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K; or the one named), GGUF layout against the repacked one, in
//! alternating rounds (so a slow phase of the machine hits both), for targets
//! where criterion does not run (wasm32-wasip2 under wasmtime). Each round also checks that the
//! two layouts give the same bits.
//!
//! With the argument `types`, instead: every weight type's matmul (this target's best kernel
//! and the scalar reference) on a 1024 × 1536 matrix, time per call and speed relative to
//! Q4_1 in the GGUF layout, in element throughput (weights × tokens per second).
//!
//! Usage: `cargo run -p edge-llm-kernel --release --example matmul_speed [types | TYPE]`

use std::time::Instant;

use edge_llm_kernel::gguf::GgmlType;
use edge_llm_kernel::quant::{self, q8_1, q8_k, QK, QK_K};
use edge_llm_kernel::rng::SplitMix64;
use edge_llm_kernel::simd::{self, Acts, Isa, Vnni};

fn main() {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("types") {
        return types();
    }
    if arg.as_deref() == Some("run") {
        return run();
    }
    let isa = Isa::best();
    let mut rng = SplitMix64::new(7);
    println!("{} kernels; GB/s of weights", isa.name());
    let all = [
        GgmlType::Q4_1,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];
    let tys: Vec<GgmlType> = match arg {
        Some(name) => all.into_iter().filter(|t| t.name() == name).collect(),
        None => all.to_vec(),
    };
    for ty in tys {
        for (rows, cols) in [(1536usize, 576usize), (576, 1536), (576, 576)] {
            if cols % ty.block_size() as usize != 0 {
                continue;
            }
            let wf: Vec<f32> = (0..rows * cols).map(|_| rng.normal(0.05)).collect();
            let mut w = Vec::new();
            quant::quantize_row(ty, &wf, &mut w);
            let mut packed = w.clone();
            simd::repack(ty, &mut packed, cols, &mut Vec::new());
            for n_tok in [1usize, 32, 128] {
                let x: Vec<f32> = (0..n_tok * cols).map(|_| rng.next_f32() - 0.5).collect();
                let mut q8_1 = vec![q8_1::BlockQ8_1::default(); n_tok * cols / QK];
                simd::quantize_q8_1(isa, &x, &mut q8_1);
                let mut q8_k = vec![q8_k::BlockQ8_K::default(); n_tok * cols / QK_K];
                simd::quantize_q8_k(isa, &x, &mut q8_k);
                let acts = Acts {
                    x: &x,
                    q8_1: &q8_1,
                    q8_k: &q8_k,
                };
                let (mut a, mut b) = (vec![0f32; rows * n_tok], vec![0f32; rows * n_tok]);
                let iters = if n_tok == 1 { 2000 } else { 3000 / n_tok };
                for round in 0..2 {
                    let t = Instant::now();
                    for _ in 0..iters {
                        simd::matmul_acts(isa, ty, &w, cols, acts, n_tok, &mut a);
                    }
                    let gguf = t.elapsed().as_secs_f64();
                    let t = Instant::now();
                    for _ in 0..iters {
                        simd::matmul_x8_acts(isa, ty, &packed, cols, acts, n_tok, &mut b);
                    }
                    let x8 = t.elapsed().as_secs_f64();
                    assert!(a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()));
                    let gb = (w.len() * iters) as f64 / 1e9;
                    println!(
                        "{} {rows}x{cols} × {n_tok:>3} tokens, round {round}: GGUF {:.2}, x8 {:.2} ({:.2}×)",
                        ty.name(),
                        gb / gguf,
                        gb / x8,
                        gguf / x8
                    );
                }
            }
        }
    }
}

/// `run TYPE N_TOK CALLS [gguf | vnni-256 | vnni-off] [xK]`: only `CALLS` repacked (or
/// GGUF-layout, or with AVX-512 VNNI at most 256 bits wide or off) matmuls of `N_TOK` tokens on
/// a 1536 × 576 matrix of `TYPE` (576 × 1536 for the K-quants), or with `xK` K times as many
/// rows (`x128`: ~60-110 MB, streamed from memory as a model's weights are), for timing whole
/// runs from outside (CPU time is steadier than a wall clock on a shared machine). The calls'
/// own wall time goes to stderr.
fn run() {
    use GgmlType::*;
    let args: Vec<String> = std::env::args().skip(2).collect();
    let ty = [Q4_1, Q4_0, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K]
        .into_iter()
        .find(|t| Some(t.name()) == args.first().map(String::as_str))
        .expect("TYPE: Q4_1, Q4_0, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K or Q6_K");
    let n_tok: usize = args.get(1).and_then(|a| a.parse().ok()).expect("N_TOK");
    let calls: usize = args.get(2).and_then(|a| a.parse().ok()).expect("CALLS");
    let gguf = args.get(3).map(String::as_str) == Some("gguf");
    let times: usize = args[3..]
        .iter()
        .find_map(|a| a.strip_prefix('x')?.parse().ok())
        .unwrap_or(1);
    // The widest AVX-512 VNNI allowed (the machine's widest by default).
    match args.get(3).map(String::as_str) {
        Some("vnni-off") => simd::allow_vnni(Vnni::Off),
        Some("vnni-256") => simd::allow_vnni(Vnni::Bits256),
        _ => true,
    };
    // The K-quants need whole 256-blocks: the transposed shape.
    let (rows, cols) = if ty.block_size() == 256 {
        (576 * times, 1536usize)
    } else {
        (1536 * times, 576)
    };
    let isa = Isa::best();
    let mut rng = SplitMix64::new(7);
    let wf: Vec<f32> = (0..rows * cols).map(|_| rng.normal(0.05)).collect();
    let mut w = Vec::new();
    quant::quantize_row(ty, &wf, &mut w);
    if !gguf {
        simd::repack(ty, &mut w, cols, &mut Vec::new());
    }
    let x: Vec<f32> = (0..n_tok * cols).map(|_| rng.next_f32() - 0.5).collect();
    let mut q8_1 = vec![q8_1::BlockQ8_1::default(); n_tok * cols / QK];
    simd::quantize_q8_1(isa, &x, &mut q8_1);
    let mut q8_k = vec![q8_k::BlockQ8_K::default(); n_tok * cols / QK_K];
    simd::quantize_q8_k(isa, &x, &mut q8_k);
    let acts = Acts {
        x: &x,
        q8_1: &q8_1,
        q8_k: &q8_k,
    };
    let mut out = vec![0f32; rows * n_tok];
    let mut sum = 0f32;
    let started = Instant::now();
    for _ in 0..calls {
        if gguf {
            simd::matmul_acts(isa, ty, &w, cols, acts, n_tok, &mut out);
        } else {
            simd::matmul_x8_acts(isa, ty, &w, cols, acts, n_tok, &mut out);
        }
        sum += out[0];
    }
    eprintln!("{calls} calls: {:.3} s", started.elapsed().as_secs_f64());
    println!("{sum}");
}

/// Every type's matmul speed at one shape, best kernel and scalar reference.
fn types() {
    use GgmlType::*;
    let (rows, cols) = (1024usize, 1536usize);
    let mut rng = SplitMix64::new(9);
    let wf: Vec<f32> = (0..rows * cols).map(|_| rng.normal(0.05)).collect();
    println!(
        "{rows}x{cols} matmul, µs per call ({} and scalar); speed relative to Q4_1 ({})",
        Isa::best().name(),
        Isa::best().name()
    );
    for n_tok in [1usize, 32] {
        let x: Vec<f32> = (0..n_tok * cols).map(|_| rng.next_f32() - 0.5).collect();
        let mut q8_1 = vec![q8_1::BlockQ8_1::default(); n_tok * cols / QK];
        q8_1::quantize_row_ref(&x, &mut q8_1);
        let mut q8_k = vec![q8_k::BlockQ8_K::default(); n_tok * cols / QK_K];
        q8_k::quantize_row_ref(&x, &mut q8_k);
        let acts = Acts {
            x: &x,
            q8_1: &q8_1,
            q8_k: &q8_k,
        };
        let mut out = vec![0f32; rows * n_tok];
        let mut base = 0.0;
        println!("{n_tok} token(s):");
        for ty in [
            Q4_1, Q4_0, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, F16, BF16, F32,
        ] {
            let mut w = Vec::new();
            quant::quantize_row(ty, &wf, &mut w);
            let mut time = |isa: Isa, budget: f64| {
                // Calls for about `budget` seconds, best of 3 rounds.
                let t = Instant::now();
                simd::matmul_acts(isa, ty, &w, cols, acts, n_tok, &mut out);
                let once = t.elapsed().as_secs_f64().max(1e-7);
                let iters = ((budget / 3.0 / once) as usize).clamp(1, 10_000);
                (0..3)
                    .map(|_| {
                        let t = Instant::now();
                        for _ in 0..iters {
                            simd::matmul_acts(isa, ty, &w, cols, acts, n_tok, &mut out);
                        }
                        t.elapsed().as_secs_f64() / iters as f64
                    })
                    .fold(f64::INFINITY, f64::min)
            };
            let best = time(Isa::best(), 0.6);
            let scalar = time(Isa::Scalar, 0.3);
            if ty == Q4_1 {
                base = best;
            }
            println!(
                "  {:<7} {:>9.1} µs  scalar {:>9.1} µs  ({:.2}× scalar, {:.2}× Q4_1's speed)",
                ty.name(),
                best * 1e6,
                scalar * 1e6,
                scalar / best,
                base / best
            );
        }
    }
}
