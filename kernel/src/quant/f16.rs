//! IEEE half floats: conversion helpers that never rely on the alignment of the bytes.

/// Converts the little-endian half float in `b` to `f32` (exact).
#[inline]
pub fn f16_le_to_f32(b: [u8; 2]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes(b)).to_f32()
}

/// Converts half-float bits to `f32` (exact).
#[inline]
pub fn f16_bits_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Rounds `x` to the nearest half float (ties to even) and returns its bits.
#[inline]
pub fn f32_to_f16_bits(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// Rounds every element of `x` to the nearest half float (ties to even), kept as `f32`: the
/// reference of [`crate::simd::round_f16`].
pub fn round_slice(x: &mut [f32]) {
    for v in x {
        *v = f16_bits_to_f32(f32_to_f16_bits(*v));
    }
}

/// Rounds every element of `x` to the nearest half float (ties to even) into `out`'s bits: the
/// reference of [`crate::simd::narrow_f16`].
pub fn narrow_slice(x: &[f32], out: &mut [u16]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f32_to_f16_bits(v);
    }
}

/// Dequantizes a row of little-endian half floats.
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f16_le_to_f32([c[0], c[1]]);
    }
}
