//! aarch64 NEON kernels of the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) against Q8_K
//! activations.
//!
//! As `x86_k.rs`: one weight row at a time, each 256-block decoded once (values to bytes,
//! scales to integers) and dotted with every token's block: `smull`/`smlal` pair sums in i16
//! (at most 2 · 63 · 127), widened to `i32`, multiplied by the sub-block scales and summed
//! exactly; each (row, token) adds its blocks in `f32` in block order with the reference's
//! operations (no fused multiply-add).
//!
//! Tested under `qemu-aarch64` by `just test-neon`.

use core::arch::aarch64::*;

use crate::quant::f16::f16_le_to_f32;
use crate::quant::q8_k::BlockQ8_K;
use crate::quant::{q2_k, q3_k, q4_k, q5_k, q6_k};

/// The 16 bytes at `b[o..o + 16]`.
#[inline(always)]
fn load(b: &[u8], o: usize) -> uint8x16_t {
    let s = &b[o..o + 16];
    // SAFETY: `s` has 16 readable bytes (checked by the slice above); `vld1q` has no alignment
    // requirement.
    unsafe { vld1q_u8(s.as_ptr()) }
}

/// The 16 activation bytes at `a[o..o + 16]`.
#[inline(always)]
fn load_act(a: &[i8], o: usize) -> int8x16_t {
    let s = &a[o..o + 16];
    // SAFETY: as in `load`.
    unsafe { vld1q_s8(s.as_ptr()) }
}

/// i32x4 partial sums of 16 values `w` (0..=63) with 16 activations `a`: i16 lanes of 2
/// products each, then pairwise widened.
#[inline(always)]
fn dot16(w: uint8x16_t, a: int8x16_t) -> int32x4_t {
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    unsafe {
        let w = vreinterpretq_s8_u8(w);
        let p = vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(a)), w, a);
        vpaddlq_s16(p)
    }
}

/// A decoded Q4_K/Q5_K block: sub-block `j`'s values in `q[2j]`, `q[2j + 1]`, the scales and
/// mins, `d` and `dmin`.
struct DecodedQ45 {
    q: [uint8x16_t; 16],
    sc: [i32; 8],
    m: [i32; 8],
    d: f32,
    dmin: f32,
}

/// The decoded Q4_K/Q5_K block `p` with values `q`: its scales, mins and half floats.
fn decode_header(p: &[u8], q: [uint8x16_t; 16]) -> DecodedQ45 {
    let mut sc = [0i32; 8];
    let mut m = [0i32; 8];
    for j in 0..8 {
        let (a, b) = q4_k::scale_min(&p[4..16], j);
        (sc[j], m[j]) = (i32::from(a), i32::from(b));
    }
    DecodedQ45 {
        q,
        sc,
        m,
        d: f16_le_to_f32([p[0], p[1]]),
        dmin: f16_le_to_f32([p[2], p[3]]),
    }
}

/// Decodes a Q4_K block (`p`: its 144 bytes).
#[inline(always)]
fn decode_q4_k(p: &[u8]) -> DecodedQ45 {
    let p = &p[..q4_k::BLOCK_BYTES];
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    let q = unsafe {
        let mut q = [vdupq_n_u8(0); 16];
        for c in 0..4 {
            for h in 0..2 {
                let b = load(p, 16 + 32 * c + 16 * h);
                q[4 * c + h] = vandq_u8(b, vdupq_n_u8(0x0f));
                q[4 * c + 2 + h] = vshrq_n_u8(b, 4);
            }
        }
        q
    };
    decode_header(p, q)
}

/// Decodes a Q5_K block (`p`: its 176 bytes).
#[inline(always)]
fn decode_q5_k(p: &[u8]) -> DecodedQ45 {
    let p = &p[..q5_k::BLOCK_BYTES];
    let qh = [load(p, 16), load(p, 32)];
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    let q = unsafe {
        let high =
            |j: usize, h: usize| vandq_u8(vtstq_u8(qh[h], vdupq_n_u8(1 << j)), vdupq_n_u8(0x10));
        let mut q = [vdupq_n_u8(0); 16];
        for c in 0..4 {
            for h in 0..2 {
                let b = load(p, 48 + 32 * c + 16 * h);
                q[4 * c + h] = vorrq_u8(vandq_u8(b, vdupq_n_u8(0x0f)), high(2 * c, h));
                q[4 * c + 2 + h] = vorrq_u8(vshrq_n_u8(b, 4), high(2 * c + 1, h));
            }
        }
        q
    };
    decode_header(p, q)
}

