//! x86-64 AVX2 (+F16C) kernels of the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) against Q8_K
//! activations.
//!
//! One weight row at a time: each 256-block is decoded once (values to bytes in registers,
//! scales to `i32` lanes, half floats to `f32`) and dotted with every token's block. The
//! integer sums are exact (`maddubs` pair sums, widened to `i32`, reduced per sub-block, times
//! the sub-block scales, summed), so only their order differs from the reference, which an
//! exact sum does not see; each (row, token) then adds its blocks in `f32` in block order with
//! the reference's operations.

#[cfg(target_arch = "x86")]
use std::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::x86::{
    f16x8, has_avx2, has_vnni, hsum8, lanes, prefetch, prefetch_l2, store8, store_tile, unrolled, R,
};
use crate::quant::q8_k::BlockQ8_K;
use crate::quant::{q2_k, q3_k, q4_k, q5_k, q6_k};

/// Bytes ahead of the current block that the kernels prefetch.
const AHEAD: usize = 1024;

/// A K-quant block type: decoded once per row and block, then dotted with each token.
trait KBlock {
    /// Bytes per block.
    const BYTES: usize;
    /// The decoded block.
    type Decoded;
    /// Decodes the block at `p`.
    unsafe fn decode(p: *const u8) -> Self::Decoded;
    /// `acc` plus this block's dot product with `a`, in the reference's `f32` operations.
    unsafe fn accumulate(d: &Self::Decoded, a: &BlockQ8_K, acc: f32) -> f32;
}

/// Sum of the 8 `i32` lanes of `v` (exact; wrapping cannot happen within the kernels' bounds).
#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    // SAFETY: register-only AVX2 operations; the caller has AVX2.
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 1)))
    }
}

/// The two half floats at `p` (`[d, dmin]` or `[d, _]`) as `f32`, with F16C (exact).
#[inline(always)]
unsafe fn halves2(p: *const u8) -> (f32, f32) {
    // SAFETY: the caller guarantees 4 readable bytes at `p` and F16C.
    unsafe {
        let h = _mm_cvtsi32_si128((p as *const i32).read_unaligned());
        let f = _mm_cvtph_ps(h);
        (_mm_cvtss_f32(f), _mm_cvtss_f32(_mm_shuffle_ps(f, f, 1)))
    }
}

/// `value` in the bytes of `x` whose bit `j` is set, 0 elsewhere. (Helpers like this one
/// instead of closures: a closure is a function of its own without the caller's AVX2, and
/// its intrinsics were calls.)
#[inline(always)]
unsafe fn bit_as(x: __m256i, j: usize, value: __m256i) -> __m256i {
    // SAFETY: register-only AVX2 operations; the caller has AVX2.
    unsafe {
        let bit = _mm256_set1_epi8((1u8 << j) as i8);
        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(x, bit), bit), value)
    }
}

/// The 32 bytes at `p`.
#[inline(always)]
unsafe fn load32(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes at `p` and AVX.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// The 8 scales and 8 mins of a Q4_K/Q5_K block (12 bytes at `p`) as `i32` lanes, in
/// sub-block order (as `q4_k::scale_min` reads them).
#[inline(always)]
unsafe fn scales_mins(p: *const u8) -> (__m256i, __m256i) {
    // SAFETY: the caller guarantees 12 readable bytes at `p` and AVX2.
    unsafe {
        let [sc_lo, sc_hi, m_lo, m_hi] = q4_k::scale_min_words(&*(p as *const [u8; 12]));
        let bytes = _mm_setr_epi32(sc_lo as i32, sc_hi as i32, m_lo as i32, m_hi as i32);
        (
            _mm256_cvtepu8_epi32(bytes),
            _mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8)),
        )
    }
}

/// A decoded Q4_K or Q5_K block: sub-block `j`'s 32 values as bytes, scales and mins as `i32`
/// lanes, `d` and `dmin`.
struct DecodedQ45 {
    q: [__m256i; 8],
    sc: __m256i,
    m: __m256i,
    d: f32,
    dmin: f32,
}

/// The Q4_K/Q5_K dot product of a decoded block: `Σ_j sc_j · Σ q·a` from the 8 sub-blocks'
/// `i32` sums ([`hsum8`]) times the scale lanes; `Σ_j m_j · (bsum_2j + bsum_2j+1)` from the
/// pairwise-added sums times the min lanes. Each sub-block sum is at most 32 · 31 · 127.
#[inline(always)]
unsafe fn accumulate_q45(dq: &DecodedQ45, a: &BlockQ8_K, acc: f32) -> f32 {
    // SAFETY: `a` holds 256 value bytes and 16 sums; register-only AVX2 otherwise.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let qa = a.qs.as_ptr() as *const u8;
        let mut v = [_mm256_setzero_si256(); R];
        for (j, vj) in v.iter_mut().enumerate() {
            *vj = _mm256_madd_epi16(_mm256_maddubs_epi16(dq.q[j], load32(qa.add(32 * j))), ones);
        }
        let isum = hsum_i32(_mm256_mullo_epi32(hsum8(&v), dq.sc));
        let bsums = _mm256_madd_epi16(load32(a.bsums.as_ptr() as *const u8), ones);
        let imin = hsum_i32(_mm256_mullo_epi32(bsums, dq.m));
        acc + (dq.d * a.d) * isum as f32 - (dq.dmin * a.d) * imin as f32
    }
}

