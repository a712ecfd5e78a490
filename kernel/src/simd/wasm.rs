//! WebAssembly simd128 variants (compile-time `target_feature = "simd128"`).
//!
//! GGUF-layout matmuls take 4 weight rows at a time: exact integer block dot products
//! (`i16x8.relaxed_dot_i8x16_i7x16` for nibbles, sign extension and `i32x4.dot_i16x8_s` for
//! bytes, partial sums kept in i16 while they provably fit, then widened), a shuffle-based transposing
//! reduction to one `i32` per row, and `f32x4` accumulation with one lane per row in block
//! order. The matmul of rows repacked eight at a time (`Q4_1x8`, `Q4_0x8`, `Q5_0x8`, `Q5_1x8`, `Q8_0x8`)
//! needs no reduction: each register holds 4 value bytes of 4 rows (see [`matmul_x8`]). Q4_0 and Q5_0 ([`offset_rows`]) dot their unsigned
//! values (at most 31) with the relaxed dot and subtract the offset (8, 16) times the
//! activation block's sum: the same exact integer. Q8_0 and IQ4_NL ([`scaled_rows`]) dot
//! their signed values with the activations' positive parts and negative parts' magnitudes
//! ([`split_acts`]) and subtract. The relaxed dot's 7-bit operand is always an unsigned weight
//! of at most 6 bits (or 1) or an activation part of at most 127, so no pair sum can saturate
//! and every lowering agrees. Half floats are widened with an exact integer/multiply sequence.
//! Wasm has no prefetch instruction: decoding loops load a byte of each line `AHEAD` bytes
//! ahead, a step's share at a time ([`touch_ahead`]; the repacked rows' kernels only in
//! matrices under 1 MiB, [`touch_ahead_x8`]).

use core::arch::wasm32::*;

use crate::quant::q8_1::BlockQ8_1;
use crate::quant::{iq4_nl, q4_0, q4_1, q5_0, q5_1, q8_0, QK};

/// Quantizes a row into Q8_1 blocks (same results as `q8_1::quantize_row_ref`).
pub(super) fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    for (c, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let mut v = [f32x4_splat(0.0); 8];
        for (i, vi) in v.iter_mut().enumerate() {
            *vi = f32x4(c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3]);
        }
        let mut m = f32x4_abs(v[0]);
        for vi in &v[1..] {
            m = f32x4_max(m, f32x4_abs(*vi));
        }
        let amax = f32x4_extract_lane::<0>(m)
            .max(f32x4_extract_lane::<1>(m))
            .max(f32x4_extract_lane::<2>(m))
            .max(f32x4_extract_lane::<3>(m));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let idv = f32x4_splat(id);
        let (lo, hi) = (f32x4_splat(-127.0), f32x4_splat(127.0));
        let mut q = [i32x4_splat(0); 8];
        for (qi, vi) in q.iter_mut().zip(v) {
            let r = f32x4_nearest(f32x4_mul(vi, idv));
            *qi = i32x4_trunc_sat_f32x4(f32x4_min(f32x4_max(r, lo), hi));
        }
        let mut s = i32x4_splat(0);
        for qi in &q {
            s = i32x4_add(s, *qi);
        }
        let sum = i32x4_extract_lane::<0>(s)
            + i32x4_extract_lane::<1>(s)
            + i32x4_extract_lane::<2>(s)
            + i32x4_extract_lane::<3>(s);
        let h0 = i16x8_narrow_i32x4(q[0], q[1]);
        let h1 = i16x8_narrow_i32x4(q[2], q[3]);
        let h2 = i16x8_narrow_i32x4(q[4], q[5]);
        let h3 = i16x8_narrow_i32x4(q[6], q[7]);
        let b0 = i8x16_narrow_i16x8(h0, h1);
        let b1 = i8x16_narrow_i16x8(h2, h3);
        let mut bytes = [0u8; 32];
        for i in 0..16 {
            bytes[i] = u8x16_extract(b0, i);
            bytes[i + 16] = u8x16_extract(b1, i);
        }
        for (qo, &bv) in b.qs.iter_mut().zip(&bytes) {
            *qo = bv as i8;
        }
        b.d = d;
        b.s = d * sum as f32;
        b.sum = sum;
    }
}

#[inline(always)]
fn u8x16_extract(v: v128, i: usize) -> u8 {
    let mut a = [0u8; 16];
    v128_store_bytes(v, &mut a);
    a[i]
}

#[inline(always)]
fn v128_store_bytes(v: v128, out: &mut [u8; 16]) {
    *out = u128::to_le_bytes(u128::from_le_bytes(unsafe_free_bytes(v)));
}

#[inline(always)]
fn unsafe_free_bytes(v: v128) -> [u8; 16] {
    let lo = i64x2_extract_lane::<0>(v).to_le_bytes();
    let hi = i64x2_extract_lane::<1>(v).to_le_bytes();
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&lo);
    b[8..].copy_from_slice(&hi);
    b
}

/// Loads the first 16 bytes of `s` (any alignment).
#[inline(always)]
pub(super) fn load16(s: &[u8]) -> v128 {
    let s = &s[..16];
    // SAFETY: `s` has 16 readable bytes (checked by the slice above); wasm loads are unaligned.
    unsafe { v128_load(s.as_ptr() as *const v128) }
}

/// Loads the first 16 activation bytes of `s`.
#[inline(always)]
fn load16_i8(s: &[i8]) -> v128 {
    let s = &s[..16];
    // SAFETY: as in `load16`.
    unsafe { v128_load(s.as_ptr() as *const v128) }
}

/// Widens four half floats (low 16 bits of each lane) to `f32` exactly. Subnormal halves are
/// their mantissa times 2^-24 (their bits shifted into place would be a subnormal `f32`, and
/// multiplying one costs x86 a microcode assist); normal ones their bits shifted into place
/// times 2^112.
#[inline(always)]
pub(super) fn f16x4_to_f32(h: v128) -> v128 {
    let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
    let em = v128_and(h, u32x4_splat(0x7fff));
    let mant = v128_and(h, u32x4_splat(0x03ff));
    let is_sub = i32x4_eq(v128_and(h, u32x4_splat(0x7c00)), u32x4_splat(0));
    let normal_bits = v128_andnot(i32x4_shl(em, 13), is_sub);
    let normal = f32x4_mul(normal_bits, f32x4_splat(f32::from_bits(0x7780_0000))); // 2^112
    let sub = f32x4_mul(
        f32x4_convert_i32x4(mant),
        f32x4_splat(f32::from_bits(0x3380_0000)), // 2^-24
    );
    let scaled = v128_bitselect(sub, normal, is_sub);
    let exp_all = u32x4_splat(0x7c00);
    let is_special = i32x4_eq(v128_and(h, exp_all), exp_all);
    let quiet = v128_and(
        v128_not(i32x4_eq(mant, u32x4_splat(0))),
        u32x4_splat(0x0040_0000),
    );
    let special = v128_or(
        v128_or(u32x4_splat(0x7f80_0000), i32x4_shl(mant, 13)),
        quiet,
    );
    v128_or(v128_bitselect(special, scaled, is_special), sign)
}

/// Whether any of the 16-bit halves of `g` is infinite, NaN or subnormal (what the short
/// sequences leave to [`f16x4_to_f32`]).
#[inline(always)]
fn any_unusual_f16x8(g: v128) -> bool {
    let exp = v128_and(g, u16x8_splat(0x7c00));
    let zero = u16x8_splat(0);
    let special = i16x8_eq(exp, u16x8_splat(0x7c00));
    let sub = v128_andnot(
        i16x8_eq(exp, zero),
        i16x8_eq(v128_and(g, u16x8_splat(0x03ff)), zero),
    );
    v128_any_true(v128_or(special, sub))
}

/// Widens the two half floats of each 32-bit lane (`lo` = bits 0..16, `hi` = bits 16..32) to
/// `f32` exactly: a short sequence when every half is zero or normal, else the full one.
#[inline(always)]
pub(super) fn f16x8_pairs_to_f32(g: v128) -> (v128, v128) {
    if any_unusual_f16x8(g) {
        return (
            f16x4_to_f32(v128_and(g, u32x4_splat(0xffff))),
            f16x4_to_f32(u32x4_shr(g, 16)),
        );
    }
    let lo = finite_f16x4_to_f32(g);
    let hi = f32x4_mul(
        u32x4_shr(v128_and(g, u32x4_splat(0x7fff_0000)), 3),
        f32x4_splat(f32::from_bits(0x7780_0000)),
    );
    (lo, v128_or(hi, v128_and(g, u32x4_splat(0x8000_0000))))
}

