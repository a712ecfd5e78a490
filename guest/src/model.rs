//! A loaded model as the component serves it: tokenizer, chat template, description, and a
//! source of backend sessions (one is kept warm so a repeated prompt prefix is not recomputed).

use std::cell::RefCell;
use std::rc::Rc;

use edge_llm_kernel::gguf::Gguf;

use crate::chat::{ChatError, ChatTemplate, Message, TemplateLimits};
use crate::constraint::ConstraintSet;
use crate::embed::{self, Pooling};
use crate::generate::{Backend, BackendError, GenerateError, GenerateParams, Generation};
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::tools::{self, TemplateCaps, ToolFormat, ToolRequest};

/// Which engine serves a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The host's native engine through wasi:nn.
    WasiNn,
    /// The kernel inside the component.
    Kernel,
}

/// What a model is, read from its GGUF metadata.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// Name it was opened by.
    pub name: String,
    /// `general.architecture`.
    pub architecture: String,
    /// Number of weights.
    pub parameters: u64,
    /// Context length in use.
    pub context_length: usize,
    /// Trained context length.
    pub trained_context_length: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Dominant weight type, e.g. `Q4_1`.
    pub quantization: String,
    /// Serving backend.
    pub backend: BackendKind,
}

/// Why a model could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No such model.
    #[error("{0}")]
    NotFound(String),
    /// The model is not something we can run.
    #[error("{0}")]
    NotSupported(String),
    /// The file is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The backend failed.
    #[error("{0}")]
    Backend(String),
    /// The instance lacks the memory (or another resource) to hold the model.
    #[error("{0}")]
    Resources(String),
}

impl From<TokenizerError> for LoadError {
    fn from(e: TokenizerError) -> Self {
        match e {
            TokenizerError::Unsupported(_) => LoadError::NotSupported(e.to_string()),
            other => LoadError::Invalid(format!("tokenizer: {other}")),
        }
    }
}

/// Creates backend sessions for a model.
pub type SessionFactory = Box<dyn Fn(usize) -> Result<Box<dyn Backend>, BackendError>>;

/// What a model file's GGUF metadata yields: its tokenizer, chat template and description.
/// Built once per file (the tokenizer is most of a model's open time) and shared by every
/// [`LoadedModel`] of it.
#[derive(Clone)]
pub struct ModelMetadata {
    architecture: String,
    trained_context_length: usize,
    parameters: u64,
    quantization: String,
    tokenizer: Rc<Tokenizer>,
    template: Rc<Result<ChatTemplate, String>>,
    /// How embeddings are pooled, or why this model gives none.
    pooling: Result<Pooling, String>,
}

impl ModelMetadata {
    /// Builds the tokenizer and chat template from `gguf` and describes the model.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, LoadError> {
        let meta = |e: edge_llm_kernel::GgufError| LoadError::Invalid(e.to_string());
        let architecture = gguf
            .get_str("general.architecture")
            .map_err(meta)?
            .to_string();
        let trained_context_length = gguf
            .get_u32(&format!("{architecture}.context_length"))
            .map_err(meta)? as usize;
        let tokenizer = Rc::new(Tokenizer::from_gguf(gguf)?);
        let template = ChatTemplate::for_model(gguf, &tokenizer, TemplateLimits::default())
            .map_err(|e| e.to_string());
        let (parameters, quantization) = weights_summary(gguf);
        let pooling = Pooling::from_gguf(gguf, &architecture);
        Ok(Self {
            architecture,
            trained_context_length,
            parameters,
            quantization,
            tokenizer,
            template: Rc::new(template),
            pooling,
        })
    }
}

/// A model ready to serve.
pub struct LoadedModel {
    info: ModelInfo,
    tokenizer: Rc<Tokenizer>,
    template: Rc<Result<ChatTemplate, String>>,
    pooling: Result<Pooling, String>,
    new_session: SessionFactory,
    idle: RefCell<Option<Box<dyn Backend>>>,
    /// The vocabulary prepared for constrained decoding, on the first constrained call.
    constraints: std::cell::OnceCell<Rc<ConstraintSet>>,
    /// What the chat template renders of tools, on the first chat with tools.
    tool_caps: std::cell::OnceCell<TemplateCaps>,
}

