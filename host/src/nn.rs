//! The native `wasi:nn` backend: graph encoding `ggml`, served by the kernel crate on all cores.
//!
//! It implements `wasmtime_wasi_nn`'s backend traits, so wasi-nn's own host glue does the WIT
//! plumbing. The tensor contract (also in `wit/llm.wit`'s docs and ARCHITECTURE.md):
//!
//! | call | inputs | outputs |
//! | --- | --- | --- |
//! | load | one builder: the GGUF file's bytes | — |
//! | compute | `tokens`: I32 `[n]`, optional `n-past`: I32 `[1]` | `logits`: FP32 `[1, n_vocab]` of the last token |
//! | compute | `gguf-header`: U8 `[0]` | `gguf-header`: U8 `[len]`: the file's bytes before the tensor data, then its length (u64 LE) |
//!
//! `n-past` first truncates the context's KV cache to that many positions (0 = start over), so a
//! caller can reuse a shared prompt prefix; without it, tokens are appended.
//!
//! Each store gets its own backend, bound to the store's [`CallState`]: forward passes stop
//! between layers when the store's call passes its deadline or is cancelled, and every failure
//! is recorded there with its typed reason.

use std::collections::HashMap;
use std::sync::Arc;

use edge_llm_kernel::{ForwardError, Model, Session, SessionOptions};
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding, TensorType};
use wasmtime_wasi_nn::{ExecutionContext, Graph, GraphRegistry, Tensor};

use crate::call::{CallState, NnFailure};

/// Records `failure` in the store's call state and turns it into wasi-nn's error.
fn fail(call: &CallState, failure: NnFailure) -> BackendError {
    let error = BackendError::BackendAccess(wasmtime::format_err!("{failure}"));
    call.fail(failure);
    error
}

/// A [`NnFailure::Backend`] failure.
fn backend_error(call: &CallState, message: impl std::fmt::Display) -> BackendError {
    fail(call, NnFailure::Backend(message.to_string()))
}

/// Loads GGUF graphs for `wasi:nn` (`graph-encoding::ggml`) in one store.
#[derive(Clone, Debug)]
pub struct GgmlBackend {
    threads: usize,
    call: Arc<CallState>,
}

impl GgmlBackend {
    /// A backend whose execution contexts use `threads` threads each and stop when `call` says.
    pub fn new(threads: usize, call: Arc<CallState>) -> Self {
        Self {
            threads: threads.max(1),
            call,
        }
    }

    /// Wraps an already loaded model as a graph of this backend.
    pub fn graph(&self, model: Arc<Model>) -> Graph {
        let graph: Box<dyn BackendGraph> = Box::new(GgmlGraph {
            model,
            backend: self.clone(),
        });
        graph.into()
    }

    /// The `load-by-name` registry of `models` (name → model) for this backend's store.
    pub fn registry(&self, models: &HashMap<String, Arc<Model>>) -> Preloaded {
        Preloaded(
            models
                .iter()
                .map(|(name, model)| (name.clone(), self.graph(model.clone())))
                .collect(),
        )
    }
}

impl BackendInner for GgmlBackend {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Ggml
    }

    fn load(
        &mut self,
        builders: &[&[u8]],
        _target: ExecutionTarget,
    ) -> Result<Graph, BackendError> {
        let [bytes] = builders else {
            return Err(BackendError::InvalidNumberOfBuilders(1, builders.len()));
        };
        tracing::debug!(bytes = bytes.len(), "wasi-nn load of a ggml graph");
        let model = Model::load_packed(bytes.to_vec()).map_err(|e| backend_error(&self.call, e))?;
        Ok(self.graph(Arc::new(model)))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

struct GgmlGraph {
    model: Arc<Model>,
    backend: GgmlBackend,
}

impl BackendGraph for GgmlGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        let n_ctx = self.model.config().n_ctx_train;
        let options = SessionOptions {
            n_ctx,
            threads: self.backend.threads,
        };
        let call = self.backend.call.clone();
        let session =
            Session::new(self.model.clone(), options).map_err(|e| backend_error(&call, e))?;
        let context: Box<dyn BackendExecutionContext> = Box::new(GgmlContext { session, call });
        Ok(context.into())
    }
}