/// Widens four zero or normal half floats (low 16 bits of each lane; the high bits are
/// ignored) to `f32` exactly: the exponent and mantissa bits shifted into place, times 2^112,
/// are the value (so would they be for subnormals, but slowly: see [`f16x4_to_f32`]); the sign
/// is copied over.
#[inline(always)]
fn finite_f16x4_to_f32(h: v128) -> v128 {
    let k = f32x4_splat(f32::from_bits(0x7780_0000));
    let v = f32x4_mul(i32x4_shl(v128_and(h, u32x4_splat(0x7fff)), 13), k);
    v128_or(v, i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16))
}

/// [`f16x4_to_f32`] for lanes whose high 16 bits are zero: the short sequence unless a half is
/// infinite, NaN or subnormal.
#[inline(always)]
pub(super) fn f16x4_lo_to_f32(h: v128) -> v128 {
    if any_unusual_f16x8(h) {
        return f16x4_to_f32(h);
    }
    finite_f16x4_to_f32(h)
}

/// Whether any of the 16-bit halves of `h` is infinite or NaN.
#[inline(always)]
fn any_special_f16x8(h: v128) -> bool {
    let exp = u16x8_splat(0x7c00);
    v128_any_true(i16x8_eq(v128_and(h, exp), exp))
}

/// A half float's bits sign-extended to 32 bits and shifted right (arithmetically) so its
/// exponent and mantissa sit in an `f32`'s places (`x` holds the half in bits 16..32, its low
/// 16 bits are dropped): the sign's copies in bits 28..31 and the low bits masked off, times
/// 2^112, that is its value, for zeros, normal and subnormal halves alike (a subnormal `f32`
/// operand is exact, only slower on some hosts). Not for infinities and NaNs.
#[inline(always)]
fn f16_hi_to_f32(x: v128) -> v128 {
    let bits = v128_and(i32x4_shr(x, 3), u32x4_splat(0x8fff_e000));
    f32x4_mul(bits, f32x4_splat(f32::from_bits(0x7780_0000))) // 2^112
}

/// The 8 half floats of `h` widened exactly to two `f32x4` (halves 0..4, 4..8): four
/// operations a register unless one is infinite or NaN (then [`f16x4_to_f32`]).
#[inline(always)]
fn widen_f16x8_v(h: v128) -> (v128, v128) {
    if any_special_f16x8(h) {
        return (
            f16x4_to_f32(u32x4_extend_low_u16x8(h)),
            f16x4_to_f32(u32x4_extend_high_u16x8(h)),
        );
    }
    (
        f16_hi_to_f32(i32x4_shl(u32x4_extend_low_u16x8(h), 16)),
        f16_hi_to_f32(i32x4_shl(u32x4_extend_high_u16x8(h), 16)),
    )
}

/// [`f16x4_lo_to_f32`] by [`f16_hi_to_f32`] (lanes whose high 16 bits are zero; infinities
/// and NaNs by [`f16x4_to_f32`]).
#[inline(always)]
fn widen_f16x4_lo(h: v128) -> v128 {
    if any_special_f16x8(h) {
        return f16x4_to_f32(h);
    }
    f16_hi_to_f32(i32x4_shl(h, 16))
}

/// [`f16x8_pairs_to_f32`] by [`f16_hi_to_f32`]: each lane's low half shifted up first, its
/// high half as it is (infinities and NaNs by [`f16x4_to_f32`]).
#[inline(always)]
fn widen_f16_pairs(g: v128) -> (v128, v128) {
    if any_special_f16x8(g) {
        return (
            f16x4_to_f32(v128_and(g, u32x4_splat(0xffff))),
            f16x4_to_f32(u32x4_shr(g, 16)),
        );
    }
    (f16_hi_to_f32(i32x4_shl(g, 16)), f16_hi_to_f32(g))
}

/// The little-endian 32-bit word at `b[o..o + 4]`.
#[inline(always)]
fn word_at(b: &[u8], o: usize) -> u32 {
    let w = &b[o..o + 4];
    u32::from_le_bytes([w[0], w[1], w[2], w[3]])
}

/// i16x8 partial sums (each of 4 products, |s| <= 7620) of a Q4 block (nibbles `lo`, `hi`
/// as bytes 0..=15) with activations `a0` (elements 0..16) and `a1` (16..32).
///
/// `i16x8.relaxed_dot_i8x16_i7x16_s` is deterministic here: its second operand (the nibbles)
/// is within 0..=127 and no pair sum (|s| <= 2 · 15 · 127) can saturate.
#[inline]
#[target_feature(enable = "relaxed-simd")]
pub(super) fn psum_q4(lo: v128, hi: v128, a0: v128, a1: v128) -> v128 {
    i16x8_add(
        i16x8_relaxed_dot_i8x16_i7x16(a0, lo),
        i16x8_relaxed_dot_i8x16_i7x16(a1, hi),
    )
}

/// `[Σa, Σb, Σc, Σd]` (as i32) of four i16x8 vectors of Q4 partial sums: pairwise i16 sums
/// stay within 4 · 7620 = 30480, the last step widens.
#[inline(always)]
fn hsum4_i16(a: v128, b: v128, c: v128, d: v128) -> v128 {
    hsum4(
        i32x4_extadd_pairwise_i16x8(a),
        i32x4_extadd_pairwise_i16x8(b),
        i32x4_extadd_pairwise_i16x8(c),
        i32x4_extadd_pairwise_i16x8(d),
    )
}

/// `[Σa, Σb, Σc, Σd]` of four i32x4 vectors. Every shuffle is an interleave of low or high
/// halves, which Cranelift lowers to a single `punpck*` on x86 (other patterns cost a
/// `pshufb` pair).
#[inline(always)]
pub(super) fn hsum4(a: v128, b: v128, c: v128, d: v128) -> v128 {
    // [a0+a2, b0+b2, a1+a3, b1+b3] and the same for c, d.
    let ab = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(a, b),
        i32x4_shuffle::<2, 6, 3, 7>(a, b),
    );
    let cd = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(c, d),
        i32x4_shuffle::<2, 6, 3, 7>(c, d),
    );
    i32x4_add(i64x2_shuffle::<0, 2>(ab, cd), i64x2_shuffle::<1, 3>(ab, cd))
}

/// Exact dot of 16 signed by 16 signed bytes, as i32x4 partials.
#[inline(always)]
fn dot_i8_i8(w: v128, a: v128) -> v128 {
    let wl = i16x8_extend_low_i8x16(w);
    let wh = i16x8_extend_high_i8x16(w);
    let al = i16x8_extend_low_i8x16(a);
    let ah = i16x8_extend_high_i8x16(a);
    i32x4_add(i32x4_dot_i16x8(wl, al), i32x4_dot_i16x8(wh, ah))
}

/// The nibbles of a Q4_1 block as bytes: `(elements 0..16, elements 16..32)`.
#[inline(always)]
fn unpack_q4(blk: &[u8]) -> (v128, v128) {
    let q = load16(&blk[4..20]);
    (v128_and(q, u8x16_splat(0x0f)), u8x16_shr(q, 4))
}

#[inline(always)]
fn store_lanes(acc: v128, out: &mut [f32], r0: usize, n_tok: usize, t: usize) {
    if n_tok == 1 {
        // One token: the 4 rows' outputs are adjacent, one store (and one bounds check).
        let o = &mut out[r0..r0 + 4];
        // SAFETY: `o` holds 4 `f32`; the store is unaligned.
        unsafe { v128_store(o.as_mut_ptr() as *mut v128, acc) };
        return;
    }
    out[r0 * n_tok + t] = f32x4_extract_lane::<0>(acc);
    out[(r0 + 1) * n_tok + t] = f32x4_extract_lane::<1>(acc);
    out[(r0 + 2) * n_tok + t] = f32x4_extract_lane::<2>(acc);
    out[(r0 + 3) * n_tok + t] = f32x4_extract_lane::<3>(acc);
}

