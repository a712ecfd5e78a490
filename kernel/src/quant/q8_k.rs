//! Q8_K activation blocks (in memory only): 256 × i8 with an `f32` scale `d` and the sums of
//! each 16 values, the activation side of the K-quant dot products.
//!
//! Quantization is [`super::q8_1`]'s over 256 values: `d = max|x| / 127`, values rounded ties
//! to even and clamped to ±127, identically on every target.

use super::QK_K;

/// 256 activations quantized to 8 bits with one scale and 16 partial sums.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_K {
    /// Scale: x ≈ d · q.
    pub d: f32,
    /// Quantized values in element order, each in -127..=127.
    pub qs: [i8; QK_K],
    /// `bsums[i] = Σ qs[16 i .. 16 i + 16]`.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8_K>() == 292);

impl Default for BlockQ8_K {
    fn default() -> Self {
        BlockQ8_K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// Scalar reference: quantizes one block of 256 values.
pub fn quantize_block(x: &[f32], out: &mut BlockQ8_K) {
    let amax = x.iter().take(QK_K).fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in out.qs.iter_mut().zip(x) {
        *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    for (s, c) in out.bsums.iter_mut().zip(out.qs.chunks_exact(16)) {
        *s = c.iter().map(|&q| i16::from(q)).sum();
    }
    out.d = d;
}

/// Scalar reference: quantizes a row (length a multiple of 256).
pub fn quantize_row_ref(x: &[f32], out: &mut [BlockQ8_K]) {
    for (c, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        quantize_block(c, b);
    }
}
