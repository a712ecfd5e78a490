//! Q4_K weights: 256 weights in 144 bytes, eight sub-blocks of 32 with 6-bit scales and mins:
//! `w = (d·sc_j)·q − dmin·m_j`, `q` 4-bit.
//!
//! Layout: `d`, `dmin` (half floats), `scales` (12 bytes: the 8 `sc_j` and 8 `m_j`, 6 bits
//! each, see [`scale_min`]), `qs` (128 bytes: byte `32c + l` holds element `64c + l` in its low
//! nibble and element `64c + 32 + l` in its high nibble). The activation side is
//! [`BlockQ8_K`]; the dot product per block is
//! `acc = acc + (d·da)·Σ_j sc_j·Σ q·a − (dmin·da)·Σ_j m_j·(bsum_2j + bsum_2j+1)`, both sums
//! exact `i32`.

use super::f16::{f16_le_to_f32, f32_to_f16_bits};
use super::q8_k::BlockQ8_K;
use super::QK_K;

/// One Q4_K block as laid out in GGUF.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4K {
    /// Super-block scale of the sub-block scales, half float.
    pub d: [u8; 2],
    /// Super-block scale of the sub-block mins, half float.
    pub dmin: [u8; 2],
    /// 8 scales and 8 mins, 6 bits each.
    pub scales: [u8; 12],
    /// Nibbles.
    pub qs: [u8; QK_K / 2],
}
/// Bytes per block.
pub const BLOCK_BYTES: usize = 144;
const _: () = assert!(size_of::<BlockQ4K>() == BLOCK_BYTES);

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes of a Q4_K or Q5_K
/// block: for `j < 4` the low 6 bits of bytes `j` and `j + 4`; for `j >= 4` the nibbles of byte
/// `j + 4` with the top 2 bits of bytes `j − 4` and `j` above them.
#[inline]
pub fn scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// [`scale_min`] of all 8 sub-blocks at once, by word operations: the scales of sub-blocks
/// 0..4 and 4..8, then the mins of 0..4 and 4..8, each word's bytes in sub-block order
/// (little-endian). The SIMD decoders widen these bytes into lanes.
#[inline(always)]
pub fn scale_min_words(s: &[u8; 12]) -> [u32; 4] {
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (w0, w1, w2) = (word(0), word(1), word(2));
    let (low6, low4, top2) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
    [
        w0 & low6,
        (w2 & low4) | (((w0 >> 6) & top2) << 4),
        w1 & low6,
        ((w2 >> 4) & low4) | (((w1 >> 6) & top2) << 4),
    ]
}

/// Packs 8 scales and 8 mins (each 0..=63) as [`scale_min`] reads them.
pub fn pack_scale_min(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
    }
    s
}

impl BlockQ4K {
    /// Reads a block from (at least) 144 bytes.
    #[inline]
    pub fn read(b: &[u8]) -> BlockQ4K {
        let mut blk = BlockQ4K {
            d: [b[0], b[1]],
            dmin: [b[2], b[3]],
            scales: [0; 12],
            qs: [0; QK_K / 2],
        };
        blk.scales.copy_from_slice(&b[4..16]);
        blk.qs.copy_from_slice(&b[16..144]);
        blk
    }

    /// The 256 values (0..=15) in element order.
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
        q
    }
}

/// Dequantizes a row.
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    for (b, o) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let blk = BlockQ4K::read(b);
        let (d, dmin) = (f16_le_to_f32(blk.d), f16_le_to_f32(blk.dmin));
        dequantize_sub_blocks(d, dmin, &blk.scales, &blk.values(), o);
    }
}

/// `o[32j + l] = (d·sc_j)·q − dmin·m_j` (Q4_K and Q5_K).
pub(crate) fn dequantize_sub_blocks(d: f32, dmin: f32, s: &[u8], q: &[u8; QK_K], o: &mut [f32]) {
    for (j, (oc, qc)) in o.chunks_exact_mut(32).zip(q.chunks_exact(32)).enumerate() {
        let (sc, m) = scale_min(s, j);
        let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
        for (v, &qv) in oc.iter_mut().zip(qc) {
            *v = d1 * f32::from(qv) - m1;
        }
    }
}