/// `quant::f32::dot_ref` with two 4-lane registers (lanes `0..4` and `4..8` of the reference's
/// 8 partial sums; multiply, then add), combined in `reduce8`'s tree; the tail of fewer than 8
/// elements is added in order.
pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let n8 = n - n % 8;
    let mut sum = dot8(&a[..n8], |c| load_f32x8(&b[8 * c..]));
    for i in n8..n {
        sum += a[i] * b[i];
    }
    sum
}

/// The first 8 elements of `x` as two `f32x4`.
#[inline(always)]
fn load_f32x8(x: &[f32]) -> (v128, v128) {
    let x = &x[..8];
    // SAFETY: `x` holds 8 `f32`; loads are unaligned.
    unsafe {
        let p = x.as_ptr() as *const v128;
        (v128_load(p), v128_load(p.add(1)))
    }
}

/// [`dot_f32`]'s 8-lane part: `a` (a multiple of 8 long) against `b(c)`, the two registers of
/// the other operand's chunk `c` of 8 elements.
#[inline(always)]
fn dot8(a: &[f32], b: impl Fn(usize) -> (v128, v128)) -> f32 {
    let (mut lo, mut hi) = (f32x4_splat(0.0), f32x4_splat(0.0));
    for (c, x) in a.chunks_exact(8).enumerate() {
        let ((x0, x1), (y0, y1)) = (load_f32x8(x), b(c));
        lo = f32x4_add(lo, f32x4_mul(x0, y0));
        hi = f32x4_add(hi, f32x4_mul(x1, y1));
    }
    // s = [p0+p4, p1+p5, p2+p6, p3+p7]; then (s0+s2) + (s1+s3).
    let s = f32x4_add(lo, hi);
    let t = f32x4_add(s, i32x4_shuffle::<2, 3, 2, 3>(s, s));
    f32x4_extract_lane::<0>(t) + f32x4_extract_lane::<1>(t)
}

/// Eight half floats at `h` (8 readable `u16`) widened exactly to two `f32x4`.
///
/// Each half, sign-extended to 32 bits and shifted left by 13, has its exponent and mantissa
/// in an `f32`'s places and its sign in bit 31 (the sign's copies in bits 28-30 are masked
/// off); times 2^112 that is its value, for zeros, normal and subnormal halves alike (a
/// subnormal `f32` operand is exact, only slower on some hosts). Infinities and NaNs take
/// [`f16x4_to_f32`].
#[inline(always)]
fn widen_f16x8(h: &[u16]) -> (v128, v128) {
    // SAFETY: `h` holds at least 8 elements (16 bytes); the load is unaligned.
    let h = unsafe { v128_load(h[..8].as_ptr() as *const v128) };
    let exp = u16x8_splat(0x7c00);
    if v128_any_true(i16x8_eq(v128_and(h, exp), exp)) {
        return (
            f16x4_to_f32(u32x4_extend_low_u16x8(h)),
            f16x4_to_f32(u32x4_extend_high_u16x8(h)),
        );
    }
    let k = f32x4_splat(f32::from_bits(0x7780_0000)); // 2^112
    let mask = u32x4_splat(0x8fff_e000);
    let widen = |x: v128| f32x4_mul(v128_and(i32x4_shl(x, 13), mask), k);
    (
        widen(i32x4_extend_low_i16x8(h)),
        widen(i32x4_extend_high_i16x8(h)),
    )
}

/// `quant::f32::dot_f16_ref`: [`dot_f32`]'s registers and order over `b` widened exactly.
pub(super) fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
    let n = a.len().min(b.len());
    let n8 = n - n % 8;
    let mut sum = dot8(&a[..n8], |c| widen_f16x8(&b[8 * c..]));
    for i in n8..n {
        sum += a[i] * crate::quant::f16::f16_bits_to_f32(b[i]);
    }
    sum
}

/// `quant::f32::weighted_sum_f16_ref` with blocks of 32 outputs in 8 registers across all
/// rows (multiply, then add, in row order); outputs past the last multiple of 8 by the
/// reference.
pub(super) fn weighted_sum_f16(w: &[f32], rows: &[u16], stride: usize, out: &mut [f32]) {
    let n = out.len();
    let n8 = n - n % 8;
    if n8 == 0 || w.is_empty() || rows.len() < (w.len() - 1) * stride + n {
        return crate::quant::f32::weighted_sum_f16_ref(w, rows, stride, out);
    }
    for c0 in (0..n8).step_by(32) {
        let c1 = (c0 + 32).min(n8);
        let k = (c1 - c0) / 8;
        let mut acc = [f32x4_splat(0.0); 8];
        for (j, &a) in w.iter().enumerate() {
            let r = &rows[j * stride + c0..][..c1 - c0];
            let a = f32x4_splat(a);
            for (i, acc) in acc.chunks_exact_mut(2).enumerate().take(k) {
                let (v0, v1) = widen_f16x8(&r[8 * i..]);
                acc[0] = f32x4_add(acc[0], f32x4_mul(a, v0));
                acc[1] = f32x4_add(acc[1], f32x4_mul(a, v1));
            }
        }
        for (i, acc) in acc.iter().enumerate().take(2 * k) {
            let o = &mut out[c0 + 4 * i..c0 + 4 * i + 4];
            // SAFETY: `o` holds 4 elements; the store is unaligned.
            unsafe { v128_store(o.as_mut_ptr() as *mut v128, *acc) };
        }
    }
    if n8 < n {
        crate::quant::f32::weighted_sum_f16_ref(w, &rows[n8..], stride, &mut out[n8..]);
    }
}

/// Bytes ahead of the data being decoded that decoding loops read ([`touch_ahead`]).
pub(super) const AHEAD: usize = 1536;

/// Loads one byte per 64-byte line of `w[at + AHEAD..at + AHEAD + n]` (the last `n` bytes of
/// `w` past its end) and returns their xor, for the caller to pass to `black_box` once per
/// row group. Wasm has no prefetch instruction: a decoding step that reads the `n` bytes at
/// `at` (in address order through the matrix) touches the `n` bytes `AHEAD` later, so those
/// lines are on their way to the cache when they are needed, with a steady few loads in
/// flight. Loads, unlike prefetches, hold up the core until they arrive: one burst per row
/// group (its lines 24 rows ahead) stalled it so, and Q4_0 decoded at ~80 tok/s against ~125
/// this way (Q8_0 ~65 against ~98; `speed` example under the wasmtime CLI, AMD EPYC 2 vCPU).
/// 4-8 KiB ahead did best then; since the 5-bit and K-quant kernels stopped spreading bits,
/// 1-2 KiB does: decode of the llama.cpp files at 8 KiB / 1.5 KiB, tok/s (load average ~5),
/// Q4_0 48-56 / 63-64, Q8_0 38-40 / 40, Q5_K_M 39-41 / 50, and no loads at all 57-59, 35-36,
/// 48.
#[inline(always)]
pub(super) fn touch_ahead(w: &[u8], at: usize, n: usize) -> u8 {
    let Some(start) = w.len().checked_sub(n) else {
        return 0;
    };
    // One bounds check: the loads below are inside `s` (`n` is a constant once inlined).
    let s = &w[(at + AHEAD).min(start)..][..n];
    let mut x = 0u8;
    let mut o = 0;
    while o < n {
        x ^= s[o];
        o += 64;
    }
    x
}

/// [`touch_ahead`] for the kernels of rows repacked eight at a time, which read a matrix as one
/// stream, except in a matrix of [`STREAMED`] bytes or more: the hardware's prefetch carries
/// such a stream alone, and the loads only hold up the core.
#[inline(always)]
pub(super) fn touch_ahead_x8(w: &[u8], at: usize, n: usize) -> u8 {
    if w.len() >= STREAMED {
        return 0;
    }
    touch_ahead(w, at, n)
}

/// Bytes of a repacked matrix from which its decoding loads nothing ahead
/// ([`touch_ahead_x8`]). The 1B shape's matrices (2.4 and 9.4 MB, its output 82 MB) decoded
/// faster so: its Q6_K file at 7.2-10.5 tokens/s against 6.5-7.7, its Q4_K_M at 10-15 against
/// 8-13, its Q4_0 at 15.4-18.7 against 15.3-17.2 (guest kernel, alternating runs of `edge-llm
/// bench --backends wasm`, AMD EPYC Zen 4). Without any loads ahead the default model's files
/// decoded slower (Q4_0 at 64-73 against 69-101, Q8_0 at 30-34 against 47-74). Both read their
/// 30 MB Q8_0 output with the GGUF layout's kernel of four rows at a time, which keeps the
/// loads on any matrix (with them only under 1 MiB, Q8_0 decoded at 39-55); the loads' share in
/// the repacked matrices of at most 0.6 MB was not measured apart, and they keep them.
const STREAMED: usize = 1 << 20;