/// Q4_K: nibbles of `qs` (bytes 16..144).
struct Q4K;
impl KBlock for Q4K {
    const BYTES: usize = q4_k::BLOCK_BYTES;
    type Decoded = DecodedQ45;
    #[inline(always)]
    unsafe fn decode(p: *const u8) -> DecodedQ45 {
        // SAFETY: the caller guarantees the block's 144 bytes at `p`, AVX2 and F16C.
        unsafe {
            let mask = _mm256_set1_epi8(0x0f);
            let mut q = [_mm256_setzero_si256(); 8];
            for c in 0..4 {
                let b = load32(p.add(16 + 32 * c));
                q[2 * c] = _mm256_and_si256(b, mask);
                q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(b, 4), mask);
            }
            let (sc, m) = scales_mins(p.add(4));
            let (d, dmin) = halves2(p);
            DecodedQ45 { q, sc, m, d, dmin }
        }
    }
    #[inline(always)]
    unsafe fn accumulate(d: &DecodedQ45, a: &BlockQ8_K, acc: f32) -> f32 {
        // SAFETY: as `accumulate_q45`.
        unsafe { accumulate_q45(d, a, acc) }
    }
}

/// Q5_K: Q4_K's nibbles (bytes 48..176) with bit `j` of each `qh` byte (bytes 16..48) as bit
/// 4 of sub-block `j`.
struct Q5K;
impl KBlock for Q5K {
    const BYTES: usize = q5_k::BLOCK_BYTES;
    type Decoded = DecodedQ45;
    #[inline(always)]
    unsafe fn decode(p: *const u8) -> DecodedQ45 {
        // SAFETY: the caller guarantees the block's 176 bytes at `p`, AVX2 and F16C.
        unsafe {
            let mask = _mm256_set1_epi8(0x0f);
            let sixteen = _mm256_set1_epi8(0x10);
            let qh = load32(p.add(16));
            let mut q = [_mm256_setzero_si256(); 8];
            for c in 0..4 {
                let b = load32(p.add(48 + 32 * c));
                let lo = _mm256_and_si256(b, mask);
                q[2 * c] = _mm256_or_si256(lo, bit_as(qh, 2 * c, sixteen));
                let hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), mask);
                q[2 * c + 1] = _mm256_or_si256(hi, bit_as(qh, 2 * c + 1, sixteen));
            }
            let (sc, m) = scales_mins(p.add(4));
            let (d, dmin) = halves2(p);
            DecodedQ45 { q, sc, m, d, dmin }
        }
    }
    #[inline(always)]
    unsafe fn accumulate(d: &DecodedQ45, a: &BlockQ8_K, acc: f32) -> f32 {
        // SAFETY: as `accumulate_q45`.
        unsafe { accumulate_q45(d, a, acc) }
    }
}

/// A decoded Q6_K or Q3_K block: the 256 values `u` (`q + OFFSET`, unsigned: 0..=63 and
/// 0..=7) as bytes, 32 per register in element order; the 16 scales as `i32` lanes in the
/// order [`sub_block_sums`] leaves the sub-block sums in, and as `i16` in sub-block order; `d`.
struct DecodedS16 {
    q: [__m256i; 8],
    sc_a: __m256i,
    sc_b: __m256i,
    sc16: __m256i,
    d: f32,
}

/// The 16 sub-block sums (16 elements each) of `Σ q·a` for 8 registers of 32 values and the
/// activations `a`: `([S0 S2 S4 S6 S1 S3 S5 S7], [S8 S10 S12 S14 S9 S11 S13 S15])`. Values
/// are at most 63, so `maddubs` pair sums stay within 2 · 63 · 127.
#[inline(always)]
unsafe fn sub_block_sums(q: &[__m256i; 8], a: &BlockQ8_K) -> (__m256i, __m256i) {
    // SAFETY: `a` holds 256 value bytes; register-only AVX2 otherwise.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let qa = a.qs.as_ptr() as *const u8;
        // Chunk k: sub-blocks 2k (lanes 0..4) and 2k + 1 (lanes 4..8).
        let mut v = [_mm256_setzero_si256(); 8];
        for (k, vk) in v.iter_mut().enumerate() {
            *vk = _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], load32(qa.add(32 * k))), ones);
        }
        let q0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
        let q1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
        (q0, q1)
    }
}

/// The 16 scales of a Q3_K block (12 packed bytes at `p`) as `i8` in sub-block order (as
/// `q3_k::scales` reads them).
#[inline(always)]
unsafe fn scales_q3(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 12 readable bytes at `p` and AVX2.
    unsafe {
        let word = |i: usize| (p.add(4 * i) as *const u32).read_unaligned();
        let (a0, a1, t) = (word(0), word(1), word(2));
        let (low4, top2) = (0x0f0f_0f0f, 0x0303_0303);
        let w0 = (a0 & low4) | ((t & top2) << 4);
        let w1 = (a1 & low4) | (((t >> 2) & top2) << 4);
        let w2 = ((a0 >> 4) & low4) | (((t >> 4) & top2) << 4);
        let w3 = ((a1 >> 4) & low4) | (((t >> 6) & top2) << 4);
        let u = _mm_setr_epi32(w0 as i32, w1 as i32, w2 as i32, w3 as i32);
        _mm_sub_epi8(u, _mm_set1_epi8(32))
    }
}

/// 16 scales (`i8`, at `p`) as the `(sc_a, sc_b, sc16)` of [`DecodedS16`].
#[inline(always)]
unsafe fn scales16(p: *const u8) -> (__m256i, __m256i, __m256i) {
    // SAFETY: the caller guarantees 16 readable bytes at `p` and AVX2.
    unsafe { scales16_from(_mm_loadu_si128(p as *const __m128i)) }
}

/// 16 scales (`i8` lanes of `s`) as the `(sc_a, sc_b, sc16)` of [`DecodedS16`].
#[inline(always)]
unsafe fn scales16_from(s: __m128i) -> (__m256i, __m256i, __m256i) {
    // SAFETY: register-only AVX2 operations; the caller has AVX2.
    unsafe {
        let order = _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
        let so = _mm_shuffle_epi8(s, order);
        (
            _mm256_cvtepi8_epi32(so),
            _mm256_cvtepi8_epi32(_mm_srli_si128(so, 8)),
            _mm256_cvtepi8_epi16(s),
        )
    }
}

