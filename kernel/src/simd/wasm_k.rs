//! WebAssembly simd128 kernels of the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) against Q8_K
//! activations.
//!
//! As `x86_k.rs`: one weight row at a time, each 256-block decoded once (values to bytes,
//! scales to lanes) and dotted with every token's block. The values are unsigned and at most
//! 63, so `i16x8.relaxed_dot_i8x16_i7x16_s` sees them as its 7-bit operand and every lowering
//! gives the same exact pair sums (at most 2 · 63 · 127); sub-block sums widen to `i32`, are
//! multiplied by their scales and summed exactly, and each (row, token) adds its blocks in
//! `f32` in block order with the reference's operations.
//!
//! Q4_K, Q5_K and Q6_K rows repacked eight at a time (`Q4_Kx8`, `Q5_Kx8`, `Q6_Kx8`,
//! [`matmul_x8`]) are read as the AVX2 kernel reads them: each register holds 4 values of 4
//! rows, dotted with a broadcast of the 4 matching activation bytes, so sub-block sums arrive
//! one lane per row (no reduction) and are multiplied by the rows' scales lane by lane.

use core::arch::wasm32::*;

use super::wasm::{
    act_word, f16x4_to_f32, psum_q4, relaxed_dot, store8, touch_ahead, touch_ahead_x8,
};
use crate::quant::q8_k::BlockQ8_K;
use crate::quant::{q2_k, q3_k, q4_k, q4_kx8, q5_k, q5_kx8, q6_k, q6_kx8};

/// Sum of the 4 `i32` lanes of `v`.
#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    let s = i32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
    let s = i32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s));
    i32x4_extract_lane::<0>(s)
}

/// The 16 bytes at `p`.
///
/// # Safety
/// The 16 bytes at `p` must be readable.
#[inline(always)]
unsafe fn load(p: *const u8) -> v128 {
    // SAFETY: the caller guarantees 16 readable bytes; wasm loads are unaligned.
    unsafe { v128_load(p as *const v128) }
}

/// A decoded Q4_K/Q5_K block: sub-block `j`'s values as two registers (`q[2j]`, `q[2j + 1]`),
/// its scale, the mins as `i16` pairs `[m0 m0 m1 m1 …]` (two registers), `d` and `dmin`.
struct DecodedQ45 {
    q: [v128; 16],
    sc: [i32; 8],
    m16: [v128; 2],
    d: f32,
    dmin: f32,
}

/// The two half floats at `p[o..o + 4]` as `f32` (exact).
#[inline(always)]
fn halves2(p: &[u8], o: usize) -> (f32, f32) {
    (half(p, o), half(p, o + 2))
}

/// The half float at `p[o..o + 2]` as `f32` (exact), with integer operations: a subnormal
/// half through the vector sequence's `2^112` multiply would be a subnormal `f32` operand,
/// which costs x86 a microcode assist per block (K-quant super-block scales are often that
/// small).
#[inline(always)]
fn half(p: &[u8], o: usize) -> f32 {
    let h = u16::from_le_bytes([p[o], p[o + 1]]);
    let sign = u32::from(h & 0x8000) << 16;
    match h & 0x7c00 {
        // Zero or subnormal: the mantissa times 2^-24 is exact and a normal f32.
        0 => {
            let m = f32::from(h & 0x3ff) * f32::from_bits(0x3380_0000);
            f32::from_bits(m.to_bits() | sign)
        }
        // Infinity or NaN: the reference conversion.
        0x7c00 => crate::quant::f16::f16_bits_to_f32(h),
        _ => f32::from_bits(sign | ((u32::from(h & 0x7fff) << 13) + (112 << 23))),
    }
}

/// The decoded Q4_K/Q5_K block `p` with values `q`: its scales and mins (unpacked with word
/// operations, as `q4_k::scale_min` reads them) and half floats.
#[inline(always)]
fn decode_header(p: &[u8], q: [v128; 16]) -> DecodedQ45 {
    let [s0, s1, m0, m1] = q4_k::scale_min_words(p[4..16].try_into().expect("12 bytes"));
    let (sc_w, m_w) = ([s0, s1], [m0, m1]);
    let byte = |w: &[u32; 2], j: usize| (w[j / 4] >> (8 * (j % 4))) & 0xff;
    let sc: [i32; 8] = core::array::from_fn(|j| byte(&sc_w, j) as i32);
    let m = |j: usize| byte(&m_w, j) as i16;
    let pair = |k: usize| {
        i16x8(
            m(k),
            m(k),
            m(k + 1),
            m(k + 1),
            m(k + 2),
            m(k + 2),
            m(k + 3),
            m(k + 3),
        )
    };
    let (d, dmin) = halves2(p, 0);
    DecodedQ45 {
        q,
        sc,
        m16: [pair(0), pair(4)],
        d,
        dmin,
    }
}

/// `acc` plus the Q4_K/Q5_K dot product of a decoded block with `a`, as the reference:
/// `acc + (d·da)·Σ_j sc_j·Σ q·a − (dmin·da)·Σ_j m_j·(bsum_2j + bsum_2j+1)`.
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn accumulate_q45(dq: &DecodedQ45, a: &BlockQ8_K, acc: f32) -> f32 {
    let qa = a.qs.as_ptr() as *const u8;
    let mut s = i32x4_splat(0);
    for j in 0..8 {
        // SAFETY: sub-block j's 32 activation bytes lie in `a.qs`.
        let (a0, a1) = unsafe { (load(qa.add(32 * j)), load(qa.add(32 * j + 16))) };
        let p = i32x4_extadd_pairwise_i16x8(psum_q4(dq.q[2 * j], dq.q[2 * j + 1], a0, a1));
        s = i32x4_add(s, i32x4_mul(p, i32x4_splat(dq.sc[j])));
    }
    let isum = hsum_i32(s);
    let bs = a.bsums.as_ptr() as *const u8;
    // SAFETY: the 16 sums are 32 bytes.
    let (b0, b1) = unsafe { (load(bs), load(bs.add(16))) };
    let imin = hsum_i32(i32x4_add(
        i32x4_dot_i16x8(b0, dq.m16[0]),
        i32x4_dot_i16x8(b1, dq.m16[1]),
    ));
    acc + (dq.d * a.d) * isum as f32 - (dq.dmin * a.d) * imin as f32
}

