//! aarch64 NEON variants (baseline Armv8-A NEON, always present on aarch64).
//!
//! Same scheme as the wasm file, 4 weight rows at a time: exact integer block dot products
//! (`smull`/`smlal` into i16 lanes while the partial sums provably fit, then pairwise widening
//! adds), a pairwise reduction to one `i32` per row, and `f32x4` accumulation with one lane
//! per row in block order, with the multiplications and additions of the scalar reference in
//! its order (no fused multiply-add), so results are bit for bit the reference's.
//!
//! Tested under `qemu-aarch64` by `just test-neon`.

use core::arch::aarch64::*;

use crate::quant::f16::f16_le_to_f32;
use crate::quant::q8_1::BlockQ8_1;
use crate::quant::{iq4_nl, q4_0, q4_1, q5_0, q5_1, q8_0};

/// `[Σa, Σb, Σc, Σd]` of four i32x4 vectors.
#[inline(always)]
pub(super) fn hsum4(a: int32x4_t, b: int32x4_t, c: int32x4_t, d: int32x4_t) -> int32x4_t {
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    unsafe { vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d)) }
}

/// The 16 bytes at `b[o..o + 16]` as signed bytes.
#[inline(always)]
fn load_s8(b: &[u8], o: usize) -> int8x16_t {
    let s = &b[o..o + 16];
    // SAFETY: `s` has 16 readable bytes (checked by the slice above); `vld1q` has no alignment
    // requirement.
    unsafe { vld1q_s8(s.as_ptr().cast()) }
}

/// The 16 activation bytes at `a[o..o + 16]`.
#[inline(always)]
fn load_act(a: &[i8], o: usize) -> int8x16_t {
    let s = &a[o..o + 16];
    // SAFETY: as in `load_s8`.
    unsafe { vld1q_s8(s.as_ptr()) }
}

/// Four `f32` as a vector (lane `i` = `v[i]`).
#[inline(always)]
fn f32x4(v: [f32; 4]) -> float32x4_t {
    // SAFETY: `v` is 4 readable `f32`.
    unsafe { vld1q_f32(v.as_ptr()) }
}

/// The half float at `b[o..o + 2]` of each of four rows, as `f32` (exact).
#[inline(always)]
fn half4(rows: &[&[u8]; 4], o: usize) -> float32x4_t {
    f32x4(rows.map(|r| f16_le_to_f32([r[o], r[o + 1]])))
}

/// i32x4 partial sums of one Q4_1 block (nibbles at `blk[4..20]`) with activations `a0`
/// (elements 0..16) and `a1` (16..32). Each i16 lane sums 4 products, |s| <= 4 · 15 · 127.
#[inline(always)]
fn dot_q4(blk: &[u8], a0: int8x16_t, a1: int8x16_t) -> int32x4_t {
    let q = load_s8(blk, 4);
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    unsafe {
        let lo = vandq_s8(q, vdupq_n_s8(0x0f));
        let hi = vreinterpretq_s8_u8(vshrq_n_u8(vreinterpretq_u8_s8(q), 4));
        let mut p = vmull_s8(vget_low_s8(lo), vget_low_s8(a0));
        p = vmlal_high_s8(p, lo, a0);
        p = vmlal_s8(p, vget_low_s8(hi), vget_low_s8(a1));
        p = vmlal_high_s8(p, hi, a1);
        vpaddlq_s16(p)
    }
}

/// i32x4 partial sums of 32 signed values (`w0` elements 0..16, `w1` 16..32) with activations
/// `a0`, `a1`. Each i16 lane sums 2 products, |s| <= 2 · 128 · 127.
#[inline(always)]
fn dot_s8(w0: int8x16_t, w1: int8x16_t, a0: int8x16_t, a1: int8x16_t) -> int32x4_t {
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    unsafe {
        let p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(a0)), w0, a0);
        let p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(a1)), w1, a1);
        vpadalq_s16(vpaddlq_s16(p0), p1)
    }
}

/// The values of one Q8_0 block (at `blk[2..34]`).
#[inline(always)]
fn values_q8_0(blk: &[u8]) -> (int8x16_t, int8x16_t) {
    (load_s8(blk, 2), load_s8(blk, 18))
}

/// The values `q − 8` of one Q4_0 block (nibbles at `blk[2..18]`), in element order.
#[inline(always)]
fn values_q4_0(blk: &[u8]) -> (int8x16_t, int8x16_t) {
    let q = load_s8(blk, 2);
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    unsafe {
        let eight = vdupq_n_s8(8);
        let lo = vandq_s8(q, vdupq_n_s8(0x0f));
        let hi = vreinterpretq_s8_u8(vshrq_n_u8(vreinterpretq_u8_s8(q), 4));
        (vsubq_s8(lo, eight), vsubq_s8(hi, eight))
    }
}

