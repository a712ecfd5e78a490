//! bfloat16 rows: the high 16 bits of an `f32`, little-endian.

/// Converts bfloat16 bits to `f32` (exact).
#[inline]
pub fn bf16_bits_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Rounds `x` to the nearest bfloat16 (ties to even; NaN stays a quiet NaN) and returns its bits.
#[inline]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// Dequantizes a row of little-endian bfloat16.
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = bf16_bits_to_f32(u16::from_le_bytes([c[0], c[1]]));
    }
}

/// Rounds a row to bfloat16 bytes.
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for &v in x {
        out.extend_from_slice(&f32_to_bf16_bits(v).to_le_bytes());
    }
}
