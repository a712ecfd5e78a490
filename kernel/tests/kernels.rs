//! SIMD kernels agree with the scalar reference bit for bit, and quantized matmuls stay close
//! to `f32` (per-type thresholds). Uses the in-crate RNG so the same tests run under wasm.
#![allow(clippy::unwrap_used, clippy::cast_lossless)]

use edge_llm_kernel::gguf::GgmlType;
use edge_llm_kernel::quant::q8_1::{self, BlockQ8_1};
use edge_llm_kernel::quant::q8_k::{self, BlockQ8_K};
use edge_llm_kernel::quant::{self, f16, QK, QK_K};
use edge_llm_kernel::quant::{iq4_nl, q2_k, q3_k, q4_0, q4_1, q4_k, q5_0, q5_1, q5_k, q6_k, q8_0};
use edge_llm_kernel::rng::SplitMix64;
use edge_llm_kernel::simd::{self, Acts, Isa, Vnni};

/// The scenario whose scales are infinite or NaN.
const SPECIAL_CASE: usize = 7;

/// Whether a SIMD output agrees with the scalar one: the same bits, or (only where the scales
/// are infinite or NaN) both NaN, whatever their payloads.
fn agrees(got: f32, want: f32, case: usize) -> bool {
    got.to_bits() == want.to_bits() || (case == SPECIAL_CASE && got.is_nan() && want.is_nan())
}

/// Half-float scale bits for the named scenario.
fn scale_bits(rng: &mut SplitMix64, case: usize) -> u16 {
    match case {
        0 => f16::f32_to_f16_bits(rng.uniform(-0.05, 0.05)),
        1 => 0x7bff,                           // 65504, the largest half
        2 => 0x0001 + rng.below(0x3ff) as u16, // subnormal
        3 => 0,                                // zero
        4 => 0x8000 | f16::f32_to_f16_bits(rng.uniform(0.0, 2.0)), // negative
        // Infinities and NaNs (a hostile file's): the kernels' slow widening path.
        SPECIAL_CASE => [0x7c00, 0xfc00, 0x7e00, 0x7c01][rng.below(4) as usize],
        _ => rng.below(0x7c00) as u16, // any finite positive
    }
}

/// Every weight type the matmuls take.
const TYPES: [GgmlType; 14] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::IQ4_NL,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
];

/// Byte offsets of the half-float scales in a block of `ty`.
fn half_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[0],
    }
}

/// Elements per weight "block" in the test shapes: the type's block, 32 for float rows.
fn elems_per_block(ty: GgmlType) -> usize {
    (ty.block_size() as usize).max(QK)
}

/// Random weight rows of `ty` (`nb` blocks of [`elems_per_block`] each) with scales from
/// scenario `case`.
fn weights(rng: &mut SplitMix64, ty: GgmlType, rows: usize, nb: usize, case: usize) -> Vec<u8> {
    let all_equal = case == 6;
    let n = rows * nb * elems_per_block(ty);
    match ty {
        GgmlType::F32 => {
            return (0..n)
                .flat_map(|_| {
                    let v = match case {
                        SPECIAL_CASE if rng.below(50) == 0 => f32::INFINITY,
                        1 => rng.uniform(-1.0, 1.0) * 3e19,
                        2 => rng.uniform(-1.0, 1.0) * 1e-20,
                        _ => rng.uniform(-1.0, 1.0),
                    };
                    v.to_le_bytes()
                })
                .collect()
        }
        GgmlType::F16 => {
            return (0..n)
                .flat_map(|_| scale_bits(rng, case).to_le_bytes())
                .collect()
        }
        GgmlType::BF16 => {
            return (0..n)
                .flat_map(|_| {
                    let mut b = rng.next_u64() as u16;
                    if case != SPECIAL_CASE && b & 0x7f80 == 0x7f80 {
                        b &= !0x4000;
                    }
                    b.to_le_bytes()
                })
                .collect()
        }
        _ => {}
    }
    let size = ty.type_size() as usize;
    let mut w = Vec::new();
    for _ in 0..rows * nb {
        let byte = rng.next_u64() as u8;
        let mut blk: Vec<u8> = (0..size)
            .map(|_| {
                if all_equal {
                    byte
                } else {
                    rng.next_u64() as u8
                }
            })
            .collect();
        for &o in half_offsets(ty) {
            blk[o..o + 2].copy_from_slice(&scale_bits(rng, case).to_le_bytes());
        }
        w.extend_from_slice(&blk);
    }
    w
}

/// The activation forms of `x` (`n_tok` rows), quantized with the references.
struct ActForms {
    x: Vec<f32>,
    q8_1: Vec<BlockQ8_1>,
    q8_k: Vec<BlockQ8_K>,
}

impl ActForms {
    fn new(x: Vec<f32>) -> ActForms {
        let mut q8_1 = vec![BlockQ8_1::default(); x.len() / QK];
        q8_1::quantize_row_ref(&x, &mut q8_1);
        let mut q8_k = vec![BlockQ8_K::default(); x.len() / QK_K];
        q8_k::quantize_row_ref(&x[..q8_k.len() * QK_K], &mut q8_k);
        ActForms { x, q8_1, q8_k }
    }

    fn acts(&self) -> Acts<'_> {
        Acts {
            x: &self.x,
            q8_1: &self.q8_1,
            q8_k: &self.q8_k,
        }
    }
}

