//! x86-64 AVX-512 tile of the rows repacked eight at a time (`quant::rows8`): two groups of 8
//! rows side by side in each 512-bit register, so one `vpdpbusd` multiplies 4 values of 16 rows
//! by a broadcast activation word, and one `f32` operation scales or adds 16 row sums.
//!
//! Against the 256-bit tile of one group ([`super::x86`]'s `x8_tile`) this halves the
//! instructions per block and token: 8 byte products and 6 `f32` operations for 16 rows instead
//! of 16 and 12. The values are unpacked by the 256-bit code ([`Packed8::vectors`]) and joined,
//! once per block for a tile of up to [`TILE`] tokens. (Unpacking in 512-bit registers instead
//! was no faster at 8 tokens on Q4_1, Q4_0, Q5_0 and Q8_0, `matmul_speed run TYPE 8 10000`:
//! the byte products and scaling dominate.) Each (row, token) adds its blocks in order with the
//! same operations as the scalar reference, so the bits are the same.
//!
//! Several tokens take this tile where the machine has AVX-512 F and VNNI; one token (decoding
//! a single session, bound by streaming the weights) keeps the 256-bit one.
//!
//! The module also holds attention's scores and value sums of the query heads that share a key
//! head ([`dots_f16_heads`], [`weighted_sum_f16_heads`]): each key or value row is widened once
//! for all of them, and their chains of adds run side by side in 512-bit registers.

#[cfg(target_arch = "x86")]
use std::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::x86::{prefetch, unrolled, Packed8, R, X8_AHEAD};
use crate::quant::q8_1::BlockQ8_1;

/// Rows per pair of groups.
const ROWS: usize = 2 * R;

/// Most tokens per tile: the 8 joined value vectors, 8 accumulators and the scales fit AVX-512's
/// 32 registers, and a decoding step of 8 sessions unpacks each block once.
const TILE: usize = 8;

/// True if AVX-512 F and VNNI are available: 512-bit `vpdpbusd` and joins.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")
}

/// Every token against each pair of 8-row groups of `rows` rows (a multiple of 16) repacked at
/// `w` (`nb` records per group); `out` as `simd::matmul`'s. Tiles of 8 tokens, then one each of
/// 4, 2 and 1 for the rest, so no token count unpacks a block more than 4 times.
///
/// # Safety
/// AVX2, F16C, AVX-512 F, VL and VNNI available; `w` holds `rows` repacked rows and `acts`
/// `nb * n_tok` blocks.
#[target_feature(enable = "avx2,f16c,avx512f,avx512vnni,avx512vl")]
pub(super) unsafe fn x16_rows<B: Packed8>(
    w: &[u8],
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    rows: usize,
) {
    let rb = nb * B::BLOCK;
    for r0 in (0..rows).step_by(ROWS) {
        // SAFETY: the pair's 2 · 8 rows lie inside `w`; the caller's contract for the rest.
        unsafe {
            let p = w.as_ptr().add(r0 * rb);
            let t = tiles::<B, TILE>(p, rb, nb, acts, n_tok, out, r0, 0);
            let t = tiles::<B, 4>(p, rb, nb, acts, n_tok, out, r0, t);
            let t = tiles::<B, 2>(p, rb, nb, acts, n_tok, out, r0, t);
            tiles::<B, 1>(p, rb, nb, acts, n_tok, out, r0, t);
        }
    }
}

/// Tiles of `N` tokens from token `t` while whole ones fit; returns the first token left.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tiles<B: Packed8, const N: usize>(
    p: *const u8,
    rb: usize,
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
    r0: usize,
    mut t: usize,
) -> usize {
    while t + N <= n_tok {
        // SAFETY: the caller's contract; tokens t..t + N exist.
        let acc = unsafe { x16_tile::<B, N>(p, rb, nb, acts, t) };
        if N.is_multiple_of(4) {
            // SAFETY: the caller's contract (AVX-512 F).
            unsafe { store_tile(&acc, &mut out[r0 * n_tok + t..], n_tok) };
        } else {
            for (j, a) in acc.into_iter().enumerate() {
                // SAFETY: `__m512` and `[f32; 16]` have the same size; every bit pattern is valid.
                let sums = unsafe { core::mem::transmute::<__m512, [f32; ROWS]>(a) };
                for (i, s) in sums.into_iter().enumerate() {
                    out[(r0 + i) * n_tok + t + j] = s;
                }
            }
        }
        t += N;
    }
    t
}