/// The exact integer dot products of the Q4_1 blocks at `p + i · rb` (`i` = 0..4, one block of
/// each of four rows) with the activations `a0`, `a1`, and the rows' `(d, m)` as `f32`.
///
/// # Safety
/// The 20 bytes at each `p + i · rb` must be readable.
#[inline]
#[target_feature(enable = "relaxed-simd")]
unsafe fn q4_1_block4(p: *const u8, rb: usize, a0: v128, a1: v128) -> (v128, v128, v128) {
    // SAFETY: the caller guarantees 20 readable bytes at each block; loads are unaligned.
    unsafe {
        let psum = |i: usize| {
            let q = v128_load(p.add(i * rb + 4) as *const v128);
            psum_q4(v128_and(q, u8x16_splat(0x0f)), u8x16_shr(q, 4), a0, a1)
        };
        let isum = hsum4_i16(psum(0), psum(1), psum(2), psum(3));
        let word = |i: usize| (p.add(i * rb) as *const u32).read_unaligned();
        let (d, m) = f16x8_pairs_to_f32(u32x4(word(0), word(1), word(2), word(3)));
        (isum, d, m)
    }
}

/// `(d, m)` of the Q4_1 blocks at offset `o` of four rows, as `f32`.
#[inline(always)]
fn dm4(rows: &[&[u8]; 4], o: usize) -> (v128, v128) {
    f16x8_pairs_to_f32(u32x4(
        word_at(rows[0], o),
        word_at(rows[1], o),
        word_at(rows[2], o),
        word_at(rows[3], o),
    ))
}

/// Q4_1 rows × Q8_1 activations; see `simd::matmul` for the layout.
///
/// With several tokens, each 4-row group is unpacked once (nibbles to bytes, half scales to
/// `f32`) and reused for every token. Returns the rows done (whole groups); `simd::matmul`
/// does the rest.
#[target_feature(enable = "relaxed-simd")]
pub(super) fn matmul_q4_1(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    const BB: usize = q4_1::BLOCK_BYTES;
    let rb = nb * BB;
    let n_rows = w.len() / rb;
    let full = n_rows / 4 * 4;
    // Per block: 8 nibble vectors (4 rows × lo/hi), then d and m for the 4 rows.
    let mut buf = if n_tok > 1 {
        vec![i32x4_splat(0); nb * 10]
    } else {
        Vec::new()
    };
    for r0 in (0..full).step_by(4) {
        let rows = [
            &w[r0 * rb..][..rb],
            &w[(r0 + 1) * rb..][..rb],
            &w[(r0 + 2) * rb..][..rb],
            &w[(r0 + 3) * rb..][..rb],
        ];
        if n_tok == 1 {
            let (mut acc, mut seen) = (f32x4_splat(0.0), 0);
            let p = rows[0].as_ptr();
            for (b, ab) in acts[..nb].iter().enumerate() {
                seen ^= touch_ahead(w, r0 * rb + 4 * b * BB, 4 * BB);
                let (a0, a1) = (load16_i8(&ab.qs[..16]), load16_i8(&ab.qs[16..]));
                // SAFETY: the four rows are `rb` bytes apart inside `w` (sliced above) and the
                // block at `b * BB` lies inside each of them.
                let (isum, d, m) = unsafe { q4_1_block4(p.add(b * BB), rb, a0, a1) };
                acc = accumulate(acc, d, m, isum, ab);
            }
            core::hint::black_box(seen);
            store_lanes(acc, out, r0, 1, 0);
            continue;
        }
        for (b, e) in buf.chunks_exact_mut(10).enumerate() {
            let o = b * BB;
            for i in 0..4 {
                let (lo, hi) = unpack_q4(&rows[i][o..o + BB]);
                e[2 * i] = lo;
                e[2 * i + 1] = hi;
            }
            (e[8], e[9]) = dm4(&rows, o);
        }
        for t in 0..n_tok {
            let mut acc = f32x4_splat(0.0);
            for (ab, e) in acts[t * nb..(t + 1) * nb].iter().zip(buf.chunks_exact(10)) {
                let (a0, a1) = (load16_i8(&ab.qs[..16]), load16_i8(&ab.qs[16..]));
                let isum = hsum4_i16(
                    psum_q4(e[0], e[1], a0, a1),
                    psum_q4(e[2], e[3], a0, a1),
                    psum_q4(e[4], e[5], a0, a1),
                    psum_q4(e[6], e[7], a0, a1),
                );
                acc = accumulate(acc, e[8], e[9], isum, ab);
            }
            store_lanes(acc, out, r0, n_tok, t);
        }
    }
    full
}

/// `acc = acc + (d · da) · isum + m · sa` for 4 rows (the block order of the reference).
#[inline(always)]
fn accumulate(acc: v128, d: v128, m: v128, isum: v128, ab: &BlockQ8_1) -> v128 {
    let x = f32x4_mul(f32x4_mul(d, f32x4_splat(ab.d)), f32x4_convert_i32x4(isum));
    f32x4_add(f32x4_add(acc, x), f32x4_mul(m, f32x4_splat(ab.s)))
}

/// Stores 8 rows' sums (`a`: rows 0..4, `b`: rows 4..8) for token `t`.
#[inline(always)]
pub(super) fn store8(a: v128, b: v128, out: &mut [f32], r0: usize, n_tok: usize, t: usize) {
    store_lanes(a, out, r0, n_tok, t);
    store_lanes(b, out, r0 + 4, n_tok, t);
}

/// How a repacked layout's values multiply (see [`x8_isums`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Values {
    /// Unsigned, at most 15: all 8 vectors' relaxed-dot sums stay in i16 (8 · 2 · 15 · 127 =
    /// 30480).
    Nibbles,
    /// Unsigned, at most 31: two halves of 4 vectors in i16 (4 · 2 · 31 · 127 = 31496 each).
    Quints,
    /// Signed bytes: sign-extended to i16 and multiplied by `i32x4.dot_i16x8_s`.
    Bytes,
}

/// A layout of rows repacked eight at a time (`quant::rows8`) as the simd128 kernel reads it.
trait Packed8 {
    /// Bytes per GGUF block.
    const BLOCK: usize;
    /// How the values multiply.
    const VALUES: Values;
    /// The weights are `d · (u − OFFSET)` (0: signed, or with a min).
    const OFFSET: i32 = 0;
    /// Whether the weights have a min (`acc + (d · da) · isum + m · sa`).
    const MIN: bool = false;
    /// Byte offset of the value chunks in a record (4 nibble chunks, or 8 byte chunks).
    const CHUNKS: usize;
    /// Byte offset of the 32-byte high-bit plane of 5-bit values (`Quints`; the 32 bytes
    /// before the chunks).
    const HIGH: usize = 0;

    /// Value vector `j` of the record `rec` (elements `4j..4j + 4` of each row): `(rows 0..4,
    /// rows 4..8)`.
    #[inline(always)]
    fn vector(rec: &[u8], j: usize) -> (v128, v128) {
        // One bounds check for the record's chunks (a slice of constant length), none per load.
        let bytes = if Self::VALUES == Values::Bytes {
            256
        } else {
            128
        };
        let c = &rec[Self::CHUNKS..Self::CHUNKS + bytes];
        let chunk = |k: usize| (load16(&c[32 * k..]), load16(&c[32 * k + 16..]));
        if Self::VALUES == Values::Bytes {
            return chunk(j);
        }
        let mask = u8x16_splat(0x0f);
        let (c0, c1) = chunk(j % 4);
        let (v0, v1) = if j < 4 {
            (v128_and(c0, mask), v128_and(c1, mask))
        } else {
            (u8x16_shr(c0, 4), u8x16_shr(c1, 4))
        };
        if Self::VALUES == Values::Quints {
            // Bit j of each plane byte to bit 4, by a 16-bit shift (the bits crossing from the
            // neighbouring byte land below bit 4 or above it) and a mask.
            let plane = &rec[Self::HIGH..Self::HIGH + 32];
            let (p0, p1) = (load16(plane), load16(&plane[16..]));
            let sixteen = u8x16_splat(0x10);
            let high = |p: v128| {
                let p = match j {
                    0 => i16x8_shl(p, 4),
                    1 => i16x8_shl(p, 3),
                    2 => i16x8_shl(p, 2),
                    3 => i16x8_shl(p, 1),
                    4 => p,
                    5 => u16x8_shr(p, 1),
                    6 => u16x8_shr(p, 2),
                    _ => u16x8_shr(p, 3),
                };
                v128_and(p, sixteen)
            };
            return (v128_or(v0, high(p0)), v128_or(v1, high(p1)));
        }
        (v0, v1)
    }