/// `acc + (d·da)·isum` with `isum = Σ_i sc_i·Σ u·a − OFFSET·Σ_i sc_i·bsum_i`, exactly
/// `Σ_i sc_i·Σ q·a` (`OFFSET = 2^SHIFT`: 32 for Q6_K, 4 for Q3_K). Sub-block sums are at most
/// 16 · 63 · 127, times |sc| <= 128, over 16 sub-blocks: far below 2^31.
#[inline(always)]
unsafe fn accumulate_s16<const SHIFT: i32>(dq: &DecodedS16, a: &BlockQ8_K, acc: f32) -> f32 {
    // SAFETY: `a` holds 16 sums (32 bytes); register-only AVX2 otherwise.
    unsafe {
        let (s_a, s_b) = sub_block_sums(&dq.q, a);
        let scaled = _mm256_add_epi32(
            _mm256_mullo_epi32(s_a, dq.sc_a),
            _mm256_mullo_epi32(s_b, dq.sc_b),
        );
        let bsums = load32(a.bsums.as_ptr() as *const u8);
        let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, dq.sc16), SHIFT);
        let isum = hsum_i32(_mm256_sub_epi32(scaled, offset));
        acc + (dq.d * a.d) * isum as f32
    }
}

/// Q6_K: `u = q + 32` is the stored 6-bit value.
struct Q6K;
impl KBlock for Q6K {
    const BYTES: usize = q6_k::BLOCK_BYTES;
    type Decoded = DecodedS16;
    #[inline(always)]
    unsafe fn decode(p: *const u8) -> DecodedS16 {
        // SAFETY: the caller guarantees the block's 210 bytes at `p`, AVX2 and F16C.
        unsafe {
            let mask = _mm256_set1_epi8(0x0f);
            let top = _mm256_set1_epi8(0x30);
            let mut q = [_mm256_setzero_si256(); 8];
            for h in 0..2 {
                let ql0 = load32(p.add(64 * h));
                let ql1 = load32(p.add(64 * h + 32));
                let qh = load32(p.add(128 + 32 * h));
                let (lo0, lo1) = (_mm256_and_si256(ql0, mask), _mm256_and_si256(ql1, mask));
                let hi0 = _mm256_and_si256(_mm256_srli_epi16(ql0, 4), mask);
                let hi1 = _mm256_and_si256(_mm256_srli_epi16(ql1, 4), mask);
                let b0 = _mm256_and_si256(_mm256_slli_epi16(qh, 4), top);
                let b1 = _mm256_and_si256(_mm256_slli_epi16(qh, 2), top);
                let b2 = _mm256_and_si256(qh, top);
                let b3 = _mm256_and_si256(_mm256_srli_epi16(qh, 2), top);
                q[4 * h] = _mm256_or_si256(lo0, b0);
                q[4 * h + 1] = _mm256_or_si256(lo1, b1);
                q[4 * h + 2] = _mm256_or_si256(hi0, b2);
                q[4 * h + 3] = _mm256_or_si256(hi1, b3);
            }
            let (sc_a, sc_b, sc16) = scales16(p.add(192));
            let (d, _) = halves2(p.add(208));
            DecodedS16 {
                q,
                sc_a,
                sc_b,
                sc16,
                d,
            }
        }
    }
    #[inline(always)]
    unsafe fn accumulate(dq: &DecodedS16, a: &BlockQ8_K, acc: f32) -> f32 {
        // SAFETY: as `accumulate_s16`.
        unsafe { accumulate_s16::<5>(dq, a, acc) }
    }
}

/// Q3_K: `u = q + 4` is the low 2 bits plus 4 where the high bit is set.
struct Q3K;
impl KBlock for Q3K {
    const BYTES: usize = q3_k::BLOCK_BYTES;
    type Decoded = DecodedS16;
    #[inline(always)]
    unsafe fn decode(p: *const u8) -> DecodedS16 {
        // SAFETY: the caller guarantees the block's 110 bytes at `p`, AVX2 and F16C.
        unsafe {
            let three = _mm256_set1_epi8(3);
            let four = _mm256_set1_epi8(4);
            let hm = load32(p);
            let mut q = [_mm256_setzero_si256(); 8];
            for h in 0..2 {
                let b = load32(p.add(32 + 32 * h));
                for k in 0..4 {
                    let c = 4 * h + k;
                    let low = match k {
                        0 => _mm256_and_si256(b, three),
                        1 => _mm256_and_si256(_mm256_srli_epi16(b, 2), three),
                        2 => _mm256_and_si256(_mm256_srli_epi16(b, 4), three),
                        _ => _mm256_and_si256(_mm256_srli_epi16(b, 6), three),
                    };
                    q[c] = _mm256_or_si256(low, bit_as(hm, c, four));
                }
            }
            let (sc_a, sc_b, sc16) = scales16_from(scales_q3(p.add(96)));
            let (d, _) = halves2(p.add(108));
            DecodedS16 {
                q,
                sc_a,
                sc_b,
                sc16,
                d,
            }
        }
    }
    #[inline(always)]
    unsafe fn accumulate(dq: &DecodedS16, a: &BlockQ8_K, acc: f32) -> f32 {
        // SAFETY: as `accumulate_s16`.
        unsafe { accumulate_s16::<2>(dq, a, acc) }
    }
}

/// A decoded Q2_K block: the 2-bit values as bytes, 32 per register in element order; the
/// scales as `i32` lanes in [`sub_block_sums`]' order; the mins as `i16` in sub-block order;
/// `d` and `dmin`.
struct DecodedQ2 {
    q: [__m256i; 8],
    sc_a: __m256i,
    sc_b: __m256i,
    m16: __m256i,
    d: f32,
    dmin: f32,
}

