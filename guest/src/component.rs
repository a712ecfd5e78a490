//! The `edge:llm/inference` exports: opening models (wasi-nn first, the kernel as fallback),
//! and one-shot or streamed generation over them.

use std::cell::RefCell;
use std::rc::Rc;

#[cfg(feature = "wasi-nn")]
use edge_llm_kernel::gguf::Gguf;
#[cfg(feature = "wasi-nn")]
use edge_llm_nn_contract::GgufHeader;

use crate::bindings::exports::edge::llm0_1_0::inference as wit;
use crate::chat::Message;
use crate::constraint::ConstraintError;
use crate::generate::{self, GenerateError, GenerateParams, Generation};
use crate::loading::open_kernel;
#[cfg(feature = "wasi-nn")]
use crate::loading::{built_in_metadata, read_model_file};
#[cfg(feature = "wasi-nn")]
use crate::model::ModelMetadata;
use crate::model::{BackendKind, LoadError, LoadedModel};
#[cfg(feature = "wasi-nn")]
use crate::nn_backend::{self, NnBackend, NnOpenError};
use crate::sampling::SamplingParams;
use crate::{known_models, Backend};

/// The exported component: `inference@0.1.0` here, `inference@0.2.0` in `component_v0_2`.
pub struct Component;

impl wit::Guest for Component {
    type Model = ModelResource;
    type Generation = GenerationResource;
}

/// The worlds with a built-in model export `init`, for pre-initialization (`wasmtime wizer`).
#[cfg(any(feature = "bundle", feature = "preinit"))]
impl crate::bindings::Guest for Component {
    /// `bundle`: loads the bundled model (weights, tokenizer, chat template, a warm session).
    /// `preinit`: builds the built-in model's tokenizer and chat template.
    fn init() {
        #[cfg(feature = "bundle")]
        crate::bundle::init();
        #[cfg(feature = "preinit")]
        crate::preinit::init();
    }
}

/// A `model` resource.
pub struct ModelResource(Rc<LoadedModel>);

impl ModelResource {
    /// Wraps an open model.
    pub(crate) fn new(model: Rc<LoadedModel>) -> Self {
        Self(model)
    }

    /// The open model.
    pub(crate) fn loaded(&self) -> &Rc<LoadedModel> {
        &self.0
    }
}

/// A `generation` resource: the running generation, then its summary.
pub struct GenerationResource {
    model: Rc<LoadedModel>,
    state: RefCell<GenState>,
}

enum GenState {
    Running(Box<Generation<Box<dyn Backend>>>, String),
    Done(wit::Completion),
    Failed,
}

impl From<LoadError> for wit::Error {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::NotFound(m) => wit::Error::ModelNotFound(m),
            LoadError::NotSupported(m) => wit::Error::ModelNotSupported(m),
            LoadError::Invalid(m) => wit::Error::InvalidInput(m),
            LoadError::Backend(m) => wit::Error::BackendError(m),
            LoadError::Resources(m) => wit::Error::RuntimeError(m),
        }
    }
}

impl From<GenerateError> for wit::Error {
    fn from(e: GenerateError) -> Self {
        match e {
            GenerateError::ContextOverflow {
                prompt_tokens,
                max_tokens,
                n_ctx,
            } => wit::Error::ContextOverflow(wit::ContextOverflow {
                prompt_tokens: prompt_tokens as u32,
                max_tokens: max_tokens as u32,
                context_length: n_ctx as u32,
            }),
            GenerateError::Backend(b) => wit::Error::BackendError(b.to_string()),
            // The WIT case already says "invalid input"; the message says what.
            GenerateError::InvalidInput(m) => wit::Error::InvalidInput(m),
            other @ (GenerateError::Sampling(_) | GenerateError::Stop(_)) => {
                wit::Error::InvalidInput(other.to_string())
            }
            GenerateError::Constraint(
                c @ (ConstraintError::Invalid { .. } | ConstraintError::NoEos),
            ) => wit::Error::InvalidInput(c.to_string()),
            GenerateError::Constraint(c @ ConstraintError::Failed(_)) => {
                wit::Error::RuntimeError(c.to_string())
            }
        }
    }
}

