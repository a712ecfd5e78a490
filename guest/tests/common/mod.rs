//! Shared helpers for the guest's integration tests: locating the default model and the
//! llama.cpp reference outputs.
#![allow(dead_code, unused_imports)]

use edge_llm_guest::tokenizer::Tokenizer;
use edge_llm_kernel::gguf::Gguf;

pub use edge_llm_refs::json as load_ref;
pub use edge_llm_refs::{default_model as model_path, default_model_bytes as model_bytes, ids};

/// Parses the default model's GGUF header and metadata.
pub fn model_gguf() -> Gguf {
    Gguf::parse(&model_bytes()).expect("the default model parses")
}

/// The tiny test model's GGUF (kernel's deterministic generator).
pub fn tiny_gguf() -> Gguf {
    Gguf::parse(&edge_llm_kernel::tiny::tiny_model_gguf(7)).expect("the tiny model parses")
}

/// The tiny test model's tokenizer.
pub fn tiny_tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(&tiny_gguf()).expect("the tiny tokenizer builds")
}