/// Q2_K: `acc + (d·da)·Σ_i sc_i·Σ q·a − (dmin·da)·Σ_i m_i·bsum_i`.
struct Q2K;
impl KBlock for Q2K {
    const BYTES: usize = q2_k::BLOCK_BYTES;
    type Decoded = DecodedQ2;
    #[inline(always)]
    unsafe fn decode(p: *const u8) -> DecodedQ2 {
        // SAFETY: the caller guarantees the block's 84 bytes at `p`, AVX2 and F16C.
        unsafe {
            let three = _mm256_set1_epi8(3);
            let mut q = [_mm256_setzero_si256(); 8];
            for h in 0..2 {
                let b = load32(p.add(16 + 32 * h));
                q[4 * h] = _mm256_and_si256(b, three);
                q[4 * h + 1] = _mm256_and_si256(_mm256_srli_epi16(b, 2), three);
                q[4 * h + 2] = _mm256_and_si256(_mm256_srli_epi16(b, 4), three);
                q[4 * h + 3] = _mm256_and_si256(_mm256_srli_epi16(b, 6), three);
            }
            let s = _mm_loadu_si128(p as *const __m128i);
            let low = _mm_and_si128(s, _mm_set1_epi8(0x0f));
            let high = _mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(0x0f));
            let order = _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
            let so = _mm_shuffle_epi8(low, order);
            let (d, dmin) = halves2(p.add(80));
            DecodedQ2 {
                q,
                sc_a: _mm256_cvtepu8_epi32(so),
                sc_b: _mm256_cvtepu8_epi32(_mm_srli_si128(so, 8)),
                m16: _mm256_cvtepu8_epi16(high),
                d,
                dmin,
            }
        }
    }
    #[inline(always)]
    unsafe fn accumulate(dq: &DecodedQ2, a: &BlockQ8_K, acc: f32) -> f32 {
        // SAFETY: `a` holds 16 sums (32 bytes); register-only AVX2 otherwise. Sums are far
        // below 2^31 (16 · 3 · 127 per sub-block, times 15).
        unsafe {
            let (s_a, s_b) = sub_block_sums(&dq.q, a);
            let isum = hsum_i32(_mm256_add_epi32(
                _mm256_mullo_epi32(s_a, dq.sc_a),
                _mm256_mullo_epi32(s_b, dq.sc_b),
            ));
            let bsums = load32(a.bsums.as_ptr() as *const u8);
            let imin = hsum_i32(_mm256_madd_epi16(bsums, dq.m16));
            acc + (dq.d * a.d) * isum as f32 - (dq.dmin * a.d) * imin as f32
        }
    }
}

/// Q2_K rows × Q8_K activations; as [`matmul_q4_k`].
pub(super) fn matmul_q2_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    k_rows::<Q2K>(w, nb, acts, n_tok, out)
}

/// Q3_K rows × Q8_K activations; as [`matmul_q4_k`].
pub(super) fn matmul_q3_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    k_rows::<Q3K>(w, nb, acts, n_tok, out)
}

/// Q4_K rows × Q8_K activations (`nb` blocks per row); layout as `simd::matmul`. Returns the
/// rows done (all of them; none without AVX2).
pub(super) fn matmul_q4_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    k_rows::<Q4K>(w, nb, acts, n_tok, out)
}

/// Q5_K rows × Q8_K activations; as [`matmul_q4_k`].
pub(super) fn matmul_q5_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    k_rows::<Q5K>(w, nb, acts, n_tok, out)
}

/// Q6_K rows × Q8_K activations; as [`matmul_q4_k`].
pub(super) fn matmul_q6_k(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    k_rows::<Q6K>(w, nb, acts, n_tok, out)
}

fn k_rows<K: KBlock>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    let rb = nb * K::BYTES;
    if !(has_avx2() && nb > 0 && n_tok > 0 && acts.len() >= nb * n_tok) {
        return 0;
    }
    let n_rows = (w.len() / rb).min(out.len() / n_tok);
    // SAFETY: AVX2/F16C detected; `w` holds `n_rows` rows of `nb` blocks (checked above).
    unsafe { k_rows_avx2::<K>(w, nb, acts, n_tok, out, n_rows) }
    n_rows
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn k_rows_avx2<K: KBlock>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
    n_rows: usize,
) {
    let rb = nb * K::BYTES;
    for (r, o) in out.chunks_exact_mut(n_tok).take(n_rows).enumerate() {
        o.fill(0.0);
        for b in 0..nb {
            // SAFETY: block b of row r lies inside `w` (r < n_rows); prefetch addresses need
            // not be valid; token t's block b is `acts[t * nb + b]` (bounds-checked).
            unsafe {
                let p = w.as_ptr().add(r * rb + b * K::BYTES);
                prefetch(p.wrapping_add(AHEAD), K::BYTES);
                let dec = K::decode(p);
                for (t, acc) in o.iter_mut().enumerate() {
                    *acc = K::accumulate(&dec, &acts[t * nb + b], *acc);
                }
            }
        }
    }
}

