//! Matmul throughput (weight GB/s) per kernel variant, including the scalar reference, at the
//! real model's shapes (Q4_0 at Q4_1's): decode (1 token, one vec-dot per row) and prefill (32
//! tokens); Q4_1 also in the repacked `Q4_1x8` layout the native backend loads where it pays.
//! The other weight types at 1536 × 1536 (rows a whole number of 256-blocks, so K-quants fit).
#![allow(clippy::unwrap_used, clippy::cast_lossless)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edge_llm_kernel::gguf::GgmlType;
use edge_llm_kernel::quant::q8_1::BlockQ8_1;
use edge_llm_kernel::quant::q8_k::{self, BlockQ8_K};
use edge_llm_kernel::quant::{self, q4_0, q4_1, q4_1x8, q8_0, QK, QK_K};
use edge_llm_kernel::rng::SplitMix64;
use edge_llm_kernel::simd::{self, Acts, Isa};

fn bench(c: &mut Criterion) {
    let mut rng = SplitMix64::new(1);
    let mut g = c.benchmark_group("matmul");
    for (ty, rows, cols) in [
        (GgmlType::Q4_1, 1536usize, 576usize),
        (GgmlType::Q4_0, 1536, 576),
        (GgmlType::Q8_0, 4096, 576),
    ] {
        let wf: Vec<f32> = (0..rows * cols).map(|_| rng.normal(0.05)).collect();
        let mut w = Vec::new();
        match ty {
            GgmlType::Q4_1 => q4_1::quantize_row(&wf, &mut w),
            GgmlType::Q4_0 => q4_0::quantize_row(&wf, &mut w),
            _ => q8_0::quantize_row(&wf, &mut w),
        }
        for n_tok in [1usize, 32] {
            let x: Vec<f32> = (0..n_tok * cols).map(|_| rng.normal(1.0)).collect();
            let mut a = vec![BlockQ8_1::default(); n_tok * cols / QK];
            simd::quantize_q8_1(Isa::Scalar, &x, &mut a);
            let mut out = vec![0f32; rows * n_tok];
            g.throughput(Throughput::Bytes(w.len() as u64));
            for isa in Isa::available() {
                let id = format!("{ty}/{rows}x{cols}/tok{n_tok}/{}", isa.name());
                g.bench_function(id, |b| {
                    b.iter(|| simd::matmul(isa, ty, &w, cols, &a, n_tok, &mut out))
                });
            }
            if ty == GgmlType::Q4_1 {
                let mut packed = w.clone();
                q4_1x8::repack(&mut packed, cols / QK, &mut Vec::new());
                for isa in Isa::available()
                    .into_iter()
                    .filter(|&i| simd::repacking_pays(i))
                {
                    let id = format!("Q4_1x8/{rows}x{cols}/tok{n_tok}/{}", isa.name());
                    g.bench_function(id, |b| {
                        b.iter(|| {
                            simd::matmul_x8(isa, GgmlType::Q4_1, &packed, cols, &a, n_tok, &mut out)
                        })
                    });
                }
            }
        }
    }
    g.finish();
    let mut g = c.benchmark_group("matmul_types");
    let (rows, cols) = (1536usize, 1536usize);
    let wf: Vec<f32> = (0..rows * cols).map(|_| rng.normal(0.05)).collect();
    for n_tok in [1usize, 32] {
        let x: Vec<f32> = (0..n_tok * cols).map(|_| rng.normal(1.0)).collect();
        let mut a1 = vec![BlockQ8_1::default(); n_tok * cols / QK];
        simd::quantize_q8_1(Isa::Scalar, &x, &mut a1);
        let mut ak = vec![BlockQ8_K::default(); n_tok * cols / QK_K];
        q8_k::quantize_row_ref(&x, &mut ak);
        let acts = Acts {
            x: &x,
            q8_1: &a1,
            q8_k: &ak,
        };
        let mut out = vec![0f32; rows * n_tok];
        for ty in [
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::IQ4_NL,
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::F16,
            GgmlType::BF16,
        ] {
            let mut w = Vec::new();
            quant::quantize_row(ty, &wf, &mut w);
            g.throughput(Throughput::Elements((rows * cols * n_tok) as u64));
            for isa in Isa::available() {
                let id = format!("{ty}/{rows}x{cols}/tok{n_tok}/{}", isa.name());
                g.bench_function(id, |b| {
                    b.iter(|| simd::matmul_acts(isa, ty, &w, cols, acts, n_tok, &mut out))
                });
            }
        }
    }
    g.finish();
    // Attention over the f16 cache: one query head's scores against 256 positions, then the
    // weighted sum of their values (head_dim 64, 3 KV heads per position as in the default
    // model); then the same for the 3 query heads of a key head together.
    let mut g = c.benchmark_group("attention_f16");
    let (hd, stride, n_pos) = (64usize, 192usize, 256usize);
    let rows: Vec<u16> = (0..n_pos * stride)
        .map(|_| quant::f16::f32_to_f16_bits(rng.normal(1.0)))
        .collect();
    let q: Vec<f32> = (0..hd).map(|_| rng.normal(1.0)).collect();
    let w: Vec<f32> = (0..n_pos).map(|_| rng.normal(1.0).abs()).collect();
    let (mut scores, mut out) = (vec![0f32; n_pos], vec![0f32; hd]);
    g.throughput(Throughput::Elements((n_pos * hd) as u64));
    for isa in Isa::available() {
        g.bench_function(format!("dots/{}", isa.name()), |b| {
            b.iter(|| simd::dots_f16(isa, &q, &rows, stride, &mut scores))
        });
        g.bench_function(format!("weighted_sum/{}", isa.name()), |b| {
            b.iter(|| simd::weighted_sum_f16(isa, &w, &rows, stride, &mut out))
        });
    }
    // The three query heads of one key head together, as the forward pass runs them.
    let q3: Vec<f32> = (0..3 * hd).map(|_| rng.normal(1.0)).collect();
    let w3: Vec<f32> = (0..3 * n_pos).map(|_| rng.normal(1.0).abs()).collect();
    let (mut scores3, mut out3) = (vec![0f32; 3 * n_pos], vec![0f32; 3 * hd]);
    g.throughput(Throughput::Elements((3 * n_pos * hd) as u64));
    for isa in Isa::available() {
        g.bench_function(format!("dots_3_heads/{}", isa.name()), |b| {
            b.iter(|| simd::dots_f16_heads(isa, &q3, hd, &rows, stride, &mut scores3))
        });
        g.bench_function(format!("weighted_sum_3_heads/{}", isa.name()), |b| {
            b.iter(|| simd::weighted_sum_f16_heads(isa, &w3, n_pos, &rows, stride, &mut out3))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("quantize_q8_1");
    let x: Vec<f32> = (0..1536).map(|_| rng.normal(1.0)).collect();
    let mut a = vec![BlockQ8_1::default(); 1536 / QK];
    g.throughput(Throughput::Bytes(1536 * 4));
    for isa in Isa::available() {
        g.bench_function(isa.name(), |b| {
            b.iter(|| simd::quantize_q8_1(isa, &x, &mut a))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
