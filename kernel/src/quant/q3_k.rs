//! Q3_K weights: 256 weights in 110 bytes, sixteen sub-blocks of 16 with 6-bit signed scales:
//! `w = (d·sc_i)·q`, `q` in -4..=3.
//!
//! Layout: `hmask` (32 bytes: bit `j` of byte `l` is set when element `32j + l` has no −4
//! offset), `qs` (64 bytes: in half `h`, bits `2k..2k+2` of byte `32h + l` are the low 2 bits of
//! element `128h + 32k + l`), `scales` (12 bytes: scale `i` is `u_i − 32`, `u_i`'s low 4 bits in
//! byte `i` (`i < 8`, low nibble) or byte `i − 8` (high nibble), its top 2 bits at bits
//! `2k..2k+2` of byte `8 + j` for `i = 4k + j`), `d` (half float). The dot product with
//! [`BlockQ8_K`] activations is `acc = acc + (d·da)·Σ_i sc_i·Σ q·a`, the sum exact `i32`.

use super::f16::f16_le_to_f32;
use super::q8_k::BlockQ8_K;
use super::{signed_scales, QK_K};

/// One Q3_K block as laid out in GGUF.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ3K {
    /// High bits (set: no −4 offset).
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits.
    pub qs: [u8; QK_K / 4],
    /// 16 scales, 6 bits each.
    pub scales: [u8; 12],
    /// Super-block scale, half float.
    pub d: [u8; 2],
}
/// Bytes per block.
pub const BLOCK_BYTES: usize = 110;
const _: () = assert!(size_of::<BlockQ3K>() == BLOCK_BYTES);

/// The 16 scales (-32..=31) from the 12 packed bytes.
#[inline]
pub fn scales(s: &[u8; 12]) -> [i8; 16] {
    core::array::from_fn(|i| {
        let lo = if i < 8 { s[i] & 15 } else { s[i - 8] >> 4 };
        let hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        (lo | (hi << 4)) as i8 - 32
    })
}

/// Packs 16 scales (-32..=31) as [`scales`] reads them.
pub fn pack_scales(sc: &[i8; 16]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (i, &v) in sc.iter().enumerate() {
        let u = (v + 32) as u8;
        if i < 8 {
            s[i] |= u & 15;
        } else {
            s[i - 8] |= (u & 15) << 4;
        }
        s[8 + i % 4] |= (u >> 4) << (2 * (i / 4));
    }
    s
}

/// The 2-bit fields of a Q2_K/Q3_K `qs` (64 bytes) in element order.
#[inline]
pub(crate) fn two_bit_values(qs: &[u8]) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for (i, v) in q.iter_mut().enumerate() {
        let (h, k, l) = (i / 128, (i / 32) % 4, i % 32);
        *v = (qs[32 * h + l] >> (2 * k)) & 3;
    }
    q
}

/// Packs 256 values (0..=3) as [`two_bit_values`] reads them.
pub(crate) fn pack_two_bit(q: &[u8; QK_K]) -> [u8; 64] {
    let mut qs = [0u8; 64];
    for (i, &v) in q.iter().enumerate() {
        let (h, k, l) = (i / 128, (i / 32) % 4, i % 32);
        qs[32 * h + l] |= (v & 3) << (2 * k);
    }
    qs
}

impl BlockQ3K {
    /// Reads a block from (at least) 110 bytes.
    #[inline]
    pub fn read(b: &[u8]) -> BlockQ3K {
        let mut blk = BlockQ3K {
            hmask: [0; 32],
            qs: [0; 64],
            scales: [0; 12],
            d: [b[108], b[109]],
        };
        blk.hmask.copy_from_slice(&b[..32]);
        blk.qs.copy_from_slice(&b[32..96]);
        blk.scales.copy_from_slice(&b[96..108]);
        blk
    }

    /// The 256 values (-4..=3) in element order.
    #[inline]
    pub fn values(&self) -> [i8; QK_K] {
        let low = two_bit_values(&self.qs);
        core::array::from_fn(|i| {
            let high = (self.hmask[i % 32] >> (i / 32)) & 1;
            low[i] as i8 - if high == 0 { 4 } else { 0 }
        })
    }
}

/// Dequantizes a row.
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    for (b, o) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let blk = BlockQ3K::read(b);
        signed_scales::dequantize(f16_le_to_f32(blk.d), &scales(&blk.scales), &blk.values(), o);
    }
}

/// Quantizes a row (length a multiple of 256) into Q3_K bytes (a simple quantizer, not
/// llama.cpp's search).
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for c in x.chunks_exact(QK_K) {
        let (dh, sc, u) = signed_scales::quantize(c, 4.0, -32.0, 31.0);
        let mut hmask = [0u8; 32];
        for (i, &v) in u.iter().enumerate() {
            hmask[i % 32] |= (v >> 2) << (i / 32);
        }
        out.extend_from_slice(&hmask);
        out.extend_from_slice(&pack_two_bit(&u));
        out.extend_from_slice(&pack_scales(&sc));
        out.extend_from_slice(&dh.to_le_bytes());
    }
}

/// Scalar reference dot product of one Q3_K row with Q8_K activations.
pub fn vec_dot_ref(w: &[u8], a: &[BlockQ8_K]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BLOCK_BYTES).zip(a) {
        let blk = BlockQ3K::read(wb);
        let sc = scales(&blk.scales);
        let q = blk.values();
        let mut isum = 0i32;
        for (i, (qc, ac)) in q.chunks_exact(16).zip(ab.qs.chunks_exact(16)).enumerate() {
            let dot: i32 = qc
                .iter()
                .zip(ac)
                .map(|(&w, &x)| i32::from(w) * i32::from(x))
                .sum();
            isum += i32::from(sc[i]) * dot;
        }
        acc += (f16_le_to_f32(blk.d) * ab.d) * isum as f32;
    }
    acc
}