/// The K-quant layouts repacked eight rows at a time (`quant::q4_kx8`, `quant::q5_kx8`,
/// `quant::q6_kx8`) that
/// [`matmul_x8`] reads: per 256-block column a record whose value registers each hold 4
/// values of all 8 rows (row `i` in 32-bit lane `i`), dotted with a broadcast of the 4
/// matching activation bytes, so each sub-block's sums arrive one `i32` lane per row, are
/// multiplied by the rows' sub-block scales lane by lane and summed: no horizontal reduction.
trait PackedK {
    /// Bytes per GGUF block (and per row and block in a record).
    const BLOCK: usize;
    /// Bytes per record.
    const RECORD: usize = R * Self::BLOCK;
    /// Whether the weights have a min (`acc + (d·da)·isum − (dmin·da)·imin`; the half floats
    /// `dmin` at 16..32 of the record).
    const MIN: bool;
    /// The integers per activation block the tile adds: Q4_K's 8 sums of sub-block pairs of
    /// `bsums` as 4 words of two `i16` each (sub-blocks `2k`, `2k + 1` in word `k`, for
    /// `vpmaddwd` with the mins), Q6_K's 16 `−32·bsum`.
    fn aux(a: &BlockQ8_K) -> [i32; 16];
    /// The 8 value registers of unit `u` (of 8: Q4_K's sub-block `u`, Q6_K's sub-blocks `2u`
    /// and `2u + 1`) of the record at `rec`, unsigned bytes.
    unsafe fn values(rec: *const u8, u: usize) -> [__m256i; 8];
    /// Unit `u`'s two registers of `i32` lanes, one per row: Q4_K's scales and mins, Q6_K's
    /// scales of its two sub-blocks.
    unsafe fn scales(rec: *const u8, u: usize) -> [__m256i; 2];
    /// The exact `isum` (and `imin`) of the record at `rec`, 8 rows' lanes, for the tokens
    /// whose 256 activation bytes are at `a[j]`, with their [`PackedK::aux`]; the value
    /// registers from [`PackedK::values`] and [`PackedK::scales`], or (`PRE`) as [`unpack`]
    /// left them at `pre`.
    unsafe fn isums<const N: usize, const VNNI: bool, const PRE: bool>(
        rec: *const u8,
        pre: *const __m256i,
        a: [*const u8; N],
        aux: [&[i32; 16]; N],
    ) -> ([__m256i; N], [__m256i; N]);
}

/// Registers of a unit that [`unpack`] writes: its 8 values, then its 2 scales.
const UNIT: usize = 8 + 2;

/// Unit `u`'s value and scale registers: decoded from the record at `rec`, or (`PRE`) loaded
/// from the record's 8 units (`UNIT` registers each) at `pre`.
#[inline(always)]
unsafe fn unit<K: PackedK, const PRE: bool>(
    rec: *const u8,
    pre: *const __m256i,
    u: usize,
) -> ([__m256i; 8], [__m256i; 2]) {
    // SAFETY: the caller guarantees the record at `rec`, or its registers at `pre`, and AVX2.
    unsafe {
        if !PRE {
            return (K::values(rec, u), K::scales(rec, u));
        }
        let (mut v, mut s) = ([_mm256_setzero_si256(); 8], [_mm256_setzero_si256(); 2]);
        let at = pre.add(UNIT * u);
        for (g, vg) in v.iter_mut().enumerate() {
            *vg = _mm256_load_si256(at.add(g));
        }
        for (i, si) in s.iter_mut().enumerate() {
            *si = _mm256_load_si256(at.add(8 + i));
        }
        (v, s)
    }
}

/// The units of the `nb` records at `p` ([`unit`]; 8 of [`UNIT`] registers a record) into
/// `out`, for tiles that run many tokens against the same rows: decoded once, not once a tile.
///
/// # Safety
/// AVX2; `nb` records at `p`.
#[inline(always)]
unsafe fn unpack<K: PackedK>(p: *const u8, nb: usize, out: &mut [__m256i]) {
    for (i, regs) in out[..8 * UNIT * nb].chunks_exact_mut(UNIT).enumerate() {
        let (b, u) = (i / 8, i % 8);
        // SAFETY: record b lies at `p` (the caller's contract).
        let (v, s) =
            unsafe { unit::<K, false>(p.wrapping_add(b * K::RECORD), core::ptr::null(), u) };
        regs[..8].copy_from_slice(&v);
        regs[8..].copy_from_slice(&s);
    }
}

