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
//! Host code cannot be interrupted by wasmtime's epochs, so every forward pass checks the calling
//! thread's deadline ([`with_deadline`]) between layers and fails with `deadline exceeded`.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use edge_llm_kernel::{ForwardError, Model, Session, SessionOptions};
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding, TensorType};
use wasmtime_wasi_nn::{ExecutionContext, Graph, GraphRegistry, Tensor};

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static LAST_ERROR: Cell<Option<String>> = const { Cell::new(None) };
}

/// The detailed message of the last backend error on this thread. wasi-nn's host glue shows
/// the guest only "Failed while accessing backend"; the host adds this detail to its error.
pub fn take_last_error() -> Option<String> {
    LAST_ERROR.with(Cell::take)
}

/// Runs `f` with a deadline that native forward passes on this thread honour.
pub fn with_deadline<R>(deadline: Option<Instant>, f: impl FnOnce() -> R) -> R {
    let previous = DEADLINE.with(|d| d.replace(deadline));
    let result = f();
    DEADLINE.with(|d| d.set(previous));
    result
}

/// The deadline set on the calling thread by [`with_deadline`], read once: the kernel's cancel
/// check is a `Sync` closure over the value, not over this thread's locals.
fn current_deadline() -> Option<Instant> {
    DEADLINE.with(Cell::get)
}

/// The message a native forward pass fails with when the caller's deadline passes.
pub const DEADLINE_MESSAGE: &str = "deadline exceeded";

fn backend_error(message: impl std::fmt::Display) -> BackendError {
    let message = message.to_string();
    LAST_ERROR.with(|e| e.set(Some(message.clone())));
    BackendError::BackendAccess(wasmtime::format_err!("{message}"))
}

/// Loads GGUF graphs for `wasi:nn` (`graph-encoding::ggml`).
#[derive(Clone, Copy, Debug)]
pub struct GgmlBackend {
    threads: usize,
}

impl GgmlBackend {
    /// A backend whose execution contexts use `threads` threads each.
    pub fn new(threads: usize) -> Self {
        Self {
            threads: threads.max(1),
        }
    }

    /// Wraps an already loaded model as a graph (used to preload named models).
    pub fn graph(&self, model: Arc<Model>) -> Graph {
        let graph: Box<dyn BackendGraph> = Box::new(GgmlGraph {
            model,
            threads: self.threads,
        });
        graph.into()
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
        let model = Model::load_packed(bytes.to_vec()).map_err(backend_error)?;
        Ok(self.graph(Arc::new(model)))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

struct GgmlGraph {
    model: Arc<Model>,
    threads: usize,
}

impl BackendGraph for GgmlGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        let n_ctx = self.model.config().n_ctx_train;
        let options = SessionOptions {
            n_ctx,
            threads: self.threads,
        };
        let session = Session::new(self.model.clone(), options).map_err(backend_error)?;
        let context: Box<dyn BackendExecutionContext> = Box::new(GgmlContext { session });
        Ok(context.into())
    }
}

struct GgmlContext {
    session: Session,
}

fn tensor_i32s(tensor: &Tensor, name: &str) -> Result<Vec<u32>, BackendError> {
    if tensor.ty != TensorType::I32 {
        return Err(backend_error(format!(
            "input `{name}` must be I32, got {:?}",
            tensor.ty
        )));
    }
    if !tensor.data.len().is_multiple_of(4) {
        return Err(backend_error(format!(
            "input `{name}` has a partial element"
        )));
    }
    tensor
        .data
        .chunks_exact(4)
        .map(|b| {
            let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            u32::try_from(v)
                .map_err(|_| backend_error(format!("input `{name}` holds negative {v}")))
        })
        .collect()
}

impl GgmlContext {
    fn logits(&mut self, tokens: &[u32], n_past: Option<u32>) -> Result<Tensor, BackendError> {
        if let Some(n_past) = n_past {
            let n_past = n_past as usize;
            if n_past > self.session.len() {
                return Err(backend_error(format!(
                    "n-past {n_past} is beyond the {} cached positions",
                    self.session.len()
                )));
            }
            self.session.truncate(n_past);
        }
        tracing::trace!(tokens = tokens.len(), ?n_past, "native forward");
        let deadline = current_deadline();
        let deadline_passed = move || deadline.is_some_and(|at| Instant::now() >= at);
        let logits = self
            .session
            .forward(tokens, &deadline_passed)
            .map_err(|e| match e {
                ForwardError::Cancelled => backend_error(DEADLINE_MESSAGE),
                other => backend_error(other),
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
            "the ggml backend takes named inputs through compute",
        ))
    }

    fn get_output(&mut self, _id: Id) -> Result<Tensor, BackendError> {
        Err(backend_error(
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
            return Err(backend_error(format!("unknown input `{}`", unknown.name)));
        }
        let output = if find("gguf-header").is_some() {
            NamedTensor {
                name: "gguf-header".into(),
                tensor: self.header(),
            }
        } else {
            let tokens = find("tokens").ok_or_else(|| backend_error("missing input `tokens`"))?;
            let tokens = tensor_i32s(tokens, "tokens")?;
            let n_past = match find("n-past") {
                Some(t) => match tensor_i32s(t, "n-past")?.as_slice() {
                    [n] => Some(*n),
                    _ => return Err(backend_error("input `n-past` must hold one value")),
                },
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

/// Graphs preloaded by name for `load-by-name`; cheap to clone into every store.
#[derive(Clone, Default)]
pub struct Preloaded(HashMap<String, Graph>);

impl Preloaded {
    /// Registers `graph` under `name` (a model may have several names).
    pub fn insert(&mut self, name: impl Into<String>, graph: Graph) {
        self.0.insert(name.into(), graph);
    }
}

impl GraphRegistry for Preloaded {
    fn get(&self, name: &str) -> Option<&Graph> {
        self.0.get(name)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Graph> {
        self.0.get_mut(name)
    }
}
