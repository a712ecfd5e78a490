//! x86-64 AVX2 (+F16C) variants, selected at run time.
//!
//! Matmuls take 8 weight rows at a time: exact `i32` dot products per block (maddubs, then a
//! transposing `hadd` reduction to one `i32` per row), then `f32` accumulation with one AVX
//! lane per row in block order — the scalar reference's arithmetic, lane by lane. With several
//! tokens, each Q4_1 row group is unpacked once (nibbles to bytes, half scales to `f32`) and
//! reused for every token. Q4_0 and Q8_0 (a scale times signed values) share one kernel. Rows
//! repacked eight at a time ([`matmul_x8`]) need no reduction: a register holds 4 values of
//! each of the 8 rows, multiplied by a broadcast of the matching 4 activation bytes (with
//! AVX-512, two groups' in one register for several tokens: [`super::x86_zmm`]).

#[cfg(target_arch = "x86")]
use std::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::x86_zmm;
use crate::quant::q8_1::{self, BlockQ8_1};
use crate::quant::q8_k::{self, BlockQ8_K};
use crate::quant::{iq4_nl, q4_0, q4_1, q5_0, q5_1, q8_0, QK, QK_K};

/// True if AVX2 and F16C are available (std caches the detection).
pub(super) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c")
}

/// Quantizes a row into Q8_1 blocks (same results as `q8_1::quantize_row_ref`).
pub(super) fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    if !has_avx2() {
        return q8_1::quantize_row_ref(x, out);
    }
    for (c, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        // SAFETY: AVX2 was detected above; `c` has exactly 32 elements.
        unsafe { quantize_block(c, b) }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn quantize_block(x: &[f32], out: &mut BlockQ8_1) {
    // SAFETY: `x` has 32 floats, read as four unaligned 8-float vectors; `out.qs` has 32 bytes.
    unsafe {
        let p = x.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_andnot_ps(sign, v[0]);
        for vi in &v[1..] {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vi));
        }
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m1 = _mm_max_ss(m2, _mm_shuffle_ps(m2, m2, 1));
        let amax = _mm_cvtss_f32(m1);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let idv = _mm256_set1_ps(id);
        let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
        let mut q = [_mm256_setzero_si256(); 4];
        for (qi, vi) in q.iter_mut().zip(v) {
            let r = _mm256_round_ps(
                _mm256_mul_ps(vi, idv),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            );
            *qi = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
        }
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1));
        let sum = _mm_cvtsi128_si32(s1);
        // Pack 32 × i32 to 32 × i8 in element order.
        let p01 = _mm256_packs_epi32(q[0], q[1]);
        let p23 = _mm256_packs_epi32(q[2], q[3]);
        let p = _mm256_packs_epi16(p01, p23);
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(out.qs.as_mut_ptr() as *mut __m256i, p);
        out.d = d;
        out.s = d * sum as f32;
        out.sum = sum;
    }
}

/// Quantizes a row into Q8_K blocks (same results as `q8_k::quantize_row_ref`).
pub(super) fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8_K]) {
    if !has_avx2() {
        return q8_k::quantize_row_ref(x, out);
    }
    for (c, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        // SAFETY: AVX2 was detected above; `c` has exactly 256 elements.
        unsafe { quantize_block_k(c, b) }
    }
}

/// The reference's `(v · id).round_ties_even().clamp(-127, 127)` of the 8 floats at `p`, as
/// `i32` lanes.
#[inline(always)]
unsafe fn round_clamp8(p: *const f32, id: __m256) -> __m256i {
    // SAFETY: the caller guarantees 8 readable floats at `p` and AVX.
    unsafe {
        let r = _mm256_round_ps(
            _mm256_mul_ps(_mm256_loadu_ps(p), id),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
        _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi))
    }
}

/// One Q8_K block as `q8_k::quantize_block`: `amax` over all 256 values, then each 32 rounded
/// as [`quantize_block`] rounds them, and the 16-value sums from the same integers.
#[target_feature(enable = "avx2")]
unsafe fn quantize_block_k(x: &[f32], out: &mut BlockQ8_K) {
    // SAFETY: `x` has 256 floats, read as unaligned 8-float vectors; `out.qs` has 256 bytes and
    // `out.bsums` 16 i16.
    unsafe {
        let p = x.as_ptr();
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        for k in 0..QK_K / 8 {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(8 * k))));
        }
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m1 = _mm_max_ss(m2, _mm_shuffle_ps(m2, m2, 1));
        let amax = _mm_cvtss_f32(m1);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let idv = _mm256_set1_ps(id);
        // Per 32 values: lanes of the two 16-value halves' pair sums, added pairwise (hadd).
        let mut halves = [_mm256_setzero_si256(); 8];
        for (c, h) in halves.iter_mut().enumerate() {
            let q: [__m256i; 4] =
                core::array::from_fn(|k| round_clamp8(p.add(32 * c + 8 * k), idv));
            *h = _mm256_hadd_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            let p01 = _mm256_packs_epi32(q[0], q[1]);
            let p23 = _mm256_packs_epi32(q[2], q[3]);
            let b = _mm256_packs_epi16(p01, p23);
            let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(out.qs.as_mut_ptr().add(32 * c) as *mut __m256i, b);
        }
        // halves[c] = [a, a, b, b | a, a, b, b] partial sums of 32-chunk c's halves a, b; two
        // chunks' hadd gives [a, b, a', b' | a, b, a', b'], and its 128-bit halves added the
        // four 16-value sums.
        let mut sums = [_mm_setzero_si128(); 4];
        for (k, s) in sums.iter_mut().enumerate() {
            let t = _mm256_hadd_epi32(halves[2 * k], halves[2 * k + 1]);
            *s = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        }
        let b0 = _mm_packs_epi32(sums[0], sums[1]);
        let b1 = _mm_packs_epi32(sums[2], sums[3]);
        _mm_storeu_si128(out.bsums.as_mut_ptr() as *mut __m128i, b0);
        _mm_storeu_si128(out.bsums.as_mut_ptr().add(8) as *mut __m128i, b1);
        out.d = d;
    }
}

/// `activation::swiglu`'s loop compiled for AVX2 (8 lanes; the same operations, so the same bits).
/// Without AVX2, the reference.
pub(super) fn swiglu(gate: &mut [f32], up: &[f32]) {
    if !has_avx2() {
        return crate::activation::swiglu(gate, up);
    }
    // SAFETY: AVX2 detected above.
    unsafe { swiglu_avx2(gate, up) }
}

#[target_feature(enable = "avx2")]
unsafe fn swiglu_avx2(gate: &mut [f32], up: &[f32]) {
    crate::activation::swiglu(gate, up);
}

/// `activation::exp_shifted`'s loop compiled for AVX2 (8 lanes; the same operations, so the
/// same bits). Without AVX2, the reference.
pub(super) fn exp_shifted(x: &mut [f32], shift: f32) {
    if !has_avx2() {
        return crate::activation::exp_shifted(x, shift);
    }
    // SAFETY: AVX2 detected above.
    unsafe { exp_shifted_avx2(x, shift) }
}

#[target_feature(enable = "avx2")]
unsafe fn exp_shifted_avx2(x: &mut [f32], shift: f32) {
    crate::activation::exp_shifted(x, shift);
}

