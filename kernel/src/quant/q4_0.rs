//! Q4_0 weights: 32 weights in 18 bytes, `w = d·(q − 8)` with half-float `d`; byte `j` holds
//! element `j` (low nibble) and element `j + 16` (high nibble).

use super::f16::{f16_le_to_f32, f32_to_f16_bits};
use super::q8_1::BlockQ8_1;
use super::QK;

/// One Q4_0 block as laid out in GGUF.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale, half float.
    pub d: [u8; 2],
    /// Nibbles.
    pub qs: [u8; QK / 2],
}
/// Bytes per block.
pub const BLOCK_BYTES: usize = 18;
const _: () = assert!(size_of::<BlockQ4_0>() == BLOCK_BYTES);

impl BlockQ4_0 {
    /// Reads a block from (at least) 18 bytes.
    #[inline]
    pub fn read(b: &[u8]) -> BlockQ4_0 {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[2..18]);
        BlockQ4_0 {
            d: [b[0], b[1]],
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
        let blk = BlockQ4_0::read(b);
        let d = f16_le_to_f32(blk.d);
        for j in 0..16 {
            o[j] = d * f32::from(i16::from(blk.qs[j] & 15) - 8);
            o[j + 16] = d * f32::from(i16::from(blk.qs[j] >> 4) - 8);
        }
    }
}

/// Quantizes a row (length a multiple of 32) into Q4_0 bytes.
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for c in x.chunks_exact(QK) {
        let mut max = 0f32;
        for &v in c {
            if v.abs() > max.abs() {
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        for j in 0..16 {
            let q0 = (c[j] * id + 8.0).round_ties_even().clamp(0.0, 15.0) as u8;
            let q1 = (c[j + 16] * id + 8.0).round_ties_even().clamp(0.0, 15.0) as u8;
            out.push(q0 | (q1 << 4));
        }
    }
}

/// Scalar reference dot product of one Q4_0 row with Q8_1 activations.
pub fn vec_dot_ref(w: &[u8], a: &[BlockQ8_1]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BLOCK_BYTES).zip(a) {
        let blk = BlockQ4_0::read(wb);
        let mut isum = 0i32;
        for j in 0..16 {
            isum += (i32::from(blk.qs[j] & 15) - 8) * i32::from(ab.qs[j]);
            isum += (i32::from(blk.qs[j] >> 4) - 8) * i32::from(ab.qs[j + 16]);
        }
        acc += (f16_le_to_f32(blk.d) * ab.d) * isum as f32;
    }
    acc
}