pub(crate) fn invalid(e: impl std::fmt::Display) -> wit::Error {
    wit::Error::InvalidInput(e.to_string())
}

#[cfg(feature = "wasi-nn")]
fn open_wasi_nn(
    name: &str,
    path: &str,
    explicit: bool,
    n_ctx: Option<usize>,
) -> Result<LoadedModel, NnOpenError> {
    let graph = match nn_backend::load_by_name(&[name, path]) {
        Ok(g) => g,
        Err(NnOpenError::Unavailable(_)) if explicit => {
            let bytes = read_model_file(path).map_err(|e| NnOpenError::Failed(e.to_string()))?;
            nn_backend::load_bytes(bytes)?
        }
        Err(e) => return Err(e),
    };
    let header = nn_backend::header(&graph)?;
    let foreign = |e: &dyn std::fmt::Display| {
        NnOpenError::Foreign(format!("the host's wasi:nn backend's model header: {e}"))
    };
    let layout = GgufHeader::from_bytes(&header).map_err(|e| foreign(&e))?;
    let meta = match built_in_metadata(layout.prefix(), layout.file_len()) {
        Some(meta) => meta,
        None => {
            // A header that does not parse did not come from a backend of ours (the model
            // itself, if it is bad, fails again in the kernel with its own error).
            let gguf = Gguf::parse_header(&header).map_err(|e| foreign(&e))?;
            ModelMetadata::from_gguf(&gguf).map_err(NnOpenError::Load)?
        }
    };
    let graph = Rc::new(graph);
    let factory = Box::new(move |n_ctx| {
        NnBackend::new(&graph, n_ctx).map(|b| Box::new(b) as Box<dyn Backend>)
    });
    LoadedModel::new(name, &meta, n_ctx, BackendKind::WasiNn, factory).map_err(NnOpenError::Load)
}

/// Opens a model: the host's `wasi:nn` first (unless `options` say otherwise), the kernel as
/// fallback.
pub(crate) fn open(
    name_or_path: &str,
    options: wit::OpenOptions,
) -> Result<Rc<LoadedModel>, wit::Error> {
    let path = known_models::resolve(name_or_path);
    let n_ctx = options.context_length.map(|n| n as usize);
    #[cfg(not(feature = "wasi-nn"))]
    if options.backend == Some(wit::Backend::WasiNn) {
        return Err(wit::Error::BackendError(
            "this component was built without wasi:nn; open with backend `kernel` or none".into(),
        ));
    }
    #[cfg(feature = "bundle")]
    if let Some(model) = crate::bundle::open(name_or_path, &path, n_ctx)? {
        return Ok(model);
    }
    // Why the host's wasi:nn backend, which loaded the model, cannot serve it.
    #[allow(unused_mut)]
    let mut foreign_backend: Option<String> = None;
    #[cfg(feature = "wasi-nn")]
    if options.backend != Some(wit::Backend::Kernel) {
        let explicit = options.backend == Some(wit::Backend::WasiNn);
        match open_wasi_nn(name_or_path, &path, explicit, n_ctx) {
            Ok(m) => return Ok(Rc::new(m)),
            // No backend or graph for this model in the host, or a backend that does not follow
            // our tensor contract: the kernel serves it.
            Err(NnOpenError::Unavailable(_)) if !explicit => {}
            Err(NnOpenError::Foreign(why)) if !explicit => foreign_backend = Some(why),
            Err(
                NnOpenError::Unavailable(why)
                | NnOpenError::Foreign(why)
                | NnOpenError::Failed(why),
            ) => return Err(wit::Error::BackendError(why)),
            Err(NnOpenError::Load(e)) => return Err(e.into()),
        }
    }
    match (open_kernel(name_or_path, &path, n_ctx), foreign_backend) {
        (Ok(model), _) => Ok(Rc::new(model)),
        (Err(LoadError::NotFound(m)), Some(why)) => {
            Err(wit::Error::ModelNotFound(format!("{m}; and {why}")))
        }
        (Err(e), _) => Err(e.into()),
    }
}