    /// `(d, m)` of rows 0..4, then of rows 4..8, as `f32` (`m` zero without a min).
    #[inline(always)]
    fn scales(rec: &[u8]) -> [v128; 4] {
        if Self::MIN {
            let (d0, m0) = widen_f16_pairs(load16(rec));
            let (d1, m1) = widen_f16_pairs(load16(&rec[16..]));
            [d0, m0, d1, m1]
        } else {
            let (d0, d1) = widen_f16x8_v(load16(rec));
            let zero = f32x4_splat(0.0);
            [d0, zero, d1, zero]
        }
    }
}

/// The `Q4_1x8` layout (`quant::q4_1x8`).
struct Q4_1x8;
impl Packed8 for Q4_1x8 {
    const BLOCK: usize = q4_1::BLOCK_BYTES;
    const VALUES: Values = Values::Nibbles;
    const MIN: bool = true;
    const CHUNKS: usize = 32;
}

/// The `Q4_0x8` layout (`quant::q4_0x8`).
struct Q4_0x8;
impl Packed8 for Q4_0x8 {
    const BLOCK: usize = q4_0::BLOCK_BYTES;
    const VALUES: Values = Values::Nibbles;
    const OFFSET: i32 = 8;
    const CHUNKS: usize = 16;
}

/// The `Q5_0x8` layout (`quant::q5_0x8`).
struct Q5_0x8;
impl Packed8 for Q5_0x8 {
    const BLOCK: usize = q5_0::BLOCK_BYTES;
    const VALUES: Values = Values::Quints;
    const OFFSET: i32 = 16;
    const CHUNKS: usize = 48;
    const HIGH: usize = 16;
}

/// The `Q5_1x8` layout (`quant::q5_1x8`).
struct Q5_1x8;
impl Packed8 for Q5_1x8 {
    const BLOCK: usize = q5_1::BLOCK_BYTES;
    const VALUES: Values = Values::Quints;
    const MIN: bool = true;
    const CHUNKS: usize = 64;
    const HIGH: usize = 32;
}

/// The `Q8_0x8` layout (`quant::q8_0x8`).
struct Q8_0x8;
impl Packed8 for Q8_0x8 {
    const BLOCK: usize = q8_0::BLOCK_BYTES;
    const VALUES: Values = Values::Bytes;
    const CHUNKS: usize = 16;
}

/// The exact integer row sums `(rows 0..4, rows 4..8)` of one record's value vectors
/// (`vector(j)`, see [`Packed8::vector`]) against the activations `qs`: each vector times the
/// splat of the 4 activation bytes it pairs with, lane by lane, so no transposing reduction.
/// The relaxed dot's 7-bit operand is always a value of at most 5 bits, so every lowering
/// agrees.
#[inline(always)]
fn x8_isums<B: Packed8>(qs: &[i8; 32], vector: impl Fn(usize) -> (v128, v128)) -> (v128, v128) {
    let (a0, a1) = (load16_i8(&qs[..16]), load16_i8(&qs[16..]));
    let word = |j: usize| act_word(a0, a1, j);
    let dot = relaxed_dot;
    match B::VALUES {
        Values::Nibbles | Values::Quints => {
            // Vectors j and j + 4 come from the same chunk: taken together, each chunk is
            // loaded once and used at once (few live registers under Cranelift). Sums of
            // vectors 0..4 and 4..8 apart, each within i16 for quints, both together for
            // nibbles (the same exact integers in any order).
            let (mut lo0, mut lo1) = (i16x8_splat(0), i16x8_splat(0));
            let (mut hi0, mut hi1) = (i16x8_splat(0), i16x8_splat(0));
            let mut step = |j: usize| {
                let ((v0, v1), (u0, u1)) = (vector(j), vector(j + 4));
                let (a, b) = (word(j), word(j + 4));
                lo0 = i16x8_add(lo0, dot(a, v0));
                lo1 = i16x8_add(lo1, dot(a, v1));
                hi0 = i16x8_add(hi0, dot(b, u0));
                hi1 = i16x8_add(hi1, dot(b, u1));
            };
            // Unrolled by hand: LLVM leaves a loop over quints' longer body rolled, and `word`'s
            // match on a variable `j` became a jump table per step.
            step(0);
            step(1);
            step(2);
            step(3);
            if B::VALUES == Values::Nibbles {
                (
                    i32x4_extadd_pairwise_i16x8(i16x8_add(lo0, hi0)),
                    i32x4_extadd_pairwise_i16x8(i16x8_add(lo1, hi1)),
                )
            } else {
                let widen = |a: v128, b: v128| {
                    i32x4_add(
                        i32x4_extadd_pairwise_i16x8(a),
                        i32x4_extadd_pairwise_i16x8(b),
                    )
                };
                (widen(lo0, hi0), widen(lo1, hi1))
            }
        }
        Values::Bytes => {
            // Lanes are (row, byte pair) products: rows 4h + {0, 1} from the low bytes of half
            // h, 4h + {2, 3} from the high ones; then each row's two pairs are added.
            let mut s = [i32x4_splat(0); 4];
            for j in 0..8 {
                let a = i16x8_extend_low_i8x16(word(j));
                let (v0, v1) = vector(j);
                for (h, w) in [v0, v1].into_iter().enumerate() {
                    s[2 * h] = i32x4_add(s[2 * h], i32x4_dot_i16x8(i16x8_extend_low_i8x16(w), a));
                    s[2 * h + 1] =
                        i32x4_add(s[2 * h + 1], i32x4_dot_i16x8(i16x8_extend_high_i8x16(w), a));
                }
            }
            let rows = |lo: v128, hi: v128| {
                i32x4_add(
                    i32x4_shuffle::<0, 2, 4, 6>(lo, hi),
                    i32x4_shuffle::<1, 3, 5, 7>(lo, hi),
                )
            };
            (rows(s[0], s[1]), rows(s[2], s[3]))
        }
    }
}

/// Word `g` of the 8 in `a0`, `a1` (32 activation bytes) in every 32-bit lane: a single
/// `pshufd` under Cranelift.
#[inline(always)]
pub(super) fn act_word(a0: v128, a1: v128, g: usize) -> v128 {
    let a = if g < 4 { a0 } else { a1 };
    match g % 4 {
        0 => i32x4_shuffle::<0, 0, 0, 0>(a, a),
        1 => i32x4_shuffle::<1, 1, 1, 1>(a, a),
        2 => i32x4_shuffle::<2, 2, 2, 2>(a, a),
        _ => i32x4_shuffle::<3, 3, 3, 3>(a, a),
    }
}

/// `i16x8.relaxed_dot_i8x16_i7x16_s` of signed bytes `a` and 7-bit `v`: activations and
/// unsigned values (at most 31), or signed values and activation parts ([`split_acts`]).
#[inline]
#[target_feature(enable = "relaxed-simd")]
pub(super) fn relaxed_dot(a: v128, v: v128) -> v128 {
    i16x8_relaxed_dot_i8x16_i7x16(a, v)
}

/// Rows repacked eight at a time (`quant::rows8`) × Q8_1 activations; layout as
/// `simd::matmul`, bit for bit the reference. Decoding reads each record once; with several
/// tokens each group is first unpacked (values to bytes, half scales to `f32`) and reused for
/// every token. Returns the rows done (whole groups of 8); `simd::matmul_x8` does the rest.
pub(super) fn matmul_x8(
    ty: crate::gguf::GgmlType,
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    use crate::gguf::GgmlType;
    if nb == 0 || acts.len() < nb * n_tok {
        return 0;
    }
    match ty {
        GgmlType::Q4_1 => x8_rows::<Q4_1x8>(w, nb, acts, n_tok, out),
        GgmlType::Q4_0 => x8_rows::<Q4_0x8>(w, nb, acts, n_tok, out),
        GgmlType::Q5_0 => x8_rows::<Q5_0x8>(w, nb, acts, n_tok, out),
        GgmlType::Q5_1 => x8_rows::<Q5_1x8>(w, nb, acts, n_tok, out),
        GgmlType::Q8_0 => x8_rows::<Q8_0x8>(w, nb, acts, n_tok, out),
        _ => 0,
    }
}