/// Decodes a Q4_K block (`p`: its 144 bytes).
#[inline(always)]
fn decode_q4_k(p: &[u8]) -> DecodedQ45 {
    let p = &p[..q4_k::BLOCK_BYTES];
    let mask = u8x16_splat(0x0f);
    let mut q = [i32x4_splat(0); 16];
    for c in 0..4 {
        for h in 0..2 {
            // SAFETY: bytes 16 + 32c + 16h .. + 16 lie in the block.
            let b = unsafe { load(p.as_ptr().add(16 + 32 * c + 16 * h)) };
            q[4 * c + h] = v128_and(b, mask);
            q[4 * c + 2 + h] = u8x16_shr(b, 4);
        }
    }
    decode_header(p, q)
}

/// Decodes a Q5_K block (`p`: its 176 bytes).
#[inline(always)]
fn decode_q5_k(p: &[u8]) -> DecodedQ45 {
    let p = &p[..q5_k::BLOCK_BYTES];
    let mask = u8x16_splat(0x0f);
    let sixteen = u8x16_splat(0x10);
    // SAFETY: the high bits are bytes 16..48 of the block.
    let qh = unsafe { [load(p.as_ptr().add(16)), load(p.as_ptr().add(32))] };
    let high = |j: usize, h: usize| {
        let bit = u8x16_splat(1 << j);
        v128_and(i8x16_eq(v128_and(qh[h], bit), bit), sixteen)
    };
    let mut q = [i32x4_splat(0); 16];
    for c in 0..4 {
        for h in 0..2 {
            // SAFETY: bytes 48 + 32c + 16h .. + 16 lie in the block.
            let b = unsafe { load(p.as_ptr().add(48 + 32 * c + 16 * h)) };
            q[4 * c + h] = v128_or(v128_and(b, mask), high(2 * c, h));
            q[4 * c + 2 + h] = v128_or(u8x16_shr(b, 4), high(2 * c + 1, h));
        }
    }
    decode_header(p, q)
}

/// A decoded Q6_K or Q3_K block: sub-block `i`'s 16 values `u = q + OFFSET` (unsigned, at
/// most 63) in `q[i]`, the scales as `i32` and as `i16` (two registers), `d`.
struct DecodedS16 {
    q: [v128; 16],
    sc: [i32; 16],
    sc16: [v128; 2],
    d: f32,
}

/// Decodes a Q6_K block (`p`: its 210 bytes).
#[inline(always)]
fn decode_q6_k(p: &[u8]) -> DecodedS16 {
    let p = &p[..q6_k::BLOCK_BYTES];
    let mask = u8x16_splat(0x0f);
    let top = u8x16_splat(0x30);
    let mut q = [i32x4_splat(0); 16];
    for h in 0..2 {
        for k in 0..2 {
            // SAFETY: all offsets lie in the block's ql (0..128) and qh (128..192).
            let (ql0, ql1, qh) = unsafe {
                let b = p.as_ptr();
                (
                    load(b.add(64 * h + 16 * k)),
                    load(b.add(64 * h + 32 + 16 * k)),
                    load(b.add(128 + 32 * h + 16 * k)),
                )
            };
            // Elements 128h + 32c + 16k .. + 16 are sub-block 8h + 2c + k.
            let sb = |c: usize| 8 * h + 2 * c + k;
            // 16-bit shifts: the bits crossing from the neighbouring byte are masked off.
            q[sb(0)] = v128_or(v128_and(ql0, mask), v128_and(i16x8_shl(qh, 4), top));
            q[sb(1)] = v128_or(v128_and(ql1, mask), v128_and(i16x8_shl(qh, 2), top));
            q[sb(2)] = v128_or(v128_and(u16x8_shr(ql0, 4), mask), v128_and(qh, top));
            q[sb(3)] = v128_or(
                v128_and(u16x8_shr(ql1, 4), mask),
                v128_and(u16x8_shr(qh, 2), top),
            );
        }
    }
    let sc: [i32; 16] = core::array::from_fn(|i| i32::from(p[192 + i] as i8));
    s16_block(q, sc, half(p, 208))
}

/// A [`DecodedS16`] of values `q`, scales `sc` and `d`.
#[inline(always)]
fn s16_block(q: [v128; 16], sc: [i32; 16], d: f32) -> DecodedS16 {
    let s16 = |o: usize| {
        i16x8(
            sc[o] as i16,
            sc[o + 1] as i16,
            sc[o + 2] as i16,
            sc[o + 3] as i16,
            sc[o + 4] as i16,
            sc[o + 5] as i16,
            sc[o + 6] as i16,
            sc[o + 7] as i16,
        )
    };
    DecodedS16 {
        q,
        sc,
        sc16: [s16(0), s16(8)],
        d,
    }
}

/// The 2-bit fields of a Q2_K/Q3_K `qs` (64 bytes at `qs`) as 16 sub-blocks of 16 bytes:
/// element `128h + 32k + l` is bits `2k..2k+2` of byte `32h + l`.
#[inline(always)]
fn two_bit_sub_blocks(qs: &[u8]) -> [v128; 16] {
    let qs = &qs[..64];
    let three = u8x16_splat(3);
    let mut q = [i32x4_splat(0); 16];
    for h in 0..2 {
        for j in 0..2 {
            // SAFETY: bytes 32h + 16j .. + 16 lie in `qs`.
            let b = unsafe { load(qs.as_ptr().add(32 * h + 16 * j)) };
            for k in 0..4 {
                q[8 * h + 2 * k + j] = v128_and(u8x16_shr(b, 2 * k as u32), three);
            }
        }
    }
    q
}

