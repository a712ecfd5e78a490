//! Q8_1 activation blocks (our own in-memory format): 32 × i8 with an `f32` scale `d`,
//! `s = d · Σq` and the integer `Σq`, used as the activation side of every quantized dot
//! product.
//!
//! Quantization rounds ties to even and clamps to ±127, identically on every target.

use super::QK;

/// 32 activations quantized to 8 bits with scale and scaled sum.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockQ8_1 {
    /// Scale: x ≈ d · q.
    pub d: f32,
    /// `d · Σ qs`, for the min term of Q4_1 weights.
    pub s: f32,
    /// Quantized values in element order, each in -127..=127.
    pub qs: [i8; QK],
    /// `Σ qs`: the kernels subtract an offset times it (Q4_0's 8, Q5_0's 16, or 128 for
    /// signed bytes made unsigned) once per block instead of summing the block again.
    pub sum: i32,
}
const _: () = assert!(size_of::<BlockQ8_1>() == 44);

/// Scalar reference: quantizes one block of 32 values.
#[inline]
pub fn quantize_block(x: &[f32], out: &mut BlockQ8_1) {
    let mut amax = 0f32;
    for &v in x.iter().take(QK) {
        amax = amax.max(v.abs());
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in out.qs.iter_mut().zip(x) {
        let r = (v * id).round_ties_even().clamp(-127.0, 127.0);
        *q = r as i8;
        sum += i32::from(*q);
    }
    out.d = d;
    out.s = d * sum as f32;
    out.sum = sum;
}

/// Scalar reference: quantizes a row (length a multiple of 32).
pub fn quantize_row_ref(x: &[f32], out: &mut [BlockQ8_1]) {
    for (c, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        quantize_block(c, b);
    }
}

/// Dequantizes a row of blocks.
pub fn dequantize_row(blocks: &[BlockQ8_1], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        for (q, v) in b.qs.iter().zip(o.iter_mut()) {
            *v = b.d * f32::from(*q);
        }
    }
}
