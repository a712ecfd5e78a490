//! The native `wasi:nn` backend: graph encoding `ggml`, served by the kernel crate on all cores.
//!
//! It implements `wasmtime_wasi_nn`'s backend traits, so wasi-nn's own host glue does the WIT
//! plumbing; `load` takes one builder, the GGUF file's bytes. The tensors of `compute` follow
//! the contract the guest uses too, decoded and encoded by `edge-llm-nn-contract` (a forward
//! pass over `tokens` with an optional `n-past`, for logits or, with `hidden-states`, for
//! embeddings; or the model's `gguf-header`).
//!
//! Each store gets its own backend, bound to the store's [`CallState`]: forward passes stop
//! between layers when the store's call passes its deadline or is cancelled, and every failure
//! is recorded there with its typed reason. The forward calls of every store's contexts of one
//! model go through that model's [`Batcher`], which runs the ones ready together as one pass.
//!
//! Every context holds a share of the sandbox's [`KvBudget`] covering its KV cache and the
//! positions its request announced (`n-reserve`); a call that cannot get its share fails with
//! [`NnFailure::KvMemory`] before any compute. A context remembers the tokens its cache holds,
//! so when the budget reclaims its cache while its store is idle, its next call replays them
//! first (the same keys and values: every row of a pass is computed alone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use edge_llm_kernel::{ForwardError, Model, Session, SessionOptions};

use crate::batch::{BatchError, Batcher, SharedSession};
use crate::kv_budget::KvBudget;
use edge_llm_nn_contract as contract;
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
    budget: Arc<KvBudget>,
}

impl GgmlBackend {
    /// A backend whose execution contexts use `threads` threads each, stop when `call` says
    /// and hold their KV caches within `budget`.
    pub fn new(threads: usize, call: Arc<CallState>, budget: Arc<KvBudget>) -> Self {
        Self {
            threads: threads.max(1),
            call,
            budget,
        }
    }

    /// Wraps an already loaded model, with the batcher of its sessions, as a graph of this
    /// backend.
    pub fn graph(&self, batcher: Arc<Batcher>) -> Graph {
        let graph: Box<dyn BackendGraph> = Box::new(GgmlGraph {
            batcher,
            backend: self.clone(),
        });
        graph.into()
    }

    /// The `load-by-name` registry of `models` (name → the model's batcher, shared by every
    /// store) for this backend's store.
    pub fn registry(&self, models: &HashMap<String, Arc<Batcher>>) -> Preloaded {
        Preloaded(
            models
                .iter()
                .map(|(name, batcher)| (name.clone(), self.graph(batcher.clone())))
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
        Ok(self.graph(Arc::new(Batcher::new(Arc::new(model)))))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

struct GgmlGraph {
    batcher: Arc<Batcher>,
    backend: GgmlBackend,
}

impl BackendGraph for GgmlGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        let model = self.batcher.model();
        let n_ctx = model.config().n_ctx_train;
        let options = SessionOptions {
            n_ctx,
            threads: self.backend.threads,
        };
        let call = self.backend.call.clone();
        let session = Session::new(model.clone(), options).map_err(|e| backend_error(&call, e))?;
        let session = Arc::new(Mutex::new(session));
        let id = self.batcher.context_id();
        let budget = self.backend.budget.clone();
        budget.join(id, &session, &call);
        let context: Box<dyn BackendExecutionContext> = Box::new(GgmlContext {
            session,
            id,
            batcher: self.batcher.clone(),
            call,
            budget,
            history: Vec::new(),
            reserved: 0,
        });
        Ok(context.into())
    }
}

struct GgmlContext {
    session: SharedSession,
    /// This context's id in its model's batcher.
    id: u64,
    batcher: Arc<Batcher>,
    call: Arc<CallState>,
    budget: Arc<KvBudget>,
    /// The tokens at positions `0..`: the session's cache holds a prefix of them (all, unless
    /// the budget reclaimed it).
    history: Vec<u32>,
    /// Positions the current request announced it will hold (`n-reserve`; 0 after a
    /// truncation until announced again).
    reserved: usize,
}

impl Drop for GgmlContext {
    fn drop(&mut self) {
        self.batcher.forget(self.id);
        self.budget.leave(self.id);
    }
}

/// The contract's view of a wasi-nn tensor.
fn contract_ref(t: &Tensor) -> contract::TensorRef<'_> {
    let ty = match t.ty {
        TensorType::Fp16 => contract::ElementType::Fp16,
        TensorType::Fp32 => contract::ElementType::Fp32,
        TensorType::Fp64 => contract::ElementType::Fp64,
        TensorType::Bf16 => contract::ElementType::Bf16,
        TensorType::U8 => contract::ElementType::U8,
        TensorType::I32 => contract::ElementType::I32,
        TensorType::I64 => contract::ElementType::I64,
    };
    contract::TensorRef {
        ty,
        dims: &t.dimensions,
        data: &t.data,
    }
}

/// A tensor the contract encoded, as a wasi-nn tensor.
fn wasi_tensor(t: contract::Tensor) -> Tensor {
    let ty = match t.ty {
        contract::ElementType::Fp16 => TensorType::Fp16,
        contract::ElementType::Fp32 => TensorType::Fp32,
        contract::ElementType::Fp64 => TensorType::Fp64,
        contract::ElementType::Bf16 => TensorType::Bf16,
        contract::ElementType::U8 => TensorType::U8,
        contract::ElementType::I32 => TensorType::I32,
        contract::ElementType::I64 => TensorType::I64,
    };
    Tensor::new(t.dims, ty, t.data)
}

