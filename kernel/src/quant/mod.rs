//! Quantized block formats, one module per type: `#[repr(C)]` block layout with a size
//! assertion, dequantization, quantization where needed, and the scalar reference dot product.
//!
//! The scalar dot products here define the exact arithmetic every SIMD variant must reproduce
//! bit for bit: an exact `i32` integer dot product inside each block (for the K-quants, the
//! sub-block sums times their integer scales, still exact `i32` per 256-block), then the
//! blocks combined in `f32` sequentially in block order, e.g.
//! `acc = acc + (dw * da) * isum [+ mw * sa]`, without fused multiply-add.
//!
//! Each weight type has one activation partner ([`partner`]), as in ggml: [`q8_1::BlockQ8_1`]
//! (32-blocks with an `f32` scale; used as Q8_0 by Q4_0, Q5_0, Q8_0 and IQ4_NL, with its scaled
//! sum by Q4_1 and Q5_1), [`q8_k::BlockQ8_K`] (256-blocks with 16-element sums) for the
//! K-quants, and plain `f32` for F32, F16 and BF16 rows (dequantized exactly, then
//! [`f32::dot_ref`]).

pub mod bf16;
pub mod f16;
pub mod f32;
pub mod iq4_nl;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_0x8;
pub mod q4_1;
pub mod q4_1x8;
pub mod q4_k;
pub mod q4_kx8;
pub mod q5_0;
pub mod q5_0x8;
pub mod q5_1;
pub mod q5_1x8;
pub mod q5_k;
pub mod q5_kx8;
pub mod q6_k;
pub mod q6_kx8;
pub mod q8_0;
pub mod q8_0x8;
pub mod q8_1;
pub mod q8_k;
pub mod rows8;
mod signed_scales;

use crate::gguf::GgmlType;

/// Elements per block of the 32-block quant types.
pub const QK: usize = 32;

/// Elements per block of the K-quants (and of [`q8_k::BlockQ8_K`]).
pub const QK_K: usize = 256;

/// The activation format a weight type's dot product takes.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partner {
    /// `f32` rows (F32, F16, BF16 weights).
    F32,
    /// [`q8_1::BlockQ8_1`] (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL weights).
    Q8_1,
    /// [`q8_k::BlockQ8_K`] (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K weights).
    Q8_K,
}

/// The activation partner of weight type `ty`, or `None` if matrices of that type are not
/// supported.
pub fn partner(ty: GgmlType) -> Option<Partner> {
    use GgmlType::*;
    match ty {
        F32 | F16 | BF16 => Some(Partner::F32),
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | IQ4_NL => Some(Partner::Q8_1),
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => Some(Partner::Q8_K),
        _ => None,
    }
}

/// Dequantizes a row of `ty` (`out.len()` elements, a whole number of blocks) from `bytes`.
/// Returns false, leaving `out` untouched, for a type without a dequantizer.
pub fn dequantize_row(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> bool {
    use GgmlType::*;
    let f = match ty {
        F32 => f32::dequantize_row,
        F16 => f16::dequantize_row,
        BF16 => bf16::dequantize_row,
        Q4_0 => q4_0::dequantize_row,
        Q4_1 => q4_1::dequantize_row,
        Q5_0 => q5_0::dequantize_row,
        Q5_1 => q5_1::dequantize_row,
        Q8_0 => q8_0::dequantize_row,
        IQ4_NL => iq4_nl::dequantize_row,
        Q2_K => q2_k::dequantize_row,
        Q3_K => q3_k::dequantize_row,
        Q4_K => q4_k::dequantize_row,
        Q5_K => q5_k::dequantize_row,
        Q6_K => q6_k::dequantize_row,
        _ => return false,
    };
    f(bytes, out);
    true
}

/// Quantizes a row of `x` (a whole number of `ty`'s blocks) into `ty`'s bytes with this
/// crate's simple quantizers (for tests and the tiny models; not llama.cpp's). Returns false
/// for a type without one.
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) -> bool {
    use GgmlType::*;
    match ty {
        F32 => out.extend(x.iter().flat_map(|v| v.to_le_bytes())),
        F16 => out.extend(
            x.iter()
                .flat_map(|&v| f16::f32_to_f16_bits(v).to_le_bytes()),
        ),
        BF16 => bf16::quantize_row(x, out),
        Q4_0 => q4_0::quantize_row(x, out),
        Q4_1 => q4_1::quantize_row(x, out),
        Q5_0 => q5_0::quantize_row(x, out),
        Q5_1 => q5_1::quantize_row(x, out),
        Q8_0 => q8_0::quantize_row(x, out),
        IQ4_NL => iq4_nl::quantize_row(x, out),
        Q2_K => q2_k::quantize_row(x, out),
        Q3_K => q3_k::quantize_row(x, out),
        Q4_K => q4_k::quantize_row(x, out),
        Q5_K => q5_k::quantize_row(x, out),
        Q6_K => q6_k::quantize_row(x, out),
        _ => return false,
    }
    true
}