/// `acc` plus the Q4_K/Q5_K dot product of a decoded block with `a`, as the reference:
/// `acc + (d·da)·Σ_j sc_j·Σ q·a − (dmin·da)·Σ_j m_j·(bsum_2j + bsum_2j+1)`.
#[inline(always)]
fn accumulate_q45(dq: &DecodedQ45, a: &BlockQ8_K, acc: f32) -> f32 {
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    let isum = unsafe {
        let mut s = vdupq_n_s32(0);
        for j in 0..8 {
            let p = vaddq_s32(
                dot16(dq.q[2 * j], load_act(&a.qs, 32 * j)),
                dot16(dq.q[2 * j + 1], load_act(&a.qs, 32 * j + 16)),
            );
            s = vmlaq_n_s32(s, p, dq.sc[j]);
        }
        vaddvq_s32(s)
    };
    let mut imin = 0i32;
    for j in 0..8 {
        imin += dq.m[j] * (i32::from(a.bsums[2 * j]) + i32::from(a.bsums[2 * j + 1]));
    }
    acc + (dq.d * a.d) * isum as f32 - (dq.dmin * a.d) * imin as f32
}

/// A decoded Q6_K or Q3_K block: sub-block `i`'s 16 values `u = q + OFFSET` (unsigned, at
/// most 63) in `q[i]`, the scales, `d`.
struct DecodedS16 {
    q: [uint8x16_t; 16],
    sc: [i32; 16],
    d: f32,
}

/// Decodes a Q6_K block (`p`: its 210 bytes).
#[inline(always)]
fn decode_q6_k(p: &[u8]) -> DecodedS16 {
    let p = &p[..q6_k::BLOCK_BYTES];
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    let q = unsafe {
        let mask = vdupq_n_u8(0x0f);
        let top = vdupq_n_u8(0x30);
        let mut q = [vdupq_n_u8(0); 16];
        for h in 0..2 {
            for k in 0..2 {
                let ql0 = load(p, 64 * h + 16 * k);
                let ql1 = load(p, 64 * h + 32 + 16 * k);
                let qh = load(p, 128 + 32 * h + 16 * k);
                // Elements 128h + 32c + 16k .. + 16 are sub-block 8h + 2c + k.
                let sb = |c: usize| 8 * h + 2 * c + k;
                q[sb(0)] = vorrq_u8(vandq_u8(ql0, mask), vandq_u8(vshlq_n_u8(qh, 4), top));
                q[sb(1)] = vorrq_u8(vandq_u8(ql1, mask), vandq_u8(vshlq_n_u8(qh, 2), top));
                q[sb(2)] = vorrq_u8(vshrq_n_u8(ql0, 4), vandq_u8(qh, top));
                q[sb(3)] = vorrq_u8(vshrq_n_u8(ql1, 4), vandq_u8(vshrq_n_u8(qh, 2), top));
            }
        }
        q
    };
    DecodedS16 {
        q,
        sc: core::array::from_fn(|i| i32::from(p[192 + i] as i8)),
        d: f16_le_to_f32([p[208], p[209]]),
    }
}

/// The 2-bit fields of a Q2_K/Q3_K `qs` (64 bytes) as 16 sub-blocks of 16 bytes: element
/// `128h + 32k + l` is bits `2k..2k+2` of byte `32h + l`.
#[inline(always)]
fn two_bit_sub_blocks(qs: &[u8]) -> [uint8x16_t; 16] {
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    unsafe {
        let three = vdupq_n_u8(3);
        let mut q = [vdupq_n_u8(0); 16];
        for h in 0..2 {
            for j in 0..2 {
                let b = load(qs, 32 * h + 16 * j);
                q[8 * h + j] = vandq_u8(b, three);
                q[8 * h + 2 + j] = vandq_u8(vshrq_n_u8(b, 2), three);
                q[8 * h + 4 + j] = vandq_u8(vshrq_n_u8(b, 4), three);
                q[8 * h + 6 + j] = vshrq_n_u8(b, 6);
            }
        }
        q
    }
}

/// Decodes a Q3_K block (`p`: its 110 bytes): `u = q + 4`, the low 2 bits plus 4 where the
/// high bit is set.
#[inline(always)]
fn decode_q3_k(p: &[u8]) -> DecodedS16 {
    let p = &p[..q3_k::BLOCK_BYTES];
    let mut q = two_bit_sub_blocks(&p[32..96]);
    let hm = [load(p, 0), load(p, 16)];
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    unsafe {
        for (i, qi) in q.iter_mut().enumerate() {
            // Sub-block i: elements 16i.., bit i / 2 of bytes 16 (i % 2)..
            let set = vtstq_u8(hm[i % 2], vdupq_n_u8(1 << (i / 2)));
            *qi = vorrq_u8(*qi, vandq_u8(set, vdupq_n_u8(4)));
        }
    }
    let packed: [u8; 12] = core::array::from_fn(|i| p[96 + i]);
    DecodedS16 {
        q,
        sc: q3_k::scales(&packed).map(i32::from),
        d: f16_le_to_f32([p[108], p[109]]),
    }
}