struct GgmlContext {
    session: Session,
    call: Arc<CallState>,
}

fn tensor_i32s(tensor: &Tensor, name: &str) -> Result<Vec<u32>, String> {
    if tensor.ty != TensorType::I32 {
        return Err(format!("input `{name}` must be I32, got {:?}", tensor.ty));
    }
    if !tensor.data.len().is_multiple_of(4) {
        return Err(format!("input `{name}` has a partial element"));
    }
    tensor
        .data
        .chunks_exact(4)
        .map(|b| {
            let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            u32::try_from(v).map_err(|_| format!("input `{name}` holds negative {v}"))
        })
        .collect()
}

impl GgmlContext {
    fn logits(&mut self, tokens: &[u32], n_past: Option<u32>) -> Result<Tensor, BackendError> {
        if let Some(n_past) = n_past {
            let n_past = n_past as usize;
            if n_past > self.session.len() {
                return Err(backend_error(
                    &self.call,
                    format!(
                        "n-past {n_past} is beyond the {} cached positions",
                        self.session.len()
                    ),
                ));
            }
            self.session.truncate(n_past);
        }
        tracing::trace!(tokens = tokens.len(), ?n_past, "native forward");
        let call = &*self.call;
        let must_stop = || call.stop_reason().is_some();
        let logits = self
            .session
            .forward(tokens, &must_stop)
            .map_err(|e| match e {
                ForwardError::Cancelled => {
                    let reason = call.stop_reason().unwrap_or(NnFailure::Cancelled);
                    fail(call, reason)
                }
                other => backend_error(call, other),
            })?;
        let data = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(Tensor::new(
            vec![1, logits.len() as u32],
            TensorType::Fp32,
            data,
        ))
    }

    fn header(&self) -> Tensor {
        let model = self.session.model();
        let header = model.gguf().header_with_len(model.bytes());
        Tensor::new(vec![header.len() as u32], TensorType::U8, header)
    }
}

impl BackendExecutionContext for GgmlContext {
    fn set_input(&mut self, _id: Id, _tensor: &Tensor) -> Result<(), BackendError> {
        Err(backend_error(
            &self.call,
            "the ggml backend takes named inputs through compute",
        ))
    }

    fn get_output(&mut self, _id: Id) -> Result<Tensor, BackendError> {
        Err(backend_error(
            &self.call,
            "the ggml backend returns outputs from compute",
        ))
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        let inputs = inputs.unwrap_or_default();
        let find = |name: &str| inputs.iter().find(|t| t.name == name).map(|t| &t.tensor);
        if let Some(unknown) = inputs
            .iter()
            .find(|t| !matches!(t.name.as_str(), "tokens" | "n-past" | "gguf-header"))
        {
            let message = format!("unknown input `{}`", unknown.name);
            return Err(backend_error(&self.call, message));
        }
        let output = if find("gguf-header").is_some() {
            NamedTensor {
                name: "gguf-header".into(),
                tensor: self.header(),
            }
        } else {
            let call = &*self.call;
            let tokens =
                find("tokens").ok_or_else(|| backend_error(call, "missing input `tokens`"))?;
            let tokens = tensor_i32s(tokens, "tokens").map_err(|e| backend_error(call, e))?;
            let n_past = match find("n-past") {
                Some(t) => {
                    match tensor_i32s(t, "n-past").map_err(|e| backend_error(call, e))?[..] {
                        [n] => Some(n),
                        _ => return Err(backend_error(call, "input `n-past` must hold one value")),
                    }
                }
                None => None,
            };
            NamedTensor {
                name: "logits".into(),
                tensor: self.logits(&tokens, n_past)?,
            }
        };
        Ok(Some(vec![output]))
    }
}

/// One store's graphs for `load-by-name`, by name ([`GgmlBackend::registry`]).
#[derive(Default)]
pub struct Preloaded(HashMap<String, Graph>);

impl GraphRegistry for Preloaded {
    fn get(&self, name: &str) -> Option<&Graph> {
        self.0.get(name)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Graph> {
        self.0.get_mut(name)
    }
}