/// `init` plus the exact dot products of the value registers `v` (unsigned, at most 63) with
/// the 4-byte activation words at `a`, `a + 4`, …, lane by lane: `vpdpbusd` with `VNNI`, else
/// `maddubs` pairs (two registers' pair sums at most 2 · 2 · 63 · 127 = 32004 in i16) widened.
#[inline(always)]
unsafe fn dots<const VNNI: bool>(init: __m256i, v: &[__m256i], a: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 4 · v.len() readable bytes at `a`, AVX2 (and with `VNNI`,
    // AVX-512 VNNI and VL).
    unsafe {
        let mut s = init;
        if VNNI {
            let mut s2 = _mm256_setzero_si256();
            for g in (0..v.len()).step_by(2) {
                s = _mm256_dpbusd_epi32(s, v[g], word4(a, g));
                s2 = _mm256_dpbusd_epi32(s2, v[g + 1], word4(a, g + 1));
            }
            s = _mm256_add_epi32(s, s2);
        } else {
            for g in (0..v.len()).step_by(2) {
                let p = _mm256_add_epi16(
                    _mm256_maddubs_epi16(v[g], word4(a, g)),
                    _mm256_maddubs_epi16(v[g + 1], word4(a, g + 1)),
                );
                s = _mm256_add_epi32(s, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
            }
        }
        s
    }
}

/// The 4 bytes at `a + 4g` in every 32-bit lane.
#[inline(always)]
unsafe fn word4(a: *const u8, g: usize) -> __m256i {
    // SAFETY: the caller guarantees 4 readable bytes at `a + 4g` and AVX.
    unsafe { _mm256_set1_epi32((a.add(4 * g) as *const i32).read_unaligned()) }
}

/// The `Q4_Kx8` layout (`FIVE` false) and the `Q5_Kx8` one (with high-bit planes at 128..384).
struct Q45Kx8<const FIVE: bool>;
impl<const FIVE: bool> PackedK for Q45Kx8<FIVE> {
    const BLOCK: usize = if FIVE {
        q5_k::BLOCK_BYTES
    } else {
        q4_k::BLOCK_BYTES
    };
    const MIN: bool = true;
    fn aux(a: &BlockQ8_K) -> [i32; 16] {
        // A sub-block's sum of 32 activation bytes is within 32 · 128: an `i16`.
        let sum = |j: usize| {
            u32::from((i32::from(a.bsums[2 * j]) + i32::from(a.bsums[2 * j + 1])) as u16)
        };
        core::array::from_fn(|k| match k {
            0..4 => (sum(2 * k) | (sum(2 * k + 1) << 16)) as i32,
            _ => 0,
        })
    }
    /// Sub-block `j`'s values: the nibbles of chunks `8(j/2)..+8` (and with `FIVE` bit `j` of
    /// each plane's bytes as bit 4).
    #[inline(always)]
    unsafe fn values(rec: *const u8, j: usize) -> [__m256i; 8] {
        // SAFETY: the caller guarantees the record's bytes (1152, or 1408 with `FIVE`) at
        // `rec` and AVX2.
        unsafe {
            let mask = _mm256_set1_epi8(0x0f);
            let chunks = if FIVE { 384 } else { 128 };
            let mut v = [_mm256_setzero_si256(); 8];
            for (g, vg) in v.iter_mut().enumerate() {
                let chunk = load32(rec.add(chunks + 32 * (8 * (j / 2) + g)));
                let chunk = if j.is_multiple_of(2) {
                    chunk
                } else {
                    _mm256_srli_epi16(chunk, 4)
                };
                *vg = _mm256_and_si256(chunk, mask);
                if FIVE {
                    // Bit j of plane g's bytes to bit 4 (16-bit shifts: the bits crossing from
                    // the neighbouring byte land below bit 4 or above it).
                    let plane = load32(rec.add(128 + 32 * g));
                    let h = if j <= 4 {
                        _mm256_sll_epi16(plane, _mm_cvtsi32_si128(4 - j as i32))
                    } else {
                        _mm256_srl_epi16(plane, _mm_cvtsi32_si128(j as i32 - 4))
                    };
                    *vg = _mm256_or_si256(*vg, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
                }
            }
            v
        }
    }
    /// Sub-block `j`'s scales and mins, from one 12-byte group ([`scales_mins`]).
    #[inline(always)]
    unsafe fn scales(rec: *const u8, j: usize) -> [__m256i; 2] {
        // SAFETY: the caller guarantees the record's bytes at `rec` and AVX2.
        let (sc, m) = unsafe { scales_mins(rec.add(32 + 12 * j)) };
        [sc, m]
    }
    /// Per sub-block `j`: the 8 rows' scales and mins and its 8 value registers. Sums are at
    /// most 32 · 31 · 127 per sub-block, times 63, over 8: far below 2^31. The mins of two
    /// sub-blocks go in one register as two `i16` per row, so one `vpmaddwd` adds both products
    /// with the activations' sums ([`PackedK::aux`]; at most 2 · 63 · 4096).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // `j` places the scales, chunks, activations and sums
    unsafe fn isums<const N: usize, const VNNI: bool, const PRE: bool>(
        rec: *const u8,
        pre: *const __m256i,
        a: [*const u8; N],
        aux: [&[i32; 16]; N],
    ) -> ([__m256i; N], [__m256i; N]) {
        // SAFETY: the caller guarantees the record's bytes (1152, or 1408 with `FIVE`) at
        // `rec` (and with `PRE` its registers at `pre`), 256 bytes at each `a[t]`, AVX2 (and
        // with `VNNI`, AVX-512 VNNI and VL).
        unsafe {
            let mut isum = [_mm256_setzero_si256(); N];
            let mut imin = [_mm256_setzero_si256(); N];
            let mut m_even = _mm256_setzero_si256();
            for j in 0..8 {
                let (v, [sc, m]) = unit::<Self, PRE>(rec, pre, j);
                for t in 0..N {
                    let s = dots::<VNNI>(_mm256_setzero_si256(), &v, a[t].add(32 * j));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(s, sc));
                }
                if j.is_multiple_of(2) {
                    m_even = m;
                    continue;
                }
                // Row i's mins of sub-blocks j - 1 and j (at most 63 each) as two i16 in lane i.
                let mins = _mm256_or_si256(m_even, _mm256_slli_epi32(m, 16));
                for t in 0..N {
                    let sums = _mm256_set1_epi32(aux[t][j / 2]);
                    imin[t] = _mm256_add_epi32(imin[t], _mm256_madd_epi16(mins, sums));
                }
            }
            (isum, imin)
        }
    }
}

/// The `Q6_Kx8` layout.
struct Q6Kx8;
impl PackedK for Q6Kx8 {
    const BLOCK: usize = q6_k::BLOCK_BYTES;
    const MIN: bool = false;
    fn aux(a: &BlockQ8_K) -> [i32; 16] {
        core::array::from_fn(|s| -32 * i32::from(a.bsums[s]))
    }
    /// Elements `32p..32p + 32` (sub-blocks `2p`, `2p + 1`) are 4-groups `m = 8p..8p + 8`, all
    /// in one half (nibble side `m / 32`) and one quarter (top-bit shift `m / 16`).
    #[inline(always)]
    unsafe fn values(rec: *const u8, p: usize) -> [__m256i; 8] {
        // SAFETY: the caller guarantees the record's 1680 bytes at `rec` and AVX2.
        unsafe {
            let mask = _mm256_set1_epi8(0x0f);
            let top = _mm256_set1_epi8(0x30);
            let (half, quarter) = (p / 4, p / 2);
            let mut v = [_mm256_setzero_si256(); 8];
            for (g, vg) in v.iter_mut().enumerate() {
                let m = 8 * p + g;
                let nib = load32(rec.add(144 + 32 * (m % 32)));
                let nib = if half == 0 {
                    nib
                } else {
                    _mm256_srli_epi16(nib, 4)
                };
                let t = load32(rec.add(1168 + 32 * (m % 16)));
                let high = if quarter == 0 {
                    _mm256_slli_epi16(t, 4)
                } else if quarter == 1 {
                    _mm256_slli_epi16(t, 2)
                } else if quarter == 2 {
                    t
                } else {
                    _mm256_srli_epi16(t, 2)
                };
                *vg = _mm256_or_si256(_mm256_and_si256(nib, mask), _mm256_and_si256(high, top));
            }
            v
        }
    }
    /// The 8 rows' scales of sub-blocks `2p` and `2p + 1`, from 16 bytes.
    #[inline(always)]
    unsafe fn scales(rec: *const u8, p: usize) -> [__m256i; 2] {
        // SAFETY: the caller guarantees the record's bytes at `rec` and AVX2.
        unsafe {
            let pair =
                _mm256_cvtepi8_epi16(_mm_loadu_si128(rec.add(16 + 16 * p) as *const __m128i));
            [
                _mm256_srai_epi32(_mm256_slli_epi32(pair, 16), 16),
                _mm256_srai_epi32(pair, 16),
            ]
        }
    }
    /// Per pair `p` of sub-blocks (`2p`, `2p + 1`; elements `32p..32p + 32`): the 8 rows' two
    /// scales, 8 value registers `u = q + 32` (nibbles and top bits). Each
    /// sub-block's sum starts at `−32·bsum`, so it is `Σ q·a`, at most 16 · 63 · 127 (less the
    /// offset), times |sc| <= 128, over 16: far below 2^31.
    #[inline(always)]
    unsafe fn isums<const N: usize, const VNNI: bool, const PRE: bool>(
        rec: *const u8,
        pre: *const __m256i,
        a: [*const u8; N],
        aux: [&[i32; 16]; N],
    ) -> ([__m256i; N], [__m256i; N]) {
        // SAFETY: the caller guarantees the record's 1680 bytes at `rec` (and with `PRE` its
        // registers at `pre`), 256 bytes at each `a[t]`, AVX2 (and with `VNNI`, AVX-512 VNNI
        // and VL).
        unsafe {
            let mut isum = [_mm256_setzero_si256(); N];
            for p in 0..8 {
                let (v, [sc0, sc1]) = unit::<Self, PRE>(rec, pre, p);
                // Unrolled, so the sums stay in registers (a loop of 8 kept them on the stack).
                unrolled!(N, |t| {
                    let at = a[t].add(32 * p);
                    let s0 = dots::<VNNI>(_mm256_set1_epi32(aux[t][2 * p]), &v[..4], at);
                    let s1 =
                        dots::<VNNI>(_mm256_set1_epi32(aux[t][2 * p + 1]), &v[4..], at.add(16));
                    let x =
                        _mm256_add_epi32(_mm256_mullo_epi32(s0, sc0), _mm256_mullo_epi32(s1, sc1));
                    isum[t] = _mm256_add_epi32(isum[t], x);
                });
            }
            (isum, [_mm256_setzero_si256(); N])
        }
    }
}

/// K-quant rows repacked eight at a time (`quant::q4_kx8`, `quant::q5_kx8`, `quant::q6_kx8`) × Q8_K
/// activations; layout as `simd::matmul_q8_k`, whose `clip` already cut `w` and `out` to
/// whole rows. Returns the rows done (whole groups of 8; none without AVX2);
/// `simd::matmul_x8_q8_k` does the rest.
pub(super) fn matmul_x8(
    ty: crate::gguf::GgmlType,
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    use crate::gguf::GgmlType;
    match ty {
        GgmlType::Q4_K => kx8_rows::<Q45Kx8<false>>(w, nb, acts, n_tok, out),
        GgmlType::Q5_K => kx8_rows::<Q45Kx8<true>>(w, nb, acts, n_tok, out),
        GgmlType::Q6_K => kx8_rows::<Q6Kx8>(w, nb, acts, n_tok, out),
        _ => 0,
    }
}

fn kx8_rows<K: PackedK>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) -> usize {
    if !(has_avx2() && nb > 0 && n_tok > 0 && acts.len() >= nb * n_tok) {
        return 0;
    }
    let full = (w.len() / (nb * K::BLOCK)).min(out.len() / n_tok) / R * R;
    let aux: Vec<[i32; 16]> = acts[..nb * n_tok].iter().map(K::aux).collect();
    // SAFETY: AVX2/F16C (and for the first, AVX-512 VNNI and VL) detected; `w` holds `full`
    // repacked rows, `acts` and `aux` nb * n_tok blocks (checked above); `out` is written
    // through bounds-checked indexing.
    unsafe {
        if has_vnni() {
            kx8_groups_vnni::<K>(w, nb, acts, &aux, n_tok, out, full)
        } else {
            kx8_groups::<K>(w, nb, acts, &aux, n_tok, out, full)
        }
    }
    full
}

#[target_feature(enable = "avx2,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn kx8_groups<K: PackedK>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    aux: &[[i32; 16]],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
) {
    // SAFETY: the caller's contract.
    unsafe { kx8_groups_body::<K, false>(w, nb, acts, aux, n_tok, out, full) }
}

