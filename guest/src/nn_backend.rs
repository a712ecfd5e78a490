//! The wasi-nn backend: the host runs the forward pass (graph encoding `ggml`).
//!
//! The tensor contract (names, types, shapes, byte layouts) is `edge-llm-nn-contract`, shared
//! with the host's backend (`edge-llm-host`'s `nn` module): a forward pass sends `tokens` (and
//! `n-past` after a truncation) and reads `logits`; opening a model asks for its `gguf-header`,
//! from which the tokenizer and chat template are built (`Gguf::parse_header`).
//!
//! A host may have another `ggml` backend than ours (one that loads the model but knows nothing
//! of this contract): a graph whose execution context does not answer the `gguf-header` request
//! is [`NnOpenError::Unavailable`], so `open` serves the model with the kernel instead.

use edge_llm_nn_contract::{self as contract, ContractError, ElementType};

use crate::bindings::wasi::nn::errors::{Error as NnError, ErrorCode};
use crate::bindings::wasi::nn::graph::{self, ExecutionTarget, Graph, GraphEncoding};
use crate::bindings::wasi::nn::inference::GraphExecutionContext;
use crate::bindings::wasi::nn::tensor::{Tensor, TensorType};
use crate::generate::{Backend, BackendError};

/// Why wasi-nn could not serve a model.
pub enum NnOpenError {
    /// The host has no backend or graph for it: fall back to the kernel.
    Unavailable(String),
    /// The host's backend loaded it but does not follow the tensor contract (another `ggml`
    /// backend than ours): fall back to the kernel.
    Foreign(String),
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

fn element_type(ty: TensorType) -> ElementType {
    match ty {
        TensorType::Fp16 => ElementType::Fp16,
        TensorType::Fp32 => ElementType::Fp32,
        TensorType::Fp64 => ElementType::Fp64,
        TensorType::Bf16 => ElementType::Bf16,
        TensorType::U8 => ElementType::U8,
        TensorType::I32 => ElementType::I32,
        TensorType::I64 => ElementType::I64,
    }
}

fn tensor_type(ty: ElementType) -> TensorType {
    match ty {
        ElementType::Fp16 => TensorType::Fp16,
        ElementType::Fp32 => TensorType::Fp32,
        ElementType::Fp64 => TensorType::Fp64,
        ElementType::Bf16 => TensorType::Bf16,
        ElementType::U8 => TensorType::U8,
        ElementType::I32 => TensorType::I32,
        ElementType::I64 => TensorType::I64,
    }
}

/// A named `wasi:nn` input from an encoded contract tensor.
fn input(name: &str, t: &contract::Tensor) -> (String, Tensor) {
    (
        name.to_string(),
        Tensor::new(&t.dims, tensor_type(t.ty), &t.data),
    )
}

/// The output `name` of a `compute` call, as a contract tensor to decode.
fn output(
    outputs: &[(String, Tensor)],
    name: &'static str,
) -> Result<contract::Tensor, ContractError> {
    outputs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| contract::Tensor {
            ty: element_type(t.ty()),
            dims: t.dimensions(),
            data: t.data(),
        })
        .ok_or(ContractError::Missing { tensor: name })
}

/// The model's header as a graph's backend gives it (`prefix` then the file length, the layout
/// of `Gguf::header_with_len`). A backend that does not answer the request as the contract says
/// (it fails, or returns no well-formed `gguf-header`) is not ours: [`NnOpenError::Foreign`].
pub fn header(graph: &Graph) -> Result<Vec<u8>, NnOpenError> {
    let foreign = |why: String| {
        NnOpenError::Foreign(format!(
            "the host's wasi:nn backend loaded the model but does not answer `{}`: {why}",
            contract::GGUF_HEADER
        ))
    };
    let ctx = context(graph).map_err(foreign)?;
    let outputs = ctx
        .compute(vec![input(
            contract::GGUF_HEADER,
            &contract::header_request(),
        )])
        .map_err(|e| foreign(describe(&e)))?;
    let header = output(&outputs, contract::GGUF_HEADER).map_err(|e| foreign(e.to_string()))?;
    contract::decode_header(header.as_ref())
        .map(|h| h.as_bytes().to_vec())
        .map_err(|e| foreign(e.to_string()))
}

