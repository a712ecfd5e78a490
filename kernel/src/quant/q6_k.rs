//! Q6_K weights: 256 weights in 210 bytes, sixteen sub-blocks of 16 with signed 8-bit scales:
//! `w = (d·sc_i)·(q − 32)`, `q` 6-bit.
//!
//! Layout: `ql` (128 bytes of low nibbles: in half `h` (128 elements), byte `64h + l` holds
//! element `128h + l` low and `128h + 64 + l` high), `qh` (64 bytes: in half `h`, bits
//! `2k..2k+2` of byte `32h + l` are the top 2 bits of element `128h + 32k + l`), `scales` (16 ×
//! i8), `d` (half float). The dot product with [`BlockQ8_K`] activations is
//! `acc = acc + (d·da)·Σ_i sc_i·Σ (q − 32)·a`, the sum exact `i32`.

use super::f16::f16_le_to_f32;
use super::q8_k::BlockQ8_K;
use super::{signed_scales, QK_K};

/// One Q6_K block as laid out in GGUF.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale, half float.
    pub d: [u8; 2],
}
/// Bytes per block.
pub const BLOCK_BYTES: usize = 210;
const _: () = assert!(size_of::<BlockQ6K>() == BLOCK_BYTES);

impl BlockQ6K {
    /// Reads a block from (at least) 210 bytes.
    #[inline]
    pub fn read(b: &[u8]) -> BlockQ6K {
        let mut blk = BlockQ6K {
            ql: [0; QK_K / 2],
            qh: [0; QK_K / 4],
            scales: [0; QK_K / 16],
            d: [b[208], b[209]],
        };
        blk.ql.copy_from_slice(&b[..128]);
        blk.qh.copy_from_slice(&b[128..192]);
        for (s, &v) in blk.scales.iter_mut().zip(&b[192..208]) {
            *s = v as i8;
        }
        blk
    }

    /// The 256 values `q − 32` (-32..=31) in element order.
    #[inline]
    pub fn values(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for h in 0..2 {
            for l in 0..32 {
                let (a, b) = (self.ql[64 * h + l], self.ql[64 * h + 32 + l]);
                let hb = self.qh[32 * h + l];
                let e = 128 * h + l;
                q[e] = ((a & 15) | ((hb & 3) << 4)) as i8 - 32;
                q[e + 32] = ((b & 15) | (((hb >> 2) & 3) << 4)) as i8 - 32;
                q[e + 64] = ((a >> 4) | (((hb >> 4) & 3) << 4)) as i8 - 32;
                q[e + 96] = ((b >> 4) | (((hb >> 6) & 3) << 4)) as i8 - 32;
            }
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
        let blk = BlockQ6K::read(b);
        signed_scales::dequantize(f16_le_to_f32(blk.d), &blk.scales, &blk.values(), o);
    }
}

/// Quantizes a row (length a multiple of 256) into Q6_K bytes (a simple quantizer, not
/// llama.cpp's search).
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for c in x.chunks_exact(QK_K) {
        let (dh, sc, q) = signed_scales::quantize(c, 32.0, -127.0, 127.0);
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for h in 0..2 {
            for l in 0..32 {
                let e = 128 * h + l;
                ql[64 * h + l] = (q[e] & 15) | ((q[e + 64] & 15) << 4);
                ql[64 * h + 32 + l] = (q[e + 32] & 15) | ((q[e + 96] & 15) << 4);
                qh[32 * h + l] = (q[e] >> 4)
                    | ((q[e + 32] >> 4) << 2)
                    | ((q[e + 64] >> 4) << 4)
                    | ((q[e + 96] >> 4) << 6);
            }
        }
        out.extend_from_slice(&ql);
        out.extend_from_slice(&qh);
        out.extend(sc.iter().map(|&s| s as u8));
        out.extend_from_slice(&dh.to_le_bytes());
    }
}

/// Scalar reference dot product of one Q6_K row with Q8_K activations.
pub fn vec_dot_ref(w: &[u8], a: &[BlockQ8_K]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BLOCK_BYTES).zip(a) {
        let blk = BlockQ6K::read(wb);
        let q = blk.values();
        let mut isum = 0i32;
        for (i, (qc, ac)) in q.chunks_exact(16).zip(ab.qs.chunks_exact(16)).enumerate() {
            let dot: i32 = qc
                .iter()
                .zip(ac)
                .map(|(&w, &x)| i32::from(w) * i32::from(x))
                .sum();
            isum += i32::from(blk.scales[i]) * dot;
        }
        acc += (f16_le_to_f32(blk.d) * ab.d) * isum as f32;
    }
    acc
}