/// The generation parameters of a call.
pub(crate) fn params(p: wit::Params) -> Result<GenerateParams, wit::Error> {
    Ok(GenerateParams {
        max_tokens: p.max_tokens as usize,
        sampling: SamplingParams {
            temperature: p.temperature,
            top_k: p.top_k as usize,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n as usize,
            seed: p.seed,
        },
        stop: p.stop,
        ignore_eos: p.ignore_eos,
        logprobs: None,
        constraint: None,
    })
}

fn messages(m: Vec<wit::Message>) -> Vec<Message> {
    m.into_iter()
        .map(|m| Message::new(m.role, m.content))
        .collect()
}

/// The WIT name of a backend.
pub(crate) fn backend(kind: BackendKind) -> wit::Backend {
    match kind {
        BackendKind::WasiNn => wit::Backend::WasiNn,
        BackendKind::Kernel => wit::Backend::Kernel,
    }
}

impl ModelResource {
    /// A raw prompt's ids: control tokens written in it are parsed.
    pub(crate) fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>, wit::Error> {
        self.0.tokenizer().encode(prompt, true).map_err(invalid)
    }

    /// A chat's ids: only the template's own text yields control tokens.
    pub(crate) fn chat_ids(&self, m: Vec<wit::Message>) -> Result<Vec<u32>, wit::Error> {
        self.0.chat_ids(&messages(m)).map_err(invalid)
    }

    /// Starts a raw completion.
    fn start(&self, prompt: &str, p: wit::Params) -> Result<GenerationResource, wit::Error> {
        self.start_ids(self.prompt_ids(prompt)?, p)
    }

    /// Starts a chat.
    fn start_chat(
        &self,
        m: Vec<wit::Message>,
        p: wit::Params,
    ) -> Result<GenerationResource, wit::Error> {
        self.start_ids(self.chat_ids(m)?, p)
    }

    fn start_ids(&self, ids: Vec<u32>, p: wit::Params) -> Result<GenerationResource, wit::Error> {
        let generation = self.0.start(ids, params(p)?)?;
        Ok(GenerationResource {
            model: self.0.clone(),
            state: RefCell::new(GenState::Running(Box::new(generation), String::new())),
        })
    }

    /// The chat rendered with the model's template.
    pub(crate) fn chat_prompt(&self, m: Vec<wit::Message>) -> Result<String, wit::Error> {
        self.0.render_chat(&messages(m)).map_err(invalid)
    }

    /// What the model is.
    pub(crate) fn describe(&self) -> wit::ModelInfo {
        let i = self.0.info();
        wit::ModelInfo {
            name: i.name.clone(),
            architecture: i.architecture.clone(),
            parameters: i.parameters,
            context_length: i.context_length as u32,
            trained_context_length: i.trained_context_length as u32,
            vocab_size: i.vocab_size as u32,
            quantization: i.quantization.clone(),
            backend: backend(i.backend),
        }
    }

    /// Computes the chat preamble into the session cache.
    pub(crate) fn warm_up_session(&self) -> Result<(), wit::Error> {
        self.0
            .warm_up()
            .map_err(|e| wit::Error::from(GenerateError::from(e)))
    }

    /// Text to ids.
    pub(crate) fn tokenize_text(
        &self,
        text: &str,
        parse_control: bool,
    ) -> Result<Vec<u32>, wit::Error> {
        self.0
            .tokenizer()
            .encode(text, parse_control)
            .map_err(invalid)
    }

    /// Ids to text (control tokens included).
    pub(crate) fn detokenize_ids(&self, tokens: &[u32]) -> Result<String, wit::Error> {
        self.0.tokenizer().decode(tokens, false).map_err(invalid)
    }
}

fn run_to_end(g: &GenerationResource) -> Result<wit::Completion, wit::Error> {
    while g.next_chunk()?.is_some() {}
    g.summary()
        .ok_or_else(|| wit::Error::RuntimeError("generation ended without a summary".into()))
}

impl wit::GuestModel for ModelResource {
    fn open(name_or_path: String, options: wit::OpenOptions) -> Result<wit::Model, wit::Error> {
        Ok(wit::Model::new(ModelResource(open(
            &name_or_path,
            options,
        )?)))
    }