/// A tile's sums (token `j`'s in `acc[j]`, row `i` in lane `i`; `N` a multiple of 4) written
/// to `out[i * n_tok + j]`: each 4 tokens' two 8-row halves through the 256-bit tile's
/// transposing store ([`super::x86::store_tile`]), so each row's sums go out in stores of 4
/// instead of one at a time. Over 576 columns (18 blocks a row) the 128 single stores of a tile
/// of 8 were a tenth of its time: `matmul_speed run Q4_1 8 20000` (1536 × 576) took 0.93× the
/// time with the transposed stores (Q8_0 0.91×, Q5_0 0.92×; medians of 8-12 paired runs, Intel
/// Xeon family 6 model 207).
///
/// # Safety
/// AVX-512 F available.
#[inline(always)]
unsafe fn store_tile<const N: usize>(acc: &[__m512; N], out: &mut [f32], n_tok: usize) {
    // SAFETY: register-only AVX-512 F operations; the stores are `x86::store_tile`'s.
    unsafe {
        for (h, &[a0, a1, a2, a3]) in acc.as_chunks::<4>().0.iter().enumerate() {
            let lo = [
                _mm512_castps512_ps256(a0),
                _mm512_castps512_ps256(a1),
                _mm512_castps512_ps256(a2),
                _mm512_castps512_ps256(a3),
            ];
            let hi = [high_half(a0), high_half(a1), high_half(a2), high_half(a3)];
            super::x86::store_tile(&lo, &mut out[4 * h..], n_tok);
            super::x86::store_tile(&hi, &mut out[R * n_tok + 4 * h..], n_tok);
        }
    }
}

/// Lanes 8..16 of `v`.
#[inline(always)]
unsafe fn high_half(v: __m512) -> __m256 {
    // SAFETY: register-only AVX-512 F operations; the casts only reinterpret bits.
    unsafe { _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))) }
}

/// Two 256-bit halves as one 512-bit register, `lo` in lanes 0..8.
#[inline(always)]
unsafe fn join(lo: __m256i, hi: __m256i) -> __m512i {
    // SAFETY: register-only AVX-512 F operations; the caller has AVX-512 F.
    unsafe { _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1) }
}

/// [`join`] of `f32` lanes.
#[inline(always)]
unsafe fn join_ps(lo: __m256, hi: __m256) -> __m512 {
    // SAFETY: as [`join`]; the casts only reinterpret bits.
    unsafe { _mm512_castsi512_ps(join(_mm256_castps_si256(lo), _mm256_castps_si256(hi))) }
}

/// The 16 rows of the groups at `p` and `p + 8 · rb` against tokens `t0..t0 + N`: the row sums
/// of each token, row `i` in lane `i`. Integer sums per block are exact: `vpdpbusd` of unsigned
/// values (signed ones offset by 128, then `128 · Σa` subtracted; others' `OFFSET · Σa`).
#[inline(always)]
unsafe fn x16_tile<B: Packed8, const N: usize>(
    p: *const u8,
    rb: usize,
    nb: usize,
    acts: &[BlockQ8_1],
    t0: usize,
) -> [__m512; N] {
    // SAFETY: the caller guarantees nb records of both groups at `p`, the target features of
    // [`x16_rows`], and nb blocks per token in `acts` for tokens t0..t0 + N.
    unsafe {
        let offset = if B::SIGNED { 128 } else { B::OFFSET };
        let mut acc = [_mm512_setzero_ps(); N];
        for b in 0..nb {
            let rec = [p.add(b * B::RECORD), p.add(R * rb + b * B::RECORD)];
            for r in rec {
                prefetch(r.wrapping_add(2 * X8_AHEAD), B::RECORD);
            }
            let ((d0, m0), (d1, m1)) = (B::scales(rec[0]), B::scales(rec[1]));
            let (d, m) = (join_ps(d0, d1), join_ps(m0, m1));
            let (v0, v1) = (B::vectors(rec[0]), B::vectors(rec[1]));
            let u: [__m512i; 8] = core::array::from_fn(|k| {
                let v = join(v0[k], v1[k]);
                if B::SIGNED {
                    _mm512_xor_si512(v, _mm512_set1_epi8(-128))
                } else {
                    v
                }
            });
            // Unrolled, so the accumulators stay in registers (a loop kept them on the stack).
            unrolled!(N, |j| {
                let ab = acts.get_unchecked((t0 + j) * nb + b);
                let q = ab.qs.as_ptr();
                let mut isum = _mm512_setzero_si512();
                for (k, u) in u.iter().enumerate() {
                    let a = _mm512_set1_epi32((q.add(4 * k) as *const i32).read_unaligned());
                    isum = _mm512_dpbusd_epi32(isum, *u, a);
                }
                if offset != 0 {
                    isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(offset * ab.sum));
                }
                let x = _mm512_mul_ps(
                    _mm512_mul_ps(d, _mm512_set1_ps(ab.d)),
                    _mm512_cvtepi32_ps(isum),
                );
                acc[j] = _mm512_add_ps(acc[j], x);
                if B::MIN {
                    acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(m, _mm512_set1_ps(ab.s)));
                }
            });
        }
        acc
    }
}