/// One execution context: a KV cache in the host.
pub struct NnBackend {
    ctx: GraphExecutionContext,
    n_ctx: usize,
    tokens: Vec<u32>,
    truncate_to: Option<usize>,
    /// Positions to announce with the next forward pass (`n-reserve`).
    reserve: Option<usize>,
    /// The last logits as the host sent them: little-endian `f32`s, read in place where they
    /// can be (a decoded copy cost each token a fill and a copy of ~200 KB).
    raw_logits: Vec<u8>,
    /// The last logits decoded, where their bytes are not aligned for `f32` (the guest's
    /// allocator aligns every list it receives, so this is a fallback).
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
            reserve: None,
            raw_logits: Vec::new(),
            logits: Vec::new(),
        })
    }

    /// One `compute` of `tokens` after the cached positions: with the pending truncation, and
    /// asking for the hidden states (`hidden`) or the logits, the latter with the positions
    /// announced by `reserve`.
    fn run(&mut self, tokens: &[u32], hidden: bool) -> Result<Vec<(String, Tensor)>, BackendError> {
        let needed = self.tokens.len() + tokens.len();
        if needed > self.n_ctx {
            return Err(BackendError::ContextFull {
                needed,
                n_ctx: self.n_ctx,
            });
        }
        let encoded = contract::encode_tokens(tokens).map_err(contract_failure)?;
        let mut inputs = vec![input(contract::TOKENS, &encoded)];
        if hidden {
            let request = contract::hidden_states_request();
            inputs.push(input(contract::HIDDEN_STATES, &request));
        }
        if let Some(n_past) = self.truncate_to {
            let n_past = contract::encode_n_past(n_past).map_err(contract_failure)?;
            inputs.push(input(contract::N_PAST, &n_past));
        }
        if let Some(positions) = self.reserve.take_if(|_| !hidden) {
            let reserve = contract::encode_n_reserve(positions).map_err(contract_failure)?;
            inputs.push(input(contract::N_RESERVE, &reserve));
        }
        let outputs = self
            .ctx
            .compute(inputs)
            .map_err(|e| BackendError::Failed(describe(&e)))?;
        self.truncate_to = None;
        Ok(outputs)
    }
}

fn contract_failure(e: ContractError) -> BackendError {
    BackendError::Failed(format!("wasi:nn tensor contract: {e}"))
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

    fn reserve(&mut self, positions: usize) {
        self.reserve = Some(positions);
    }

    fn prefill_and_logits(&mut self, tokens: &[u32]) -> Result<&[f32], BackendError> {
        let outputs = self.run(tokens, false)?;
        let logits = output(&outputs, contract::LOGITS).map_err(contract_failure)?;
        contract::logits_len(logits.as_ref()).map_err(contract_failure)?;
        // Little-endian `f32`s, as wasm's own.
        let in_place = bytemuck::try_cast_slice::<u8, f32>(&logits.data).is_ok();
        if !in_place {
            contract::decode_logits(logits.as_ref(), &mut self.logits).map_err(contract_failure)?;
        }
        self.raw_logits = logits.data;
        self.tokens.extend_from_slice(tokens);
        Ok(match in_place {
            true => bytemuck::cast_slice(&self.raw_logits),
            false => &self.logits,
        })
    }

    fn prefill_hidden(&mut self, tokens: &[u32]) -> Result<Vec<f32>, BackendError> {
        let outputs = self.run(tokens, true)?;
        let states = output(&outputs, contract::HIDDEN_STATES).map_err(contract_failure)?;
        let mut values = Vec::new();
        let (n, _) = contract::decode_hidden_states(states.as_ref(), &mut values)
            .map_err(contract_failure)?;
        if n != tokens.len() {
            return Err(BackendError::Failed(format!(
                "wasi:nn tensor contract: {n} hidden states for {} tokens",
                tokens.len()
            )));
        }
        self.tokens.extend_from_slice(tokens);
        Ok(values)
    }
}
