//! Plain `f32` rows, the deterministic 8-partial-sum dot product and the row-ordered weighted
//! sum of rows (attention's scores and values), over `f32` rows or rows of half floats.
//!
//! Partial `j` sums the products of elements `j, j+8, j+16, ...` in order; the partials are
//! then combined in the fixed tree `((p0+p4)+(p2+p6)) + ((p1+p5)+(p3+p7))`, and a tail of fewer
//! than 8 elements is added sequentially at the end. The AVX2 (one 8-lane register) and
//! simd128 (two 4-lane registers) variants in `crate::simd` compute exactly this.

use super::f16::f16_bits_to_f32;

/// Reads a row of little-endian `f32` without relying on alignment.
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// Combines 8 partial sums in the fixed tree order.
#[inline]
pub fn reduce8(p: [f32; 8]) -> f32 {
    ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]))
}

/// Scalar reference dot product with 8 partial sums.
pub fn dot_ref(a: &[f32], b: &[f32]) -> f32 {
    dot_by(a, b.len(), |i| b[i])
}

/// [`dot_ref`] of `a` with a row of half floats (`b`'s bits), each widened exactly: the
/// reference of attention's scores over the f16 key cache.
pub fn dot_f16_ref(a: &[f32], b: &[u16]) -> f32 {
    dot_by(a, b.len(), |i| f16_bits_to_f32(b[i]))
}

/// [`dot_ref`]'s order over `a` and the `b_len` elements `b(i)`.
#[inline(always)]
fn dot_by(a: &[f32], b_len: usize, b: impl Fn(usize) -> f32) -> f32 {
    let n = a.len().min(b_len);
    let n8 = n - n % 8;
    let mut p = [0f32; 8];
    for (c, ca) in a[..n8].chunks_exact(8).enumerate() {
        for j in 0..8 {
            p[j] += ca[j] * b(8 * c + j);
        }
    }
    let mut s = reduce8(p);
    for (i, &x) in a.iter().enumerate().take(n).skip(n8) {
        s += x * b(i);
    }
    s
}

/// Scalar reference sum of squares with 8 partial sums (same order as [`dot_ref`]).
pub fn sum_squares_ref(a: &[f32]) -> f32 {
    dot_ref(a, a)
}

/// Scalar reference weighted sum of rows of half floats (bits, each widened exactly):
/// `out[d] = Σ_j w[j] · rows[j · stride + d]` for `d < out.len()`, each element accumulated
/// from 0 in row order (multiply, then add); attention's sum over the f16 value cache. The
/// SIMD variants keep blocks of `out` in registers across the rows, which changes no bit.
pub fn weighted_sum_f16_ref(w: &[f32], rows: &[u16], stride: usize, out: &mut [f32]) {
    out.fill(0.0);
    for (j, &a) in w.iter().enumerate() {
        let r = &rows[j * stride..][..out.len()];
        for (o, &v) in out.iter_mut().zip(r) {
            *o += a * f16_bits_to_f32(v);
        }
    }
}