impl GgmlContext {
    /// Readies `session` for appending `tokens`: keeps `n_past` positions if given, notes the
    /// positions the request announced, and takes the KV memory the call needs from the
    /// budget. Returns what the cache lacks of the history (positions a reclaim dropped, to
    /// run again before `tokens`).
    fn prepare(
        &mut self,
        session: &mut Session,
        tokens: usize,
        n_past: Option<usize>,
        reserve: Option<usize>,
    ) -> Result<Vec<u32>, BackendError> {
        if let Some(n_past) = n_past {
            if n_past > self.history.len() {
                let cached = self.history.len();
                let why = format!("n-past {n_past} is beyond the {cached} cached positions");
                return Err(backend_error(&self.call, why));
            }
            self.history.truncate(n_past);
            session.truncate(n_past.min(session.len()));
            self.reserved = 0;
        }
        if let Some(reserve) = reserve {
            self.reserved = reserve.min(session.n_ctx());
        }
        let positions = (self.history.len() + tokens).max(self.reserved);
        let need = session
            .cache_bytes()
            .max(session.cache_bytes_for(positions));
        if let Err(e) = self.budget.hold(self.id, need) {
            // The request fails: hold what the cache holds (never more than before).
            self.reserved = 0;
            let _ = self.budget.hold(self.id, session.cache_bytes());
            return Err(fail(&self.call, NnFailure::KvMemory(e)));
        }
        Ok(self
            .history
            .get(session.len()..)
            .unwrap_or_default()
            .to_vec())
    }

    fn logits(
        &mut self,
        tokens: Vec<u32>,
        n_past: Option<usize>,
        reserve: Option<usize>,
    ) -> Result<Tensor, BackendError> {
        let session = self.session.clone();
        let mut run = {
            let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
            self.prepare(&mut session, tokens.len(), n_past, reserve)?
        };
        tracing::trace!(
            tokens = tokens.len(),
            replay = run.len(),
            ?n_past,
            context = self.id,
            "native forward"
        );
        run.extend_from_slice(&tokens);
        let call = &*self.call;
        let started = std::time::Instant::now();
        let logits = blocking(|| {
            self.batcher
                .forward(self.id, &self.session, run, self.call.clone())
        })
        .map_err(|e| match e {
            BatchError::Forward(ForwardError::Cancelled) => {
                let reason = call.stop_reason().unwrap_or(NnFailure::Cancelled);
                fail(call, reason)
            }
            other => backend_error(call, other),
        })?;
        self.history.extend_from_slice(&tokens);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::trace!(
            tokens = tokens.len(),
            ms,
            context = self.id,
            "native forward done"
        );
        let logits = contract::logits_tensor(logits).map_err(|e| backend_error(call, e))?;
        Ok(wasi_tensor(logits))
    }

    /// Hidden states for embeddings: run on this context's session alone, not batched (an
    /// embedding request is one prefill-sized pass, which batching would not speed up).
    fn hidden_states(
        &mut self,
        tokens: Vec<u32>,
        n_past: Option<usize>,
    ) -> Result<Tensor, BackendError> {
        let call = self.call.clone();
        let shared = self.session.clone();
        let mut session = shared.lock().unwrap_or_else(PoisonError::into_inner);
        let mut run = self.prepare(&mut session, tokens.len(), n_past, None)?;
        let replayed = run.len();
        tracing::trace!(
            tokens = tokens.len(),
            replayed,
            ?n_past,
            "native hidden states"
        );
        run.extend_from_slice(&tokens);
        let stop = || call.stop_reason().is_some();
        let states = blocking(|| session.forward_hidden(&run, &stop)).map_err(|e| match e {
            ForwardError::Cancelled => {
                let reason = call.stop_reason().unwrap_or(NnFailure::Cancelled);
                fail(&call, reason)
            }
            other => backend_error(&call, other),
        })?;
        self.history.extend_from_slice(&tokens);
        let n_embd = session.model().config().n_embd;
        let states = &states[replayed * n_embd..];
        let states =
            contract::encode_hidden_states(states, n_embd).map_err(|e| backend_error(&call, e))?;
        Ok(wasi_tensor(states))
    }

    fn header(&self) -> Result<Tensor, BackendError> {
        let model = self.batcher.model();
        let bytes = model.bytes();
        let header = contract::encode_header(model.gguf().header_prefix(bytes), bytes.len() as u64)
            .map_err(|e| backend_error(&self.call, e))?;
        Ok(wasi_tensor(header))
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
        let request = contract::decode_request(
            inputs
                .iter()
                .map(|t| (t.name.as_str(), contract_ref(&t.tensor))),
        )
        .map_err(|e| backend_error(&self.call, e))?;
        let output = match request {
            contract::Request::Header => NamedTensor {
                name: contract::GGUF_HEADER.into(),
                tensor: self.header()?,
            },
            contract::Request::Forward {
                tokens,
                n_past,
                reserve,
            } => NamedTensor {
                name: contract::LOGITS.into(),
                tensor: self.logits(tokens, n_past, reserve)?,
            },
            contract::Request::Hidden { tokens, n_past } => NamedTensor {
                name: contract::HIDDEN_STATES.into(),
                tensor: self.hidden_states(tokens, n_past)?,
            },
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

/// Runs `f`, which computes or waits for a batched step, without stalling the async runtime
/// whose worker thread calls it: on tokio's multi-threaded runtime the worker first hands its
/// queued tasks to another thread (`block_in_place`). Among those tasks may be a connection's,
/// whose hang-up cancels a call: left on a worker blocked in compute, a hung-up client went
/// unnoticed until that worker was free (one of four abandoned 3000-token prefills ran to its
/// end on a busy machine). Elsewhere `f` just runs.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
