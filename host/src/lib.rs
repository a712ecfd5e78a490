//! edge-llm's host: runs the `edge:llm` inference component under wasmtime and gives it a native
//! `wasi:nn` backend.
//!
//! ```no_run
//! use edge_llm_host::{api, Runtime, RuntimeOptions};
//!
//! # fn main() -> Result<(), edge_llm_host::HostError> {
//! let mut options = RuntimeOptions::new("target/wasm32-wasip2/release/edge_llm_guest.wasm");
//! options.model_dir = Some("models".into());
//! let mut runtime = Runtime::new(options)?;
//! runtime.preload("models/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), &["smollm2-135m-instruct".into()])?;
//! let mut instance = runtime.instantiate()?;
//! let model = instance.open("smollm2-135m-instruct", &api::OpenOptions { backend: None, context_length: None })?;
//! let answer = instance.complete(&model, "The capital of France is", &edge_llm_host::greedy(16))?;
//! println!("{}", answer.text);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

/// Generated from `wit/llm.wit`; the WIT doc comments are the documentation.
#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "edge:llm/llm-inference",
    });
}

pub mod batch;
pub mod cache;
mod call;
mod error;
pub mod kv_budget;
pub mod models;
pub mod nn;
mod packed;
mod runtime;
pub mod sandbox;

pub use bindings::exports::edge::llm::inference as api;
pub use call::{CallState, NnFailure};
pub use error::HostError;
pub use kv_budget::{KvBudget, KvMemoryError};
pub use runtime::{Instance, ModelHandle, Runtime, StreamHandle};
pub use sandbox::{RuntimeOptions, GUEST_MODEL_DIR};

/// Greedy parameters: temperature 0, no filters, no penalty, `max_tokens` tokens.
pub fn greedy(max_tokens: u32) -> api::Params {
    api::Params {
        max_tokens,
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        seed: 0,
        stop: Vec::new(),
        ignore_eos: false,
    }
}
