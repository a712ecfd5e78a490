//! Q2_K weights: 256 weights in 84 bytes, sixteen sub-blocks of 16 with 4-bit scales and mins:
//! `w = (d·sc_i)·q − dmin·m_i`, `q` 2-bit.
//!
//! Layout: `scales` (16 bytes: `sc_i` low nibble, `m_i` high nibble), `qs` (64 bytes, 2-bit
//! fields as Q3_K's), `d`, `dmin` (half floats). The dot product with [`BlockQ8_K`]
//! activations is `acc = acc + (d·da)·Σ_i sc_i·Σ q·a − (dmin·da)·Σ_i m_i·bsum_i`, both sums
//! exact `i32`.

use super::f16::{f16_le_to_f32, f32_to_f16_bits};
use super::q3_k::{pack_two_bit, two_bit_values};
use super::q8_k::BlockQ8_K;
use super::QK_K;

/// One Q2_K block as laid out in GGUF.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ2K {
    /// Scales (low nibble) and mins (high nibble).
    pub scales: [u8; QK_K / 16],
    /// 2-bit values.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales, half float.
    pub d: [u8; 2],
    /// Super-block scale of the mins, half float.
    pub dmin: [u8; 2],
}
/// Bytes per block.
pub const BLOCK_BYTES: usize = 84;
const _: () = assert!(size_of::<BlockQ2K>() == BLOCK_BYTES);

impl BlockQ2K {
    /// Reads a block from (at least) 84 bytes.
    #[inline]
    pub fn read(b: &[u8]) -> BlockQ2K {
        let mut blk = BlockQ2K {
            scales: [0; 16],
            qs: [0; 64],
            d: [b[80], b[81]],
            dmin: [b[82], b[83]],
        };
        blk.scales.copy_from_slice(&b[..16]);
        blk.qs.copy_from_slice(&b[16..80]);
        blk
    }
}

/// Dequantizes a row.
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    for (b, o) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let blk = BlockQ2K::read(b);
        let (d, dmin) = (f16_le_to_f32(blk.d), f16_le_to_f32(blk.dmin));
        let q = two_bit_values(&blk.qs);
        for (i, (oc, qc)) in o.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
            let s = blk.scales[i];
            let (dl, ml) = (d * f32::from(s & 15), dmin * f32::from(s >> 4));
            for (v, &qv) in oc.iter_mut().zip(qc) {
                *v = dl * f32::from(qv) - ml;
            }
        }
    }
}

/// Quantizes a row (length a multiple of 256) into Q2_K bytes (a simple quantizer, not
/// llama.cpp's search): per sub-block the range `[min(0, lo), hi]` in 3 steps, steps and mins
/// rounded to 4 bits of the super-block's largest.
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for c in x.chunks_exact(QK_K) {
        let mut step = [0f32; 16];
        let mut min = [0f32; 16];
        for (i, cc) in c.chunks_exact(16).enumerate() {
            let lo = cc.iter().copied().fold(0f32, f32::min);
            let hi = cc.iter().copied().fold(lo, f32::max);
            step[i] = (hi - lo) / 3.0;
            min[i] = -lo;
        }
        let dh = f32_to_f16_bits(step.iter().copied().fold(0f32, f32::max) / 15.0);
        let mh = f32_to_f16_bits(min.iter().copied().fold(0f32, f32::max) / 15.0);
        let (d, dmin) = (
            f16_le_to_f32(dh.to_le_bytes()),
            f16_le_to_f32(mh.to_le_bytes()),
        );
        let four = |v: f32, s: f32| {
            if s > 0.0 {
                (v / s).round_ties_even().clamp(0.0, 15.0) as u8
            } else {
                0
            }
        };
        let mut scales = [0u8; 16];
        let mut q = [0u8; QK_K];
        for (i, cc) in c.chunks_exact(16).enumerate() {
            let (sc, m) = (four(step[i], d), four(min[i], dmin));
            scales[i] = sc | (m << 4);
            let (dl, ml) = (d * f32::from(sc), dmin * f32::from(m));
            let id = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for (l, &v) in cc.iter().enumerate() {
                q[16 * i + l] = ((v + ml) * id).round_ties_even().clamp(0.0, 3.0) as u8;
            }
        }
        out.extend_from_slice(&scales);
        out.extend_from_slice(&pack_two_bit(&q));
        out.extend_from_slice(&dh.to_le_bytes());
        out.extend_from_slice(&mh.to_le_bytes());
    }
}

/// Scalar reference dot product of one Q2_K row with Q8_K activations.
pub fn vec_dot_ref(w: &[u8], a: &[BlockQ8_K]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BLOCK_BYTES).zip(a) {
        let blk = BlockQ2K::read(wb);
        let q = two_bit_values(&blk.qs);
        let (mut isum, mut imin) = (0i32, 0i32);
        for (i, (qc, ac)) in q.chunks_exact(16).zip(ab.qs.chunks_exact(16)).enumerate() {
            let dot: i32 = qc
                .iter()
                .zip(ac)
                .map(|(&w, &x)| i32::from(w) * i32::from(x))
                .sum();
            let s = blk.scales[i];
            isum += i32::from(s & 15) * dot;
            imin += i32::from(s >> 4) * i32::from(ab.bsums[i]);
        }
        let (d, dmin) = (f16_le_to_f32(blk.d), f16_le_to_f32(blk.dmin));
        acc = acc + (d * ab.d) * isum as f32 - (dmin * ab.d) * imin as f32;
    }
    acc
}