/// [`kx8_groups`] with `vpdpbusd` for the byte products.
#[target_feature(enable = "avx2,f16c,avx512vnni,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn kx8_groups_vnni<K: PackedK>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    aux: &[[i32; 16]],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
) {
    // SAFETY: the caller's contract.
    unsafe { kx8_groups_body::<K, true>(w, nb, acts, aux, n_tok, out, full) }
}

/// The body of [`kx8_groups`] and [`kx8_groups_vnni`]: every group of 8 rows against every
/// token, in tiles of 8 tokens with VNNI, then of 4, then one at a time. (With AVX-512 VL's 32
/// registers a tile of 8 holds its sums; against tiles of 4 it took 0.90× the CPU time on Q4_K
/// at 128 tokens, `matmul_speed run Q4_K 128 1500`, 8 paired runs. AVX2 alone has 16
/// registers.) A record's values and scales are decoded once per tile for up to 8 tokens; for
/// more, each group's are decoded once, for all the tiles ([`unpack`]). One token keeps the
/// 256-bit tile: two groups side by side in 512-bit registers (each chunk masked and shifted
/// once for 16 rows, half the `vpdpbusd`) ran 1.1-1.3× faster on a matrix in the cache but no
/// faster or slower on one streamed from memory, which is what decoding meets (`matmul_speed
/// run Q4_K|Q5_K|Q6_K 1` and `… x128`, best of 3, AMD EPYC Zen 4: Q6_K 12-16 against 18-23 G
/// multiply-adds a second from memory).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn kx8_groups_body<K: PackedK, const VNNI: bool>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_K],
    aux: &[[i32; 16]],
    n_tok: usize,
    out: &mut [f32],
    full: usize,
) {
    let rb = nb * K::BLOCK;
    let mut pre = match n_tok > 8 {
        // SAFETY: the caller has AVX.
        true => vec![unsafe { _mm256_setzero_si256() }; 8 * UNIT * nb],
        false => Vec::new(),
    };
    for r0 in (0..full).step_by(R) {
        // SAFETY: the group's nb records lie inside `w`; the caller's contract for the rest.
        unsafe {
            let (p, out) = (w.as_ptr().add(r0 * rb), &mut out[r0 * n_tok..]);
            if pre.is_empty() {
                kx8_tiles::<K, VNNI, false>(p, core::ptr::null(), nb, acts, aux, n_tok, out);
            } else {
                unpack::<K>(p, nb, &mut pre);
                kx8_tiles::<K, VNNI, true>(p, pre.as_ptr(), nb, acts, aux, n_tok, out);
            }
        }
    }
}