/// Activations: random values at a scale picked by `case`, quantized with the reference.
fn activations(rng: &mut SplitMix64, n: usize, case: usize) -> (Vec<f32>, Vec<BlockQ8_1>) {
    let scale = [1.0f32, 1e-6, 1e6, 0.0, 3.0, 1e-30, 1.0][case % 7];
    let x: Vec<f32> = (0..n)
        .map(|i| match case {
            6 => scale,                // all equal
            7 => (i % 7) as f32 - 3.5, // exact ties after scaling
            _ => rng.uniform(-1.0, 1.0) * scale,
        })
        .collect();
    let mut a = vec![BlockQ8_1::default(); n / QK];
    q8_1::quantize_row_ref(&x, &mut a);
    (x, a)
}

#[test]
fn quantize_simd_equals_scalar() {
    let mut rng = SplitMix64::new(1);
    for case in 0..8 {
        for n in [32usize, 64, 576] {
            let (x, want) = activations(&mut rng, n, case);
            for isa in Isa::available() {
                let mut got = vec![BlockQ8_1::default(); n / QK];
                simd::quantize_q8_1(isa, &x, &mut got);
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.qs, w.qs, "{isa:?} case {case}");
                    assert_eq!(g.d.to_bits(), w.d.to_bits(), "{isa:?} case {case}");
                    assert_eq!(g.s.to_bits(), w.s.to_bits(), "{isa:?} case {case}");
                }
            }
        }
        for n in [256usize, 1536] {
            let (x, _) = activations(&mut rng, n, case);
            let mut want = vec![BlockQ8_K::default(); n / QK_K];
            q8_k::quantize_row_ref(&x, &mut want);
            for isa in Isa::available() {
                let mut got = vec![BlockQ8_K::default(); n / QK_K];
                simd::quantize_q8_k(isa, &x, &mut got);
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.qs, w.qs, "Q8_K {isa:?} case {case}");
                    assert_eq!(g.bsums, w.bsums, "Q8_K {isa:?} case {case}");
                    assert_eq!(g.d.to_bits(), w.d.to_bits(), "Q8_K {isa:?} case {case}");
                }
            }
        }
    }
}

