//! x86-64 AVX2 (+F16C) variants, selected at run time.
//!
//! Matmuls take 4 weight rows at a time: exact `i32` dot products per block (maddubs/madd),
//! a transposing `hadd` reduction to one `i32` per row, then `f32` accumulation with one SSE
//! lane per row in block order — the scalar reference's arithmetic, lane by lane.

#[cfg(target_arch = "x86")]
use std::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::quant::q8_1::{self, BlockQ8_1};
use crate::quant::{q4_1, q8_0, QK};

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
    }
}

/// Reads the little-endian u16 at `p` (any alignment).
#[inline(always)]
unsafe fn rd16(p: *const u8) -> i16 {
    // SAFETY: the caller guarantees 2 readable bytes at `p`.
    unsafe { core::ptr::read_unaligned(p as *const u16) as i16 }
}

/// Sums each of four 8 × i32 vectors: returns `[Σa, Σb, Σc, Σd]`.
#[inline(always)]
unsafe fn hsum4(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
    // SAFETY: register-only AVX2 operations; the caller has AVX2.
    unsafe {
        let ab = _mm256_hadd_epi32(a, b);
        let cd = _mm256_hadd_epi32(c, d);
        let s = _mm256_hadd_epi32(ab, cd);
        _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1))
    }
}

/// Exact i32 partial dot products of one Q4_1 block's nibbles (at `p`) with activations `a`.
#[inline(always)]
unsafe fn dot_q4(p: *const u8, a: __m256i) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes at `p` and AVX2.
    unsafe {
        let q = _mm_loadu_si128(p as *const __m128i);
        let m = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(q, m);
        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
        let w = _mm256_set_m128i(hi, lo);
        _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
    }
}

/// Exact i32 partial dot products of one Q8_0 block's values (at `p`) with activations `a`.
#[inline(always)]
unsafe fn dot_q8(p: *const u8, a: __m256i) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes at `p` and AVX2.
    unsafe {
        let w = _mm256_loadu_si256(p as *const __m256i);
        let prod = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
        _mm256_madd_epi16(prod, _mm256_set1_epi16(1))
    }
}

/// Q4_1 rows × Q8_1 activations; see `simd::matmul` for the layout.
pub(super) fn matmul_q4_1(w: &[u8], nb: usize, acts: &[BlockQ8_1], n_tok: usize, out: &mut [f32]) {
    let rb = nb * q4_1::BLOCK_BYTES;
    let n_rows = w.len() / rb;
    let full = n_rows / 4 * 4;
    if has_avx2() && nb > 0 && acts.len() >= nb * n_tok && out.len() >= n_rows * n_tok {
        // SAFETY: AVX2/F16C detected; lengths checked above.
        unsafe { q4_1_rows4(w, nb, acts, n_tok, out, full) }
    }
    for r in (if has_avx2() { full } else { 0 })..n_rows {
        for t in 0..n_tok {
            out[r * n_tok + t] =
                q4_1::vec_dot_ref(&w[r * rb..(r + 1) * rb], &acts[t * nb..(t + 1) * nb]);
        }
    }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn q4_1_rows4(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
) {
    let rb = nb * q4_1::BLOCK_BYTES;
    for r0 in (0..full).step_by(4) {
        if r0 + 12 <= full {
            // SAFETY: rows r0+8..r0+12 lie inside `w`; prefetch has no effect
            // on program state.
            unsafe {
                let next = w.as_ptr().add((r0 + 8) * rb);
                let mut off = 0;
                while off < 4 * rb {
                    _mm_prefetch(next.add(off) as *const i8, _MM_HINT_T0);
                    off += 64;
                }
            }
        }
        for t in 0..n_tok {
            let a = &acts[t * nb..(t + 1) * nb];
            // SAFETY: rows r0..r0+4 lie inside `w` (r0 + 4 <= full <= n_rows), each block offset
            // + 20 <= rb; `a` has nb blocks; `out` has n_rows * n_tok floats.
            unsafe {
                let p = w.as_ptr().add(r0 * rb);
                let mut acc = _mm_setzero_ps();
                for (b, ab) in a.iter().enumerate() {
                    let av = _mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i);
                    let o = b * q4_1::BLOCK_BYTES;
                    let (p0, p1, p2, p3) = (
                        p.add(o),
                        p.add(o + rb),
                        p.add(o + 2 * rb),
                        p.add(o + 3 * rb),
                    );
                    let isum = hsum4(
                        dot_q4(p0.add(4), av),
                        dot_q4(p1.add(4), av),
                        dot_q4(p2.add(4), av),
                        dot_q4(p3.add(4), av),
                    );
                    let d = _mm_cvtph_ps(_mm_setr_epi16(
                        rd16(p0),
                        rd16(p1),
                        rd16(p2),
                        rd16(p3),
                        0,
                        0,
                        0,
                        0,
                    ));
                    let m = _mm_cvtph_ps(_mm_setr_epi16(
                        rd16(p0.add(2)),
                        rd16(p1.add(2)),
                        rd16(p2.add(2)),
                        rd16(p3.add(2)),
                        0,
                        0,
                        0,
                        0,
                    ));
                    let x = _mm_mul_ps(_mm_mul_ps(d, _mm_set1_ps(ab.d)), _mm_cvtepi32_ps(isum));
                    acc = _mm_add_ps(acc, x);
                    acc = _mm_add_ps(acc, _mm_mul_ps(m, _mm_set1_ps(ab.s)));
                }
                let mut lanes = [0f32; 4];
                _mm_storeu_ps(lanes.as_mut_ptr(), acc);
                for (i, v) in lanes.iter().enumerate() {
                    out[(r0 + i) * n_tok + t] = *v;
                }
            }
        }
    }
}