/// Cache rows (positions) ahead of the current one that [`weighted_sum_f16_heads`] prefetches,
/// and ahead of the current block of [`DOT_ROWS`] that [`dots_f16_heads`] prefetches. A step
/// of several sessions reads their caches from memory (the weights streamed meanwhile evict
/// them), and 4 and 8 rows ahead left the loads waiting: 16 and 32 took a step of 8 sessions
/// 0.93-0.96× the time at 2 threads and 0.88× at 1 (`batch_speed MODEL 2 8 8 8` and `1 8 8`,
/// medians of 8-10 and 6 alternating pairs, AMD EPYC Zen 4 class); 32 and 64 were no faster.
const SUM_ROWS_AHEAD: usize = 16;
const DOT_ROWS_AHEAD: usize = 32;

/// `quant::f32::weighted_sum_f16_ref` of each of `H` heads that share the rows (`w` holds the
/// heads' `m = w.len() / H` weights one after another, `out` their sums, `hd` apart) for the
/// first `n` columns (a multiple of 16): blocks of 64 columns of every head in 4 registers
/// each, across all rows; each row's halves are widened once, multiplied by each head's weight
/// and added in row order, so every column has the reference's bits. Every column's sum is one
/// chain of dependent adds, so a head alone is bound by the add's latency at any width; the
/// heads of a key head together give the adds of one row 4 `H` independent chains.
///
/// # Safety
/// AVX-512 F available; `out` holds `(H - 1) * hd + n` sums, and `rows` row `j`'s first `n`
/// halves at `j * stride` for every `j < m`.
#[target_feature(enable = "avx2,f16c,avx512f")]
pub(super) unsafe fn weighted_sum_f16_heads<const H: usize>(
    w: &[f32],
    rows: &[u16],
    stride: usize,
    out: &mut [f32],
    hd: usize,
    n: usize,
) {
    let m = w.len() / H;
    for c0 in (0..n).step_by(64) {
        let regs = ((n - c0) / 16).min(4);
        // SAFETY: row j's columns c0..c0 + 16 * regs <= n lie at j * stride + c0.., and head
        // h's sums at h * hd + c0.. (the caller's contract); `w` holds H * m weights.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 4]; H];
            for j in 0..m {
                let r = rows.as_ptr().add(j * stride + c0);
                prefetch(
                    r.wrapping_add(SUM_ROWS_AHEAD * stride) as *const u8,
                    32 * regs,
                );
                let mut v = [_mm512_setzero_ps(); 4];
                for (i, v) in v.iter_mut().enumerate().take(regs) {
                    *v = _mm512_cvtph_ps(_mm256_loadu_si256(r.add(16 * i) as *const __m256i));
                }
                for (h, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*w.get_unchecked(h * m + j));
                    for (acc, &v) in acc.iter_mut().zip(&v).take(regs) {
                        *acc = _mm512_add_ps(*acc, _mm512_mul_ps(a, v));
                    }
                }
            }
            for (h, acc) in acc.iter().enumerate() {
                for (i, acc) in acc.iter().enumerate().take(regs) {
                    _mm512_storeu_ps(out.as_mut_ptr().add(h * hd + c0 + 16 * i), *acc);
                }
            }
        }
    }
}

/// Rows per block of [`dots_f16_heads`]: 4 registers of 2 rows per head.
const DOT_ROWS: usize = 8;