/// Writes lane `i` of `acc` to row `r0 + i`, token `t`.
#[inline(always)]
fn store_lanes(acc: float32x4_t, out: &mut [f32], r0: usize, n_tok: usize, t: usize) {
    let mut v = [0f32; 4];
    // SAFETY: `v` has room for 4 `f32`.
    unsafe { vst1q_f32(v.as_mut_ptr(), acc) };
    for (i, x) in v.into_iter().enumerate() {
        out[(r0 + i) * n_tok + t] = x;
    }
}

/// The four `rb`-byte rows starting at row `r0` of `w`.
#[inline(always)]
fn rows4(w: &[u8], r0: usize, rb: usize) -> [&[u8]; 4] {
    [0, 1, 2, 3].map(|i| &w[(r0 + i) * rb..][..rb])
}

/// The shared loop of the matmuls: for each group of 4 rows of `BB`-byte blocks and each token,
/// `step(rows, offset, activation block, acc)` folds one block column into the 4 row lanes of
/// `acc`. Returns the rows done (the full groups); `simd::matmul` does the rest.
#[inline(always)]
fn matmul4<const BB: usize>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    step: impl Fn(&[&[u8]; 4], usize, &BlockQ8_1, float32x4_t) -> float32x4_t,
) -> usize {
    let rb = nb * BB;
    let n_rows = w.len() / rb;
    let full = n_rows / 4 * 4;
    for r0 in (0..full).step_by(4) {
        let rows = rows4(w, r0, rb);
        for t in 0..n_tok {
            let mut acc = f32x4([0.0; 4]);
            for (b, ab) in acts[t * nb..(t + 1) * nb].iter().enumerate() {
                acc = step(&rows, b * BB, ab, acc);
            }
            store_lanes(acc, out, r0, n_tok, t);
        }
    }
    full
}

/// Q4_1 rows × Q8_1 activations; see `simd::matmul` for the layout. Returns the rows done
/// (whole groups); `simd::matmul` does the rest.
pub(super) fn matmul_q4_1(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    let step = |rows: &[&[u8]; 4], o: usize, ab: &BlockQ8_1, acc| {
        let (a0, a1) = (load_act(&ab.qs, 0), load_act(&ab.qs, 16));
        let isum = hsum4(
            dot_q4(&rows[0][o..], a0, a1),
            dot_q4(&rows[1][o..], a0, a1),
            dot_q4(&rows[2][o..], a0, a1),
            dot_q4(&rows[3][o..], a0, a1),
        );
        let (d, m) = (half4(rows, o), half4(rows, o + 2));
        // SAFETY: NEON is a baseline feature of every aarch64 target.
        unsafe {
            let x = vmulq_f32(vmulq_n_f32(d, ab.d), vcvtq_f32_s32(isum));
            vaddq_f32(vaddq_f32(acc, x), vmulq_n_f32(m, ab.s))
        }
    };
    matmul4::<{ q4_1::BLOCK_BYTES }>(w, nb, acts, n_tok, out, step)
}

/// Q8_0 rows × Q8_1 activations (scale and values only). Returns the rows done (whole
/// groups); `simd::matmul` does the rest.
pub(super) fn matmul_q8_0(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    matmul4::<{ q8_0::BLOCK_BYTES }>(w, nb, acts, n_tok, out, scaled_step(values_q8_0))
}

/// Q4_0 rows × Q8_1 activations (scale and values only). Returns the rows done (whole
/// groups); `simd::matmul` does the rest.
pub(super) fn matmul_q4_0(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    matmul4::<{ q4_0::BLOCK_BYTES }>(w, nb, acts, n_tok, out, scaled_step(values_q4_0))
}

/// The [`matmul4`] step of the block types whose weights are a half-float scale (the first 2
/// bytes) times signed values, which `values` reads from a block (Q8_0, Q4_0).
#[inline(always)]
fn scaled_step(
    values: impl Fn(&[u8]) -> (int8x16_t, int8x16_t),
) -> impl Fn(&[&[u8]; 4], usize, &BlockQ8_1, float32x4_t) -> float32x4_t {
    move |rows, o, ab, acc| {
        let (a0, a1) = (load_act(&ab.qs, 0), load_act(&ab.qs, 16));
        let dot = |r: &[u8]| {
            let (w0, w1) = values(&r[o..]);
            dot_s8(w0, w1, a0, a1)
        };
        let isum = hsum4(dot(rows[0]), dot(rows[1]), dot(rows[2]), dot(rows[3]));
        let d = half4(rows, o);
        // SAFETY: NEON is a baseline feature of every aarch64 target.
        unsafe { vaddq_f32(acc, vmulq_f32(vmulq_n_f32(d, ab.d), vcvtq_f32_s32(isum))) }
    }
}

