//! Shared helpers for the guest's integration tests: locating the default model and the
//! llama.cpp reference outputs.
#![allow(dead_code)]

use std::path::PathBuf;

use edge_llm_guest::tokenizer::Tokenizer;
use edge_llm_kernel::gguf::Gguf;

/// File name of the default model.
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The default model: `$EDGE_LLM_MODEL` or `models/` at the workspace root.
pub fn model_path() -> PathBuf {
    match std::env::var_os("EDGE_LLM_MODEL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(MODEL_FILE),
    }
}

/// Reads the default model's bytes, failing with a clear message when it is missing.
pub fn model_bytes() -> Vec<u8> {
    let path = model_path();
    match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => panic!(
            "default model {} is missing ({e}): run `just model` to fetch it",
            path.display()
        ),
    }
}

/// Parses the default model's GGUF header and metadata.
pub fn model_gguf() -> Gguf {
    Gguf::parse(&model_bytes()).expect("the default model parses")
}

/// The directory of llama.cpp reference outputs: `$EDGE_LLM_REFS` or `shared/refs` beside the
/// repository.
pub fn refs_dir() -> PathBuf {
    match std::env::var_os("EDGE_LLM_REFS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/refs"),
    }
}

/// Loads one reference JSON file.
pub fn load_ref(name: &str) -> serde_json::Value {
    let path = refs_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reference file {} is missing ({e}); set EDGE_LLM_REFS to the refs directory",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("reference JSON parses")
}

/// A JSON array of numbers as token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// The tiny test model's GGUF (kernel's deterministic generator).
pub fn tiny_gguf() -> Gguf {
    Gguf::parse(&edge_llm_kernel::tiny::tiny_model_gguf(7)).expect("the tiny model parses")
}

/// The tiny test model's tokenizer.
pub fn tiny_tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(&tiny_gguf()).expect("the tiny tokenizer builds")
}