/// `acc + (d · da) · isum [+ m · sa]` for rows 0..4 and 4..8 (`sc` as [`Packed8::scales`]),
/// the isums first less `OFFSET · Σa` (the block's `sum`).
#[inline(always)]
fn x8_step<B: Packed8>(
    acc: (v128, v128),
    isums: (v128, v128),
    sc: &[v128; 4],
    ab: &BlockQ8_1,
) -> (v128, v128) {
    let (mut i0, mut i1) = isums;
    if B::OFFSET != 0 {
        let off = i32x4_splat(B::OFFSET * ab.sum);
        (i0, i1) = (i32x4_sub(i0, off), i32x4_sub(i1, off));
    }
    if B::MIN {
        (
            accumulate(acc.0, sc[0], sc[1], i0, ab),
            accumulate(acc.1, sc[2], sc[3], i1, ab),
        )
    } else {
        let da = f32x4_splat(ab.d);
        (
            f32x4_add(
                acc.0,
                f32x4_mul(f32x4_mul(sc[0], da), f32x4_convert_i32x4(i0)),
            ),
            f32x4_add(
                acc.1,
                f32x4_mul(f32x4_mul(sc[2], da), f32x4_convert_i32x4(i1)),
            ),
        )
    }
}

#[target_feature(enable = "relaxed-simd")]
fn x8_rows<B: Packed8>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    const R: usize = crate::quant::rows8::ROWS;
    let record = R * B::BLOCK;
    let rb = nb * B::BLOCK;
    let full = w.len() / rb / R * R;
    // Per block of a group, unpacked once for every token: the value vectors and scales.
    let mut buf = if n_tok > 1 {
        vec![([(i32x4_splat(0), i32x4_splat(0)); 8], [i32x4_splat(0); 4]); nb]
    } else {
        Vec::new()
    };
    let zero = (f32x4_splat(0.0), f32x4_splat(0.0));
    for r0 in (0..full).step_by(R) {
        let group = &w[r0 * rb..(r0 + R) * rb];
        if n_tok == 1 {
            let (mut acc, mut seen) = (zero, 0);
            for (b, (rec, ab)) in group.chunks_exact(record).zip(acts).enumerate() {
                seen ^= touch_ahead_x8(w, r0 * rb + b * record, record);
                let isums = x8_isums::<B>(&ab.qs, |j| B::vector(rec, j));
                acc = x8_step::<B>(acc, isums, &B::scales(rec), ab);
            }
            core::hint::black_box(seen);
            store8(acc.0, acc.1, out, r0, 1, 0);
            continue;
        }
        for (rec, e) in group.chunks_exact(record).zip(buf.iter_mut()) {
            *e = (core::array::from_fn(|j| B::vector(rec, j)), B::scales(rec));
        }
        for t in 0..n_tok {
            let mut acc = zero;
            for ((v, sc), ab) in buf.iter().zip(&acts[t * nb..(t + 1) * nb]) {
                let isums = x8_isums::<B>(&ab.qs, |j| v[j]);
                acc = x8_step::<B>(acc, isums, sc, ab);
            }
            store8(acc.0, acc.1, out, r0, n_tok, t);
        }
    }
    full
}

/// The 32 values of the Q8_0 block whose values start at `q`, as signed bytes: `(elements
/// 0..16, elements 16..32)`.
///
/// # Safety
/// The 32 bytes at `q` must be readable.
#[inline(always)]
unsafe fn values_q8_0(q: *const u8) -> (v128, v128) {
    // SAFETY: the caller guarantees 32 readable bytes; loads are unaligned.
    unsafe {
        (
            v128_load(q as *const v128),
            v128_load(q.add(16) as *const v128),
        )
    }
}

/// The 32 nibbles `q` (before the −8) of the Q4_0 block whose nibbles start at `q`:
/// `(elements 0..16, elements 16..32)`.
///
/// # Safety
/// The 16 bytes at `q` must be readable.
#[inline(always)]
unsafe fn nibbles_q4_0(q: *const u8) -> (v128, v128) {
    // SAFETY: the caller guarantees 16 readable bytes; the load is unaligned.
    let q = unsafe { v128_load(q as *const v128) };
    (v128_and(q, u8x16_splat(0x0f)), u8x16_shr(q, 4))
}

/// The exact integer dot products of the blocks at `p + i · rb` (`i` = 0..4, one block of each
/// of four rows; a half-float scale, then values that `values` loads) with the activations
/// `a0`, `a1`, and the rows' scales as `f32`.
///
/// # Safety
/// The block's bytes at each `p + i · rb` must be readable.
#[inline(always)]
unsafe fn scaled_block4(
    p: *const u8,
    rb: usize,
    a0: v128,
    a1: v128,
    values: impl Fn(*const u8) -> (v128, v128),
) -> (v128, v128) {
    // SAFETY: the caller guarantees the blocks are readable; loads are unaligned.
    unsafe {
        let dot = |i: usize| {
            let (w0, w1) = values(p.add(i * rb + 2));
            i32x4_add(dot_i8_i8(w0, a0), dot_i8_i8(w1, a1))
        };
        sums_and_scales4(p, rb, dot)
    }
}

/// One lane per row of the 4 blocks at `p + i · rb` (`i` = 0..4): the exact integer sums
/// `dot(i)` (4 partial sums each) and the blocks' half scales (their first 2 bytes) as `f32`.
///
/// # Safety
/// The 2 bytes at each `p + i · rb` must be readable.
#[inline(always)]
unsafe fn sums_and_scales4(p: *const u8, rb: usize, dot: impl Fn(usize) -> v128) -> (v128, v128) {
    let isum = hsum4(dot(0), dot(1), dot(2), dot(3));
    // SAFETY: the caller guarantees the 2 bytes at each block; loads are unaligned.
    let half = |i: usize| u32::from(unsafe { (p.add(i * rb) as *const u16).read_unaligned() });
    (
        isum,
        widen_f16x4_lo(u32x4(half(0), half(1), half(2), half(3))),
    )
}

/// Q8_0 rows × Q8_1 activations (scale and values only). Returns the rows done (whole
/// groups); `simd::matmul` does the rest.
#[target_feature(enable = "relaxed-simd")]
pub(super) fn matmul_q8_0(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    // SAFETY: `scaled_rows` hands `values_q8_0` the 32 value bytes of a block inside `w`.
    scaled_rows::<{ q8_0::BLOCK_BYTES }>(w, nb, acts, n_tok, out, |q| unsafe { values_q8_0(q) })
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
    // SAFETY: `offset_rows` hands `nibbles_q4_0` the 16 nibble bytes of a block inside `w`.
    offset_rows::<{ q4_0::BLOCK_BYTES }, 8, false>(w, nb, acts, n_tok, out, |q| unsafe {
        nibbles_q4_0(q)
    })
}

/// The matmul of the `BB`-byte block types whose weights are a half-float scale times signed
/// values (Q8_0, IQ4_NL), 4 rows at a time. Returns the rows done (whole groups).
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn scaled_rows<const BB: usize>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    values: impl Fn(*const u8) -> (v128, v128) + Copy,
) -> usize {
    let rb = nb * BB;
    let n_rows = w.len() / rb;
    let full = n_rows / 4 * 4;
    if n_tok > 1 {
        scaled_rows_tiled::<BB>(w, nb, acts, n_tok, out, full, values);
        return full;
    }
    let split = split_acts(&acts[..nb]);
    for r0 in (0..full).step_by(4) {
        let p = w[r0 * rb..(r0 + 4) * rb].as_ptr();
        let (mut acc, mut seen) = (f32x4_splat(0.0), 0);
        for (b, ab) in acts[..nb].iter().enumerate() {
            seen ^= touch_ahead(w, r0 * rb + 4 * b * BB, 4 * BB);
            // SAFETY: the four rows are `rb` bytes apart inside `w` (sliced above) and the
            // block at `b * BB` (b < nb) lies inside each of them.
            let (isum, d) = unsafe {
                match &split {
                    Some(sa) => split_block4(p.add(b * BB), rb, &sa[b], values),
                    None => {
                        let (a0, a1) = (load16_i8(&ab.qs[..16]), load16_i8(&ab.qs[16..]));
                        scaled_block4(p.add(b * BB), rb, a0, a1, values)
                    }
                }
            };
            let x = f32x4_mul(f32x4_mul(d, f32x4_splat(ab.d)), f32x4_convert_i32x4(isum));
            acc = f32x4_add(acc, x);
        }
        core::hint::black_box(seen);
        store_lanes(acc, out, r0, 1, 0);
    }
    full
}

