//! Q5_0 weights: 32 weights in 22 bytes, `w = d·(q − 16)` with half-float `d` and 5-bit `q`.
//!
//! Byte `j` of `qs` holds the low 4 bits of element `j` (low nibble) and of element `j + 16`
//! (high nibble); bit `i` of the little-endian word `qh` is bit 4 of element `i`. The
//! activation side is a [`BlockQ8_1`] used as Q8_0 (its `s` is not read).

use super::f16::{f16_le_to_f32, f32_to_f16_bits};
use super::q8_1::BlockQ8_1;
use super::QK;

/// One Q5_0 block as laid out in GGUF.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockQ5_0 {
    /// Scale, half float.
    pub d: [u8; 2],
    /// Bit 4 of each element, element `i` in bit `i` (little-endian `u32`).
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK / 2],
}
/// Bytes per block.
pub const BLOCK_BYTES: usize = 22;
const _: () = assert!(size_of::<BlockQ5_0>() == BLOCK_BYTES);

impl BlockQ5_0 {
    /// Reads a block from (at least) 22 bytes.
    #[inline]
    pub fn read(b: &[u8]) -> BlockQ5_0 {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[6..22]);
        BlockQ5_0 {
            d: [b[0], b[1]],
            qh: [b[2], b[3], b[4], b[5]],
            qs,
        }
    }

    /// The 32 values `q` (0..=31) in element order.
    #[inline]
    pub fn values(&self) -> [u8; QK] {
        five_bit_values(&self.qs, u32::from_le_bytes(self.qh))
    }
}

/// The 5-bit values of a Q5_0/Q5_1 block from its nibbles and high-bit word.
#[inline]
pub(crate) fn five_bit_values(qs: &[u8; 16], qh: u32) -> [u8; QK] {
    let mut q = [0u8; QK];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        q[j] = (qs[j] & 15) | (h0 << 4);
        q[j + 16] = (qs[j] >> 4) | (h1 << 4);
    }
    q
}

/// Packs 32 values (0..=31) into `(qh, qs)`.
pub(crate) fn pack_five_bit(q: &[u8; QK]) -> (u32, [u8; 16]) {
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        qs[j] = (q[j] & 15) | ((q[j + 16] & 15) << 4);
        qh |= u32::from(q[j] >> 4) << j;
        qh |= u32::from(q[j + 16] >> 4) << (j + 16);
    }
    (qh, qs)
}

/// Dequantizes a row.
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    for (b, o) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let blk = BlockQ5_0::read(b);
        let d = f16_le_to_f32(blk.d);
        for (v, q) in o.iter_mut().zip(blk.values()) {
            *v = d * f32::from(i16::from(q) - 16);
        }
    }
}

/// Quantizes a row (length a multiple of 32) into Q5_0 bytes.
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for c in x.chunks_exact(QK) {
        let mut max = 0f32;
        for &v in c {
            if v.abs() > max.abs() {
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0u8; QK];
        for (qi, &v) in q.iter_mut().zip(c) {
            *qi = (v * id + 16.0).round_ties_even().clamp(0.0, 31.0) as u8;
        }
        let (qh, qs) = pack_five_bit(&q);
        out.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        out.extend_from_slice(&qh.to_le_bytes());
        out.extend_from_slice(&qs);
    }
}

/// Scalar reference dot product of one Q5_0 row with Q8_1 (used as Q8_0) activations.
pub fn vec_dot_ref(w: &[u8], a: &[BlockQ8_1]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BLOCK_BYTES).zip(a) {
        let blk = BlockQ5_0::read(wb);
        let mut isum = 0i32;
        for (q, &x) in blk.values().into_iter().zip(&ab.qs) {
            isum += (i32::from(q) - 16) * i32::from(x);
        }
        acc += (f16_le_to_f32(blk.d) * ab.d) * isum as f32;
    }
    acc
}