    fn info(&self) -> wit::ModelInfo {
        self.describe()
    }

    fn warm_up(&self) -> Result<(), wit::Error> {
        self.warm_up_session()
    }

    fn tokenize(&self, text: String, parse_control: bool) -> Result<Vec<u32>, wit::Error> {
        self.tokenize_text(&text, parse_control)
    }

    fn detokenize(&self, tokens: Vec<u32>) -> Result<String, wit::Error> {
        self.detokenize_ids(&tokens)
    }

    fn apply_chat_template(&self, m: Vec<wit::Message>) -> Result<String, wit::Error> {
        self.chat_prompt(m)
    }

    fn complete(&self, prompt: String, p: wit::Params) -> Result<wit::Completion, wit::Error> {
        run_to_end(&self.start(&prompt, p)?)
    }

    fn chat(&self, m: Vec<wit::Message>, p: wit::Params) -> Result<wit::Completion, wit::Error> {
        run_to_end(&self.start_chat(m, p)?)
    }

    fn stream_complete(
        &self,
        prompt: String,
        p: wit::Params,
    ) -> Result<wit::Generation, wit::Error> {
        Ok(wit::Generation::new(self.start(&prompt, p)?))
    }

    fn stream_chat(
        &self,
        m: Vec<wit::Message>,
        p: wit::Params,
    ) -> Result<wit::Generation, wit::Error> {
        Ok(wit::Generation::new(self.start_chat(m, p)?))
    }
}

fn finish_reason(r: generate::FinishReason) -> wit::FinishReason {
    match r {
        generate::FinishReason::Stop => wit::FinishReason::Stop,
        generate::FinishReason::Length => wit::FinishReason::Length,
    }
}

impl GenerationResource {
    fn next_chunk(&self) -> Result<Option<wit::Chunk>, wit::Error> {
        let mut state = self.state.borrow_mut();
        let GenState::Running(generation, text) = &mut *state else {
            return Ok(None);
        };
        match generation.next_chunk() {
            Ok(Some(chunk)) => {
                text.push_str(&chunk.text);
                Ok(Some(wit::Chunk {
                    text: chunk.text,
                    tokens: chunk.tokens,
                }))
            }
            Ok(None) => {
                let completion = wit::Completion {
                    text: std::mem::take(text),
                    tokens: generation.tokens().to_vec(),
                    finish_reason: finish_reason(
                        generation
                            .finish_reason()
                            .unwrap_or(generate::FinishReason::Length),
                    ),
                    usage: wit::Usage {
                        prompt_tokens: generation.usage().prompt_tokens as u32,
                        completion_tokens: generation.usage().completion_tokens as u32,
                        cached_prompt_tokens: generation.usage().cached_prompt_tokens as u32,
                    },
                    timings: wit::Timings {
                        prefill_ms: generation.timings().prefill_ms,
                        ttft_ms: generation.timings().ttft_ms,
                        decode_tokens_per_s: generation.timings().decode_tokens_per_s,
                    },
                    backend: backend(self.model.info().backend),
                };
                if let GenState::Running(generation, _) =
                    std::mem::replace(&mut *state, GenState::Done(completion))
                {
                    self.model.park(generation.into_backend());
                }
                Ok(None)
            }
            Err(e) => {
                *state = GenState::Failed;
                Err(e.into())
            }
        }
    }

    fn summary(&self) -> Option<wit::Completion> {
        match &*self.state.borrow() {
            GenState::Done(c) => Some(c.clone()),
            _ => None,
        }
    }
}

impl Drop for GenerationResource {
    fn drop(&mut self) {
        // A cancelled generation still leaves a useful KV cache (its prompt prefix).
        if let GenState::Running(generation, _) =
            std::mem::replace(self.state.get_mut(), GenState::Failed)
        {
            self.model.park(generation.into_backend());
        }
    }
}

impl wit::GuestGeneration for GenerationResource {
    fn next(&self) -> Result<Option<wit::Chunk>, wit::Error> {
        self.next_chunk()
    }

    fn finish(&self) -> Option<wit::Completion> {
        self.summary()
    }
}
