//! Q8_0 weights: 32 weights in 34 bytes, `w = d·q` with half-float `d` and `q: i8`.
//!
//! The activation side is a [`BlockQ8_1`] (its `d` and `qs` are exactly a Q8_0 activation
//! block with an `f32` scale; the sum `s` is not used).

use super::f16::{f16_le_to_f32, f32_to_f16_bits};
use super::q8_1::BlockQ8_1;
use super::QK;

/// One Q8_0 block as laid out in GGUF.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale, half float.
    pub d: [u8; 2],
    /// Quantized values.
    pub qs: [i8; QK],
}
/// Bytes per block.
pub const BLOCK_BYTES: usize = 34;
const _: () = assert!(size_of::<BlockQ8_0>() == BLOCK_BYTES);

impl BlockQ8_0 {
    /// Reads a block from (at least) 34 bytes.
    #[inline]
    pub fn read(b: &[u8]) -> BlockQ8_0 {
        let mut qs = [0i8; QK];
        for (q, &v) in qs.iter_mut().zip(&b[2..34]) {
            *q = v as i8;
        }
        BlockQ8_0 {
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
        let blk = BlockQ8_0::read(b);
        let d = f16_le_to_f32(blk.d);
        for (v, &q) in o.iter_mut().zip(&blk.qs) {
            *v = d * f32::from(q);
        }
    }
}

/// Quantizes a row (length a multiple of 32) into Q8_0 bytes.
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for c in x.chunks_exact(QK) {
        let amax = c.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        for &v in c {
            out.push((v * id).round_ties_even().clamp(-127.0, 127.0) as i8 as u8);
        }
    }
}

/// Scalar reference dot product of one Q8_0 row with Q8_1 (used as Q8_0) activations.
pub fn vec_dot_ref(w: &[u8], a: &[BlockQ8_1]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BLOCK_BYTES).zip(a) {
        let blk = BlockQ8_0::read(wb);
        let mut isum = 0i32;
        for (&q, &x) in blk.qs.iter().zip(&ab.qs) {
            isum += i32::from(q) * i32::from(x);
        }
        acc += (f16_le_to_f32(blk.d) * ab.d) * isum as f32;
    }
    acc
}
