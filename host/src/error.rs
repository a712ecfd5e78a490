//! The host's error type: one variant per thing that can go wrong, each naming it in one line.

use std::path::Path;

use crate::bindings::exports::edge::llm::inference as wit;

/// Everything the host library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The guest component could not be found, compiled or linked.
    #[error("component: {0}")]
    Component(String),
    /// No model at the given name or path.
    #[error("model not found: {0}")]
    ModelNotFound(String),
    /// A known model's file does not match the manifest.
    #[error("model integrity check failed: {0}")]
    ModelIntegrity(String),
    /// The native backend could not load the model.
    #[error("cannot load model: {0}")]
    ModelLoad(String),
    /// The component answered with an error.
    #[error("{}", describe(.0))]
    Inference(wit::Error),
    /// The call ran past its deadline (in the guest or in the native backend).
    #[error("deadline exceeded after {0:?}")]
    Deadline(std::time::Duration),
    /// The call was cancelled ([`CallState::cancel`](crate::CallState::cancel)).
    #[error("cancelled")]
    Cancelled,
    /// The native backend had not the KV cache memory a call needed (the budget,
    /// [`RuntimeOptions::kv_memory`](crate::RuntimeOptions::kv_memory), is spent).
    #[error(transparent)]
    KvMemory(#[from] crate::KvMemoryError),
    /// The guest trapped; this instance is unusable and must be replaced.
    #[error("the guest trapped: {0}")]
    Trap(String),
}

impl HostError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        HostError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// One line for an error the component returned.
fn describe(e: &wit::Error) -> String {
    match e {
        wit::Error::InvalidInput(m) => format!("invalid input: {m}"),
        wit::Error::ContextOverflow(o) => format!(
            "context overflow: the prompt has {} tokens and {} more were requested, but the context holds {}",
            o.prompt_tokens, o.max_tokens, o.context_length
        ),
        wit::Error::ModelNotFound(m) => format!("model not found: {m}"),
        wit::Error::ModelNotSupported(m) => format!("model not supported: {m}"),
        wit::Error::BackendError(m) => format!("backend error: {m}"),
        wit::Error::RuntimeError(m) => format!("runtime error: {m}"),
    }
}

impl From<wit::Error> for HostError {
    fn from(e: wit::Error) -> Self {
        HostError::Inference(e)
    }
}
