//! Q4_1 weights: 32 weights in 20 bytes, `w = d·q + m` with half-float `d`, `m` and 4-bit `q`;
//! byte `j` holds element `j` (low nibble) and element `j + 16` (high nibble).

use super::f16::{f16_le_to_f32, f32_to_f16_bits};
use super::q8_1::BlockQ8_1;
use super::QK;

/// One Q4_1 block as laid out in GGUF (little-endian half floats as bytes: no alignment).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale, half float.
    pub d: [u8; 2],
    /// Minimum, half float.
    pub m: [u8; 2],
    /// Nibbles.
    pub qs: [u8; QK / 2],
}
/// Bytes per block.
pub const BLOCK_BYTES: usize = 20;
const _: () = assert!(size_of::<BlockQ4_1>() == BLOCK_BYTES);

impl BlockQ4_1 {
    /// Reads a block from (at least) 20 bytes.
    #[inline]
    pub fn read(b: &[u8]) -> BlockQ4_1 {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[4..20]);
        BlockQ4_1 {
            d: [b[0], b[1]],
            m: [b[2], b[3]],
            qs,
        }
    }
}

/// Dequantizes a row.
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    for (b, o) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let blk = BlockQ4_1::read(b);
        let (d, m) = (f16_le_to_f32(blk.d), f16_le_to_f32(blk.m));
        for j in 0..16 {
            o[j] = d * f32::from(blk.qs[j] & 15) + m;
            o[j + 16] = d * f32::from(blk.qs[j] >> 4) + m;
        }
    }
}

/// Quantizes a row (length a multiple of 32) into Q4_1 bytes.
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for c in x.chunks_exact(QK) {
        let min = c.iter().copied().fold(f32::INFINITY, f32::min);
        let max = c.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        out.extend_from_slice(&f32_to_f16_bits(min).to_le_bytes());
        for j in 0..16 {
            let q0 = ((c[j] - min) * id).round_ties_even().clamp(0.0, 15.0) as u8;
            let q1 = ((c[j + 16] - min) * id).round_ties_even().clamp(0.0, 15.0) as u8;
            out.push(q0 | (q1 << 4));
        }
    }
}

/// Scalar reference dot product of one Q4_1 row with Q8_1 activations.
pub fn vec_dot_ref(w: &[u8], a: &[BlockQ8_1]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BLOCK_BYTES).zip(a) {
        let blk = BlockQ4_1::read(wb);
        let mut isum = 0i32;
        for j in 0..16 {
            isum += i32::from(blk.qs[j] & 15) * i32::from(ab.qs[j]);
            isum += i32::from(blk.qs[j] >> 4) * i32::from(ab.qs[j + 16]);
        }
        let (d, m) = (f16_le_to_f32(blk.d), f16_le_to_f32(blk.m));
        acc = acc + (d * ab.d) * isum as f32 + m * ab.s;
    }
    acc
}
