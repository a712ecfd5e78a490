//! IQ4_NL weights: 32 weights in 18 bytes, `w = d·K[q]` with half-float `d`, 4-bit `q` and the
//! fixed non-linear table [`KVALUES`]; nibbles laid out as in Q4_0 (byte `j`: element `j` low,
//! element `j + 16` high). The activation side is a [`BlockQ8_1`] used as Q8_0.

use super::f16::{f16_le_to_f32, f32_to_f16_bits};
use super::q8_1::BlockQ8_1;
use super::QK;

/// The 16 values a nibble selects.
pub const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// One IQ4_NL block as laid out in GGUF.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockIq4Nl {
    /// Scale, half float.
    pub d: [u8; 2],
    /// Table indices, two per byte.
    pub qs: [u8; QK / 2],
}
/// Bytes per block.
pub const BLOCK_BYTES: usize = 18;
const _: () = assert!(size_of::<BlockIq4Nl>() == BLOCK_BYTES);

impl BlockIq4Nl {
    /// Reads a block from (at least) 18 bytes.
    #[inline]
    pub fn read(b: &[u8]) -> BlockIq4Nl {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[2..18]);
        BlockIq4Nl {
            d: [b[0], b[1]],
            qs,
        }
    }

    /// The 32 table values in element order.
    #[inline]
    pub fn values(&self) -> [i8; QK] {
        let mut v = [0i8; QK];
        for j in 0..16 {
            v[j] = KVALUES[usize::from(self.qs[j] & 15)];
            v[j + 16] = KVALUES[usize::from(self.qs[j] >> 4)];
        }
        v
    }
}

/// Dequantizes a row.
pub fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    for (b, o) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let blk = BlockIq4Nl::read(b);
        let d = f16_le_to_f32(blk.d);
        for (v, k) in o.iter_mut().zip(blk.values()) {
            *v = d * f32::from(k);
        }
    }
}

/// The index of the table value nearest to `x` (first on ties).
fn nearest(x: f32) -> u8 {
    let mut best = 0;
    for (i, &k) in KVALUES.iter().enumerate() {
        if (f32::from(k) - x).abs() < (f32::from(KVALUES[best]) - x).abs() {
            best = i;
        }
    }
    best as u8
}

/// Quantizes a row (length a multiple of 32) into IQ4_NL bytes: the largest magnitude maps to
/// the table's end, each value to its nearest table entry (a simple quantizer, not llama.cpp's
/// search).
pub fn quantize_row(x: &[f32], out: &mut Vec<u8>) {
    for c in x.chunks_exact(QK) {
        let mut max = 0f32;
        for &v in c {
            if v.abs() > max.abs() {
                max = v;
            }
        }
        let d = f16_le_to_f32(f32_to_f16_bits(max / -127.0).to_le_bytes());
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        for j in 0..16 {
            out.push(nearest(c[j] * id) | (nearest(c[j + 16] * id) << 4));
        }
    }
}

/// Scalar reference dot product of one IQ4_NL row with Q8_1 (used as Q8_0) activations.
pub fn vec_dot_ref(w: &[u8], a: &[BlockQ8_1]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(BLOCK_BYTES).zip(a) {
        let blk = BlockIq4Nl::read(wb);
        let mut isum = 0i32;
        for (k, &x) in blk.values().into_iter().zip(&ab.qs) {
            isum += i32::from(k) * i32::from(x);
        }
        acc += (f16_le_to_f32(blk.d) * ab.d) * isum as f32;
    }
    acc
}