/// Each activation block's values split into their positive parts and the magnitudes of their
/// negative ones (`[a⁺ 0..16, a⁺ 16..32, a⁻ 0..16, a⁻ 16..32]`, `a = a⁺ − a⁻`, all within
/// 0..=127), for [`split_block4`]; `None` if some value is −128 (outside Q8_1's range, whose
/// magnitude is not a 7-bit operand).
fn split_acts(acts: &[BlockQ8_1]) -> Option<Vec<[v128; 4]>> {
    let min = i8x16_splat(-128);
    let zero = i8x16_splat(0);
    acts.iter()
        .map(|ab| {
            let (a0, a1) = (load16_i8(&ab.qs[..16]), load16_i8(&ab.qs[16..]));
            if v128_any_true(v128_or(i8x16_eq(a0, min), i8x16_eq(a1, min))) {
                return None;
            }
            Some([
                i8x16_max(a0, zero),
                i8x16_max(a1, zero),
                i8x16_max(i8x16_neg(a0), zero),
                i8x16_max(i8x16_neg(a1), zero),
            ])
        })
        .collect()
}

/// [`scaled_block4`] with the activations split ([`split_acts`]): each row's signed values
/// `w` times `a⁺` and times `a⁻` by the relaxed dot, whose 7-bit operand is then an
/// activation part (0..=127) and whose pair sums (at most 2 · 128 · 127) cannot saturate, so
/// every lowering agrees; `w·a⁺ − w·a⁻` (one pair of elements, within i16), widened, summed.
///
/// # Safety
/// As [`scaled_block4`].
#[inline]
#[target_feature(enable = "relaxed-simd")]
unsafe fn split_block4(
    p: *const u8,
    rb: usize,
    sa: &[v128; 4],
    values: impl Fn(*const u8) -> (v128, v128),
) -> (v128, v128) {
    // SAFETY: the caller guarantees the blocks are readable; loads are unaligned.
    unsafe {
        let dot = |i: usize| {
            let (w0, w1) = values(p.add(i * rb + 2));
            let d0 = i16x8_sub(relaxed_dot(w0, sa[0]), relaxed_dot(w0, sa[2]));
            let d1 = i16x8_sub(relaxed_dot(w1, sa[1]), relaxed_dot(w1, sa[3]));
            i32x4_add(
                i32x4_extadd_pairwise_i16x8(d0),
                i32x4_extadd_pairwise_i16x8(d1),
            )
        };
        sums_and_scales4(p, rb, dot)
    }
}

/// [`scaled_rows`] for several tokens: each group's values are unpacked and widened to `i16`
/// once (4 rows × 4 registers per block, then the scales), and each token's activations are
/// widened once per block for the 4 rows: the same exact sums, the same `f32` operations.
#[inline(always)]
fn scaled_rows_tiled<const BB: usize>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
    values: impl Fn(*const u8) -> (v128, v128) + Copy,
) {
    const E: usize = 17;
    let rb = nb * BB;
    let mut buf = vec![i32x4_splat(0); nb * E];
    for r0 in (0..full).step_by(4) {
        let p = w[r0 * rb..(r0 + 4) * rb].as_ptr();
        for (b, e) in buf.chunks_exact_mut(E).enumerate() {
            let blk = |i: usize| p.wrapping_add(i * rb + b * BB);
            for i in 0..4 {
                let (w0, w1) = values(blk(i).wrapping_add(2));
                e[4 * i] = i16x8_extend_low_i8x16(w0);
                e[4 * i + 1] = i16x8_extend_high_i8x16(w0);
                e[4 * i + 2] = i16x8_extend_low_i8x16(w1);
                e[4 * i + 3] = i16x8_extend_high_i8x16(w1);
            }
            // SAFETY: a block's first 2 bytes (its scale) lie inside `w`, as above.
            let half = |i: usize| u32::from(unsafe { (blk(i) as *const u16).read_unaligned() });
            e[16] = f16x4_lo_to_f32(u32x4(half(0), half(1), half(2), half(3)));
        }
        for t in 0..n_tok {
            let mut acc = f32x4_splat(0.0);
            for (ab, e) in acts[t * nb..(t + 1) * nb].iter().zip(buf.chunks_exact(E)) {
                let (a0, a1) = (load16_i8(&ab.qs[..16]), load16_i8(&ab.qs[16..]));
                let a = [
                    i16x8_extend_low_i8x16(a0),
                    i16x8_extend_high_i8x16(a0),
                    i16x8_extend_low_i8x16(a1),
                    i16x8_extend_high_i8x16(a1),
                ];
                let dot = |i: usize| {
                    let lo = i32x4_add(
                        i32x4_dot_i16x8(e[4 * i], a[0]),
                        i32x4_dot_i16x8(e[4 * i + 1], a[1]),
                    );
                    let hi = i32x4_add(
                        i32x4_dot_i16x8(e[4 * i + 2], a[2]),
                        i32x4_dot_i16x8(e[4 * i + 3], a[3]),
                    );
                    i32x4_add(lo, hi)
                };
                let isum = hsum4(dot(0), dot(1), dot(2), dot(3));
                let x = f32x4_mul(
                    f32x4_mul(e[16], f32x4_splat(ab.d)),
                    f32x4_convert_i32x4(isum),
                );
                acc = f32x4_add(acc, x);
            }
            store_lanes(acc, out, r0, n_tok, t);
        }
    }
}

/// The bit [`high_bits_q5`] tests in each byte (`0x01, 0x02, …, 0x80`, twice), through
/// `black_box` so that LLVM does not know each is a single bit: knowing it, it rewrites the
/// test `b & bit == bit` as `b & bit != 0`, which Cranelift emits as a compare and a negation
/// (two more operations a register). Made once per matmul.
#[inline(always)]
fn q5_bits() -> v128 {
    core::hint::black_box(u64x2_splat(0x8040_2010_0804_0201))
}

/// The high bits of a Q5 block (the little-endian word at `p`) as bytes `0x10` (set) or 0:
/// `(elements 0..16, elements 16..32)`; `bit` is [`q5_bits`].
///
/// # Safety
/// The 4 bytes at `p` must be readable.
#[inline(always)]
unsafe fn high_bits_q5(p: *const u8, bit: v128) -> (v128, v128) {
    // SAFETY: the caller guarantees 4 readable bytes.
    let qh = u32x4_splat(unsafe { (p as *const u32).read_unaligned() });
    let sixteen = u8x16_splat(0x10);
    let spread = |lo: u8| {
        let idx = u8x16(
            lo,
            lo,
            lo,
            lo,
            lo,
            lo,
            lo,
            lo,
            lo + 1,
            lo + 1,
            lo + 1,
            lo + 1,
            lo + 1,
            lo + 1,
            lo + 1,
            lo + 1,
        );
        let b = u8x16_swizzle(qh, idx);
        v128_and(i8x16_eq(v128_and(b, bit), bit), sixteen)
    };
    (spread(0), spread(2))
}

/// The 32 values `q` (0..=31, before the −16) of the Q5_0 block whose high-bit word starts
/// at `q` (nibbles 4 bytes later), as bytes: `(elements 0..16, elements 16..32)`; `bit` is
/// [`q5_bits`].
///
/// # Safety
/// The 20 bytes at `q` must be readable.
#[inline(always)]
unsafe fn values_q5_0(q: *const u8, bit: v128) -> (v128, v128) {
    // SAFETY: the caller guarantees 20 readable bytes; the load is unaligned.
    let (n, (h0, h1)) = unsafe { (v128_load(q.add(4) as *const v128), high_bits_q5(q, bit)) };
    (
        v128_or(v128_and(n, u8x16_splat(0x0f)), h0),
        v128_or(u8x16_shr(n, 4), h1),
    )
}

