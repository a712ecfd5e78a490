//! The wasi-nn backend: the host runs the forward pass (graph encoding `ggml`).
//!
//! Tensor contract (the host side is `edge-llm-host`'s `nn` module):
//! - `compute([("tokens", I32 [n]), ("n-past", I32 [1])?])` → `[("logits", FP32 [1, n_vocab])]`:
//!   truncates the context's KV cache to `n-past` positions when given, appends `tokens`, and
//!   returns the logits of the last one;
//! - `compute([("gguf-header", U8 [0])])` → `[("gguf-header", U8 [len])]`: the model file's bytes
//!   before its tensor data followed by the file's length (u64 little-endian), from which the
//!   tokenizer and chat template are built (`Gguf::parse_header`).

use crate::bindings::wasi::nn::errors::{Error as NnError, ErrorCode};
use crate::bindings::wasi::nn::graph::{self, ExecutionTarget, Graph, GraphEncoding};
use crate::bindings::wasi::nn::inference::GraphExecutionContext;
use crate::bindings::wasi::nn::tensor::{Tensor, TensorType};
use crate::generate::{Backend, BackendError};

/// Why wasi-nn could not serve a model.
pub enum NnOpenError {
    /// The host has no backend or graph for it: fall back to the kernel.
    Unavailable(String),
    /// The host has one and it failed.
    Failed(String),
    /// The host serves it, but its metadata is unusable here.
    Load(crate::model::LoadError),
}

fn describe(e: &NnError) -> String {
    format!("wasi-nn {:?}: {}", e.code(), e.data())
}

/// Loads a graph the host preloaded under one of `names`.
pub fn load_by_name(names: &[&str]) -> Result<Graph, NnOpenError> {
    let mut last = String::from("no names to try");
    for name in names {
        match graph::load_by_name(name) {
            Ok(g) => return Ok(g),
            Err(e) if matches!(e.code(), ErrorCode::NotFound) => last = describe(&e),
            Err(e) => return Err(NnOpenError::Failed(describe(&e))),
        }
    }
    Err(NnOpenError::Unavailable(last))
}

/// Hands the model's bytes to the host's `ggml` backend.
pub fn load_bytes(bytes: Vec<u8>) -> Result<Graph, NnOpenError> {
    graph::load(&[bytes], GraphEncoding::Ggml, ExecutionTarget::Cpu).map_err(|e| match e.code() {
        ErrorCode::InvalidEncoding | ErrorCode::UnsupportedOperation | ErrorCode::NotFound => {
            NnOpenError::Unavailable(describe(&e))
        }
        _ => NnOpenError::Failed(describe(&e)),
    })
}

fn context(graph: &Graph) -> Result<GraphExecutionContext, String> {
    graph.init_execution_context().map_err(|e| describe(&e))
}

/// The GGUF header of a graph's model.
pub fn header(graph: &Graph) -> Result<Vec<u8>, String> {
    let ctx = context(graph)?;
    let request = Tensor::new(&[0], TensorType::U8, &[]);
    let outputs = ctx
        .compute(vec![("gguf-header".to_string(), request)])
        .map_err(|e| describe(&e))?;
    outputs
        .into_iter()
        .find(|(name, _)| name == "gguf-header")
        .map(|(_, t)| t.data())
        .ok_or_else(|| "the host's backend returned no `gguf-header`".to_string())
}

/// One execution context: a KV cache in the host.
pub struct NnBackend {
    ctx: GraphExecutionContext,
    n_ctx: usize,
    tokens: Vec<u32>,
    truncate_to: Option<usize>,
    logits: Vec<f32>,
}

impl NnBackend {
    /// A new execution context on `graph`, limited to `n_ctx` positions.
    pub fn new(graph: &Graph, n_ctx: usize) -> Result<Self, BackendError> {
        Ok(Self {
            ctx: context(graph).map_err(BackendError::Failed)?,
            n_ctx,
            tokens: Vec::new(),
            truncate_to: None,
            logits: Vec::new(),
        })
    }
}

fn i32_bytes(values: impl IntoIterator<Item = u32>) -> Vec<u8> {
    values
        .into_iter()
        .flat_map(|v| (v as i32).to_le_bytes())
        .collect()
}

impl Backend for NnBackend {
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn cached_tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn truncate(&mut self, n: usize) -> Result<(), BackendError> {
        if n < self.tokens.len() {
            self.tokens.truncate(n);
            self.truncate_to = Some(n);
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.tokens.clear();
        self.truncate_to = Some(0);
    }

    fn prefill_and_logits(&mut self, tokens: &[u32]) -> Result<&[f32], BackendError> {
        let needed = self.tokens.len() + tokens.len();
        if needed > self.n_ctx {
            return Err(BackendError::ContextFull {
                needed,
                n_ctx: self.n_ctx,
            });
        }
        let n = u32::try_from(tokens.len())
            .map_err(|_| BackendError::Failed("batch too large".into()))?;
        let mut inputs = vec![(
            "tokens".to_string(),
            Tensor::new(&[n], TensorType::I32, &i32_bytes(tokens.iter().copied())),
        )];
        if let Some(n_past) = self.truncate_to {
            inputs.push((
                "n-past".to_string(),
                Tensor::new(&[1], TensorType::I32, &i32_bytes([n_past as u32])),
            ));
        }
        let outputs = self
            .ctx
            .compute(inputs)
            .map_err(|e| BackendError::Failed(describe(&e)))?;
        self.truncate_to = None;
        let (_, logits) = outputs
            .into_iter()
            .find(|(name, _)| name == "logits")
            .ok_or_else(|| BackendError::Failed("the host returned no `logits`".into()))?;
        let data = logits.data();
        self.logits.clear();
        self.logits.extend(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        self.tokens.extend_from_slice(tokens);
        Ok(&self.logits)
    }
}