/// The weight count and dominant tensor type of a GGUF (by bytes).
fn weights_summary(gguf: &Gguf) -> (u64, String) {
    let mut by_type: Vec<(String, u64)> = Vec::new();
    let mut params = 0u64;
    for t in gguf.tensors() {
        params = params.saturating_add(t.n_elements());
        let name = t.ty.name().to_string();
        match by_type.iter_mut().find(|(n, _)| *n == name) {
            Some((_, bytes)) => *bytes = bytes.saturating_add(t.size),
            None => by_type.push((name, t.size)),
        }
    }
    let quant = by_type
        .into_iter()
        .max_by_key(|(_, bytes)| *bytes)
        .map_or_else(|| "unknown".to_string(), |(n, _)| n);
    (params, quant)
}

impl LoadedModel {
    /// Serves the model `meta` describes under `name`, with sessions from `new_session`.
    /// `n_ctx` of `None` uses the trained context length.
    pub fn new(
        name: &str,
        meta: &ModelMetadata,
        n_ctx: Option<usize>,
        backend: BackendKind,
        new_session: SessionFactory,
    ) -> Result<Self, LoadError> {
        let trained = meta.trained_context_length;
        let context_length = match n_ctx {
            Some(0) => {
                return Err(LoadError::Invalid(
                    "context length must be at least 1".into(),
                ))
            }
            Some(n) if n > trained => {
                return Err(LoadError::Invalid(format!(
                    "context length {n} exceeds the model's trained context {trained}"
                )))
            }
            Some(n) => n,
            None => trained,
        };
        let info = ModelInfo {
            name: name.to_string(),
            architecture: meta.architecture.clone(),
            parameters: meta.parameters,
            context_length,
            trained_context_length: trained,
            vocab_size: meta.tokenizer.vocab_size(),
            quantization: meta.quantization.clone(),
            backend,
        };
        Ok(Self {
            info,
            tokenizer: meta.tokenizer.clone(),
            template: meta.template.clone(),
            pooling: meta.pooling.clone(),
            new_session,
            idle: RefCell::new(None),
            constraints: std::cell::OnceCell::new(),
            tool_caps: std::cell::OnceCell::new(),
        })
    }