/// Q8_0 rows × Q8_1 activations (scale and values only).
pub(super) fn matmul_q8_0(w: &[u8], nb: usize, acts: &[BlockQ8_1], n_tok: usize, out: &mut [f32]) {
    let rb = nb * q8_0::BLOCK_BYTES;
    let n_rows = w.len() / rb;
    let full = n_rows / 4 * 4;
    if has_avx2() && nb > 0 && acts.len() >= nb * n_tok && out.len() >= n_rows * n_tok {
        // SAFETY: AVX2/F16C detected; lengths checked above.
        unsafe { q8_0_rows4(w, nb, acts, n_tok, out, full) }
    }
    for r in (if has_avx2() { full } else { 0 })..n_rows {
        for t in 0..n_tok {
            out[r * n_tok + t] =
                q8_0::vec_dot_ref(&w[r * rb..(r + 1) * rb], &acts[t * nb..(t + 1) * nb]);
        }
    }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn q8_0_rows4(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
) {
    let rb = nb * q8_0::BLOCK_BYTES;
    for r0 in (0..full).step_by(4) {
        if r0 + 12 <= full {
            // SAFETY: rows r0+8..r0+12 lie inside `w`; prefetch has no effect
            // on program state.
            unsafe {
                let next = w.as_ptr().add((r0 + 8) * rb);
                let mut off = 0;
                while off < 4 * rb {
                    _mm_prefetch(next.add(off) as *const i8, _MM_HINT_T0);
                    off += 64;
                }
            }
        }
        for t in 0..n_tok {
            let a = &acts[t * nb..(t + 1) * nb];
            // SAFETY: as in `q4_1_rows4`, with 34-byte blocks.
            unsafe {
                let p = w.as_ptr().add(r0 * rb);
                let mut acc = _mm_setzero_ps();
                for (b, ab) in a.iter().enumerate() {
                    let av = _mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i);
                    let o = b * q8_0::BLOCK_BYTES;
                    let (p0, p1, p2, p3) = (
                        p.add(o),
                        p.add(o + rb),
                        p.add(o + 2 * rb),
                        p.add(o + 3 * rb),
                    );
                    let isum = hsum4(
                        dot_q8(p0.add(2), av),
                        dot_q8(p1.add(2), av),
                        dot_q8(p2.add(2), av),
                        dot_q8(p3.add(2), av),
                    );
                    let d = _mm_cvtph_ps(_mm_setr_epi16(
                        rd16(p0),
                        rd16(p1),
                        rd16(p2),
                        rd16(p3),
                        0,
                        0,
                        0,
                        0,
                    ));
                    let x = _mm_mul_ps(_mm_mul_ps(d, _mm_set1_ps(ab.d)), _mm_cvtepi32_ps(isum));
                    acc = _mm_add_ps(acc, x);
                }
                let mut lanes = [0f32; 4];
                _mm_storeu_ps(lanes.as_mut_ptr(), acc);
                for (i, v) in lanes.iter().enumerate() {
                    out[(r0 + i) * n_tok + t] = *v;
                }
            }
        }
    }
}