/// The 16 scales of a Q3_K block (its 12 packed bytes `s`), unpacked with word operations as
/// `q3_k::scales` reads them.
#[inline(always)]
fn scales_q3(s: &[u8]) -> [i32; 16] {
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a0, a1, t) = (word(0), word(1), word(2));
    let (low4, top2) = (0x0f0f_0f0f, 0x0303_0303);
    let w = [
        (a0 & low4) | ((t & top2) << 4),
        (a1 & low4) | (((t >> 2) & top2) << 4),
        ((a0 >> 4) & low4) | (((t >> 4) & top2) << 4),
        ((a1 >> 4) & low4) | (((t >> 6) & top2) << 4),
    ];
    core::array::from_fn(|i| ((w[i / 4] >> (8 * (i % 4))) & 0xff) as i32 - 32)
}

/// Decodes a Q3_K block (`p`: its 110 bytes): `u = q + 4`, the low 2 bits plus 4 where the
/// high bit is set.
#[inline(always)]
fn decode_q3_k(p: &[u8]) -> DecodedS16 {
    let p = &p[..q3_k::BLOCK_BYTES];
    let mut q = two_bit_sub_blocks(&p[32..96]);
    // SAFETY: the high bits are bytes 0..32 of the block.
    let hm = unsafe { [load(p.as_ptr()), load(p.as_ptr().add(16))] };
    let four = u8x16_splat(4);
    for (i, qi) in q.iter_mut().enumerate() {
        // Sub-block i: elements 16i.., bit i / 2 of bytes 16 (i % 2)..
        let bit = u8x16_splat(1 << (i / 2));
        let set = i8x16_eq(v128_and(hm[i % 2], bit), bit);
        *qi = v128_or(*qi, v128_and(set, four));
    }
    let sc = scales_q3(&p[96..108]);
    s16_block(q, sc, half(p, 108))
}

/// A decoded Q2_K block: sub-block `i`'s 16 values in `q[i]`, the scales, the mins as `i16`
/// (two registers), `d` and `dmin`.
struct DecodedQ2 {
    q: [v128; 16],
    sc: [i32; 16],
    m16: [v128; 2],
    d: f32,
    dmin: f32,
}

/// Decodes a Q2_K block (`p`: its 84 bytes).
#[inline(always)]
fn decode_q2_k(p: &[u8]) -> DecodedQ2 {
    let p = &p[..q2_k::BLOCK_BYTES];
    let m = |o: usize| {
        let v = |i: usize| i16::from(p[o + i] >> 4);
        i16x8(v(0), v(1), v(2), v(3), v(4), v(5), v(6), v(7))
    };
    DecodedQ2 {
        q: two_bit_sub_blocks(&p[16..80]),
        sc: core::array::from_fn(|i| i32::from(p[i] & 15)),
        m16: [m(0), m(8)],
        d: half(p, 80),
        dmin: half(p, 82),
    }
}

/// `Σ_i sc_i · Σ u·a` over the 16 sub-blocks of 16 (`u` at most 63: the relaxed dot's 7-bit
/// operand), as `i32x4` partials.
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn scaled_sums16(q: &[v128; 16], sc: &[i32; 16], a: &BlockQ8_K) -> v128 {
    let qa = a.qs.as_ptr() as *const u8;
    let mut s = i32x4_splat(0);
    for i in 0..16 {
        // SAFETY: sub-block i's 16 activation bytes lie in `a.qs`.
        let ai = unsafe { load(qa.add(16 * i)) };
        let p = i32x4_extadd_pairwise_i16x8(i16x8_relaxed_dot_i8x16_i7x16(ai, q[i]));
        s = i32x4_add(s, i32x4_mul(p, i32x4_splat(sc[i])));
    }
    s
}

/// The 16 activation sums of `a` dotted with 16 `i16` lanes `w` (two registers), as `i32x4`
/// partials.
#[inline(always)]
fn bsums_dot(a: &BlockQ8_K, w: &[v128; 2]) -> v128 {
    let bs = a.bsums.as_ptr() as *const u8;
    // SAFETY: the 16 sums are 32 bytes.
    let (b0, b1) = unsafe { (load(bs), load(bs.add(16))) };
    i32x4_add(i32x4_dot_i16x8(b0, w[0]), i32x4_dot_i16x8(b1, w[1]))
}

/// `acc` plus the Q2_K dot product of a decoded block with `a`, as the reference:
/// `acc + (d·da)·Σ_i sc_i·Σ q·a − (dmin·da)·Σ_i m_i·bsum_i`.
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn accumulate_q2(dq: &DecodedQ2, a: &BlockQ8_K, acc: f32) -> f32 {
    let isum = hsum_i32(scaled_sums16(&dq.q, &dq.sc, a));
    let imin = hsum_i32(bsums_dot(a, &dq.m16));
    acc + (dq.d * a.d) * isum as f32 - (dq.dmin * a.d) * imin as f32
}

/// `acc` plus the Q6_K/Q3_K dot product of a decoded block with `a`:
/// `Σ_i sc_i·Σ u·a − offset·Σ_i sc_i·bsum_i` (exactly `Σ_i sc_i·Σ q·a`; `offset` is 32 for
/// Q6_K, 4 for Q3_K), then `acc + (d·da)·isum`.
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn accumulate_s16(dq: &DecodedS16, a: &BlockQ8_K, acc: f32, offset: i32) -> f32 {
    let qa = a.qs.as_ptr() as *const u8;
    let mut s = i32x4_splat(0);
    for i in 0..16 {
        // SAFETY: sub-block i's 16 activation bytes lie in `a.qs`.
        let ai = unsafe { load(qa.add(16 * i)) };
        let p = i32x4_extadd_pairwise_i16x8(i16x8_relaxed_dot_i8x16_i7x16(ai, dq.q[i]));
        s = i32x4_add(s, i32x4_mul(p, i32x4_splat(dq.sc[i])));
    }
    let off = i32x4_mul(bsums_dot(a, &dq.sc16), i32x4_splat(offset));
    let isum = hsum_i32(i32x4_sub(s, off));
    acc + (dq.d * a.d) * isum as f32
}

