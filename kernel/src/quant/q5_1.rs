//! Q5_1 weights: 32 weights in 24 bytes, `w = d·q + m` with half-float `d`, `m` and 5-bit `q`
//! (nibbles and high bits laid out as in [`super::q5_0`]).

use super::f16::{f16_le_to_f32, f32_to_f16_bits};
use super::q5_0::{five_bit_values, pack_five_bit};
use super::q8_1::BlockQ8_1;
use super::QK;

/// One Q5_1 block as laid out in GGUF.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockQ5_1 {
    /// Scale, half float.
    pub d: [u8; 2],
    /// Minimum, half float.
    pub m: [u8; 2],
    /// Bit 4 of each element, element `i` in bit `i` (little-endian `u32`).
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK / 2],
}
/// Bytes per block.
pub const BLOCK_BYTES: usize = 24;
const _: () = assert!(size_of::<BlockQ5_1>() == BLOCK_BYTES);

impl BlockQ5_1 {
    /// Reads a block from (at least) 24 bytes.
    #[inline]
    pub fn read(b: &[u8]) -> BlockQ5_1 {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[8..24]);
        BlockQ5_1 {
            d: [b[0], b[1]],
            m: [b[2], b[3]],
            qh: [b[4], b[5], b[6], b[7]],
            qs,
        }
    }

    /// The 32 values `q` (0..=31) in element order.
    #[inline]
    pub fn values(&self) -> [u8; QK] {
        five_bit_values(&self.qs, u32::from_le_bytes(self.qh))
    }
}

/// Dequantizes a row.
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    for (b, o) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let blk = BlockQ5_1::read(b);
        let (d, m) = (f16_le_to_f32(blk.d), f16_le_to_f32(blk.m));
        for (v, q) in o.iter_mut().zip(blk.values()) {
            *v = d * f32::from(q) + m;
        }
    }
}

/// Quantizes a row (length a multiple of 32) into Q5_1 bytes.
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for c in x.chunks_exact(QK) {
        let min = c.iter().copied().fold(f32::INFINITY, f32::min);
        let max = c.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0u8; QK];
        for (qi, &v) in q.iter_mut().zip(c) {
            *qi = ((v - min) * id).round_ties_even().clamp(0.0, 31.0) as u8;
        }
        let (qh, qs) = pack_five_bit(&q);
        out.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        out.extend_from_slice(&f32_to_f16_bits(min).to_le_bytes());
        out.extend_from_slice(&qh.to_le_bytes());
        out.extend_from_slice(&qs);
    }
}

/// Scalar reference dot product of one Q5_1 row with Q8_1 activations:
/// `acc = acc + (d · da) · Σ q·a + m · sa` per block.
pub fn vec_dot_ref(w: &[u8], a: &[BlockQ8_1]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BLOCK_BYTES).zip(a) {
        let blk = BlockQ5_1::read(wb);
        let mut isum = 0i32;
        for (q, &x) in blk.values().into_iter().zip(&ab.qs) {
            isum += i32::from(q) * i32::from(x);
        }
        let (d, m) = (f16_le_to_f32(blk.d), f16_le_to_f32(blk.m));
        acc = acc + (d * ab.d) * isum as f32 + m * ab.s;
    }
    acc
}
