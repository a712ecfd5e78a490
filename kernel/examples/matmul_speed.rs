//! Q4_1 matmul throughput of this target's best kernels, GGUF layout against the repacked
//! `Q4_1x8` one, in alternating rounds (so a slow phase of the machine hits both), for targets
//! where criterion does not run (wasm32-wasip2 under wasmtime). Each round also checks that the
//! two layouts give the same bits.
//!
//! Usage: `cargo run -p edge-llm-kernel --release --example matmul_speed`

use std::time::Instant;

use edge_llm_kernel::gguf::GgmlType;
use edge_llm_kernel::quant::{q4_1, q4_1x8, q8_1, QK};
use edge_llm_kernel::rng::SplitMix64;
use edge_llm_kernel::simd::{self, Isa};

fn main() {
    let isa = Isa::best();
    let mut rng = SplitMix64::new(7);
    println!("{} kernels; GB/s of weights", isa.name());
    for (rows, cols) in [(1536usize, 576usize), (576, 1536), (576, 576)] {
        let nb = cols / QK;
        // Random nibbles, small finite half-float scales.
        let mut w = vec![0u8; rows * nb * q4_1::BLOCK_BYTES];
        for (i, b) in w.iter_mut().enumerate() {
            *b = rng.next_u64() as u8;
            if i % q4_1::BLOCK_BYTES == 1 || i % q4_1::BLOCK_BYTES == 3 {
                *b &= 0x3b;
            }
        }
        let mut packed = w.clone();
        q4_1x8::repack(&mut packed, nb, &mut Vec::new());
        for n_tok in [1usize, 32, 128] {
            let x: Vec<f32> = (0..n_tok * cols).map(|_| rng.next_f32() - 0.5).collect();
            let mut acts = vec![q8_1::BlockQ8_1::default(); n_tok * nb];
            simd::quantize_q8_1(isa, &x, &mut acts);
            let (mut a, mut b) = (vec![0f32; rows * n_tok], vec![0f32; rows * n_tok]);
            let iters = if n_tok == 1 { 2000 } else { 3000 / n_tok };
            for round in 0..2 {
                let t = Instant::now();
                for _ in 0..iters {
                    simd::matmul(isa, GgmlType::Q4_1, &w, cols, &acts, n_tok, &mut a);
                }
                let gguf = t.elapsed().as_secs_f64();
                let t = Instant::now();
                for _ in 0..iters {
                    simd::matmul_q4_1x8(isa, &packed, cols, &acts, n_tok, &mut b);
                }
                let x8 = t.elapsed().as_secs_f64();
                assert!(a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()));
                let gb = (w.len() * iters) as f64 / 1e9;
                println!(
                    "{rows}x{cols} × {n_tok:>3} tokens, round {round}: GGUF {:.2}, Q4_1x8 {:.2} ({:.2}×)",
                    gb / gguf,
                    gb / x8,
                    gguf / x8
                );
            }
        }
    }
}