/// A simple quantizer for the `levels`-level sub-block types (Q4_K: 16, Q5_K: 32): per
/// sub-block of 32 the range `[min(0, lo), hi]` in `levels − 1` steps, the steps and mins
/// rounded to 6 bits of the super-block's largest. Returns `(d, dmin, scales, values)`.
pub(crate) fn quantize_sub_blocks(x: &[f32], levels: u8) -> (u16, u16, [u8; 12], [u8; QK_K]) {
    let top = f32::from(levels - 1);
    let mut step = [0f32; 8];
    let mut min = [0f32; 8];
    for (j, c) in x.chunks_exact(32).enumerate() {
        let lo = c.iter().copied().fold(0f32, f32::min);
        let hi = c.iter().copied().fold(lo, f32::max);
        step[j] = (hi - lo) / top;
        min[j] = -lo;
    }
    let half = |v: f32| f32_to_f16_bits(v);
    let dh = half(step.iter().copied().fold(0f32, f32::max) / 63.0);
    let mh = half(min.iter().copied().fold(0f32, f32::max) / 63.0);
    let (d, dmin) = (
        f16_le_to_f32(dh.to_le_bytes()),
        f16_le_to_f32(mh.to_le_bytes()),
    );
    let six = |v: f32, s: f32| {
        if s > 0.0 {
            (v / s).round_ties_even().clamp(0.0, 63.0) as u8
        } else {
            0
        }
    };
    let sc: [u8; 8] = core::array::from_fn(|j| six(step[j], d));
    let m: [u8; 8] = core::array::from_fn(|j| six(min[j], dmin));
    let mut q = [0u8; QK_K];
    for (j, (c, qc)) in x.chunks_exact(32).zip(q.chunks_exact_mut(32)).enumerate() {
        let (d1, m1) = (d * f32::from(sc[j]), dmin * f32::from(m[j]));
        let id = if d1 != 0.0 { 1.0 / d1 } else { 0.0 };
        for (qv, &v) in qc.iter_mut().zip(c) {
            *qv = ((v + m1) * id).round_ties_even().clamp(0.0, top) as u8;
        }
    }
    (dh, mh, pack_scale_min(&sc, &m), q)
}

/// Quantizes a row (length a multiple of 256) into Q4_K bytes (a simple quantizer, not
/// llama.cpp's search).
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for c in x.chunks_exact(QK_K) {
        let (d, dmin, scales, q) = quantize_sub_blocks(c, 16);
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&dmin.to_le_bytes());
        out.extend_from_slice(&scales);
        for cc in 0..4 {
            for l in 0..32 {
                out.push(q[64 * cc + l] | (q[64 * cc + 32 + l] << 4));
            }
        }
    }
}

/// The integer sums of one Q4_K/Q5_K block against `a`: `(Σ_j sc_j·Σ q·a, Σ_j m_j·bsums)`.
#[inline]
pub(crate) fn isums(s: &[u8], q: &[u8; QK_K], a: &BlockQ8_K) -> (i32, i32) {
    let (mut isum, mut imin) = (0i32, 0i32);
    for j in 0..8 {
        let (sc, m) = scale_min(s, j);
        let r = 32 * j..32 * j + 32;
        let dot: i32 = q[r.clone()]
            .iter()
            .zip(&a.qs[r])
            .map(|(&w, &x)| i32::from(w) * i32::from(x))
            .sum();
        isum += i32::from(sc) * dot;
        imin += i32::from(m) * (i32::from(a.bsums[2 * j]) + i32::from(a.bsums[2 * j + 1]));
    }
    (isum, imin)
}

/// Scalar reference dot product of one Q4_K row with Q8_K activations.
pub fn vec_dot_ref(w: &[u8], a: &[BlockQ8_K]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BLOCK_BYTES).zip(a) {
        let blk = BlockQ4K::read(wb);
        let (isum, imin) = isums(&blk.scales, &blk.values(), ab);
        let (d, dmin) = (f16_le_to_f32(blk.d), f16_le_to_f32(blk.dmin));
        acc = acc + (d * ab.d) * isum as f32 - (dmin * ab.d) * imin as f32;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_words_are_scale_min_of_every_sub_block() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1000 {
            let s: [u8; 12] = core::array::from_fn(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            });
            let w = scale_min_words(&s);
            let byte = |i: usize, j: usize| (w[i] >> (8 * (j % 4))) as u8;
            for j in 0..8 {
                let got = (byte(j / 4, j), byte(2 + j / 4, j));
                assert_eq!(got, scale_min(&s, j), "{s:?} sub-block {j}");
            }
        }
    }
}