/// Q4_K rows × Q8_K activations (`nb` blocks per row); layout as `simd::matmul`. Returns the
/// rows done (all of them).
#[target_feature(enable = "relaxed-simd")]
pub(super) fn matmul_q4_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    k_rows(
        w,
        q4_k::BLOCK_BYTES,
        nb,
        acts,
        n_tok,
        out,
        decode_q4_k,
        |d, a, acc| accumulate_q45(d, a, acc),
    )
}

/// Q5_K rows × Q8_K activations; as [`matmul_q4_k`].
#[target_feature(enable = "relaxed-simd")]
pub(super) fn matmul_q5_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    k_rows(
        w,
        q5_k::BLOCK_BYTES,
        nb,
        acts,
        n_tok,
        out,
        decode_q5_k,
        |d, a, acc| accumulate_q45(d, a, acc),
    )
}

/// Q6_K rows × Q8_K activations; as [`matmul_q4_k`].
#[target_feature(enable = "relaxed-simd")]
pub(super) fn matmul_q6_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    k_rows(
        w,
        q6_k::BLOCK_BYTES,
        nb,
        acts,
        n_tok,
        out,
        decode_q6_k,
        |d, a, acc| accumulate_s16(d, a, acc, 32),
    )
}

/// Q3_K rows × Q8_K activations; as [`matmul_q4_k`].
#[target_feature(enable = "relaxed-simd")]
pub(super) fn matmul_q3_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    let acc = |d: &DecodedS16, a: &BlockQ8_K, acc| accumulate_s16(d, a, acc, 4);
    k_rows(w, q3_k::BLOCK_BYTES, nb, acts, n_tok, out, decode_q3_k, acc)
}

/// Q2_K rows × Q8_K activations; as [`matmul_q4_k`].
#[target_feature(enable = "relaxed-simd")]
pub(super) fn matmul_q2_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    let acc = |d: &DecodedQ2, a: &BlockQ8_K, acc| accumulate_q2(d, a, acc);
    k_rows(w, q2_k::BLOCK_BYTES, nb, acts, n_tok, out, decode_q2_k, acc)
}

/// The shared loop: every row, every block decoded once, then each token's accumulator.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn k_rows<D>(
    w: &[u8],
    bb: usize,
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
    decode: impl Fn(&[u8]) -> D,
    accumulate: impl Fn(&D, &BlockQ8_K, f32) -> f32,
) -> usize {
    let rb = nb * bb;
    if nb == 0 || n_tok == 0 || acts.len() < nb * n_tok {
        return 0;
    }
    let n_rows = (w.len() / rb).min(out.len() / n_tok);
    for (r, o) in out.chunks_exact_mut(n_tok).take(n_rows).enumerate() {
        o.fill(0.0);
        let mut seen = 0;
        for b in 0..nb {
            seen ^= touch_ahead(w, r * rb + b * bb, bb);
            let dec = decode(&w[r * rb + b * bb..][..bb]);
            for (t, acc) in o.iter_mut().enumerate() {
                *acc = accumulate(&dec, &acts[t * nb + b], *acc);
            }
        }
        core::hint::black_box(seen);
    }
    n_rows
}

/// Offsets in a `Q6_Kx8` record (`quant::q6_kx8`): the rows' sub-block scales in pairs, the
/// nibble chunks, the top-bit chunks.
const Q6X8_SCALES: usize = 16;
const Q6X8_NIBBLES: usize = 144;
const Q6X8_TOPS: usize = 1168;

/// Sub-blocks `2p`, `2p + 1` (elements `32p..32p + 32`) of a `Q6_Kx8` record, decoded: value
/// vector `g` (4-group `8p + g`, values `u = q + 32`) as `(rows 0..4, rows 4..8)`, and the
/// rows' two scales as `i16` (`[s_2p, s_2p+1]` of row `i` in lanes `2i`, `2i + 1`; rows 0..4,
/// then 4..8).
#[derive(Clone, Copy)]
struct Q6x8Pair {
    v: [(v128, v128); 8],
    sc: [v128; 2],
}

/// Decodes pair `P` of the record `rec` (constant `P`: the shifts are immediates).
#[inline(always)]
fn q6x8_pair<const P: usize>(rec: &[u8; q6_kx8::RECORD_BYTES]) -> Q6x8Pair {
    let mask = u8x16_splat(0x0f);
    let top = u8x16_splat(0x30);
    // 4-groups m = 8P..8P + 8 lie in one nibble half (m / 32) and one top-bit quarter
    // (m / 16). 16-bit shifts: the bits crossing from the neighbouring byte are masked off.
    let value = |n: v128, t: v128| {
        let n = if P < 4 { n } else { u16x8_shr(n, 4) };
        let t = match P / 2 {
            0 => i16x8_shl(t, 4),
            1 => i16x8_shl(t, 2),
            2 => t,
            _ => u16x8_shr(t, 2),
        };
        v128_or(v128_and(n, mask), v128_and(t, top))
    };
    let v = core::array::from_fn(|g| {
        let m = 8 * P + g;
        let nib = &rec[Q6X8_NIBBLES + 32 * (m % 32)..][..32];
        let tb = &rec[Q6X8_TOPS + 32 * (m % 16)..][..32];
        (
            value(super::wasm::load16(nib), super::wasm::load16(tb)),
            value(
                super::wasm::load16(&nib[16..]),
                super::wasm::load16(&tb[16..]),
            ),
        )
    });
    let sc = super::wasm::load16(&rec[Q6X8_SCALES + 16 * P..][..16]);
    Q6x8Pair {
        v,
        sc: [i16x8_extend_low_i8x16(sc), i16x8_extend_high_i8x16(sc)],
    }
}

/// The 8 pairs of a `Q6_Kx8` record, decoded.
#[inline(always)]
fn q6x8_pairs(rec: &[u8; q6_kx8::RECORD_BYTES]) -> [Q6x8Pair; 8] {
    [
        q6x8_pair::<0>(rec),
        q6x8_pair::<1>(rec),
        q6x8_pair::<2>(rec),
        q6x8_pair::<3>(rec),
        q6x8_pair::<4>(rec),
        q6x8_pair::<5>(rec),
        q6x8_pair::<6>(rec),
        q6x8_pair::<7>(rec),
    ]
}