#[test]
fn matmul_simd_equals_scalar_bit_for_bit() {
    let mut rng = SplitMix64::new(2);
    let mut checked = 0;
    for ty in TYPES {
        for case in 0..=SPECIAL_CASE {
            // Shapes in blocks of the type (256 elements for the K-quants).
            for (rows, nb, n_tok) in [
                (1usize, 1usize, 1usize),
                (4, 3, 1),
                (9, 18, 2),
                (13, 5, 3),
                (8, 48, 1),
                (16, 2, 5),
            ] {
                let nb = if ty.block_size() == 256 {
                    nb.div_ceil(8)
                } else {
                    nb
                };
                let cols = nb * elems_per_block(ty);
                let w = weights(&mut rng, ty, rows, nb, case);
                let (x, _) = activations(&mut rng, cols * n_tok, case);
                let a = ActForms::new(x);
                let mut want = vec![0f32; rows * n_tok];
                simd::matmul_acts(Isa::Scalar, ty, &w, cols, a.acts(), n_tok, &mut want);
                for isa in Isa::available() {
                    let mut got = vec![f32::NAN; rows * n_tok];
                    simd::matmul_acts(isa, ty, &w, cols, a.acts(), n_tok, &mut got);
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            agrees(*g, *e, case),
                            "{isa:?} {ty} case {case} rows {rows} nb {nb} n_tok {n_tok} out {i}: {g} vs {e}"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0);
    println!("variants checked: {:?}", Isa::available());
}

/// The extremes of the signed types' integer sums in the GGUF layout: every weight at its most
/// negative or largest, every activation at ±127, so a kernel whose pair sums saturate
/// disagrees. And on simd128 activations at −128, outside Q8_1's range (its quantization never
/// makes them; the AVX2 kernels' sign trick relies on that), which the simd128 kernels check
/// for and take a slower path on.
#[test]
fn signed_matmuls_are_exact_at_the_extremes() {
    for ty in [GgmlType::Q8_0, GgmlType::IQ4_NL] {
        let size = ty.type_size() as usize;
        for (rows, nb, n_tok) in [(8usize, 3usize, 1usize), (5, 2, 3)] {
            for fill in [0x80u8, 0x7f, 0xff, 0x00, 0x0f] {
                for act in [127i8, -127, -128] {
                    let mut w = Vec::new();
                    for _ in 0..rows * nb {
                        let mut blk = vec![fill; size];
                        blk[..2].copy_from_slice(&f16::f32_to_f16_bits(1.0).to_le_bytes());
                        w.extend(blk);
                    }
                    let a: Vec<BlockQ8_1> = (0..nb * n_tok)
                        .map(|_| BlockQ8_1 {
                            d: 1.0,
                            s: f32::from(act) * 32.0,
                            qs: [act; QK],
                            sum: i32::from(act) * 32,
                        })
                        .collect();
                    let mut want = vec![0f32; rows * n_tok];
                    simd::matmul(Isa::Scalar, ty, &w, nb * QK, &a, n_tok, &mut want);
                    for isa in Isa::available() {
                        if act == -128 && !matches!(isa, Isa::Scalar | Isa::Simd128) {
                            continue;
                        }
                        let mut got = vec![f32::NAN; rows * n_tok];
                        simd::matmul(isa, ty, &w, nb * QK, &a, n_tok, &mut got);
                        assert_eq!(got, want, "{ty:?} {isa:?} fill {fill:#x} act {act}");
                    }
                }
            }
        }
    }
}

/// The scalar matmuls are the per-type reference dot products, row by row.
#[test]
fn scalar_matmul_is_the_reference_dot() {
    let mut rng = SplitMix64::new(12);
    for ty in TYPES {
        let nb = 3;
        let cols = nb * elems_per_block(ty);
        let (rows, n_tok) = (5, 2);
        let w = weights(&mut rng, ty, rows, nb, 0);
        let (x, _) = activations(&mut rng, cols * n_tok, 0);
        let a = ActForms::new(x);
        let mut got = vec![f32::NAN; rows * n_tok];
        simd::matmul_acts(Isa::Scalar, ty, &w, cols, a.acts(), n_tok, &mut got);
        let rb = w.len() / rows;
        for r in 0..rows {
            let row = &w[r * rb..(r + 1) * rb];
            for t in 0..n_tok {
                let (q1, qk) = (&a.q8_1[t * cols / QK..], &a.q8_k[t * cols / QK_K..]);
                let want = match ty {
                    GgmlType::Q4_0 => q4_0::vec_dot_ref(row, q1),
                    GgmlType::Q4_1 => q4_1::vec_dot_ref(row, q1),
                    GgmlType::Q5_0 => q5_0::vec_dot_ref(row, q1),
                    GgmlType::Q5_1 => q5_1::vec_dot_ref(row, q1),
                    GgmlType::Q8_0 => q8_0::vec_dot_ref(row, q1),
                    GgmlType::IQ4_NL => iq4_nl::vec_dot_ref(row, q1),
                    GgmlType::Q2_K => q2_k::vec_dot_ref(row, qk),
                    GgmlType::Q3_K => q3_k::vec_dot_ref(row, qk),
                    GgmlType::Q4_K => q4_k::vec_dot_ref(row, qk),
                    GgmlType::Q5_K => q5_k::vec_dot_ref(row, qk),
                    GgmlType::Q6_K => q6_k::vec_dot_ref(row, qk),
                    _ => {
                        let mut f = vec![0f32; cols];
                        quant::dequantize_row(ty, row, &mut f);
                        quant::f32::dot_ref(&f, &a.x[t * cols..(t + 1) * cols])
                    }
                };
                assert_eq!(
                    got[r * n_tok + t].to_bits(),
                    want.to_bits(),
                    "{ty} row {r} tok {t}"
                );
            }
        }
    }
}

/// The types whose rows repack eight at a time (`quant::rows8`).
const PACKED: [GgmlType; 5] = [
    GgmlType::Q4_1,
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
];

/// Every kernel variant of this machine: each ISA, and on x86 the AVX2 kernels with each width
/// of AVX-512 VNNI the machine has and without. Switching VNNI off and on again while other
/// tests run changes none of their results (every width gives the same bits).
fn variants() -> Vec<(Isa, Vnni)> {
    let mut v: Vec<(Isa, Vnni)> = Isa::available()
        .into_iter()
        .map(|i| (i, Vnni::Bits512))
        .collect();
    if Isa::best() == Isa::Avx2 {
        v.extend(
            Vnni::available()
                .into_iter()
                .filter(|w| *w != Vnni::Bits512)
                .map(|w| (Isa::Avx2, w)),
        );
    }
    v
}

/// `len` values written by `f` with the AVX2 kernels' widest VNNI set to `vnni` (the widest
/// again afterwards); NaN where `f` writes nothing.
fn at_width(vnni: Vnni, len: usize, f: impl FnOnce(&mut [f32])) -> Vec<f32> {
    let mut got = vec![f32::NAN; len];
    simd::allow_vnni(vnni);
    f(&mut got);
    simd::allow_vnni(Vnni::Bits512);
    got
}

#[test]
fn repacked_matmuls_equal_gguf_layout_bit_for_bit() {
    let mut rng = SplitMix64::new(6);
    let mut checked = 0;
    for ty in PACKED {
        assert!(simd::packs(ty));
        for case in 0..=SPECIAL_CASE {
            for (rows, nb, n_tok) in [
                (8usize, 1usize, 1usize),
                (16, 3, 2),
                (13, 18, 1),
                (24, 48, 3),
                // Whole tiles of tokens and a tile plus a tail.
                (16, 5, 4),
                (8, 2, 9),
                // Pairs of groups (AVX-512): a whole tile, tiles of 8, 4, 2 and 1, a pair
                // and a group.
                (32, 4, 8),
                (16, 2, 15),
                (40, 3, 11),
                (32, 2, 17),
            ] {
                let w = weights(&mut rng, ty, rows, nb, case);
                let (_, a) = activations(&mut rng, nb * QK * n_tok, case);
                let mut want = vec![0f32; rows * n_tok];
                simd::matmul(Isa::Scalar, ty, &w, nb * QK, &a, n_tok, &mut want);
                let mut packed = w.clone();
                simd::repack(ty, &mut packed, nb * QK, &mut Vec::new());
                assert_ne!(packed, w, "{ty:?}: repacking moved nothing");
                for (isa, vnni) in variants() {
                    let got = at_width(vnni, rows * n_tok, |got| {
                        simd::matmul_x8(isa, ty, &packed, nb * QK, &a, n_tok, got)
                    });
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            agrees(*g, *e, case),
                            "{ty:?} {isa:?} (VNNI allowed: {vnni:?}) case {case} rows {rows} nb {nb} n_tok {n_tok} out {i}: {g} vs {e}"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(
        checked,
        PACKED.len() * (SPECIAL_CASE + 1) * 10 * variants().len()
    );
}

/// The extremes of the integer sums: every weight value at its most negative or largest, every
/// activation at ±127, so a kernel whose partial sums saturate or wrap disagrees.
#[test]
fn repacked_matmuls_are_exact_at_the_extremes() {
    // A pair of groups and a group: every width of tile.
    let (rows, nb, n_tok) = (24usize, 2usize, 5usize);
    for ty in PACKED {
        let size = ty.type_size() as usize;
        for (fill, sign) in [(0x00u8, 1i8), (0xff, 1), (0x80, -1), (0x7f, -1), (0xff, -1)] {
            let mut w = Vec::new();
            for _ in 0..rows * nb {
                let mut blk = vec![fill; size];
                // Scale 1.0 (and min 1.0 for Q4_1 and Q5_1).
                blk[..2].copy_from_slice(&f16::f32_to_f16_bits(1.0).to_le_bytes());
                if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                    blk[2..4].copy_from_slice(&f16::f32_to_f16_bits(1.0).to_le_bytes());
                }
                w.extend(blk);
            }
            let a: Vec<BlockQ8_1> = (0..nb * n_tok)
                .map(|_| BlockQ8_1 {
                    d: 1.0,
                    s: 127.0 * 32.0 * f32::from(sign),
                    qs: [127 * sign; QK],
                    sum: 127 * 32 * i32::from(sign),
                })
                .collect();
            let mut want = vec![0f32; rows * n_tok];
            simd::matmul(Isa::Scalar, ty, &w, nb * QK, &a, n_tok, &mut want);
            let mut packed = w.clone();
            simd::repack(ty, &mut packed, nb * QK, &mut Vec::new());
            for (isa, vnni) in variants() {
                let got = at_width(vnni, rows * n_tok, |got| {
                    simd::matmul_x8(isa, ty, &packed, nb * QK, &a, n_tok, got)
                });
                assert_eq!(
                    got, want,
                    "{ty:?} {isa:?} (VNNI {vnni:?}) fill {fill:#x} sign {sign} n_tok {n_tok}"
                );
            }
        }
    }
}

/// The K-quant types whose rows repack eight at a time (`quant::q4_kx8`, `quant::q5_kx8`,
/// `quant::q6_kx8`).
const PACKED_K: [GgmlType; 3] = [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K];

#[test]
fn repacked_k_matmuls_equal_gguf_layout_bit_for_bit() {
    let mut rng = SplitMix64::new(16);
    let mut checked = 0;
    for ty in PACKED_K {
        assert!(simd::packs(ty));
        for case in 0..=SPECIAL_CASE {
            // Whole tiles of tokens, a tile plus a tail, and tail rows in the GGUF layout.
            for (rows, nb, n_tok) in [
                (8usize, 1usize, 1usize),
                (16, 2, 2),
                (13, 3, 1),
                (24, 6, 5),
                (8, 1, 9),
                (16, 6, 4),
                (16, 2, 15),
            ] {
                let w = weights(&mut rng, ty, rows, nb, case);
                let (x, _) = activations(&mut rng, nb * QK_K * n_tok, case);
                let a = ActForms::new(x);
                let mut want = vec![0f32; rows * n_tok];
                simd::matmul_acts(Isa::Scalar, ty, &w, nb * QK_K, a.acts(), n_tok, &mut want);
                let mut packed = w.clone();
                simd::repack(ty, &mut packed, nb * QK_K, &mut Vec::new());
                assert_ne!(packed, w, "{ty:?}: repacking moved nothing");
                for (isa, vnni) in variants() {
                    let got = at_width(vnni, rows * n_tok, |got| {
                        simd::matmul_x8_acts(isa, ty, &packed, nb * QK_K, a.acts(), n_tok, got)
                    });
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            agrees(*g, *e, case),
                            "{ty:?} {isa:?} (VNNI allowed: {vnni:?}) case {case} rows {rows} nb {nb} n_tok {n_tok} out {i}: {g} vs {e}"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(
        checked,
        PACKED_K.len() * (SPECIAL_CASE + 1) * 7 * variants().len()
    );
}

/// The K-quants' extremes: every value, scale and min at its largest or most negative, every
/// activation at ±127, so a kernel whose integer sums saturate or wrap disagrees. One token
/// and several take different paths through the kernels.
#[test]
fn repacked_k_matmuls_are_exact_at_the_extremes() {
    let (rows, nb) = (8usize, 2usize);
    for (ty, n_tok) in PACKED_K.into_iter().flat_map(|ty| [(ty, 1usize), (ty, 13)]) {
        let size = ty.type_size() as usize;
        for (fill, sign) in [(0x00u8, 1i8), (0xff, 1), (0x80, -1), (0x7f, -1), (0xff, -1)] {
            let mut w = Vec::new();
            for _ in 0..rows * nb {
                let mut blk = vec![fill; size];
                for &o in half_offsets(ty) {
                    blk[o..o + 2].copy_from_slice(&f16::f32_to_f16_bits(1.0).to_le_bytes());
                }
                w.extend(blk);
            }
            let a: Vec<BlockQ8_K> = (0..nb * n_tok)
                .map(|_| BlockQ8_K {
                    d: 1.0,
                    qs: [127 * sign; QK_K],
                    bsums: [16 * 127 * i16::from(sign); QK_K / 16],
                })
                .collect();
            let mut want = vec![0f32; rows * n_tok];
            simd::matmul_q8_k(Isa::Scalar, ty, &w, nb * QK_K, &a, n_tok, &mut want);
            let mut packed = w.clone();
            simd::repack(ty, &mut packed, nb * QK_K, &mut Vec::new());
            for (isa, vnni) in variants() {
                let got = at_width(vnni, rows * n_tok, |got| {
                    simd::matmul_x8_q8_k(isa, ty, &packed, nb * QK_K, &a, n_tok, got)
                });
                assert_eq!(
                    got, want,
                    "{ty:?} {isa:?} (VNNI {vnni:?}) fill {fill:#x} sign {sign} n_tok {n_tok}"
                );
            }
        }
    }
}

/// Each repacked layout gives back every row's GGUF bytes through `simd::gguf_row` (as the
/// lookups of a tied, repacked `token_embd` do), for full groups and the tail rows.
#[test]
fn repacked_rows_read_back_as_their_gguf_bytes() {
    let mut rng = SplitMix64::new(17);
    for ty in PACKED.into_iter().chain(PACKED_K) {
        let (rows, nb) = (19usize, 3usize);
        let rb = nb * ty.type_size() as usize;
        let w: Vec<u8> = (0..rows * rb).map(|_| rng.next_u64() as u8).collect();
        let n_cols = nb * elems_per_block(ty);
        let mut packed = w.clone();
        simd::repack(ty, &mut packed, n_cols, &mut Vec::new());
        assert_ne!(packed, w, "{ty:?}: repacking moved nothing");
        for r in 0..rows {
            let mut row = vec![0u8; rb];
            simd::gguf_row(ty, &packed, n_cols, r, &mut row);
            assert_eq!(row, w[r * rb..(r + 1) * rb], "{ty:?} row {r}");
        }
    }
}

#[test]
fn f32_dot_matches_definition() {
    let mut rng = SplitMix64::new(3);
    for n in [1usize, 7, 8, 64, 65] {
        let a: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        for isa in Isa::available() {
            assert!(
                (simd::dot_f32(isa, &a, &b) as f64 - exact).abs() < 1e-5,
                "{isa:?}"
            );
        }
    }
}

#[test]
fn f32_dot_simd_equals_scalar_bit_for_bit() {
    let mut rng = SplitMix64::new(7);
    let mut checked = 0;
    // Ordinary values; magnitudes whose products overflow to infinity; subnormal products;
    // zeros of both signs; an infinity and a NaN among ordinary values.
    for case in 0..5 {
        for n in (0..=72).chain([128, 576]) {
            let v = |rng: &mut SplitMix64| match case {
                1 => rng.uniform(-1.0, 1.0) * 3e19,
                2 => rng.uniform(-1.0, 1.0) * 1e-20,
                3 => [0.0, -0.0][rng.below(2) as usize],
                _ => rng.uniform(-1.0, 1.0),
            };
            let a: Vec<f32> = (0..n).map(|_| v(&mut rng)).collect();
            let mut b: Vec<f32> = (0..n + 3).map(|_| v(&mut rng)).collect();
            if case == 4 && n > 2 {
                (b[n / 2], b[n - 1]) = (f32::INFINITY, f32::NAN);
            }
            let want = quant::f32::dot_ref(&a, &b);
            for isa in Isa::available() {
                let got = simd::dot_f32(isa, &a, &b);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{isa:?} case {case} n {n}: {got} vs {want}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

#[test]
fn attention_kernels_simd_equal_scalar_bit_for_bit() {
    let mut rng = SplitMix64::new(8);
    let mut checked = 0;
    for n in (0..=72).chain([128, 192, 256]) {
        for n_rows in [0usize, 1, 3, 17, 100] {
            let stride = n + rng.below(5) as usize;
            let w: Vec<f32> = (0..n_rows).map(|_| rng.uniform(0.0, 1.0)).collect();
            let len = (n_rows.max(1) - 1) * stride + n;
            // Half floats of every kind: ordinary values, then (in one shape) infinity,
            // negative zero, a NaN and subnormals, which the SIMD widening takes a longer
            // path for.
            let mut rows: Vec<u16> = (0..len)
                .map(|_| f16::f32_to_f16_bits(rng.uniform(-2.0, 2.0)))
                .collect();
            if n_rows == 17 && n > 3 {
                (rows[0], rows[1], rows[2], rows[len - 1]) = (0x7c00, 0x7e01, 0x0003, 0x8000);
            }
            let q: Vec<f32> = (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect();
            let want_dots: Vec<f32> = (0..n_rows)
                .map(|j| quant::f32::dot_f16_ref(&q, &rows[j * stride..][..n]))
                .collect();
            let mut want = vec![f32::NAN; n];
            quant::f32::weighted_sum_f16_ref(&w, &rows, stride, &mut want);
            for isa in Isa::available() {
                let mut got = vec![f32::NAN; n];
                simd::weighted_sum_f16(isa, &w, &rows, stride, &mut got);
                let mut dots = vec![f32::NAN; n_rows];
                simd::dots_f16(isa, &q, &rows, stride, &mut dots);
                for (j, (g, e)) in dots.iter().zip(&want_dots).enumerate() {
                    assert!(
                        g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                        "{isa:?} dots n {n} rows {n_rows} row {j}: {g} vs {e}"
                    );
                }
                for (d, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                        "{isa:?} n {n} rows {n_rows} out {d}: {g} vs {e}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

/// The scores and value sums of several query heads over the same key and value rows (the
/// query heads of one key head), computed together, equal each head's reference bit for bit:
/// 1 to 5 heads, head sizes with and without a tail past the 512-bit kernels' 8 or 16
/// columns, row counts with and without rows past the scores' blocks of 8, every variant and
/// VNNI width.
#[test]
fn scores_and_value_sums_of_several_heads_equal_each_heads_reference() {
    let mut rng = SplitMix64::new(11);
    let mut checked = 0;
    for hd in [8usize, 12, 16, 24, 64, 72, 96, 128, 256] {
        for m in [1usize, 2, 3, 5, 7, 8, 9, 17, 33] {
            let stride = 3 * hd + rng.below(5) as usize;
            let rows: Vec<u16> = (0..(m - 1) * stride + hd)
                .map(|_| f16::f32_to_f16_bits(rng.uniform(-2.0, 2.0)))
                .collect();
            for heads in 1..=5 {
                let q: Vec<f32> = (0..heads * hd).map(|_| rng.uniform(-2.0, 2.0)).collect();
                let w: Vec<f32> = (0..heads * m).map(|_| rng.uniform(0.0, 1.0)).collect();
                let want_dots: Vec<f32> = q
                    .chunks_exact(hd)
                    .flat_map(|qh| {
                        (0..m).map(|j| quant::f32::dot_f16_ref(qh, &rows[j * stride..][..hd]))
                    })
                    .collect();
                let mut want = vec![f32::NAN; heads * hd];
                for (wh, o) in w.chunks_exact(m).zip(want.chunks_exact_mut(hd)) {
                    quant::f32::weighted_sum_f16_ref(wh, &rows, stride, o);
                }
                for (isa, vnni) in variants() {
                    let dots = at_width(vnni, heads * m, |got| {
                        simd::dots_f16_heads(isa, &q, hd, &rows, stride, got)
                    });
                    let got = at_width(vnni, heads * hd, |got| {
                        simd::weighted_sum_f16_heads(isa, &w, m, &rows, stride, got)
                    });
                    let case = format!("{isa:?} ({vnni:?}) hd {hd} m {m} heads {heads}");
                    for (i, (g, e)) in dots.iter().zip(&want_dots).enumerate() {
                        let (h, j) = (i / m, i % m);
                        assert_eq!(
                            g.to_bits(),
                            e.to_bits(),
                            "{case}: head {h} row {j}: {g} vs {e}"
                        );
                    }
                    for (d, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(g.to_bits(), e.to_bits(), "{case} out {d}: {g} vs {e}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0);
}

/// The attention kernels' f16 widening equals the reference's on every half float: each
/// pattern as a value row (weight 1) and inside key rows (stride 1, so each pattern meets
/// every query lane).
#[test]
fn attention_kernels_equal_scalar_on_every_half_float() {
    let mut rng = SplitMix64::new(10);
    let rows: Vec<u16> = (0..=u16::MAX).collect();
    let q: Vec<f32> = (0..16).map(|_| rng.uniform(-2.0, 2.0)).collect();
    let mut want = vec![0f32; rows.len()];
    quant::f32::weighted_sum_f16_ref(&[1.0], &rows, rows.len(), &mut want);
    let want_dots: Vec<f32> = (0..rows.len() - q.len())
        .map(|j| quant::f32::dot_f16_ref(&q, &rows[j..]))
        .collect();
    let same = |g: &f32, e: &f32| g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan());
    for isa in Isa::available() {
        let mut got = vec![f32::NAN; rows.len()];
        simd::weighted_sum_f16(isa, &[1.0], &rows, rows.len(), &mut got);
        let mut dots = vec![f32::NAN; want_dots.len()];
        simd::dots_f16(isa, &q, &rows, 1, &mut dots);
        for (h, (g, e)) in got.iter().zip(&want).enumerate() {
            assert!(same(g, e), "{isa:?} weighted sum of {h:#06x}: {g} vs {e}");
        }
        for (j, (g, e)) in dots.iter().zip(&want_dots).enumerate() {
            assert!(same(g, e), "{isa:?} dot at {j:#06x}: {g} vs {e}");
        }
    }
    // Two heads' sums over the same row, each of every half float: the 512-bit widening of
    // the grouped sums (and scores) where the machine has it.
    for (isa, vnni) in variants() {
        let got = at_width(vnni, 2 * rows.len(), |got| {
            simd::weighted_sum_f16_heads(isa, &[1.0, 1.0], 1, &rows, rows.len(), got)
        });
        for (i, (g, e)) in got.iter().zip(want.iter().cycle()).enumerate() {
            let (head, h) = (i / rows.len(), i % rows.len());
            assert!(
                same(g, e),
                "{isa:?} ({vnni:?}) head {head}'s weighted sum of {h:#06x}: {g} vs {e}"
            );
        }
        // Two heads' scores over rows one half float apart, computed together: every pattern
        // meets every query lane in the 512-bit widening of the grouped scores.
        let q2: Vec<f32> = q.iter().chain(&q).copied().collect();
        let dots = at_width(vnni, 2 * want_dots.len(), |dots| {
            simd::dots_f16_heads(isa, &q2, q.len(), &rows, 1, dots)
        });
        for (i, (g, e)) in dots.iter().zip(want_dots.iter().cycle()).enumerate() {
            let (head, j) = (i / want_dots.len(), i % want_dots.len());
            assert!(
                same(g, e),
                "{isa:?} ({vnni:?}) head {head}'s dot at {j:#06x}: {g} vs {e}"
            );
        }
    }
}

#[test]
fn elementwise_kernels_simd_equal_scalar_bit_for_bit() {
    let mut rng = SplitMix64::new(9);
    // f16 rounding: arbitrary bit patterns (NaNs, infinities, subnormals of both formats),
    // values around f16's largest finite (65504) and halfway cases of f16's precision.
    let mut x: Vec<f32> = (0..4096)
        .map(|_| f32::from_bits(rng.next_u64() as u32))
        .collect();
    x.extend((0..1024).map(|_| rng.uniform(-70_000.0, 70_000.0)));
    x.extend((0..1024).map(|i| f16::f16_bits_to_f32(i as u16 * 61) * (1.0 + 1.0 / 2048.0)));
    x.extend([
        0.0,
        -0.0,
        65504.0,
        65520.0,
        65519.99,
        5.96e-8,
        2.98e-8,
        1e-10,
        f32::MIN_POSITIVE,
    ]);
    // SwiGLU: ordinary gates, gates in `exp`'s clamped range, and non-finite gates and ups.
    let mut gate: Vec<f32> = (0..4096).map(|_| rng.uniform(-10.0, 10.0)).collect();
    let mut up: Vec<f32> = (0..gate.len()).map(|_| rng.uniform(-4.0, 4.0)).collect();
    gate.extend([-100.0, 100.0, f32::NAN, 1.0, -1.0]);
    up.extend([1.0, 1.0, 1.0, f32::INFINITY, f32::NAN]);
    let mut checked = 0;
    for n in [0, 1, 7, 8, 9, 31, 576, usize::MAX] {
        let n = n.min(x.len());
        let mut want = x[..n].to_vec();
        f16::round_slice(&mut want);
        let m = n.min(gate.len());
        let mut want_g = gate[..m].to_vec();
        edge_llm_kernel::activation::swiglu(&mut want_g, &up[..m]);
        let mut want_e = gate[..m].to_vec();
        edge_llm_kernel::activation::exp_shifted(&mut want_e, 3.0);
        let mut want_h = vec![0u16; n];
        f16::narrow_slice(&x[..n], &mut want_h);
        for isa in Isa::available() {
            let mut got_h = vec![0u16; n];
            simd::narrow_f16(isa, &x[..n], &mut got_h);
            assert_eq!(got_h, want_h, "{isa:?} narrow_f16 of {n}");
            let mut got = x[..n].to_vec();
            simd::round_f16(isa, &mut got);
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    e.to_bits(),
                    "{isa:?} round_f16 of {:e} ({i})",
                    x[i]
                );
            }
            let mut got_e = gate[..m].to_vec();
            simd::exp_shifted(isa, &mut got_e, 3.0);
            for (i, (g, e)) in got_e.iter().zip(&want_e).enumerate() {
                assert!(
                    g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                    "{isa:?} exp_shifted({}, 3) ({i}): {g} vs {e}",
                    gate[i]
                );
            }
            let mut got_g = gate[..m].to_vec();
            simd::swiglu(isa, &mut got_g, &up[..m]);
            for (i, (g, e)) in got_g.iter().zip(&want_g).enumerate() {
                assert!(
                    g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                    "{isa:?} swiglu({}, {}) ({i}): {g} vs {e}",
                    gate[i],
                    up[i]
                );
            }
            checked += 1;
        }
    }
    // The whole inputs, special values at their ends included, were checked.
    assert!(checked > 0 && x.len() >= gate.len());
}

/// Relative RMS error of quantized matmul against `f32`, per type: against the unquantized
/// weights (the weight quantization's error) and against the weights as dequantized (only the
/// activations' 8-bit quantization is left).
#[test]
fn quantized_matmul_error_is_bounded() {
    let mut rng = SplitMix64::new(4);
    let (rows, cols, n_tok) = (64usize, 512usize, 4usize);
    let wf: Vec<f32> = (0..rows * cols).map(|_| rng.normal(0.05)).collect();
    let xf: Vec<f32> = (0..n_tok * cols).map(|_| rng.normal(1.0)).collect();
    let a = ActForms::new(xf.clone());
    let exact = |w: &[f32]| -> Vec<f32> {
        (0..rows * n_tok)
            .map(|i| {
                let (r, t) = (i / n_tok, i % n_tok);
                (0..cols).map(|c| w[r * cols + c] * xf[t * cols + c]).sum()
            })
            .collect()
    };
    let rel = |y: &[f32], e: &[f32]| {
        let num: f64 = y.iter().zip(e).map(|(p, q)| ((p - q) as f64).powi(2)).sum();
        let den: f64 = e.iter().map(|q| (*q as f64).powi(2)).sum();
        (num / den).sqrt()
    };
    let want = exact(&wf);
    for (ty, limit) in [
        (GgmlType::Q4_0, 0.15),
        (GgmlType::Q4_1, 0.12),
        (GgmlType::Q5_0, 0.08),
        (GgmlType::Q5_1, 0.06),
        (GgmlType::Q8_0, 0.02),
        (GgmlType::IQ4_NL, 0.12),
        (GgmlType::Q2_K, 0.45),
        (GgmlType::Q3_K, 0.25),
        (GgmlType::Q4_K, 0.12),
        (GgmlType::Q5_K, 0.06),
        (GgmlType::Q6_K, 0.04),
        (GgmlType::F16, 0.001),
        (GgmlType::BF16, 0.01),
        (GgmlType::F32, 1e-5),
    ] {
        let mut w = Vec::new();
        assert!(quant::quantize_row(ty, &wf, &mut w));
        let mut deq = vec![0f32; wf.len()];
        assert!(quant::dequantize_row(ty, &w, &mut deq));
        let want_deq = exact(&deq);
        for isa in Isa::available() {
            let mut y = vec![0f32; rows * n_tok];
            simd::matmul_acts(isa, ty, &w, cols, a.acts(), n_tok, &mut y);
            let (e_w, e_a) = (rel(&y, &want), rel(&y, &want_deq));
            println!("{ty} {isa:?}: relative RMS error {e_w:.4} (limit {limit}), {e_a:.4} from the dequantized weights");
            assert!(
                e_w < limit && e_w > 0.0 || ty == GgmlType::F32,
                "{ty} error {e_w} over {limit}"
            );
            let act_limit = if quant::partner(ty) == Some(quant::Partner::F32) {
                1e-5
            } else {
                0.02
            };
            assert!(e_a < act_limit, "{ty}: {e_a} from the dequantized weights");
        }
    }
}

#[test]
fn dequantize_roundtrip_is_close() {
    let mut rng = SplitMix64::new(5);
    let x: Vec<f32> = (0..512).map(|_| rng.uniform(-1.0, 1.0)).collect();
    for (ty, tol) in [
        (GgmlType::Q4_0, 0.15),
        (GgmlType::Q4_1, 0.08),
        (GgmlType::Q5_0, 0.07),
        (GgmlType::Q5_1, 0.04),
        (GgmlType::Q8_0, 0.01),
        (GgmlType::IQ4_NL, 0.15),
        (GgmlType::Q2_K, 0.5),
        (GgmlType::Q3_K, 0.3),
        (GgmlType::Q4_K, 0.12),
        (GgmlType::Q5_K, 0.06),
        (GgmlType::Q6_K, 0.03),
        (GgmlType::F16, 0.001),
        (GgmlType::BF16, 0.005),
        (GgmlType::F32, 0.0),
    ] {
        let mut w = Vec::new();
        let mut y = vec![0f32; x.len()];
        assert!(quant::quantize_row(ty, &x, &mut w));
        assert_eq!(
            w.len() as u64,
            ty.row_bytes(x.len() as u64).unwrap(),
            "{ty}"
        );
        assert!(quant::dequantize_row(ty, &w, &mut y));
        let max = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("{ty}: max roundtrip error {max}");
        assert!(max <= tol, "{ty}: max error {max}");
    }
}

/// Transposing a matmul's outputs to token rows (copied or added) equals the reference in every
/// variant: whole blocks of 8 rows by 8 and by 4 tokens, rows and tokens past them, and the
/// token ranges that a parallel split hands each thread.
#[test]
fn transposes_equal_the_reference() {
    let mut rng = SplitMix64::new(11);
    let mut checked = 0;
    for rows in [1usize, 7, 8, 13, 24, 579] {
        for n in [1usize, 2, 4, 5, 8, 9, 12, 16, 33] {
            let src: Vec<f32> = (0..rows * n).map(|_| rng.uniform(-2.0, 2.0)).collect();
            let init: Vec<f32> = (0..rows * n).map(|_| rng.uniform(-2.0, 2.0)).collect();
            // All tokens, then a split in two as `Par::split` makes it.
            let half = n.div_ceil(2);
            for (t0, k) in [(0, n), (0, half), (half, n - half)] {
                for add in [false, true] {
                    let mut want = init[..rows * k].to_vec();
                    edge_llm_kernel::ops::transpose_ref(&src, rows, n, t0, &mut want, add);
                    for isa in Isa::available() {
                        let mut got = init[..rows * k].to_vec();
                        simd::transpose(isa, &src, rows, n, t0, &mut got, add);
                        assert!(
                            got.iter()
                                .zip(&want)
                                .all(|(g, e)| g.to_bits() == e.to_bits()),
                            "{isa:?} rows {rows} n {n} tokens {t0}..{} add {add}",
                            t0 + k
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked >= 6 * 9 * 3 * 2);
}