/// `quant::f32::dot_f16_ref` of each of `H` query heads (`q`: the heads' `hd` values one after
/// another) with the first `done` of `m` rows of half floats `stride` apart (`out`: each head's
/// `m` scores one after another), over the first `n8` columns (a multiple of 8), where `done`
/// is `m` rounded down to blocks of [`DOT_ROWS`]; returns `done`. Two rows share a register,
/// one in each 256-bit half, so each half holds its row's 8 partial sums in the reference's
/// order, and is reduced as the reference reduces them ([`reduce8_halves`]); each row is
/// widened once for all the heads, whose `4 H` chains of adds run side by side. The columns
/// past `n8` are the caller's.
///
/// # Safety
/// AVX-512 F available; `q` holds `H * hd` values and `out` `H * m` scores, `n8 <= hd`, and
/// `rows` row `j`'s first `n8` halves at `j * stride` for every `j < m`.
#[target_feature(enable = "avx2,f16c,avx512f")]
pub(super) unsafe fn dots_f16_heads<const H: usize>(
    q: &[f32],
    hd: usize,
    n8: usize,
    rows: &[u16],
    stride: usize,
    out: &mut [f32],
    m: usize,
) -> usize {
    let done = m / DOT_ROWS * DOT_ROWS;
    for j0 in (0..done).step_by(DOT_ROWS) {
        // SAFETY: rows j0..j0 + 8 <= m hold n8 halves each at their offsets, q holds H * hd
        // values and n8 <= hd (the caller's contract); prefetches need not be valid addresses.
        unsafe {
            let row = |r: usize| rows.as_ptr().wrapping_add((j0 + r) * stride);
            for r in 0..DOT_ROWS {
                prefetch(row(r + DOT_ROWS_AHEAD) as *const u8, 2 * n8);
            }
            let mut acc = [[_mm512_setzero_ps(); 4]; H];
            for c in (0..n8).step_by(8) {
                let k: [__m512; 4] = core::array::from_fn(|p| {
                    let lo = _mm_loadu_si128(row(2 * p).add(c) as *const __m128i);
                    let hi = _mm_loadu_si128(row(2 * p + 1).add(c) as *const __m128i);
                    _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1))
                });
                for (h, acc) in acc.iter_mut().enumerate() {
                    // The 8 query values in both halves (`vbroadcastf64x4`, AVX-512 F).
                    let x = _mm256_castps_pd(_mm256_loadu_ps(q.as_ptr().add(h * hd + c)));
                    let x = _mm512_castpd_ps(_mm512_broadcast_f64x4(x));
                    for (acc, k) in acc.iter_mut().zip(&k) {
                        *acc = _mm512_add_ps(*acc, _mm512_mul_ps(x, *k));
                    }
                }
            }
            for (h, acc) in acc.iter().enumerate() {
                for (p, &acc) in acc.iter().enumerate() {
                    let (a, b) = reduce8_halves(acc);
                    *out.get_unchecked_mut(h * m + j0 + 2 * p) = a;
                    *out.get_unchecked_mut(h * m + j0 + 2 * p + 1) = b;
                }
            }
        }
    }
    done
}

/// `quant::f32::reduce8` of each 256-bit half of `acc`, as `x86`'s `reduce8_ps` reduces one:
/// `s = [p0+p4, p1+p5, p2+p6, p3+p7]`, `t = [s0+s2, s1+s3]`, `t0 + t1`. (Reducing the 8 rows
/// of two heads together in 4 steps of shuffles was no faster: `cargo bench -p
/// edge-llm-kernel --bench kernels -- attention_f16/dots_3_heads`.)
#[inline(always)]
unsafe fn reduce8_halves(acc: __m512) -> (f32, f32) {
    // SAFETY: register-only AVX-512 F operations; the caller has AVX-512 F.
    unsafe {
        let s = _mm512_add_ps(acc, _mm512_shuffle_f32x4::<0b10_11_00_01>(acc, acc));
        let t = _mm512_add_ps(s, _mm512_permute_ps::<0b11_10_11_10>(s));
        let r = _mm512_add_ps(t, _mm512_permute_ps::<0b01_01_01_01>(t));
        (
            _mm512_cvtss_f32(r),
            _mm_cvtss_f32(_mm512_extractf32x4_ps::<2>(r)),
        )
    }
}