/// The `d` of the 8 rows of a `Q6_Kx8` record as `f32` (rows 0..4, rows 4..8), exactly and
/// with no subnormal operand ([`f16x4_to_f32`]; K-quant scales are often subnormal halves).
#[inline(always)]
fn q6x8_d(rec: &[u8; q6_kx8::RECORD_BYTES]) -> (v128, v128) {
    let h = super::wasm::load16(&rec[..16]);
    (
        f16x4_to_f32(u32x4_extend_low_u16x8(h)),
        f16x4_to_f32(u32x4_extend_high_u16x8(h)),
    )
}

/// Adds pair `p`'s share of the exact `Σ_s sc_s·Σ u·a` (`isum`) and of `Σ_s sc_s·bsum_s`
/// (`off`) for the 8 rows (rows 0..4, rows 4..8) against `a`. Each relaxed dot's 7-bit operand
/// is a value `u` of at most 63 (every lowering agrees); two dots' pair sums stay within
/// 2 · 2 · 63 · 128 = 32256 in i16, then `i32x4.dot_i16x8_s` multiplies them by the row's
/// scale (both lanes of a row hold it) and adds.
#[inline(always)]
fn q6x8_pair_sums(
    pr: &Q6x8Pair,
    a: &BlockQ8_K,
    p: usize,
    isum: &mut [v128; 2],
    off: &mut [v128; 2],
) {
    let words = act_words(a, p);
    let bs = u32::from(a.bsums[2 * p] as u16) | (u32::from(a.bsums[2 * p + 1] as u16) << 16);
    let bs = u32x4_splat(bs);
    for h in 0..2 {
        let v = |g: usize| if h == 0 { pr.v[g].0 } else { pr.v[g].1 };
        let two = |g: usize| {
            i16x8_add(
                relaxed_dot(words[g], v(g)),
                relaxed_dot(words[g + 1], v(g + 1)),
            )
        };
        let sc = pr.sc[h];
        let sa = i16x8_shuffle::<0, 0, 2, 2, 4, 4, 6, 6>(sc, sc);
        let sb = i16x8_shuffle::<1, 1, 3, 3, 5, 5, 7, 7>(sc, sc);
        let x = i32x4_add(
            i32x4_add(i32x4_dot_i16x8(two(0), sa), i32x4_dot_i16x8(two(2), sa)),
            i32x4_add(i32x4_dot_i16x8(two(4), sb), i32x4_dot_i16x8(two(6), sb)),
        );
        isum[h] = i32x4_add(isum[h], x);
        off[h] = i32x4_add(off[h], i32x4_dot_i16x8(sc, bs));
    }
}

/// `acc + (d·da)·isum` for the 8 rows of one record against `a` (the GGUF layout's block step,
/// [`q6_k::vec_dot_ref`]): `isum = Σ_s sc_s·Σ u·a − 32·Σ_s sc_s·bsum_s`, exactly
/// `Σ_s sc_s·Σ q·a` (at most 16 · 16 · 63 · 128 · 128 in magnitude before the offset: far below
/// 2^31).
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn q6x8_step(
    acc: (v128, v128),
    pairs: &[Q6x8Pair; 8],
    d: (v128, v128),
    a: &BlockQ8_K,
) -> (v128, v128) {
    let zero = i32x4_splat(0);
    let (mut isum, mut off) = ([zero; 2], [zero; 2]);
    for (p, pr) in pairs.iter().enumerate() {
        q6x8_pair_sums(pr, a, p, &mut isum, &mut off);
    }
    let da = f32x4_splat(a.d);
    let row = |acc: v128, d: v128, isum: v128, off: v128| {
        let isum = i32x4_sub(isum, i32x4_shl(off, 5));
        f32x4_add(acc, f32x4_mul(f32x4_mul(d, da), f32x4_convert_i32x4(isum)))
    };
    (
        row(acc.0, d.0, isum[0], off[0]),
        row(acc.1, d.1, isum[1], off[1]),
    )
}

/// The activations of elements `32k..32k + 32` of `a` as 8 registers, register `g` holding
/// elements `32k + 4g..+4` in every 32-bit lane: the partners of a repacked record's value
/// vectors, which hold 4 elements of each row.
#[inline(always)]
fn act_words(a: &BlockQ8_K, k: usize) -> [v128; 8] {
    let qa = a.qs[32 * k..][..32].as_ptr() as *const u8;
    // SAFETY: the 32 bytes at `qa` lie in `a.qs` (the slice above checks it).
    let (a0, a1) = unsafe { (load(qa), load(qa.add(16))) };
    core::array::from_fn(|g| act_word(a0, a1, g))
}

/// The 16 bytes of `s` by a volatile load: LLVM keeps it in its place among the other volatile
/// loads and does not merge it with another load of the same bytes.
#[inline(always)]
fn load16_volatile(s: &[u8]) -> v128 {
    let s = &s[..16];
    // SAFETY: `s` has 16 readable bytes (checked by the slice above); wasm loads are unaligned.
    unsafe { core::ptr::read_volatile(s.as_ptr() as *const v128) }
}

/// A record (a `chunks_exact` piece of `N` bytes) as an array: offsets into it need no bounds
/// checks.
#[inline(always)]
fn record<const N: usize>(rec: &[u8]) -> &[u8; N] {
    rec.try_into().expect("a whole record")
}

/// K-quant rows repacked eight at a time × Q8_K activations: `Q4_Kx8`, `Q5_Kx8` and `Q6_Kx8`
/// (`quant::q4_kx8`, `q5_kx8`, `q6_kx8`); other types have no simd128 kernel (0 rows done).
/// Layout as `simd::matmul_q8_k`, whose `clip` already cut `w` and `out` to whole rows.
/// Decoding reads each record once; with several tokens each group is first decoded (values to
/// bytes, scales to `i16`, `d` to `f32`) and reused for every token. Returns the rows done
/// (whole groups of 8); `simd::matmul_x8_q8_k` does the rest.
pub(super) fn matmul_x8(
    ty: crate::gguf::GgmlType,
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    use crate::gguf::GgmlType;
    if nb == 0 || n_tok == 0 || acts.len() < nb * n_tok {
        return 0;
    }
    match ty {
        GgmlType::Q4_K => kx8_rows::<Q4Kx8, { q4_kx8::RECORD_BYTES }>(w, nb, acts, n_tok, out),
        GgmlType::Q5_K => kx8_rows::<Q5Kx8, { q5_kx8::RECORD_BYTES }>(w, nb, acts, n_tok, out),
        GgmlType::Q6_K => kx8_rows::<Q6Kx8, { q6_kx8::RECORD_BYTES }>(w, nb, acts, n_tok, out),
        _ => 0,
    }
}