/// `Σ_i sc_i · Σ u·a` over the 16 sub-blocks of 16.
#[inline(always)]
fn scaled_sums16(q: &[uint8x16_t; 16], sc: &[i32; 16], a: &BlockQ8_K) -> i32 {
    // SAFETY: NEON is a baseline feature of every aarch64 target.
    unsafe {
        let mut s = vdupq_n_s32(0);
        for i in 0..16 {
            s = vmlaq_n_s32(s, dot16(q[i], load_act(&a.qs, 16 * i)), sc[i]);
        }
        vaddvq_s32(s)
    }
}

/// `acc` plus the Q6_K/Q3_K dot product of a decoded block with `a`:
/// `Σ_i sc_i·Σ u·a − OFFSET·Σ_i sc_i·bsum_i` (exactly `Σ_i sc_i·Σ q·a`; `OFFSET` is 32 for
/// Q6_K, 4 for Q3_K), then `acc + (d·da)·isum`.
#[inline(always)]
fn accumulate_s16<const OFFSET: i32>(dq: &DecodedS16, a: &BlockQ8_K, acc: f32) -> f32 {
    let dot = scaled_sums16(&dq.q, &dq.sc, a);
    let mut off = 0i32;
    for i in 0..16 {
        off += dq.sc[i] * i32::from(a.bsums[i]);
    }
    acc + (dq.d * a.d) * (dot - OFFSET * off) as f32
}

/// A decoded Q2_K block: sub-block `i`'s 16 values in `q[i]`, the scales and mins, `d` and
/// `dmin`.
struct DecodedQ2 {
    q: [uint8x16_t; 16],
    sc: [i32; 16],
    m: [i32; 16],
    d: f32,
    dmin: f32,
}

/// Decodes a Q2_K block (`p`: its 84 bytes).
#[inline(always)]
fn decode_q2_k(p: &[u8]) -> DecodedQ2 {
    let p = &p[..q2_k::BLOCK_BYTES];
    DecodedQ2 {
        q: two_bit_sub_blocks(&p[16..80]),
        sc: core::array::from_fn(|i| i32::from(p[i] & 15)),
        m: core::array::from_fn(|i| i32::from(p[i] >> 4)),
        d: f16_le_to_f32([p[80], p[81]]),
        dmin: f16_le_to_f32([p[82], p[83]]),
    }
}

/// `acc` plus the Q2_K dot product of a decoded block with `a`, as the reference:
/// `acc + (d·da)·Σ_i sc_i·Σ q·a − (dmin·da)·Σ_i m_i·bsum_i`.
#[inline(always)]
fn accumulate_q2(dq: &DecodedQ2, a: &BlockQ8_K, acc: f32) -> f32 {
    let isum = scaled_sums16(&dq.q, &dq.sc, a);
    let mut imin = 0i32;
    for i in 0..16 {
        imin += dq.m[i] * i32::from(a.bsums[i]);
    }
    acc + (dq.d * a.d) * isum as f32 - (dq.dmin * a.d) * imin as f32
}

/// Q2_K rows × Q8_K activations; as [`matmul_q4_k`].
pub(super) fn matmul_q2_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    k_rows(
        w,
        q2_k::BLOCK_BYTES,
        nb,
        acts,
        n_tok,
        out,
        decode_q2_k,
        accumulate_q2,
    )
}

/// Q3_K rows × Q8_K activations; as [`matmul_q4_k`].
pub(super) fn matmul_q3_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    let acc = accumulate_s16::<4>;
    k_rows(w, q3_k::BLOCK_BYTES, nb, acts, n_tok, out, decode_q3_k, acc)
}

/// Q4_K rows × Q8_K activations (`nb` blocks per row); layout as `simd::matmul`. Returns the
/// rows done (all of them).
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
        accumulate_q45,
    )
}

/// Q5_K rows × Q8_K activations; as [`matmul_q4_k`].
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
        accumulate_q45,
    )
}

/// Q6_K rows × Q8_K activations; as [`matmul_q4_k`].
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
        accumulate_s16::<32>,
    )
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
        for b in 0..nb {
            let dec = decode(&w[r * rb + b * bb..][..bb]);
            for (t, acc) in o.iter_mut().enumerate() {
                *acc = accumulate(&dec, &acts[t * nb + b], *acc);
            }
        }
    }
    n_rows
}