    /// The model's description.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Rc<Tokenizer> {
        &self.tokenizer
    }

    /// Renders messages with the chat template, the assistant's turn opened.
    pub fn render_chat(&self, messages: &[Message]) -> Result<String, ChatError> {
        match &*self.template {
            Ok(t) => t.render(messages, true),
            Err(e) => Err(ChatError::Render(format!(
                "this model has no usable chat template: {e}"
            ))),
        }
    }

    /// Renders messages with the chat template, the assistant's turn opened, and tokenizes the
    /// prompt: control tokens come only from the template, never from a message's text (see
    /// [`ChatTemplate::encode`]).
    pub fn chat_ids(&self, messages: &[Message]) -> Result<Vec<u32>, ChatError> {
        self.chat_ids_with_tools(messages, None).map(|(ids, _)| ids)
    }

    /// [`LoadedModel::chat_ids`] for a chat with tools (see [`tools::prepare`]): also the
    /// format the answer's calls are parsed in, `None` when it may make none.
    pub fn chat_ids_with_tools(
        &self,
        messages: &[Message],
        request: Option<&ToolRequest>,
    ) -> Result<(Vec<u32>, Option<ToolFormat>), ChatError> {
        let t = match &*self.template {
            Ok(t) => t,
            Err(e) => {
                return Err(ChatError::Render(format!(
                    "this model has no usable chat template: {e}"
                )))
            }
        };
        let plain = request.is_none_or(|r| !r.is_active())
            && messages
                .iter()
                .all(|m| m.tool_calls.is_empty() && m.role != "tool");
        if plain {
            return Ok((t.encode(&self.tokenizer, messages, true)?, None));
        }
        let caps = *self.tool_caps.get_or_init(|| TemplateCaps::probe(t));
        let chat = tools::prepare(t, caps, messages, request);
        let ids =
            t.encode_with_tools(&self.tokenizer, &chat.messages, chat.tools.as_ref(), true)?;
        Ok((ids, chat.format))
    }

    /// Starts generating from `prompt_ids` on the warm session (or a new one).
    pub fn start(
        &self,
        prompt_ids: Vec<u32>,
        params: GenerateParams,
    ) -> Result<Generation<Box<dyn Backend>>, GenerateError> {
        let constraint = match &params.constraint {
            Some(spec) => Some(self.constraints()?.start(spec)?),
            None => None,
        };
        let backend = match self.idle.borrow_mut().take() {
            Some(b) => b,
            None => (self.new_session)(self.info.context_length)?,
        };
        let generation = Generation::new(backend, self.tokenizer.clone(), prompt_ids, params)?;
        Ok(match constraint {
            Some(c) => generation.with_constraint(c),
            None => generation,
        })
    }

    /// The vocabulary prepared for constrained decoding (built on first use, then kept).
    pub fn constraints(&self) -> Result<Rc<ConstraintSet>, GenerateError> {
        if let Some(set) = self.constraints.get() {
            return Ok(set.clone());
        }
        let set = Rc::new(ConstraintSet::new(&self.tokenizer)?);
        Ok(self.constraints.get_or_init(|| set).clone())
    }

    /// Creates a session now, if none is idle, with the chat template's fixed preamble already
    /// in its KV cache, so the first chat computes only its own messages. (A pre-initialized
    /// bundle snapshots this: every fresh instance starts past the preamble.)
    pub fn warm_up(&self) -> Result<(), BackendError> {
        if self.idle.borrow().is_none() {
            let mut session = (self.new_session)(self.info.context_length)?;
            let preamble = self.chat_preamble();
            if !preamble.is_empty() {
                session.prefill_and_logits(&preamble)?;
            }
            self.park(session);
        }
        Ok(())
    }

    /// The tokens every one-message chat starts with (e.g. the template's default system
    /// prompt and the user turn's opening): the common prefix of two different renderings.
    /// A later prompt that tokenizes differently only reuses what matches.
    fn chat_preamble(&self) -> Vec<u32> {
        let tokens = |text: &str| self.chat_ids(&[Message::user(text)]).ok();
        match (tokens("a"), tokens("b")) {
            (Some(a), Some(b)) => {
                let n = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
                a[..n].to_vec()
            }
            _ => Vec::new(),
        }
    }

    /// How this model's embeddings are pooled, or why it gives none.
    pub fn pooling(&self) -> Result<Pooling, GenerateError> {
        self.pooling.clone().map_err(GenerateError::InvalidInput)
    }

    /// Embeds each token sequence, one after another, each from an empty context: pooled,
    /// L2-normalized vectors. They run on a session of their own, sized to the longest input
    /// and dropped after, so the warm session keeps its cache for the next chat (sessions
    /// allocate their KV cache as it fills, so a small one costs little).
    pub fn embed(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, GenerateError> {
        let pooling = self.pooling()?;
        let n_ctx = self.info.context_length;
        if let Some(long) = inputs.iter().find(|t| t.len() > n_ctx) {
            return Err(GenerateError::ContextOverflow {
                prompt_tokens: long.len(),
                max_tokens: 0,
                n_ctx,
            });
        }
        let longest = inputs.iter().map(Vec::len).max().unwrap_or(0);
        let mut backend = (self.new_session)(longest.clamp(1, n_ctx))?;
        inputs
            .iter()
            .map(|tokens| embed::embed(&mut *backend, tokens, pooling))
            .collect()
    }

    /// Keeps a session (and its KV cache) for the next generation.
    pub fn park(&self, backend: Box<dyn Backend>) {
        *self.idle.borrow_mut() = Some(backend);
    }
}