/// A repacked K-quant layout (`quant::q4_kx8`, `q5_kx8`, `q6_kx8`) as [`kx8_rows`] reads
/// its records of `RECORD` bytes (8 rows of one 256-block).
trait Kx8<const RECORD: usize> {
    /// A record's values and scales, decoded once for several tokens.
    type Decoded;
    fn decode(rec: &[u8; RECORD]) -> Self::Decoded;
    /// Adds a decoded record to one token's two accumulators (rows 0..4, rows 4..8).
    fn step(acc: (v128, v128), dec: &Self::Decoded, a: &BlockQ8_K) -> (v128, v128);
    /// [`Kx8::step`] of one token from the record itself: decoding then stepping, unless a
    /// layout reads the record piece by piece ([`q4x8_step_one`]).
    #[inline(always)]
    fn step_one(acc: (v128, v128), rec: &[u8; RECORD], a: &BlockQ8_K) -> (v128, v128) {
        Self::step(acc, &Self::decode(rec), a)
    }
}

/// The `Q4_Kx8` layout.
struct Q4Kx8;
impl Kx8<{ q4_kx8::RECORD_BYTES }> for Q4Kx8 {
    type Decoded = Kx8Record;
    #[inline(always)]
    fn decode(rec: &[u8; q4_kx8::RECORD_BYTES]) -> Kx8Record {
        kx8_record::<false, { q4_kx8::RECORD_BYTES }>(rec)
    }
    #[inline(always)]
    fn step(acc: (v128, v128), dec: &Kx8Record, a: &BlockQ8_K) -> (v128, v128) {
        kx8_step::<false>(acc, dec, a)
    }
    #[inline(always)]
    fn step_one(
        acc: (v128, v128),
        rec: &[u8; q4_kx8::RECORD_BYTES],
        a: &BlockQ8_K,
    ) -> (v128, v128) {
        q4x8_step_one(acc, rec, a)
    }
}

/// The `Q5_Kx8` layout.
struct Q5Kx8;
impl Kx8<{ q5_kx8::RECORD_BYTES }> for Q5Kx8 {
    type Decoded = Kx8Record;
    #[inline(always)]
    fn decode(rec: &[u8; q5_kx8::RECORD_BYTES]) -> Kx8Record {
        kx8_record::<true, { q5_kx8::RECORD_BYTES }>(rec)
    }
    #[inline(always)]
    fn step(acc: (v128, v128), dec: &Kx8Record, a: &BlockQ8_K) -> (v128, v128) {
        kx8_step::<true>(acc, dec, a)
    }
}

/// The `Q6_Kx8` layout.
struct Q6Kx8;
impl Kx8<{ q6_kx8::RECORD_BYTES }> for Q6Kx8 {
    type Decoded = ([Q6x8Pair; 8], (v128, v128));
    #[inline(always)]
    fn decode(rec: &[u8; q6_kx8::RECORD_BYTES]) -> Self::Decoded {
        (q6x8_pairs(rec), q6x8_d(rec))
    }
    #[inline(always)]
    fn step(acc: (v128, v128), (pairs, d): &Self::Decoded, a: &BlockQ8_K) -> (v128, v128) {
        q6x8_step(acc, pairs, *d, a)
    }
}

/// The rows loop of the repacked K-quants: every group of 8 rows, each record decoded once for
/// all tokens and added to each token's two accumulators (rows 0..4, rows 4..8) in block
/// order; one token steps from the record itself ([`Kx8::step_one`]). Returns the rows done
/// (whole groups).
#[target_feature(enable = "relaxed-simd")]
fn kx8_rows<L: Kx8<RECORD>, const RECORD: usize>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    const R: usize = crate::quant::rows8::ROWS;
    let rb = nb * RECORD / R;
    let full = (w.len() / rb).min(out.len() / n_tok) / R * R;
    let zero = (f32x4_splat(0.0), f32x4_splat(0.0));
    let mut buf = Vec::new();
    for r0 in (0..full).step_by(R) {
        let group = &w[r0 * rb..(r0 + R) * rb];
        if n_tok == 1 {
            let (mut acc, mut seen) = (zero, 0);
            for (b, (rec, ab)) in group.chunks_exact(RECORD).zip(acts).enumerate() {
                seen ^= touch_ahead_x8(w, r0 * rb + b * RECORD, RECORD);
                acc = L::step_one(acc, record::<RECORD>(rec), ab);
            }
            core::hint::black_box(seen);
            store8(acc.0, acc.1, out, r0, 1, 0);
            continue;
        }
        buf.clear();
        buf.extend(
            group
                .chunks_exact(RECORD)
                .map(|rec| L::decode(record::<RECORD>(rec))),
        );
        for t in 0..n_tok {
            let mut acc = zero;
            for (dec, ab) in buf.iter().zip(&acts[t * nb..(t + 1) * nb]) {
                acc = L::step(acc, dec, ab);
            }
            store8(acc.0, acc.1, out, r0, n_tok, t);
        }
    }
    full
}

/// Offsets in a `Q4_Kx8`/`Q5_Kx8` record (`quant::q4_kx8`, `quant::q5_kx8`): the 8 groups of
/// the rows' packed sub-block scales and mins, and the `Q5_Kx8` high-bit planes.
const KX8_GROUPS: usize = 32;
const KX8_HIGH: usize = 128;

