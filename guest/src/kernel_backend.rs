//! The in-guest backend: the kernel crate's forward pass on model bytes in linear memory.

use std::sync::Arc;

use edge_llm_kernel::{ForwardError, Model, Session, SessionOptions};

use crate::generate::{Backend, BackendError};

/// A kernel session plus the tokens its KV cache holds.
pub struct KernelBackend {
    session: Session,
    tokens: Vec<u32>,
}

impl KernelBackend {
    /// A fresh session of `n_ctx` positions on `model` (one thread: the guest has no threads).
    pub fn new(model: Arc<Model>, n_ctx: usize) -> Result<Self, BackendError> {
        let options = SessionOptions { n_ctx, threads: 1 };
        let session =
            Session::new(model, options).map_err(|e| BackendError::Failed(e.to_string()))?;
        Ok(Self {
            session,
            tokens: Vec::new(),
        })
    }
}

impl Backend for KernelBackend {
    fn n_ctx(&self) -> usize {
        self.session.n_ctx()
    }

    fn cached_tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn truncate(&mut self, n: usize) -> Result<(), BackendError> {
        self.session.truncate(n);
        self.tokens.truncate(n);
        Ok(())
    }

    fn reset(&mut self) {
        self.session.truncate(0);
        self.tokens.clear();
    }

    fn prefill_and_logits(&mut self, tokens: &[u32]) -> Result<&[f32], BackendError> {
        let logits = self
            .session
            .forward(tokens, &|| false)
            .map_err(forward_error)?;
        self.tokens.extend_from_slice(tokens);
        Ok(logits)
    }

    fn prefill_hidden(&mut self, tokens: &[u32]) -> Result<Vec<f32>, BackendError> {
        let states = self
            .session
            .forward_hidden(tokens, &|| false)
            .map_err(forward_error)?;
        self.tokens.extend_from_slice(tokens);
        Ok(states)
    }
}

fn forward_error(e: ForwardError) -> BackendError {
    match e {
        ForwardError::ContextOverflow { needed, n_ctx } => {
            BackendError::ContextFull { needed, n_ctx }
        }
        oom @ (ForwardError::OutOfMemory { .. } | ForwardError::ScratchOutOfMemory { .. }) => {
            BackendError::OutOfMemory(oom.to_string())
        }
        other => BackendError::Failed(other.to_string()),
    }
}
