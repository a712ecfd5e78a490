//! Shared helpers of the integration tests: the real model and the reference data (found by
//! `edge-llm-refs`).
#![allow(dead_code)]

use std::sync::Arc;

use edge_llm_kernel::Model;

#[allow(unused_imports)] // each test binary uses its own part of this module
pub use edge_llm_refs::{default_model as model_path, greedy as greedy_items};

/// Loads the real model, failing with a message naming `just model` if it is missing.
pub fn load_model() -> Arc<Model> {
    let bytes = edge_llm_refs::default_model_bytes();
    Arc::new(Model::load(Arc::new(bytes)).expect("the reference model loads"))
}

/// Index of the maximum (first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