/// Sub-block `j` of a `Q4_Kx8`/`Q5_Kx8` record, decoded: value vector `g` (elements
/// `32j + 4g..+4` of each row) as `(rows 0..4, rows 4..8)`; the rows' scales as `i16`, each
/// row's in both lanes of its pair (rows 0..4, then 4..8); the rows' mins as `i32` (rows
/// 0..4, then 4..8).
#[derive(Clone, Copy)]
struct Kx8Sub {
    v: [(v128, v128); 8],
    sc: [v128; 2],
    m: [v128; 2],
}

/// Decodes sub-block `J` of the record `rec` (constant `J`: the nibble side is fixed);
/// `FIVE` for `Q5_Kx8` (its high bits from bit `J` of the planes).
#[inline(always)]
fn kx8_sub<const FIVE: bool, const N: usize, const J: usize>(rec: &[u8; N]) -> Kx8Sub {
    let mask = u8x16_splat(0x0f);
    let chunks = if FIVE { KX8_HIGH + 256 } else { KX8_HIGH };
    let v = core::array::from_fn(|g| {
        let c = &rec[chunks + 32 * (8 * (J / 2) + g)..][..32];
        let nib = |n: v128| {
            let n = if J.is_multiple_of(2) {
                n
            } else {
                u16x8_shr(n, 4)
            };
            v128_and(n, mask)
        };
        let (v0, v1) = (
            nib(super::wasm::load16(c)),
            nib(super::wasm::load16(&c[16..])),
        );
        if !FIVE {
            return (v0, v1);
        }
        // Bit J of plane g's bytes to bit 4 (16-bit shifts: the bits crossing from the
        // neighbouring byte land below bit 4 or above it) and the mask.
        let plane = &rec[KX8_HIGH + 32 * g..][..32];
        let high = |p: v128| {
            let p = match J {
                0 => i16x8_shl(p, 4),
                1 => i16x8_shl(p, 3),
                2 => i16x8_shl(p, 2),
                3 => i16x8_shl(p, 1),
                4 => p,
                5 => u16x8_shr(p, 1),
                6 => u16x8_shr(p, 2),
                _ => u16x8_shr(p, 3),
            };
            v128_and(p, u8x16_splat(0x10))
        };
        let (h0, h1) = (
            high(super::wasm::load16(plane)),
            high(super::wasm::load16(&plane[16..])),
        );
        (v128_or(v0, h0), v128_or(v1, h1))
    });
    let (sc, m) = kx8_sub_scales::<N>(rec, J);
    Kx8Sub { v, sc, m }
}

/// Sub-block `j`'s scales of the 8 rows of a `Q4_Kx8`/`Q5_Kx8` record as `i16`, each row's
/// in both lanes of its pair (rows 0..4, then 4..8), and their mins as `i32` (rows 0..4, then
/// 4..8). The 12 bytes pack them as a GGUF block packs its 8 sub-blocks'
/// (`q4_k::scale_min`), unpacked as `decode_header` unpacks them.
#[inline(always)]
fn kx8_sub_scales<const N: usize>(rec: &[u8; N], j: usize) -> ([v128; 2], [v128; 2]) {
    let s = &rec[KX8_GROUPS + 12 * j..][..12];
    let [s0, s1, m0, m1] = q4_k::scale_min_words(s.try_into().expect("12 bytes"));
    let packed = u32x4(s0, s1, m0, m1);
    let (sc, m) = (
        u16x8_extend_low_u8x16(packed),
        u16x8_extend_high_u8x16(packed),
    );
    (
        [
            i16x8_shuffle::<0, 0, 1, 1, 2, 2, 3, 3>(sc, sc),
            i16x8_shuffle::<4, 4, 5, 5, 6, 6, 7, 7>(sc, sc),
        ],
        [u32x4_extend_low_u16x8(m), u32x4_extend_high_u16x8(m)],
    )
}

/// A decoded `Q4_Kx8`/`Q5_Kx8` record: its 8 sub-blocks, then `d` and `dmin` as `f32` (rows
/// 0..4, rows 4..8).
type Kx8Record = ([Kx8Sub; 8], [v128; 4]);

/// Decodes a `Q4_Kx8` (`FIVE` false) or `Q5_Kx8` record.
#[inline(always)]
fn kx8_record<const FIVE: bool, const N: usize>(rec: &[u8; N]) -> Kx8Record {
    (
        [
            kx8_sub::<FIVE, N, 0>(rec),
            kx8_sub::<FIVE, N, 1>(rec),
            kx8_sub::<FIVE, N, 2>(rec),
            kx8_sub::<FIVE, N, 3>(rec),
            kx8_sub::<FIVE, N, 4>(rec),
            kx8_sub::<FIVE, N, 5>(rec),
            kx8_sub::<FIVE, N, 6>(rec),
            kx8_sub::<FIVE, N, 7>(rec),
        ],
        kx8_scales(rec),
    )
}

/// The `d` and `dmin` of the 8 rows of a `Q4_Kx8`/`Q5_Kx8` record as `f32`:
/// `[d0, d1, dmin0, dmin1]` (rows 0..4, rows 4..8).
#[inline(always)]
fn kx8_scales<const N: usize>(rec: &[u8; N]) -> [v128; 4] {
    let halves = |o: usize| {
        let h = super::wasm::load16(&rec[o..o + 16]);
        (
            f16x4_to_f32(u32x4_extend_low_u16x8(h)),
            f16x4_to_f32(u32x4_extend_high_u16x8(h)),
        )
    };
    let ((d0, d1), (m0, m1)) = (halves(0), halves(16));
    [d0, d1, m0, m1]
}

