//! edge-llm kernel: a hardened GGUF reader, quantized kernels (scalar reference plus SIMD for
//! x86 AVX2, wasm simd128 and aarch64 NEON) and the llama forward pass.
//!
//! Pure Rust; compiles natively and for `wasm32-wasip2`. The `threads` feature (native only)
//! splits matmul rows and attention over a team of helper threads (`model::team`).

pub mod activation;
pub mod gguf;

pub use gguf::{Gguf, GgufError};
pub mod model;
pub mod ops;
pub mod quant;
pub mod requantize;
pub mod rng;
pub mod simd;
pub mod tiny;

pub use model::{
    perplexity, Batch, Config, ForwardError, Model, ModelBytes, ModelError, Perplexity, Session,
    SessionOptions, Step,
};