/// Rounds to the nearest half float in place: F16C's `vcvtps2ph` (round to nearest even, as
/// `half` rounds) and back, 8 at a time; the tail by `quant::f16::round_slice`. Without F16C,
/// the reference.
pub(super) fn round_f16(x: &mut [f32]) {
    if !has_avx2() {
        return crate::quant::f16::round_slice(x);
    }
    // SAFETY: AVX2 and F16C detected above.
    unsafe { round_f16_avx2(x) }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn round_f16_avx2(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` holds 8 elements; F16C is available (the caller's contract).
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(c.as_ptr()));
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    crate::quant::f16::round_slice(chunks.into_remainder());
}

/// Widens a row of little-endian half floats to `f32` with F16C, 8 at a time (exact, as
/// `quant::f16::dequantize_row`); the tail by the reference. Without F16C, the reference.
pub(super) fn widen_f16(bytes: &[u8], out: &mut [f32]) {
    if !has_avx2() {
        return crate::quant::f16::dequantize_row(bytes, out);
    }
    // SAFETY: AVX2 and F16C detected above.
    unsafe { widen_f16_avx2(bytes, out) }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn widen_f16_avx2(bytes: &[u8], out: &mut [f32]) {
    let n = out.len().min(bytes.len() / 2);
    let n8 = n - n % 8;
    for i in (0..n8).step_by(8) {
        // SAFETY: elements i..i + 8 lie within both `bytes` (16 bytes) and `out`.
        unsafe {
            let h = _mm_loadu_si128(bytes.as_ptr().add(2 * i) as *const __m128i);
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
    }
    crate::quant::f16::dequantize_row(&bytes[2 * n8..], &mut out[n8..n]);
}

/// `quant::f32::dot_ref` with one 8-lane register: lane `j` sums the products of elements
/// `j, j + 8, …` (multiply, then add), the lanes are combined in `reduce8`'s tree, the tail of
/// fewer than 8 elements is added in order. Without AVX2, the reference.
pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    if !has_avx2() {
        return crate::quant::f32::dot_ref(a, b);
    }
    // SAFETY: AVX2 detected above.
    unsafe { dot_avx2(a, b) }
}

/// [`dot_f32`] once AVX2 is known: the 8-lane part, then the tail in order.
///
/// # Safety
/// AVX2 must be available.
#[inline(always)]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let n8 = n - n % 8;
    // SAFETY: AVX2 is available (the caller's contract); both slices hold `n8` elements, a
    // multiple of 8.
    let mut sum = unsafe { dot_f32_lanes(&a[..n8], &b[..n8]) };
    for i in n8..n {
        sum += a[i] * b[i];
    }
    sum
}

/// The 8-lane part of [`dot_f32`] over `a`, `b` (equal lengths, a multiple of 8).
#[target_feature(enable = "avx2")]
unsafe fn dot_f32_lanes(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: `a` and `b` hold `a.len()` elements, a multiple of 8 (the caller's contract).
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in (0..a.len()).step_by(8) {
            let x = _mm256_loadu_ps(a.as_ptr().add(i));
            let y = _mm256_loadu_ps(b.as_ptr().add(i));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
        }
        reduce8_ps(acc)
    }
}

/// `quant::f32::reduce8` of the 8 lanes of `acc`.
#[inline(always)]
unsafe fn reduce8_ps(acc: __m256) -> f32 {
    // SAFETY: register-only AVX operations; the caller has AVX2.
    unsafe {
        // s = [p0+p4, p1+p5, p2+p6, p3+p7]; t = [s0+s2, s1+s3, ..]; t0 + t1.
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)))
    }
}

/// Positions ahead whose rows the attention kernels prefetch.
const PF_POS: usize = 4;

/// `simd::dots_f16` on AVX2 and F16C: each row's dot as [`dot_f32`] computes it on the row
/// widened exactly (8 halves at a time by `vcvtph2ps`), four rows at a time (four independent
/// sums, so each add need not wait for the last), with the rows [`PF_POS`] positions ahead
/// prefetched. Returns false (and writes nothing) without AVX2 or when `rows` is too short.
pub(super) fn dots_f16(q: &[f32], rows: &[u16], stride: usize, out: &mut [f32]) -> bool {
    let n = q.len();
    if !has_avx2() || out.is_empty() || rows.len() < (out.len() - 1) * stride + n {
        return false;
    }
    let n8 = n - n % 8;
    for (j4, o) in out.chunks_exact_mut(4).enumerate() {
        let r: [&[u16]; 4] = core::array::from_fn(|k| &rows[(4 * j4 + k) * stride..][..n]);
        // SAFETY: AVX2 and F16C detected above; `q` and each row hold `n8` elements, a
        // multiple of 8; prefetch addresses need not be valid.
        let sums = unsafe {
            for row in r {
                prefetch(
                    row.as_ptr().wrapping_add(PF_POS * stride) as *const u8,
                    2 * n,
                );
            }
            dot_f16_lanes(&q[..n8], r.map(|row| row.as_ptr()))
        };
        for ((o, sum), row) in o.iter_mut().zip(sums).zip(r) {
            *o = dot_f16_tail(sum, q, row, n8);
        }
    }
    let done = out.len() / 4 * 4;
    for (j, o) in out.iter_mut().enumerate().skip(done) {
        let r = &rows[j * stride..][..n];
        // SAFETY: as above.
        let sum = unsafe {
            prefetch(r.as_ptr().wrapping_add(PF_POS * stride) as *const u8, 2 * n);
            dot_f16_lanes(&q[..n8], [r.as_ptr()])[0]
        };
        *o = dot_f16_tail(sum, q, r, n8);
    }
    true
}

/// `sum` (a row's dot over its first `from` columns) plus the rest of `q · row`, added one
/// column at a time after the 8-lane part as the reference adds them.
#[inline]
fn dot_f16_tail(mut sum: f32, q: &[f32], row: &[u16], from: usize) -> f32 {
    for (&x, &h) in q.iter().zip(row).skip(from) {
        sum += x * crate::quant::f16::f16_bits_to_f32(h);
    }
    sum
}

/// `simd::dots_f16_heads` where 512-bit vectors are available (and allowed), for 1 to 4
/// heads: whole blocks of 8 rows by [`x86_zmm`], each row widened once for all the heads, their
/// columns past the last multiple of 8 added after as the reference adds them, and the rows
/// after the last block by [`dots_f16`] per head. Returns false (and writes nothing) otherwise,
/// or when `rows` is too short.
pub(super) fn dots_f16_heads(
    q: &[f32],
    hd: usize,
    rows: &[u16],
    stride: usize,
    out: &mut [f32],
) -> bool {
    let heads = q.len().checked_div(hd).unwrap_or(0);
    let m = out.len().checked_div(heads).unwrap_or(0);
    let n8 = hd - hd % 8;
    let fits = m > 0 && q.len() == heads * hd && out.len() == heads * m;
    if !fits || rows.len() < (m - 1) * stride + hd || n8 == 0 || !has_avx2() || !has_vnni512() {
        return false;
    }
    // SAFETY: AVX-512 F detected; the lengths checked above.
    let done = unsafe {
        match heads {
            1 => x86_zmm::dots_f16_heads::<1>(q, hd, n8, rows, stride, out, m),
            2 => x86_zmm::dots_f16_heads::<2>(q, hd, n8, rows, stride, out, m),
            3 => x86_zmm::dots_f16_heads::<3>(q, hd, n8, rows, stride, out, m),
            4 => x86_zmm::dots_f16_heads::<4>(q, hd, n8, rows, stride, out, m),
            _ => return false,
        }
    };
    for (qh, o) in q.chunks_exact(hd).zip(out.chunks_exact_mut(m)) {
        if n8 < hd {
            for (j, o) in o[..done].iter_mut().enumerate() {
                *o = dot_f16_tail(*o, qh, &rows[j * stride..][..hd], n8);
            }
        }
        if done < m && !dots_f16(qh, &rows[done * stride..], stride, &mut o[done..]) {
            unreachable!("AVX2 is available and the rows fit");
        }
    }
    true
}

/// The 8-lane part of [`dot_f32`] over `a` and each of `K` rows of half floats at `b` (`a.len()`
/// elements each, a multiple of 8): one sum per row, the same operations per row for any `K`,
/// so the same bits.
#[target_feature(enable = "avx2,f16c")]
unsafe fn dot_f16_lanes<const K: usize>(a: &[f32], b: [*const u16; K]) -> [f32; K] {
    // SAFETY: `a.len()` elements are readable at `a` and at each `b[k]`, a multiple of 8 (the
    // caller's contract).
    unsafe {
        let mut acc = [_mm256_setzero_ps(); K];
        for i in (0..a.len()).step_by(8) {
            let x = _mm256_loadu_ps(a.as_ptr().add(i));
            for (acc, b) in acc.iter_mut().zip(b) {
                let y = _mm256_cvtph_ps(_mm_loadu_si128(b.add(i) as *const __m128i));
                *acc = _mm256_add_ps(*acc, _mm256_mul_ps(x, y));
            }
        }
        acc.map(|acc| reduce8_ps(acc))
    }
}

/// `quant::f32::weighted_sum_f16_ref` with blocks of 64 outputs in 8 registers across all
/// rows (each row's 8 halves widened by `vcvtph2ps`; multiply, then add, in row order);
/// outputs past the last multiple of 8 by the reference. Without AVX2, the reference.
pub(super) fn weighted_sum_f16(w: &[f32], rows: &[u16], stride: usize, out: &mut [f32]) {
    let n = out.len();
    let n8 = n - n % 8;
    if !has_avx2() || n8 == 0 || w.is_empty() || rows.len() < (w.len() - 1) * stride + n {
        return crate::quant::f32::weighted_sum_f16_ref(w, rows, stride, out);
    }
    for c0 in (0..n8).step_by(64) {
        let c1 = (c0 + 64).min(n8);
        // SAFETY: AVX2 and F16C detected above; row j's columns c0..c1 lie at
        // j * stride + c0.. within `rows` (length checked above), and `out` holds c1 elements.
        unsafe { weighted_sum_f16_block(w, &rows[c0..], stride, &mut out[c0..c1]) };
    }
    if n8 < n {
        crate::quant::f32::weighted_sum_f16_ref(w, &rows[n8..], stride, &mut out[n8..]);
    }
}

/// `simd::weighted_sum_f16_heads` where 512-bit vectors are available (and allowed), for 1 to
/// 4 heads: the first `hd / 16 * 16` columns of every head by [`x86_zmm`] with each row read
/// once for all heads, the rest per head by [`weighted_sum_f16`]. Returns false (and writes
/// nothing) otherwise, or when `rows` is too short.
pub(super) fn weighted_sum_f16_heads(
    w: &[f32],
    m: usize,
    rows: &[u16],
    stride: usize,
    out: &mut [f32],
    hd: usize,
) -> bool {
    let heads = w.len().checked_div(m).unwrap_or(0);
    let n16 = hd - hd % 16;
    let fits = m > 0 && out.len() == heads * hd && rows.len() >= (m - 1) * stride + hd;
    if !fits || n16 == 0 || !has_avx2() || !has_vnni512() {
        return false;
    }
    // SAFETY: AVX-512 F detected; the lengths checked above.
    unsafe {
        match heads {
            1 => x86_zmm::weighted_sum_f16_heads::<1>(w, rows, stride, out, hd, n16),
            2 => x86_zmm::weighted_sum_f16_heads::<2>(w, rows, stride, out, hd, n16),
            3 => x86_zmm::weighted_sum_f16_heads::<3>(w, rows, stride, out, hd, n16),
            4 => x86_zmm::weighted_sum_f16_heads::<4>(w, rows, stride, out, hd, n16),
            _ => return false,
        }
    }
    if n16 < hd {
        for (wh, o) in w.chunks_exact(m).zip(out.chunks_exact_mut(hd)) {
            weighted_sum_f16(wh, &rows[n16..], stride, &mut o[n16..]);
        }
    }
    true
}

/// Up to 64 outputs (`out.len()`, a multiple of 8) of [`weighted_sum_f16`], kept in
/// registers.
#[target_feature(enable = "avx2,f16c")]
unsafe fn weighted_sum_f16_block(w: &[f32], rows: &[u16], stride: usize, out: &mut [f32]) {
    let k = out.len() / 8;
    // SAFETY: the caller guarantees `rows[j * stride..][..out.len()]` for every j < w.len().
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 8];
        for (j, &a) in w.iter().enumerate() {
            let r = rows.as_ptr().add(j * stride);
            prefetch(r.wrapping_add(PF_POS * stride) as *const u8, 2 * out.len());
            let a = _mm256_set1_ps(a);
            for (i, acc) in acc.iter_mut().enumerate().take(k) {
                let v = _mm256_cvtph_ps(_mm_loadu_si128(r.add(8 * i) as *const __m128i));
                *acc = _mm256_add_ps(*acc, _mm256_mul_ps(a, v));
            }
        }
        for (i, acc) in acc.iter().enumerate().take(k) {
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), *acc);
        }
    }
}

/// `crate::ops::transpose_ref`: each block of 8 rows by 8 tokens (then by 4) transposed in
/// registers, 8 loads and 8 stores instead of 64 of each; the rows past the last 8 and the
/// tokens past the last block one by one. Every element is copied or added alone, so the bits
/// are the reference's.
pub(super) fn transpose(src: &[f32], rows: usize, n: usize, t0: usize, dst: &mut [f32], add: bool) {
    let k = dst.len().checked_div(rows).unwrap_or(0);
    if !has_avx2() || n == 1 || t0 + k > n || src.len() < rows * n {
        return crate::ops::transpose_ref(src, rows, n, t0, dst, add);
    }
    let (full, k8) = (rows / R * R, k / 8 * 8);
    let k4 = k8 + (k - k8) / 4 * 4;
    // SAFETY: AVX2 detected; a block reads rows r0..r0 + 8 < rows at tokens t0 + t.. + 8 (or
    // + 4) <= t0 + k <= n of `src` (length checked) and writes tokens t..t + 8 (or + 4) <= k
    // of `dst` at rows r0..r0 + 8.
    unsafe {
        for r0 in (0..full).step_by(R) {
            for t in (0..k8).step_by(8) {
                transpose8x8(
                    src.as_ptr().add(r0 * n + t0 + t),
                    n,
                    dst.as_mut_ptr().add(t * rows + r0),
                    rows,
                    add,
                );
            }
            if k4 > k8 {
                transpose8x4(
                    src.as_ptr().add(r0 * n + t0 + k8),
                    n,
                    dst.as_mut_ptr().add(k8 * rows + r0),
                    rows,
                    add,
                );
            }
        }
    }
    let mut put = |t: usize, r: usize| {
        let (d, s) = (&mut dst[t * rows + r], src[r * n + t0 + t]);
        if add {
            *d += s
        } else {
            *d = s
        }
    };
    for t in k4..k {
        (0..full).for_each(|r| put(t, r));
    }
    for t in 0..k {
        (full..rows).for_each(|r| put(t, r));
    }
}

/// Stores (with `add`, adds) the 8 rows' values `v` of one token at `d`.
#[inline(always)]
unsafe fn put8(d: *mut f32, v: __m256, add: bool) {
    // SAFETY: the caller guarantees 8 writable floats at `d` and AVX.
    unsafe {
        let v = if add {
            _mm256_add_ps(_mm256_loadu_ps(d), v)
        } else {
            v
        };
        _mm256_storeu_ps(d, v);
    }
}

/// 8 rows (`stride` apart from `s`) by 8 tokens to 8 token rows (`dstride` apart from `d`).
#[target_feature(enable = "avx2")]
unsafe fn transpose8x8(s: *const f32, stride: usize, d: *mut f32, dstride: usize, add: bool) {
    // SAFETY: the caller guarantees 8 readable floats at `s + j · stride` and 8 writable ones
    // at `d + c · dstride` for j, c < 8.
    unsafe {
        let r: [__m256; 8] = core::array::from_fn(|j| _mm256_loadu_ps(s.add(j * stride)));
        // Pairs of rows interleaved, then quadruples, then the 128-bit halves exchanged.
        let p: [__m256; 8] = core::array::from_fn(|i| {
            let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_ps(a, b)
            } else {
                _mm256_unpackhi_ps(a, b)
            }
        });
        let q = [
            _mm256_shuffle_ps::<0x44>(p[0], p[2]),
            _mm256_shuffle_ps::<0xEE>(p[0], p[2]),
            _mm256_shuffle_ps::<0x44>(p[1], p[3]),
            _mm256_shuffle_ps::<0xEE>(p[1], p[3]),
            _mm256_shuffle_ps::<0x44>(p[4], p[6]),
            _mm256_shuffle_ps::<0xEE>(p[4], p[6]),
            _mm256_shuffle_ps::<0x44>(p[5], p[7]),
            _mm256_shuffle_ps::<0xEE>(p[5], p[7]),
        ];
        for c in 0..4 {
            put8(
                d.add(c * dstride),
                _mm256_permute2f128_ps::<0x20>(q[c], q[c + 4]),
                add,
            );
            put8(
                d.add((c + 4) * dstride),
                _mm256_permute2f128_ps::<0x31>(q[c], q[c + 4]),
                add,
            );
        }
    }
}

/// [`transpose8x8`] for 4 tokens: two 4 × 4 transposes, rows 0..4 and 4..8.
#[target_feature(enable = "avx2")]
unsafe fn transpose8x4(s: *const f32, stride: usize, d: *mut f32, dstride: usize, add: bool) {
    // SAFETY: as [`transpose8x8`], with 4 readable floats per row.
    unsafe {
        let half = |j0: usize| {
            let r: [__m128; 4] = core::array::from_fn(|j| _mm_loadu_ps(s.add((j0 + j) * stride)));
            let (t0, t1) = (_mm_unpacklo_ps(r[0], r[1]), _mm_unpacklo_ps(r[2], r[3]));
            let (t2, t3) = (_mm_unpackhi_ps(r[0], r[1]), _mm_unpackhi_ps(r[2], r[3]));
            [
                _mm_movelh_ps(t0, t1),
                _mm_movehl_ps(t1, t0),
                _mm_movelh_ps(t2, t3),
                _mm_movehl_ps(t3, t2),
            ]
        };
        let (lo, hi) = (half(0), half(4));
        for c in 0..4 {
            put8(d.add(c * dstride), _mm256_set_m128(hi[c], lo[c]), add);
        }
    }
}

/// Rounds `x` to half floats (`vcvtps2ph`, nearest even, as `half` rounds) into `out`, 8 at a
/// time; the tail by `quant::f16::narrow_slice`. Without F16C, the reference.
pub(super) fn narrow_f16(x: &[f32], out: &mut [u16]) {
    if !has_avx2() {
        return crate::quant::f16::narrow_slice(x, out);
    }
    // SAFETY: AVX2 and F16C detected above.
    unsafe { narrow_f16_avx2(x, out) }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn narrow_f16_avx2(x: &[f32], out: &mut [u16]) {
    let n = x.len().min(out.len());
    let n8 = n - n % 8;
    for i in (0..n8).step_by(8) {
        // SAFETY: elements i..i + 8 lie within both `x` and `out`; F16C is available (the
        // caller's contract).
        unsafe {
            let h =
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(x.as_ptr().add(i)));
            _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, h);
        }
    }
    crate::quant::f16::narrow_slice(&x[n8..n], &mut out[n8..n]);
}

/// Rows per group of the matmul kernels (one `f32` lane per row in a 256-bit accumulator).
pub(super) const R: usize = 8;
/// Row groups ahead that the GGUF-layout kernels prefetch (2 decoded faster than 1, 4 and 8).
const PFD: usize = 2;

/// Unpacks one Q4_1 block's 16 nibble bytes (at `p`) to 32 bytes in element order.
#[inline(always)]
unsafe fn unpack_q4(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes at `p` and AVX2.
    unsafe {
        let q = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
        let s = _mm256_srlv_epi64(q, _mm256_setr_epi64x(0, 0, 4, 4));
        _mm256_and_si256(s, _mm256_set1_epi8(0x0f))
    }
}

/// Exact per-row block sums of eight Q4 × Q8 products: `w[i]` holds unpacked nibbles
/// (0..=15), `a` the activations (|a| <= 127). Returns `[Σ row0, …, Σ row7]` as i32.
///
/// The i16 partial sums never exceed 16 · 15 · 127 = 30480, so no step saturates or wraps.
#[inline(always)]
unsafe fn isum8_q4(w: &[__m256i; R], a: __m256i) -> __m256i {
    // SAFETY: register-only AVX2 operations; the caller has AVX2.
    unsafe {
        let h01 = _mm256_hadd_epi16(_mm256_maddubs_epi16(w[0], a), _mm256_maddubs_epi16(w[1], a));
        let h23 = _mm256_hadd_epi16(_mm256_maddubs_epi16(w[2], a), _mm256_maddubs_epi16(w[3], a));
        let h45 = _mm256_hadd_epi16(_mm256_maddubs_epi16(w[4], a), _mm256_maddubs_epi16(w[5], a));
        let h67 = _mm256_hadd_epi16(_mm256_maddubs_epi16(w[6], a), _mm256_maddubs_epi16(w[7], a));
        let h = _mm256_hadd_epi16(_mm256_hadd_epi16(h01, h23), _mm256_hadd_epi16(h45, h67));
        _mm256_add_epi32(
            _mm256_cvtepi16_epi32(_mm256_castsi256_si128(h)),
            _mm256_cvtepi16_epi32(_mm256_extracti128_si256(h, 1)),
        )
    }
}

/// Sums each of eight 8 × i32 vectors: returns `[Σv0, …, Σv7]`.
#[inline(always)]
pub(super) unsafe fn hsum8(v: &[__m256i; R]) -> __m256i {
    // SAFETY: register-only AVX2 operations; the caller has AVX2.
    unsafe {
        let ab = _mm256_hadd_epi32(v[0], v[1]);
        let cd = _mm256_hadd_epi32(v[2], v[3]);
        let ef = _mm256_hadd_epi32(v[4], v[5]);
        let gh = _mm256_hadd_epi32(v[6], v[7]);
        let abcd = _mm256_hadd_epi32(ab, cd);
        let efgh = _mm256_hadd_epi32(ef, gh);
        _mm256_add_epi32(
            _mm256_permute2x128_si256(abcd, efgh, 0x20),
            _mm256_permute2x128_si256(abcd, efgh, 0x31),
        )
    }
}

/// The 32-bit words at `p + i * rb` for rows `i = 0..8`.
#[inline(always)]
unsafe fn words8(p: *const u8, rb: usize) -> __m256i {
    // SAFETY: the caller guarantees 4 readable bytes at each `p + i * rb` and AVX2.
    unsafe {
        let rd = core::ptr::read_unaligned::<i32>;
        _mm256_setr_epi32(
            rd(p as *const i32),
            rd(p.add(rb) as *const i32),
            rd(p.add(2 * rb) as *const i32),
            rd(p.add(3 * rb) as *const i32),
            rd(p.add(4 * rb) as *const i32),
            rd(p.add(5 * rb) as *const i32),
            rd(p.add(6 * rb) as *const i32),
            rd(p.add(7 * rb) as *const i32),
        )
    }
}

/// Q4_1 block headers of 8 rows (`d` in the low, `m` in the high half of each word) to
/// `(d, m)` as `f32`, exactly.
#[inline(always)]
unsafe fn dm8(g: __m256i) -> (__m256, __m256) {
    // SAFETY: register-only AVX2/F16C operations; the caller has both.
    unsafe {
        let sh = _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3,
            6, 7, 10, 11, 14, 15,
        );
        // Per lane [d d d d m m m m]; then [d0-3 d4-7 m0-3 m4-7].
        let x = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(g, sh), 0b11_01_10_00);
        (
            _mm256_cvtph_ps(_mm256_castsi256_si128(x)),
            _mm256_cvtph_ps(_mm256_extracti128_si256(x, 1)),
        )
    }
}

/// Q8_0 block scales of 8 rows (the low half of each word) to `f32`, exactly.
#[inline(always)]
unsafe fn d8(g: __m256i) -> __m256 {
    // SAFETY: register-only AVX2/F16C operations; the caller has both.
    unsafe {
        let lo = _mm256_and_si256(g, _mm256_set1_epi32(0xffff));
        // packus within lanes: [d0-3 d0-3 | d4-7 d4-7]; take qwords 0 and 2.
        let p = _mm256_packus_epi32(lo, lo);
        let x = _mm256_permute4x64_epi64(p, 0b00_00_10_00);
        _mm256_cvtph_ps(_mm256_castsi256_si128(x))
    }
}

/// `$body` with `$j` bound to each of `0..$n` in turn, written out (`$n` at most 8).
macro_rules! unrolled {
    ($n:expr, |$j:ident| $body:block) => {
        unrolled!(@ $n, $j, $body, 0 1 2 3 4 5 6 7)
    };
    (@ $n:expr, $j:ident, $body:block, $($i:literal)*) => {
        const { assert!($n <= 8) };
        $(if $i < $n {
            let $j: usize = $i;
            $body
        })*
    };
}
pub(super) use unrolled;

/// Writes the 8 lanes of `acc` to `out[(r0 + i) * n_tok + t]`.
#[inline(always)]
pub(super) fn store8(acc: [f32; R], out: &mut [f32], r0: usize, n_tok: usize, t: usize) {
    for (i, v) in acc.iter().enumerate() {
        out[(r0 + i) * n_tok + t] = *v;
    }
}

/// A tile of 4 tokens' sums (token `j`'s in `acc[j]`, row `i` in lane `i`) written to
/// `out[i * n_tok + j]`: transposed in registers, so each row's 4 sums go out in one store
/// instead of 4 (the repacked tiles here and in [`super::x86_k`], and each 8-row half of
/// [`super::x86_zmm`]'s).
///
/// # Safety
/// AVX available.
#[inline(always)]
pub(super) unsafe fn store_tile(acc: &[__m256; 4], out: &mut [f32], n_tok: usize) {
    // SAFETY: register-only AVX operations, and stores into 4 in-bounds `f32`s (the slices
    // below are bounds-checked).
    unsafe {
        // In each 128-bit lane `l` (rows 4l..4l + 4), tokens 0 and 1 interleaved (`lo0`, `hi0`),
        // and 2 and 3 (`lo1`, `hi1`): rows 4l and 4l + 1 in the `lo`s, 4l + 2 and 4l + 3 in the
        // `hi`s.
        let (lo0, hi0) = (
            _mm256_unpacklo_ps(acc[0], acc[1]),
            _mm256_unpackhi_ps(acc[0], acc[1]),
        );
        let (lo1, hi1) = (
            _mm256_unpacklo_ps(acc[2], acc[3]),
            _mm256_unpackhi_ps(acc[2], acc[3]),
        );
        // Row 4l + k's 4 sums in lane l of `rows[k]`.
        let rows = [
            _mm256_shuffle_ps::<0x44>(lo0, lo1),
            _mm256_shuffle_ps::<0xee>(lo0, lo1),
            _mm256_shuffle_ps::<0x44>(hi0, hi1),
            _mm256_shuffle_ps::<0xee>(hi0, hi1),
        ];
        for (k, v) in rows.into_iter().enumerate() {
            let lanes = [_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v)];
            for (l, sums) in lanes.into_iter().enumerate() {
                let at = (4 * l + k) * n_tok;
                _mm_storeu_ps(out[at..at + 4].as_mut_ptr(), sums);
            }
        }
    }
}

#[inline(always)]
pub(super) fn lanes(v: __m256) -> [f32; R] {
    // SAFETY: `__m256` and `[f32; 8]` have the same size and every bit pattern is valid.
    unsafe { core::mem::transmute::<__m256, [f32; R]>(v) }
}

/// Prefetches the `n` bytes at `p` into L1 (one instruction per 64 bytes).
///
/// Decoding loops prefetch per block, a block's share of the data a fixed distance ahead: in
/// a burst per row group instead (a group's lines at once) decode ran ~25 % slower, and
/// prefetching each row's next line separately (8 streams) instead of the group's bytes in
/// address order ~12 % slower.
#[inline(always)]
pub(super) unsafe fn prefetch(p: *const u8, n: usize) {
    prefetch_hint::<_MM_HINT_T0>(p, n);
}

/// [`prefetch`] into L2 only. A line prefetched into L1 holds one of the core's few L1 miss
/// buffers until it arrives; far enough ahead to cover memory's latency, the K-quant tiles'
/// stream of them ran out of buffers (`x86_k`'s `AHEAD_X8`).
#[inline(always)]
pub(super) unsafe fn prefetch_l2(p: *const u8, n: usize) {
    prefetch_hint::<_MM_HINT_T1>(p, n);
}

#[inline(always)]
fn prefetch_hint<const HINT: i32>(p: *const u8, n: usize) {
    let mut off = 0;
    while off < n {
        // SAFETY: prefetch never faults and has no effect on program state.
        unsafe { _mm_prefetch::<HINT>(p.wrapping_add(off) as *const i8) };
        off += 64;
    }
}

/// Q4_1 rows × Q8_1 activations; see `simd::matmul` for the layout. Returns the rows done
/// (whole groups of 8; none without AVX2); `simd::matmul` does the rest.
pub(super) fn matmul_q4_1(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    let rb = nb * q4_1::BLOCK_BYTES;
    let n_rows = w.len() / rb;
    let full = n_rows / R * R;
    if !(has_avx2() && nb > 0 && acts.len() >= nb * n_tok && out.len() >= n_rows * n_tok) {
        return 0;
    }
    if n_tok == 1 {
        // SAFETY: AVX2/F16C detected; lengths checked above.
        unsafe { q4_1_direct(w, nb, acts, out, full) }
    } else {
        // SAFETY: AVX2/F16C detected; lengths checked above; `buf`/`dm` sized for nb blocks.
        unsafe {
            let mut buf = vec![_mm256_setzero_si256(); nb * R];
            let mut dm = vec![_mm256_setzero_ps(); nb * 2];
            q4_1_tiled(w, nb, acts, n_tok, out, full, &mut buf, &mut dm)
        }
    }
    full
}

/// One token: 8 rows at a time straight from the weights.
#[target_feature(enable = "avx2,f16c")]
unsafe fn q4_1_direct(w: &[u8], nb: usize, acts: &[BlockQ8_1], out: &mut [f32], full: usize) {
    const BB: usize = q4_1::BLOCK_BYTES;
    let rb = nb * BB;
    let a = &acts[..nb];
    for r0 in (0..full).step_by(R) {
        // SAFETY: rows r0..r0+8 lie inside `w` (r0 + 8 <= full <= n_rows); every block offset
        // + 20 <= rb; `a` has nb blocks; prefetch addresses need not be valid.
        unsafe {
            let p = w.as_ptr().add(r0 * rb);
            let mut acc = _mm256_setzero_ps();
            for (b, ab) in a.iter().enumerate() {
                let av = _mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i);
                let pb = p.add(b * BB);
                prefetch(p.wrapping_add(PFD * R * rb + b * R * BB), R * BB);
                let wq = [
                    unpack_q4(pb.add(4)),
                    unpack_q4(pb.add(rb + 4)),
                    unpack_q4(pb.add(2 * rb + 4)),
                    unpack_q4(pb.add(3 * rb + 4)),
                    unpack_q4(pb.add(4 * rb + 4)),
                    unpack_q4(pb.add(5 * rb + 4)),
                    unpack_q4(pb.add(6 * rb + 4)),
                    unpack_q4(pb.add(7 * rb + 4)),
                ];
                let isum = isum8_q4(&wq, av);
                let (d, m) = dm8(words8(pb, rb));
                let x = _mm256_mul_ps(
                    _mm256_mul_ps(d, _mm256_set1_ps(ab.d)),
                    _mm256_cvtepi32_ps(isum),
                );
                acc = _mm256_add_ps(acc, x);
                acc = _mm256_add_ps(acc, _mm256_mul_ps(m, _mm256_set1_ps(ab.s)));
            }
            store8(lanes(acc), out, r0, 1, 0);
        }
    }
}

/// Several tokens: each 8-row group is unpacked once into `buf`/`dm`, then dotted with every
/// token.
#[target_feature(enable = "avx2,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn q4_1_tiled(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
    buf: &mut [__m256i],
    dm: &mut [__m256],
) {
    const BB: usize = q4_1::BLOCK_BYTES;
    let rb = nb * BB;
    for r0 in (0..full).step_by(R) {
        // SAFETY: as in `q4_1_direct`; `buf` has nb * 8 and `dm` nb * 2 entries.
        unsafe {
            let p = w.as_ptr().add(r0 * rb);
            prefetch(p.wrapping_add(R * rb), R * rb);
            for b in 0..nb {
                let pb = p.add(b * BB);
                for i in 0..R {
                    buf[b * R + i] = unpack_q4(pb.add(i * rb + 4));
                }
                let (d, m) = dm8(words8(pb, rb));
                dm[2 * b] = d;
                dm[2 * b + 1] = m;
            }
            for t in 0..n_tok {
                let a = &acts[t * nb..(t + 1) * nb];
                let mut acc = _mm256_setzero_ps();
                for (b, ab) in a.iter().enumerate() {
                    let av = _mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i);
                    let wq: &[__m256i; R] = &*(buf.as_ptr().add(b * R) as *const [__m256i; R]);
                    let isum = isum8_q4(wq, av);
                    let (d, m) = (dm[2 * b], dm[2 * b + 1]);
                    let x = _mm256_mul_ps(
                        _mm256_mul_ps(d, _mm256_set1_ps(ab.d)),
                        _mm256_cvtepi32_ps(isum),
                    );
                    acc = _mm256_add_ps(acc, x);
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(m, _mm256_set1_ps(ab.s)));
                }
                store8(lanes(acc), out, r0, n_tok, t);
            }
        }
    }
}

/// The layouts of rows repacked eight at a time (`quant::rows8`) that [`matmul_x8`] reads:
/// per block column a record of the 8 rows' headers and 8 value vectors, vector `j` holding
/// elements `4j..4j + 4` of every row (row `i` in 32-bit lane `i`).
pub(super) trait Packed8 {
    /// Bytes per GGUF block (and per row and block in a record).
    const BLOCK: usize;
    /// Bytes per record.
    const RECORD: usize = R * Self::BLOCK;
    /// Whether the weights have a min `m` (`acc + (d · da) · isum + m · sa`).
    const MIN: bool = false;
    /// The values are unsigned and the weights `d · (u − OFFSET)` (or signed with 0).
    const OFFSET: i32 = 0;
    /// The largest unsigned value: the `maddubs` sums of all 8 vectors stay in i16 when
    /// `2 · 8 · MAX · 127 <= 32767`, of 4 when `2 · 4 · MAX · 127` does.
    const MAX: i32;
    /// Signed values (`maddubs` then needs their magnitudes and the activations' signs).
    const SIGNED: bool = false;
    /// The 8 rows' `(d, m)` as `f32` (`m` zero without a min).
    unsafe fn scales(rec: *const u8) -> (__m256, __m256);
    /// The 8 value vectors of the record at `rec`.
    unsafe fn vectors(rec: *const u8) -> [__m256i; 8];
}

/// The 8 nibble vectors of the 4 chunks at `c`: low nibbles of chunks 0..4, then high ones.
#[inline(always)]
unsafe fn nibble_vectors(c: *const u8) -> [__m256i; 8] {
    // SAFETY: the caller guarantees 128 readable bytes at `c` and AVX2.
    unsafe {
        let mask = _mm256_set1_epi8(0x0f);
        let chunk = |k: usize| _mm256_loadu_si256(c.add(32 * k) as *const __m256i);
        core::array::from_fn(|j| {
            if j < 4 {
                _mm256_and_si256(chunk(j), mask)
            } else {
                _mm256_and_si256(_mm256_srli_epi16(chunk(j - 4), 4), mask)
            }
        })
    }
}

/// Eight half floats at `p` as `f32`, exactly.
#[inline(always)]
pub(super) unsafe fn f16x8(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 16 readable bytes at `p` and F16C.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
}

/// The `Q4_1x8` layout (`quant::q4_1x8`).
struct Q4_1x8;
impl Packed8 for Q4_1x8 {
    const BLOCK: usize = q4_1::BLOCK_BYTES;
    const MIN: bool = true;
    const MAX: i32 = 15;
    #[inline(always)]
    unsafe fn scales(rec: *const u8) -> (__m256, __m256) {
        // SAFETY: the caller's contract (a whole record at `rec`, AVX2/F16C).
        unsafe { dm8(_mm256_loadu_si256(rec as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn vectors(rec: *const u8) -> [__m256i; 8] {
        // SAFETY: the caller's contract; the chunks are the record's last 128 bytes.
        unsafe { nibble_vectors(rec.add(32)) }
    }
}

/// The `Q4_0x8` layout (`quant::q4_0x8`).
struct Q4_0x8;
impl Packed8 for Q4_0x8 {
    const BLOCK: usize = q4_0::BLOCK_BYTES;
    const OFFSET: i32 = 8;
    const MAX: i32 = 15;
    #[inline(always)]
    unsafe fn scales(rec: *const u8) -> (__m256, __m256) {
        // SAFETY: the caller's contract.
        unsafe { (f16x8(rec), _mm256_setzero_ps()) }
    }
    #[inline(always)]
    unsafe fn vectors(rec: *const u8) -> [__m256i; 8] {
        // SAFETY: the caller's contract; the chunks are the record's last 128 bytes.
        unsafe { nibble_vectors(rec.add(16)) }
    }
}

/// The 8 value vectors of a Q5_0x8 or Q5_1x8 record whose high-bit plane starts at `high`
/// and whose nibble chunks follow it: the nibbles with bit 4 of each byte from bit `j` of the
/// plane's byte (a 16-bit shift by `4 − j`: bits crossing from the neighbouring byte land
/// below bit 4 or above it, and the mask drops them).
#[inline(always)]
unsafe fn five_bit_vectors(high: *const u8) -> [__m256i; 8] {
    // SAFETY: the caller guarantees 32 bytes of plane and 128 of chunks at `high`, and AVX2.
    unsafe {
        let v = nibble_vectors(high.add(32));
        let plane = _mm256_loadu_si256(high as *const __m256i);
        let sixteen = _mm256_set1_epi8(0x10);
        let h = [
            _mm256_slli_epi16(plane, 4),
            _mm256_slli_epi16(plane, 3),
            _mm256_slli_epi16(plane, 2),
            _mm256_slli_epi16(plane, 1),
            plane,
            _mm256_srli_epi16(plane, 1),
            _mm256_srli_epi16(plane, 2),
            _mm256_srli_epi16(plane, 3),
        ];
        core::array::from_fn(|j| _mm256_or_si256(v[j], _mm256_and_si256(h[j], sixteen)))
    }
}

/// The `Q5_0x8` layout (`quant::q5_0x8`).
struct Q5_0x8;
impl Packed8 for Q5_0x8 {
    const BLOCK: usize = q5_0::BLOCK_BYTES;
    const OFFSET: i32 = 16;
    const MAX: i32 = 31;
    #[inline(always)]
    unsafe fn scales(rec: *const u8) -> (__m256, __m256) {
        // SAFETY: the caller's contract.
        unsafe { (f16x8(rec), _mm256_setzero_ps()) }
    }
    #[inline(always)]
    unsafe fn vectors(rec: *const u8) -> [__m256i; 8] {
        // SAFETY: the caller's contract: high-bit plane at 16..48, chunks at 48..176.
        unsafe { five_bit_vectors(rec.add(16)) }
    }
}

/// The `Q5_1x8` layout (`quant::q5_1x8`).
struct Q5_1x8;
impl Packed8 for Q5_1x8 {
    const BLOCK: usize = q5_1::BLOCK_BYTES;
    const MIN: bool = true;
    const MAX: i32 = 31;
    #[inline(always)]
    unsafe fn scales(rec: *const u8) -> (__m256, __m256) {
        // SAFETY: the caller's contract (a whole record at `rec`, AVX2/F16C).
        unsafe { dm8(_mm256_loadu_si256(rec as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn vectors(rec: *const u8) -> [__m256i; 8] {
        // SAFETY: the caller's contract: high-bit plane at 32..64, chunks at 64..192.
        unsafe { five_bit_vectors(rec.add(32)) }
    }
}

/// The `Q8_0x8` layout (`quant::q8_0x8`).
struct Q8_0x8;
impl Packed8 for Q8_0x8 {
    const BLOCK: usize = q8_0::BLOCK_BYTES;
    const MAX: i32 = 128;
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn scales(rec: *const u8) -> (__m256, __m256) {
        // SAFETY: the caller's contract.
        unsafe { (f16x8(rec), _mm256_setzero_ps()) }
    }
    #[inline(always)]
    unsafe fn vectors(rec: *const u8) -> [__m256i; 8] {
        // SAFETY: the caller's contract: 8 chunks at 16..272.
        unsafe {
            core::array::from_fn(|j| _mm256_loadu_si256(rec.add(16 + 32 * j) as *const __m256i))
        }
    }
}

/// Rows repacked eight at a time (`quant::rows8`) × Q8_1 activations; layout as
/// `simd::matmul`, whose `clip` already cut `w` and `out` to whole rows. Returns the rows
/// done (whole groups of 8; none without AVX2); `simd::matmul_x8` does the rest.
pub(super) fn matmul_x8(
    ty: crate::gguf::GgmlType,
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    use crate::gguf::GgmlType;
    match ty {
        GgmlType::Q4_1 => x8_rows::<Q4_1x8>(w, nb, acts, n_tok, out),
        GgmlType::Q4_0 => x8_rows::<Q4_0x8>(w, nb, acts, n_tok, out),
        GgmlType::Q5_0 => x8_rows::<Q5_0x8>(w, nb, acts, n_tok, out),
        GgmlType::Q5_1 => x8_rows::<Q5_1x8>(w, nb, acts, n_tok, out),
        GgmlType::Q8_0 => x8_rows::<Q8_0x8>(w, nb, acts, n_tok, out),
        _ => 0,
    }
}

fn x8_rows<B: Packed8>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    if !(has_avx2() && nb > 0 && acts.len() >= nb * n_tok) {
        return 0;
    }
    let rb = nb * B::BLOCK;
    let full = w.len() / rb / R * R;
    // Several tokens take pairs of groups in 512-bit registers where there are any.
    let pairs = if n_tok > 1 && has_vnni512() {
        full / (2 * R) * (2 * R)
    } else {
        0
    };
    // SAFETY: AVX2/F16C (and for VNNI, AVX-512 VNNI and VL; for pairs, AVX-512 F too)
    // detected; `w` holds `full` repacked rows and `acts` nb * n_tok blocks (checked above);
    // `out` is written through bounds-checked indexing.
    unsafe {
        if pairs > 0 {
            x86_zmm::x16_rows::<B>(w, nb, acts, n_tok, out, pairs);
        }
        let (w, out) = (&w[pairs * rb..], &mut out[pairs * n_tok..]);
        if has_vnni() {
            x8_groups_vnni::<B>(w, nb, acts, n_tok, out, full - pairs)
        } else {
            x8_groups::<B>(w, nb, acts, n_tok, out, full - pairs)
        }
    }
    full
}

/// The widest VNNI vectors the kernels may use ([`allow_vnni`]): a [`super::Vnni`] as `u8`.
static VNNI_ALLOWED: std::sync::atomic::AtomicU8 =
    std::sync::atomic::AtomicU8::new(super::Vnni::Bits512 as u8);

/// Lets the AVX2 kernels use AVX-512 VNNI up to `widest` where the machine has it (the
/// default: all of it): the results are the same bits, so this only selects which code runs
/// (for tests and timing).
pub(super) fn allow_vnni(widest: super::Vnni) {
    VNNI_ALLOWED.store(widest as u8, std::sync::atomic::Ordering::Relaxed);
}

fn vnni_allowed(width: super::Vnni) -> bool {
    VNNI_ALLOWED.load(std::sync::atomic::Ordering::Relaxed) >= width as u8
}

/// True if the machine has AVX-512 VNNI with 256-bit vectors (VL), allowed or not.
pub(super) fn vnni_detected() -> bool {
    is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
}

/// True if AVX-512 VNNI with 256-bit vectors (VL) is available (and allowed): `vpdpbusd`
/// then adds 4 unsigned-by-signed byte products into each i32 lane in one instruction.
pub(super) fn has_vnni() -> bool {
    vnni_allowed(super::Vnni::Bits256) && vnni_detected()
}

/// True if [`has_vnni`] and 512-bit vectors are available (and allowed): [`x86_zmm`] (the
/// tile of several tokens, and attention's scores and value sums of several heads).
pub(super) fn has_vnni512() -> bool {
    vnni_allowed(super::Vnni::Bits512) && has_vnni() && x86_zmm::available()
}

/// Tokens per tile of [`x8_groups`]: a record's values are unpacked once for this many
/// tokens (with VNNI and AVX-512 VL's 32 registers, 8 ran 13-17 % slower on Q4_0 and Q8_0,
/// 3 % faster on Q5_0: `matmul_speed -- run TYPE N_TOK CALLS`, the kernel's example). With
/// AVX-512 F too, several tokens take pairs of groups in [`x86_zmm`] instead.
const TILE: usize = 4;

/// Bytes ahead of the current record that [`x8_tile`] prefetches (1.5, 4 and 8 KiB decoded
/// alike for `Q4_1x8`).
pub(super) const X8_AHEAD: usize = 4096;

/// Every token against each group of 8 repacked rows: per block one header load and 8 value
/// vectors, each holding 4 values of all 8 rows, unpacked once for a tile of [`TILE`] tokens
/// and multiplied with each token's broadcast activation words; then one i32 per row: no
/// horizontal reduction. Each (row, token) still adds its blocks in order, so tiling changes
/// no bit.
#[target_feature(enable = "avx2,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn x8_groups<B: Packed8>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
) {
    // SAFETY: the caller's contract.
    unsafe { x8_groups_body::<B, false>(w, nb, acts, n_tok, out, full) }
}

/// [`x8_groups`] with `vpdpbusd` for the byte products (and signed values offset by 128).
#[target_feature(enable = "avx2,f16c,avx512vnni,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn x8_groups_vnni<B: Packed8>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
) {
    // SAFETY: the caller's contract.
    unsafe { x8_groups_body::<B, true>(w, nb, acts, n_tok, out, full) }
}

/// The body of [`x8_groups`] and [`x8_groups_vnni`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn x8_groups_body<B: Packed8, const VNNI: bool>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
) {
    let rb = nb * B::BLOCK;
    for r0 in (0..full).step_by(R) {
        // SAFETY: the group's nb records lie inside `w`; the caller's contract for the rest.
        unsafe { x8_rows_of::<B, VNNI>(w.as_ptr().add(r0 * rb), nb, acts, n_tok, out, r0) }
    }
}

/// Every token against one group of 8 repacked rows (at `p`, rows `r0..r0 + 8`), in tiles of
/// [`TILE`] tokens.
#[inline(always)]
unsafe fn x8_rows_of<B: Packed8, const VNNI: bool>(
    p: *const u8,
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    r0: usize,
) {
    // SAFETY: the caller's contract.
    unsafe {
        let mut t = 0;
        while t + TILE <= n_tok {
            let acc: [__m256; 4] = x8_tile::<B, TILE, VNNI>(p, nb, acts, t);
            store_tile(&acc, &mut out[r0 * n_tok + t..], n_tok);
            t += TILE;
        }
        for t in t..n_tok {
            let [a] = x8_tile::<B, 1, VNNI>(p, nb, acts, t);
            store8(lanes(a), out, r0, n_tok, t);
        }
    }
}

/// A group of 8 repacked rows (records at `p`) against tokens `t0..t0 + N`: their 8 row sums
/// each. Integer sums per block, exact: with `VNNI`, `vpdpbusd` of unsigned values (signed
/// ones offset by 128, then `128 · Σa` subtracted) straight into i32 lanes. Without, unsigned
/// values of at most 15 add all 8 `maddubs` products in i16 (at most 8 · 2 · 15 · 127 = 30480
/// per lane), of at most 31 in two halves (31496 each); signed values take `maddubs` of their
/// magnitudes with the activations carrying their signs (at most 2 · 128 · 127 = 32512),
/// widened one by one.
#[inline(always)]
unsafe fn x8_tile<B: Packed8, const N: usize, const VNNI: bool>(
    p: *const u8,
    nb: usize,
    acts: &[BlockQ8_1],
    t0: usize,
) -> [__m256; N] {
    // SAFETY: the caller guarantees nb records at `p`, AVX2/F16C (and with `VNNI`, AVX-512
    // VNNI and VL), and nb blocks per token in `acts` for tokens t0..t0 + N.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let offset = if VNNI && B::SIGNED { 128 } else { B::OFFSET };
        let mut acc = [_mm256_setzero_ps(); N];
        for b in 0..nb {
            let rec = p.add(b * B::RECORD);
            prefetch(rec.wrapping_add(X8_AHEAD), B::RECORD);
            let (d, m) = B::scales(rec);
            let v = B::vectors(rec);
            // The unsigned operand of the byte products: the values, their magnitudes, or
            // (signed, for `vpdpbusd`) the values plus 128.
            let u: [__m256i; 8] = if !B::SIGNED {
                v
            } else if VNNI {
                core::array::from_fn(|j| _mm256_xor_si256(v[j], _mm256_set1_epi8(-128)))
            } else {
                core::array::from_fn(|j| _mm256_sign_epi8(v[j], v[j]))
            };
            for (j, acc) in acc.iter_mut().enumerate() {
                let ab = acts.get_unchecked((t0 + j) * nb + b);
                let q = ab.qs.as_ptr();
                let a: [__m256i; 8] = core::array::from_fn(|k| {
                    _mm256_set1_epi32((q.add(4 * k) as *const i32).read_unaligned())
                });
                let mut isum = if VNNI {
                    let mut s = _mm256_setzero_si256();
                    for k in 0..8 {
                        s = _mm256_dpbusd_epi32(s, u[k], a[k]);
                    }
                    s
                } else if B::SIGNED {
                    let mut s = _mm256_setzero_si256();
                    for k in 0..8 {
                        let prod = _mm256_maddubs_epi16(u[k], _mm256_sign_epi8(a[k], v[k]));
                        s = _mm256_add_epi32(s, _mm256_madd_epi16(prod, ones));
                    }
                    s
                } else if 2 * 8 * B::MAX * 127 <= i32::from(i16::MAX) {
                    let mut s = _mm256_maddubs_epi16(u[0], a[0]);
                    for k in 1..8 {
                        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(u[k], a[k]));
                    }
                    _mm256_madd_epi16(s, ones)
                } else {
                    let (mut s0, mut s1) = (
                        _mm256_maddubs_epi16(u[0], a[0]),
                        _mm256_maddubs_epi16(u[4], a[4]),
                    );
                    for k in 1..4 {
                        s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(u[k], a[k]));
                        s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(u[k + 4], a[k + 4]));
                    }
                    _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones))
                };
                if offset != 0 {
                    isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(offset * ab.sum));
                }
                let x = _mm256_mul_ps(
                    _mm256_mul_ps(d, _mm256_set1_ps(ab.d)),
                    _mm256_cvtepi32_ps(isum),
                );
                *acc = _mm256_add_ps(*acc, x);
                if B::MIN {
                    *acc = _mm256_add_ps(*acc, _mm256_mul_ps(m, _mm256_set1_ps(ab.s)));
                }
            }
        }
        acc
    }
}

/// Exact i32 partial dot products of one block's 32 signed values `w` with activations `a`.
/// Q8_0 values are -128..=127: `maddubs` takes |w| (-128's 0x80 read unsigned as 128) and a
/// with w's sign, so pair sums reach at most 2 · 128 · 127 = 32512 and never saturate.
#[inline(always)]
unsafe fn dot_s8(w: __m256i, a: __m256i) -> __m256i {
    // SAFETY: register-only AVX2 operations; the caller has AVX2.
    unsafe {
        let prod = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
        _mm256_madd_epi16(prod, _mm256_set1_epi16(1))
    }
}

/// A 32-element block type whose weights are a half-float scale `d` (the block's first 2
/// bytes) times integer values, plus (with `MIN`) a half-float min `m` (the next 2 bytes):
/// Q8_0, Q4_0, Q5_0 and IQ4_NL (signed values), Q5_1 (unsigned values and a min), which share
/// [`block_rows8`].
trait Block32 {
    /// Bytes per block.
    const BYTES: usize;
    /// Whether the header holds a min after the scale.
    const MIN: bool;
    /// Whether several tokens pay for unpacking a row group's values once
    /// ([`block_rows8_tiled`]; all of them do, Q8_0 through the scales and locality alone).
    const TILE: bool;
    /// With a nonzero `OFFSET` the values are unsigned and the weights are `d · (u − OFFSET)`:
    /// the kernels dot `u` with `maddubs` (no sign operations) and subtract `OFFSET · Σ a`, the
    /// same exact integer.
    const OFFSET: i32 = 0;
    /// The block's 32 values as bytes in element order (signed; unsigned with `MIN` or a
    /// nonzero `OFFSET`).
    unsafe fn values(p: *const u8) -> __m256i;
    /// Exact i32 partial sums (8 lanes) of values `v` times the activations `a`.
    unsafe fn dot_values(v: __m256i, a: __m256i) -> __m256i {
        // SAFETY: register-only AVX2 operations; the caller has AVX2.
        unsafe { dot_s8(v, a) }
    }
    /// Exact i32 partial sums (8 lanes) of the block at `p` times the activations `a`.
    #[inline(always)]
    unsafe fn dot(p: *const u8, a: __m256i) -> __m256i {
        // SAFETY: the caller's contract.
        unsafe { Self::dot_values(Self::values(p), a) }
    }
}

/// Exact i32 partial sums of 32 unsigned values `u` (at most 31) times signed activations
/// `a`: `maddubs` pair sums reach at most 2 · 31 · 127 = 7874.
#[inline(always)]
unsafe fn dot_u8(u: __m256i, a: __m256i) -> __m256i {
    // SAFETY: register-only AVX2 operations; the caller has AVX2.
    unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1)) }
}

/// `isum − offset · Σ a` in every lane, for the 32 activations `a` (exact).
#[inline(always)]
unsafe fn minus_offset(isum: __m256i, offset: i32, a: __m256i) -> __m256i {
    // SAFETY: register-only AVX2 operations; the caller has AVX2.
    unsafe {
        let s = dot_u8(_mm256_set1_epi8(1), a);
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
        let off = _mm256_broadcastd_epi32(_mm_mullo_epi32(s, _mm_set1_epi32(offset)));
        _mm256_sub_epi32(isum, off)
    }
}

/// The 32 high bits of a Q5 block (the little-endian word at `p`) as bytes `0x10` (set) or 0,
/// in element order.
#[inline(always)]
unsafe fn high_bits_q5(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 4 readable bytes at `p` and AVX2.
    unsafe {
        let qh = _mm256_set1_epi32((p as *const i32).read_unaligned());
        // Byte i takes byte i / 8 of the word, then tests bit i % 8.
        let spread = _mm256_shuffle_epi8(
            qh,
            _mm256_setr_epi8(
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
                3, 3, 3, 3,
            ),
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }
}

/// Q8_0: the values are the bytes.
struct Q8_0;
impl Block32 for Q8_0 {
    const BYTES: usize = q8_0::BLOCK_BYTES;
    const MIN: bool = false;
    const TILE: bool = true;
    #[inline(always)]
    unsafe fn values(p: *const u8) -> __m256i {
        // SAFETY: the caller guarantees the block's 34 readable bytes at `p` and AVX2.
        unsafe { _mm256_loadu_si256(p.add(2) as *const __m256i) }
    }
}

/// Q4_0: the values are the nibbles minus 8.
struct Q4_0;
impl Block32 for Q4_0 {
    const BYTES: usize = q4_0::BLOCK_BYTES;
    const MIN: bool = false;
    const TILE: bool = true;
    const OFFSET: i32 = 8;
    #[inline(always)]
    unsafe fn values(p: *const u8) -> __m256i {
        // SAFETY: the caller guarantees the block's 18 readable bytes at `p` and AVX2.
        unsafe { unpack_q4(p.add(2)) }
    }
    #[inline(always)]
    unsafe fn dot_values(v: __m256i, a: __m256i) -> __m256i {
        // SAFETY: register-only AVX2 operations; the caller has AVX2.
        unsafe { dot_u8(v, a) }
    }
}

/// Q5_0: the values are the nibbles with their high bits, minus 16.
struct Q5_0;
impl Block32 for Q5_0 {
    const BYTES: usize = q5_0::BLOCK_BYTES;
    const MIN: bool = false;
    const TILE: bool = true;
    const OFFSET: i32 = 16;
    #[inline(always)]
    unsafe fn values(p: *const u8) -> __m256i {
        // SAFETY: the caller guarantees the block's 22 readable bytes at `p` and AVX2.
        unsafe { _mm256_or_si256(unpack_q4(p.add(6)), high_bits_q5(p.add(2))) }
    }
    #[inline(always)]
    unsafe fn dot_values(v: __m256i, a: __m256i) -> __m256i {
        // SAFETY: register-only AVX2 operations; the caller has AVX2.
        unsafe { dot_u8(v, a) }
    }
}

/// IQ4_NL: the values are the table entries the nibbles select (`pshufb` as the lookup).
struct Iq4Nl;
impl Block32 for Iq4Nl {
    const BYTES: usize = iq4_nl::BLOCK_BYTES;
    const MIN: bool = false;
    const TILE: bool = true;
    #[inline(always)]
    unsafe fn values(p: *const u8) -> __m256i {
        // SAFETY: the caller guarantees the block's 18 readable bytes at `p` and AVX2; the
        // table is 16 bytes.
        unsafe {
            let t = _mm_loadu_si128(iq4_nl::KVALUES.as_ptr() as *const __m128i);
            _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(t), unpack_q4(p.add(2)))
        }
    }
}

/// Q5_1: unsigned 5-bit values (0..=31) and a min; `maddubs` pair sums reach at most
/// 2 · 31 · 127 = 7874.
struct Q5_1;
impl Block32 for Q5_1 {
    const BYTES: usize = q5_1::BLOCK_BYTES;
    const MIN: bool = true;
    const TILE: bool = true;
    #[inline(always)]
    unsafe fn values(p: *const u8) -> __m256i {
        // SAFETY: the caller guarantees the block's 24 readable bytes at `p` and AVX2.
        unsafe { _mm256_or_si256(unpack_q4(p.add(8)), high_bits_q5(p.add(4))) }
    }
    #[inline(always)]
    unsafe fn dot_values(v: __m256i, a: __m256i) -> __m256i {
        // SAFETY: register-only AVX2 operations; the caller has AVX2.
        unsafe { dot_u8(v, a) }
    }
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
    block_rows::<Q8_0>(w, nb, acts, n_tok, out)
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
    block_rows::<Q4_0>(w, nb, acts, n_tok, out)
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
    block_rows::<Q5_0>(w, nb, acts, n_tok, out)
}

/// Q5_1 rows × Q8_1 activations. Returns the rows done (whole groups); `simd::matmul` does
/// the rest.
pub(super) fn matmul_q5_1(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    block_rows::<Q5_1>(w, nb, acts, n_tok, out)
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
    block_rows::<Iq4Nl>(w, nb, acts, n_tok, out)
}

fn block_rows<B: Block32>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    let rb = nb * B::BYTES;
    let n_rows = w.len() / rb;
    let full = n_rows / R * R;
    if !(has_avx2() && nb > 0 && acts.len() >= nb * n_tok && out.len() >= n_rows * n_tok) {
        return 0;
    }
    if B::TILE && n_tok > 1 {
        // SAFETY: AVX2/F16C detected; lengths checked above; the buffers hold nb blocks.
        unsafe {
            let mut values = vec![_mm256_setzero_si256(); nb * R];
            let mut dm = vec![_mm256_setzero_ps(); nb * 2];
            block_rows8_tiled::<B>(w, nb, acts, n_tok, out, full, &mut values, &mut dm)
        }
    } else {
        // SAFETY: AVX2/F16C detected; lengths checked above.
        unsafe { block_rows8::<B>(w, nb, acts, n_tok, out, full) }
    }
    full
}

/// [`block_rows8`] for several tokens: each group's values and scales are unpacked once into
/// `values` / `dm` (`nb · 8` and `nb · 2` entries), then dotted with every token; the same
/// operations per (row, token), so the same bits.
#[target_feature(enable = "avx2,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn block_rows8_tiled<B: Block32>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
    values: &mut [__m256i],
    dm: &mut [__m256],
) {
    let rb = nb * B::BYTES;
    for r0 in (0..full).step_by(R) {
        // SAFETY: rows r0..r0+8 lie inside `w`; each block offset + BYTES <= rb; `values` and
        // `dm` hold nb blocks' entries; prefetch addresses need not be valid.
        unsafe {
            let p = w.as_ptr().add(r0 * rb);
            prefetch(p.wrapping_add(R * rb), R * rb);
            for b in 0..nb {
                let pb = p.add(b * B::BYTES);
                for i in 0..R {
                    values[b * R + i] = B::values(pb.add(i * rb));
                }
                let words = words8(pb, rb);
                (dm[2 * b], dm[2 * b + 1]) = if B::MIN {
                    dm8(words)
                } else {
                    (d8(words), _mm256_setzero_ps())
                };
            }
            for t in 0..n_tok {
                let a = &acts[t * nb..(t + 1) * nb];
                let mut acc = _mm256_setzero_ps();
                for (b, ab) in a.iter().enumerate() {
                    let av = _mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i);
                    let v: [__m256i; R] =
                        core::array::from_fn(|i| B::dot_values(values[b * R + i], av));
                    let mut isum = hsum8(&v);
                    if B::OFFSET != 0 {
                        isum = minus_offset(isum, B::OFFSET, av);
                    }
                    let x = _mm256_mul_ps(
                        _mm256_mul_ps(dm[2 * b], _mm256_set1_ps(ab.d)),
                        _mm256_cvtepi32_ps(isum),
                    );
                    acc = _mm256_add_ps(acc, x);
                    if B::MIN {
                        acc =
                            _mm256_add_ps(acc, _mm256_mul_ps(dm[2 * b + 1], _mm256_set1_ps(ab.s)));
                    }
                }
                store8(lanes(acc), out, r0, n_tok, t);
            }
        }
    }
}

/// 8 rows at a time: per block the 8 rows' exact i32 sums (`B::dot`, then [`hsum8`]), then
/// `acc = acc + (d · da) · isum [+ m · sa]` with one lane per row, the reference's order.
#[target_feature(enable = "avx2,f16c")]
unsafe fn block_rows8<B: Block32>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
) {
    let rb = nb * B::BYTES;
    for r0 in (0..full).step_by(R) {
        // SAFETY: rows r0..r0+8 lie inside `w`; each block offset + BYTES <= rb; prefetch
        // addresses need not be valid.
        unsafe {
            let p = w.as_ptr().add(r0 * rb);
            for t in 0..n_tok {
                let a = &acts[t * nb..(t + 1) * nb];
                let mut acc = _mm256_setzero_ps();
                for (b, ab) in a.iter().enumerate() {
                    let av = _mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i);
                    let pb = p.add(b * B::BYTES);
                    prefetch(
                        p.wrapping_add(PFD * R * rb + b * R * B::BYTES),
                        R * B::BYTES,
                    );
                    let v: [__m256i; R] = core::array::from_fn(|i| B::dot(pb.add(i * rb), av));
                    let mut isum = hsum8(&v);
                    if B::OFFSET != 0 {
                        isum = minus_offset(isum, B::OFFSET, av);
                    }
                    let words = words8(pb, rb);
                    let (d, m) = if B::MIN {
                        dm8(words)
                    } else {
                        (d8(words), _mm256_setzero_ps())
                    };
                    let x = _mm256_mul_ps(
                        _mm256_mul_ps(d, _mm256_set1_ps(ab.d)),
                        _mm256_cvtepi32_ps(isum),
                    );
                    acc = _mm256_add_ps(acc, x);
                    if B::MIN {
                        acc = _mm256_add_ps(acc, _mm256_mul_ps(m, _mm256_set1_ps(ab.s)));
                    }
                }
                store8(lanes(acc), out, r0, n_tok, t);
            }
        }
    }
}