/// `acc + (d·da)·isum − (dmin·da)·imin` for the 8 rows of a decoded `Q4_Kx8`/`Q5_Kx8` record
/// against `a` (the GGUF layout's block step, [`q4_k::vec_dot_ref`]): `isum = Σ_j sc_j·Σ q·a`,
/// `imin = Σ_j m_j·(bsum_2j + bsum_2j+1)`, exact. Each relaxed dot's 7-bit operand is a value
/// of at most 31 (every lowering agrees); i16 lanes sum 8 dots of nibbles (at most
/// 8 · 2 · 15 · 128 = 30720) or 4 of 5-bit values (4 · 2 · 31 · 128 = 31744), then
/// `i32x4.dot_i16x8_s` multiplies them by the row's scale and adds.
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn kx8_step<const FIVE: bool>(acc: (v128, v128), rec: &Kx8Record, a: &BlockQ8_K) -> (v128, v128) {
    let zero = i32x4_splat(0);
    let (mut isum, mut imin) = ([zero; 2], [zero; 2]);
    for (j, sub) in rec.0.iter().enumerate() {
        let words = act_words(a, j);
        let bp = i32x4_splat(i32::from(a.bsums[2 * j]) + i32::from(a.bsums[2 * j + 1]));
        for h in 0..2 {
            let v = |g: usize| if h == 0 { sub.v[g].0 } else { sub.v[g].1 };
            let four = |g0: usize| {
                let d = |g: usize| relaxed_dot(words[g], v(g));
                i16x8_add(i16x8_add(d(g0), d(g0 + 1)), i16x8_add(d(g0 + 2), d(g0 + 3)))
            };
            let x = if FIVE {
                i32x4_add(
                    i32x4_dot_i16x8(four(0), sub.sc[h]),
                    i32x4_dot_i16x8(four(4), sub.sc[h]),
                )
            } else {
                i32x4_dot_i16x8(i16x8_add(four(0), four(4)), sub.sc[h])
            };
            isum[h] = i32x4_add(isum[h], x);
            imin[h] = i32x4_add(imin[h], i32x4_mul(sub.m[h], bp));
        }
    }
    kx8_finish(acc, rec.1, a, isum, imin)
}

/// [`kx8_step`] of a `Q4_Kx8` record read from the record itself, for one token: each value
/// is dotted as soon as it is loaded, and nothing decoded outlives its use. (Decoding the
/// whole record first, as several tokens do, holds 160 registers' worth, which Cranelift keeps
/// on the stack: `matmul_speed run Q4_K 1` under wasmtime ran at two thirds of this speed.
/// `Q5_Kx8`'s high bits made the same order slower than decoding first.) The integer sums
/// are [`kx8_step`]'s, added in another order: the same exact integers.
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn q4x8_step_one<const N: usize>(acc: (v128, v128), rec: &[u8; N], a: &BlockQ8_K) -> (v128, v128) {
    let zero = i32x4_splat(0);
    let (mut isum, mut imin) = ([zero; 2], [zero; 2]);
    q4x8_pair_one::<N, 0>(rec, a, &mut isum, &mut imin);
    q4x8_pair_one::<N, 1>(rec, a, &mut isum, &mut imin);
    q4x8_pair_one::<N, 2>(rec, a, &mut isum, &mut imin);
    q4x8_pair_one::<N, 3>(rec, a, &mut isum, &mut imin);
    kx8_finish(acc, kx8_scales(rec), a, isum, imin)
}

/// Adds sub-blocks `2P` and `2P + 1` of a `Q4_Kx8` record (the low and then the high nibbles
/// of the same 8 chunks) to `isum` and `imin` for one token: per sub-block, one chain of 8
/// relaxed dots for each 4 rows (at most 8 · 2 · 15 · 128 = 30720 in i16), then the rows'
/// scales and mins. The chunks are read with volatile loads, which LLVM keeps in order and
/// does not merge: plain loads it shared between a chunk's two sub-blocks, holding the values
/// from the first pass to the second, and Cranelift kept them on the stack (0.8× this speed,
/// `matmul_speed run Q4_K 1`).
#[inline(always)]
fn q4x8_pair_one<const N: usize, const P: usize>(
    rec: &[u8; N],
    a: &BlockQ8_K,
    isum: &mut [v128; 2],
    imin: &mut [v128; 2],
) {
    let mask = u8x16_splat(0x0f);
    let zero = i16x8_splat(0);
    for k in 0..2 {
        let j = 2 * P + k;
        let q = a.qs[32 * j..][..32].as_ptr() as *const u8;
        // SAFETY: the 32 bytes at `q` lie in `a.qs` (the slice above checks it).
        let (a0, a1) = unsafe { (load(q), load(q.add(16))) };
        let (sc, m) = kx8_sub_scales(rec, j);
        let bp = i32x4_splat(i32::from(a.bsums[2 * j]) + i32::from(a.bsums[2 * j + 1]));
        let mut s = [zero; 2];
        for g in 0..8 {
            let w = act_word(a0, a1, g);
            for (h, s) in s.iter_mut().enumerate() {
                let at = KX8_HIGH + 32 * (8 * P + g) + 16 * h;
                let x = load16_volatile(&rec[at..at + 16]);
                let v = v128_and(if k == 0 { x } else { u16x8_shr(x, 4) }, mask);
                *s = i16x8_add(*s, relaxed_dot(w, v));
            }
        }
        for h in 0..2 {
            isum[h] = i32x4_add(isum[h], i32x4_dot_i16x8(s[h], sc[h]));
            imin[h] = i32x4_add(imin[h], i32x4_mul(m[h], bp));
        }
    }
}

/// `acc + (d·da)·isum − (dmin·da)·imin` for the 8 rows (rows 0..4, rows 4..8); `scales` are
/// `[d0, d1, dmin0, dmin1]`.
#[inline(always)]
fn kx8_finish(
    acc: (v128, v128),
    scales: [v128; 4],
    a: &BlockQ8_K,
    isum: [v128; 2],
    imin: [v128; 2],
) -> (v128, v128) {
    let da = f32x4_splat(a.d);
    let [d0, d1, m0, m1] = scales;
    let row = |acc: v128, d: v128, dmin: v128, isum: v128, imin: v128| {
        let x = f32x4_mul(f32x4_mul(d, da), f32x4_convert_i32x4(isum));
        let y = f32x4_mul(f32x4_mul(dmin, da), f32x4_convert_i32x4(imin));
        f32x4_sub(f32x4_add(acc, x), y)
    };
    (
        row(acc.0, d0, m0, isum[0], imin[0]),
        row(acc.1, d1, m1, isum[1], imin[1]),
    )
}
