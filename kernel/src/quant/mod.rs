//! Quantized block formats, one module per type: `#[repr(C)]` block layout with a size
//! assertion, dequantization, quantization where needed, and the scalar reference dot product.
//!
//! The scalar dot products here define the exact arithmetic every SIMD variant must reproduce
//! bit for bit: an exact `i32` integer dot product inside each 32-block, then the blocks
//! combined in `f32` sequentially in block order, `acc = acc + (dw * da) * isum [+ mw * sa]`,
//! without fused multiply-add.

pub mod f16;
pub mod f32;
pub mod q4_0;
pub mod q4_1;
pub mod q4_1x8;
pub mod q8_0;
pub mod q8_1;

/// Elements per block of the 32-block quant types.
pub const QK: usize = 32;
