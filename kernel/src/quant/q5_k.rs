//! Q5_K weights: 256 weights in 176 bytes, Q4_K with a fifth bit: `w = (d·sc_j)·q − dmin·m_j`,
//! `q` 5-bit.
//!
//! Layout: `d`, `dmin` (half floats), `scales` (12 bytes, as Q4_K's), `qh` (32 bytes: bit `j`
//! of byte `l` is bit 4 of element `32j + l`), `qs` (128 bytes of low nibbles, as Q4_K's). The
//! dot product with [`BlockQ8_K`] activations is Q4_K's.

use super::f16::f16_le_to_f32;
use super::q4_k::{dequantize_sub_blocks, isums, quantize_sub_blocks};
use super::q8_k::BlockQ8_K;
use super::QK_K;

/// One Q5_K block as laid out in GGUF.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5K {
    /// Super-block scale of the sub-block scales, half float.
    pub d: [u8; 2],
    /// Super-block scale of the sub-block mins, half float.
    pub dmin: [u8; 2],
    /// 8 scales and 8 mins, 6 bits each (see [`super::q4_k::scale_min`]).
    pub scales: [u8; 12],
    /// High bits.
    pub qh: [u8; QK_K / 8],
    /// Low nibbles.
    pub qs: [u8; QK_K / 2],
}
/// Bytes per block.
pub const BLOCK_BYTES: usize = 176;
const _: () = assert!(size_of::<BlockQ5K>() == BLOCK_BYTES);

impl BlockQ5K {
    /// Reads a block from (at least) 176 bytes.
    #[inline]
    pub fn read(b: &[u8]) -> BlockQ5K {
        let mut blk = BlockQ5K {
            d: [b[0], b[1]],
            dmin: [b[2], b[3]],
            scales: [0; 12],
            qh: [0; QK_K / 8],
            qs: [0; QK_K / 2],
        };
        blk.scales.copy_from_slice(&b[4..16]);
        blk.qh.copy_from_slice(&b[16..48]);
        blk.qs.copy_from_slice(&b[48..176]);
        blk
    }

    /// The 256 values (0..=31) in element order.
    #[inline]
    pub fn values(&self) -> [u8; QK_K] {
        let mut q = [0u8; QK_K];
        for c in 0..4 {
            for l in 0..32 {
                let b = self.qs[32 * c + l];
                q[64 * c + l] = b & 15;
                q[64 * c + 32 + l] = b >> 4;
            }
        }
        for (i, v) in q.iter_mut().enumerate() {
            *v |= ((self.qh[i % 32] >> (i / 32)) & 1) << 4;
        }
        q
    }
}

/// Dequantizes a row.
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    for (b, o) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let blk = BlockQ5K::read(b);
        let (d, dmin) = (f16_le_to_f32(blk.d), f16_le_to_f32(blk.dmin));
        dequantize_sub_blocks(d, dmin, &blk.scales, &blk.values(), o);
    }
}

/// Quantizes a row (length a multiple of 256) into Q5_K bytes (a simple quantizer, not
/// llama.cpp's search).
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for c in x.chunks_exact(QK_K) {
        let (d, dmin, scales, q) = quantize_sub_blocks(c, 32);
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&dmin.to_le_bytes());
        out.extend_from_slice(&scales);
        let mut qh = [0u8; 32];
        for (i, &v) in q.iter().enumerate() {
            qh[i % 32] |= (v >> 4) << (i / 32);
        }
        out.extend_from_slice(&qh);
        for cc in 0..4 {
            for l in 0..32 {
                out.push((q[64 * cc + l] & 15) | ((q[64 * cc + 32 + l] & 15) << 4));
            }
        }
    }
}

/// Scalar reference dot product of one Q5_K row with Q8_K activations (as Q4_K's).
pub fn vec_dot_ref(w: &[u8], a: &[BlockQ8_K]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BLOCK_BYTES).zip(a) {
        let blk = BlockQ5K::read(wb);
        let (isum, imin) = isums(&blk.scales, &blk.values(), ab);
        let (d, dmin) = (f16_le_to_f32(blk.d), f16_le_to_f32(blk.dmin));
        acc = acc + (d * ab.d) * isum as f32 - (dmin * ab.d) * imin as f32;
    }
    acc
}