/// One group of 8 repacked rows (records at `p`, and with `PRE` their units as [`unpack`] left
/// them at `pre`) against every token, its sums at `out[i * n_tok + t]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn kx8_tiles<K: PackedK, const VNNI: bool, const PRE: bool>(
    p: *const u8,
    pre: *const __m256i,
    nb: usize,
    acts: &[BlockQ8_K],
    aux: &[[i32; 16]],
    n_tok: usize,
    out: &mut [f32],
) {
    // SAFETY: the caller's contract.
    unsafe {
        let mut t = 0;
        if VNNI {
            while t + 8 <= n_tok {
                let acc: [__m256; 8] = kx8_tile::<K, 8, VNNI, PRE>(p, pre, nb, acts, aux, t);
                for (h, four) in acc.as_chunks::<4>().0.iter().enumerate() {
                    store_tile(four, &mut out[t + 4 * h..], n_tok);
                }
                t += 8;
            }
        }
        while t + 4 <= n_tok {
            let acc: [__m256; 4] = kx8_tile::<K, 4, VNNI, PRE>(p, pre, nb, acts, aux, t);
            store_tile(&acc, &mut out[t..], n_tok);
            t += 4;
        }
        for t in t..n_tok {
            let [a] = kx8_tile::<K, 1, VNNI, PRE>(p, pre, nb, acts, aux, t);
            store8(lanes(a), out, 0, n_tok, t);
        }
    }
}

/// One group of 8 repacked rows (records at `p`, and with `PRE` their units at `pre`) against
/// tokens `t0..t0 + N`: their 8 row sums each, every (row, token) adding its blocks in order
/// with the reference's `f32` operations.
#[inline(always)]
unsafe fn kx8_tile<K: PackedK, const N: usize, const VNNI: bool, const PRE: bool>(
    p: *const u8,
    pre: *const __m256i,
    nb: usize,
    acts: &[BlockQ8_K],
    aux: &[[i32; 16]],
    t0: usize,
) -> [__m256; N] {
    // SAFETY: the caller guarantees nb records at `p`, AVX2/F16C (and with `VNNI`, AVX-512
    // VNNI and VL), and nb blocks per token in `acts` and `aux` for tokens t0..t0 + N.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); N];
        for b in 0..nb {
            let rec = p.add(b * K::RECORD);
            prefetch_l2(rec.wrapping_add(AHEAD_X8), K::RECORD);
            let blocks: [&BlockQ8_K; N] =
                core::array::from_fn(|j| acts.get_unchecked((t0 + j) * nb + b));
            let a = blocks.map(|ab| ab.qs.as_ptr() as *const u8);
            let x: [&[i32; 16]; N] = core::array::from_fn(|j| aux.get_unchecked((t0 + j) * nb + b));
            let pre = pre.wrapping_add(8 * UNIT * b);
            let (isum, imin) = K::isums::<N, VNNI, PRE>(rec, pre, a, x);
            let d = f16x8(rec);
            let dmin = if K::MIN {
                f16x8(rec.add(16))
            } else {
                _mm256_setzero_ps()
            };
            for j in 0..N {
                let da = _mm256_set1_ps(blocks[j].d);
                let x = _mm256_mul_ps(_mm256_mul_ps(d, da), _mm256_cvtepi32_ps(isum[j]));
                acc[j] = _mm256_add_ps(acc[j], x);
                if K::MIN {
                    let y = _mm256_mul_ps(_mm256_mul_ps(dmin, da), _mm256_cvtepi32_ps(imin[j]));
                    acc[j] = _mm256_sub_ps(acc[j], y);
                }
            }
        }
        acc
    }
}

/// Bytes ahead of the current record that [`kx8_tile`] prefetches, into L2 ([`prefetch_l2`]).
/// Into L1 from 4 KiB ahead, the tile waited on memory: one token against a matrix that does
/// not fit the cache ran at half its speed on one that does (Q6_K 14-19 against 35 G
/// multiply-adds a second). Into L2 from 16 KiB ahead, `matmul_speed run TYPE 1 300 x128`
/// (one thread, three alternating runs) ran Q6_K at 20-27 against 14-16, Q5_K at 30-32
/// against 22-25 and Q4_K at 42-45 against 35-43; with 8 tokens Q6_K at 92-107 against 71 and
/// Q4_K at 131-133 against 105-129; the AVX2 path (`vnni-off`) Q6_K at 19-22 against 14-15.
/// AMD EPYC Zen 4 class.
/// (8 and 16 KiB ahead into L1 were no faster; 8 KiB into L2 about as fast as 16.)
const AHEAD_X8: usize = 16384;