/// The 32 table values of the IQ4_NL block whose nibbles start at `q`: `(elements 0..16,
/// elements 16..32)` (`i8x16.swizzle` as the lookup; every index is below 16).
///
/// # Safety
/// The 16 bytes at `q` must be readable.
#[inline(always)]
unsafe fn values_iq4_nl(q: *const u8) -> (v128, v128) {
    // SAFETY: the caller guarantees 16 readable bytes; the table has 16.
    let (n, t) = unsafe {
        (
            v128_load(q as *const v128),
            v128_load(iq4_nl::KVALUES.as_ptr() as *const v128),
        )
    };
    (
        u8x16_swizzle(t, v128_and(n, u8x16_splat(0x0f))),
        u8x16_swizzle(t, u8x16_shr(n, 4)),
    )
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
    let bit = q5_bits();
    // SAFETY: `offset_rows` hands `values_q5_0` the 20 bytes after a block's scale, inside `w`.
    offset_rows::<{ q5_0::BLOCK_BYTES }, 16, false>(w, nb, acts, n_tok, out, |q| unsafe {
        values_q5_0(q, bit)
    })
}

/// IQ4_NL rows × Q8_1 activations (scale and values only). Returns the rows done (whole
/// groups); `simd::matmul` does the rest.
#[target_feature(enable = "relaxed-simd")]
pub(super) fn matmul_iq4_nl(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    // SAFETY: `scaled_rows` hands `values_iq4_nl` the 16 nibble bytes of a block inside `w`.
    scaled_rows::<{ iq4_nl::BLOCK_BYTES }>(w, nb, acts, n_tok, out, |q| unsafe { values_iq4_nl(q) })
}

/// Q5_1 rows × Q8_1 activations, through [`offset_rows`] with no offset and the min. Returns
/// the rows done (whole groups); `simd::matmul` does the rest.
pub(super) fn matmul_q5_1(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    let bit = q5_bits();
    // SAFETY: `offset_rows` hands the closure a block's start plus 2; the high-bit word and
    // nibbles start 2 bytes further (after the min) and end with the block, inside `w`.
    offset_rows::<{ q5_1::BLOCK_BYTES }, 0, true>(w, nb, acts, n_tok, out, |q| unsafe {
        values_q5_0(q.wrapping_add(2), bit)
    })
}

/// Widens a row of little-endian half floats to `f32`, 8 at a time (one load, zero-extended
/// to two `u32x4`) with the exact sequence (as `quant::f16::dequantize_row`); the tail by the
/// reference.
pub(super) fn widen_f16(bytes: &[u8], out: &mut [f32]) {
    let n = out.len().min(bytes.len() / 2);
    let n8 = n - n % 8;
    for (c, o) in bytes[..2 * n8]
        .chunks_exact(16)
        .zip(out.chunks_exact_mut(8))
    {
        let h = load16(c);
        let lo = f16x4_lo_to_f32(u32x4_extend_low_u16x8(h));
        let hi = f16x4_lo_to_f32(u32x4_extend_high_u16x8(h));
        // SAFETY: `o` holds 8 `f32`; the stores are unaligned.
        unsafe {
            v128_store(o.as_mut_ptr() as *mut v128, lo);
            v128_store(o.as_mut_ptr().add(4) as *mut v128, hi);
        }
    }
    crate::quant::f16::dequantize_row(&bytes[2 * n8..], &mut out[n8..n]);
}

/// The matmul of the `BB`-byte block types whose weights are a half-float scale times
/// `u − OFFSET` with unsigned `u` of at most 31 (Q4_0, Q5_0), or with `MIN` a scale times `u`
/// plus a half-float min (Q5_1), 4 rows at a time: `Σ u·a` by the relaxed dot (`u` is a valid
/// 7-bit operand; i16 lanes sum 4 products, at most 4 · 31 · 127), minus `OFFSET · Σ a` (the
/// activation block's sum), exactly the reference's `Σ (u − OFFSET)·a`; then
/// `acc + (d·da)·isum [+ m·sa]`. `values` loads `u` from a block's start plus 2. With several
/// tokens each group's values and scales are unpacked once and reused for every token.
/// Returns the rows done (whole groups).
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn offset_rows<const BB: usize, const OFFSET: i32, const MIN: bool>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    values: impl Fn(*const u8) -> (v128, v128) + Copy,
) -> usize {
    let rb = nb * BB;
    let n_rows = w.len() / rb;
    let full = n_rows / 4 * 4;
    // Per block: 8 value vectors (4 rows × 2 halves), then the 4 rows' scales and mins.
    const E: usize = 10;
    let mut buf = if n_tok > 1 {
        vec![i32x4_splat(0); nb * E]
    } else {
        Vec::new()
    };
    for r0 in (0..full).step_by(4) {
        let p = w[r0 * rb..(r0 + 4) * rb].as_ptr();
        // Block b of row r0 + i (the four rows are `rb` bytes apart inside `w`, sliced above,
        // and the block at `b * BB`, b < nb, lies inside each of them).
        let blk = |i: usize, b: usize| p.wrapping_add(i * rb + b * BB);
        let scales = |b: usize| {
            // SAFETY: a block's first 4 bytes (its scale, and min or more) lie inside `w`, as
            // above.
            let word = |i: usize| unsafe { (blk(i, b) as *const u32).read_unaligned() };
            let words = u32x4(word(0), word(1), word(2), word(3));
            if MIN {
                widen_f16_pairs(words)
            } else {
                let d = widen_f16x4_lo(v128_and(words, u32x4_splat(0xffff)));
                (d, f32x4_splat(0.0))
            }
        };
        let mut seen = 0;
        if n_tok == 1 {
            let mut acc = f32x4_splat(0.0);
            for (b, ab) in acts[..nb].iter().enumerate() {
                seen ^= touch_ahead(w, r0 * rb + 4 * b * BB, 4 * BB);
                let u = |i: usize| values(blk(i, b).wrapping_add(2));
                let (d, m) = scales(b);
                acc = offset_step::<OFFSET, MIN>(acc, &[u(0), u(1), u(2), u(3)], d, m, ab);
            }
            core::hint::black_box(seen);
            store_lanes(acc, out, r0, 1, 0);
            continue;
        }
        for (b, e) in buf.chunks_exact_mut(E).enumerate() {
            seen ^= touch_ahead(w, r0 * rb + 4 * b * BB, 4 * BB);
            for i in 0..4 {
                (e[2 * i], e[2 * i + 1]) = values(blk(i, b).wrapping_add(2));
            }
            (e[8], e[9]) = scales(b);
        }
        core::hint::black_box(seen);
        for t in 0..n_tok {
            let mut acc = f32x4_splat(0.0);
            for (ab, e) in acts[t * nb..(t + 1) * nb].iter().zip(buf.chunks_exact(E)) {
                let u = [(e[0], e[1]), (e[2], e[3]), (e[4], e[5]), (e[6], e[7])];
                acc = offset_step::<OFFSET, MIN>(acc, &u, e[8], e[9], ab);
            }
            store_lanes(acc, out, r0, n_tok, t);
        }
    }
    full
}

/// One block of [`offset_rows`] for 4 rows: values `u` (each row's two halves), scales `d`,
/// mins `m` (read with `MIN` only).
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn offset_step<const OFFSET: i32, const MIN: bool>(
    acc: v128,
    u: &[(v128, v128); 4],
    d: v128,
    m: v128,
    ab: &BlockQ8_1,
) -> v128 {
    let (a0, a1) = (load16_i8(&ab.qs[..16]), load16_i8(&ab.qs[16..]));
    let dot = |i: usize| i32x4_extadd_pairwise_i16x8(psum_q4(u[i].0, u[i].1, a0, a1));
    let mut isum = hsum4(dot(0), dot(1), dot(2), dot(3));
    if OFFSET != 0 {
        isum = i32x4_sub(isum, i32x4_splat(OFFSET * ab.sum));
    }
    let x = f32x4_mul(f32x4_mul(d, f32x4_splat(ab.d)), f32x4_convert_i32x4(isum));
    if MIN {
        f32x4_add(f32x4_add(acc, x), f32x4_mul(m, f32x4_splat(ab.s)))
    } else {
        f32x4_add(acc, x)
    }
}