/// The high bits of a Q5 block (the little-endian word at `b[o..o + 4]`) as bytes `0x10`
/// (set) or 0: `(elements 0..16, elements 16..32)`.
#[inline(always)]
fn high_bits_q5(b: &[u8], o: usize) -> (uint8x16_t, uint8x16_t) {
    let qh = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    // SAFETY: NEON is a baseline feature of every aarch64 target; the index tables are 16
    // bytes.
    unsafe {
        let v = vreinterpretq_u8_u32(vdupq_n_u32(qh));
        let idx0: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
        let idx1: [u8; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];
        let bits = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
        let sixteen = vdupq_n_u8(0x10);
        let spread = |idx: &[u8; 16]| {
            let b = vqtbl1q_u8(v, vld1q_u8(idx.as_ptr()));
            vandq_u8(vtstq_u8(b, bits), sixteen)
        };
        (spread(&idx0), spread(&idx1))
    }
}

/// The 5-bit values of a Q5 block with high-bit word at `blk[o..o + 4]` and nibbles at
/// `blk[o + 4..o + 20]`, in element order (0..=31).
#[inline(always)]
fn values_q5(blk: &[u8], o: usize) -> (uint8x16_t, uint8x16_t) {
    let (h0, h1) = high_bits_q5(blk, o);
    let q = load_s8(blk, o + 4);
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    unsafe {
        let q = vreinterpretq_u8_s8(q);
        (
            vorrq_u8(vandq_u8(q, vdupq_n_u8(0x0f)), h0),
            vorrq_u8(vshrq_n_u8(q, 4), h1),
        )
    }
}

/// The values `q − 16` of one Q5_0 block, in element order.
#[inline(always)]
fn values_q5_0(blk: &[u8]) -> (int8x16_t, int8x16_t) {
    let (lo, hi) = values_q5(blk, 2);
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    unsafe {
        let sixteen = vdupq_n_s8(16);
        (
            vsubq_s8(vreinterpretq_s8_u8(lo), sixteen),
            vsubq_s8(vreinterpretq_s8_u8(hi), sixteen),
        )
    }
}

/// The table values of one IQ4_NL block (nibbles at `blk[2..18]`), in element order.
#[inline(always)]
fn values_iq4_nl(blk: &[u8]) -> (int8x16_t, int8x16_t) {
    let q = load_s8(blk, 2);
    // SAFETY: NEON is a baseline feature of every aarch64 target; the table has 16 bytes.
    unsafe {
        let t = vld1q_s8(iq4_nl::KVALUES.as_ptr());
        let q = vreinterpretq_u8_s8(q);
        (
            vqtbl1q_s8(t, vandq_u8(q, vdupq_n_u8(0x0f))),
            vqtbl1q_s8(t, vshrq_n_u8(q, 4)),
        )
    }
}

/// Q5_0 rows × Q8_1 activations (scale and values only). Returns the rows done (whole
/// groups); `simd::matmul` does the rest.
pub(super) fn matmul_q5_0(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    matmul4::<{ q5_0::BLOCK_BYTES }>(w, nb, acts, n_tok, out, scaled_step(values_q5_0))
}

/// IQ4_NL rows × Q8_1 activations (scale and values only). Returns the rows done (whole
/// groups); `simd::matmul` does the rest.
pub(super) fn matmul_iq4_nl(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    matmul4::<{ iq4_nl::BLOCK_BYTES }>(w, nb, acts, n_tok, out, scaled_step(values_iq4_nl))
}

/// Q5_1 rows × Q8_1 activations: 5-bit values (pair sums at most 2 · 31 · 127 in i16), then
/// `acc = acc + (d · da) · isum + m · sa` per block. Returns the rows done (whole groups);
/// `simd::matmul` does the rest.
pub(super) fn matmul_q5_1(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    let step = |rows: &[&[u8]; 4], o: usize, ab: &BlockQ8_1, acc| {
        let (a0, a1) = (load_act(&ab.qs, 0), load_act(&ab.qs, 16));
        let dot = |r: &[u8]| {
            let (lo, hi) = values_q5(&r[o..], 4);
            // SAFETY: NEON is a baseline feature of every aarch64 target.
            let (w0, w1) = unsafe { (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)) };
            dot_s8(w0, w1, a0, a1)
        };
        let isum = hsum4(dot(rows[0]), dot(rows[1]), dot(rows[2]), dot(rows[3]));
        let (d, m) = (half4(rows, o), half4(rows, o + 2));
        // SAFETY: NEON is a baseline feature of every aarch64 target.
        unsafe {
            let x = vmulq_f32(vmulq_n_f32(d, ab.d), vcvtq_f32_s32(isum));
            vaddq_f32(vaddq_f32(acc, x), vmulq_n_f32(m, ab.s))
        }
    };
    matmul4::<{ q5_1::BLOCK_BYTES }>(w, nb, acts, n_tok, out, step)
}
