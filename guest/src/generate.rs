//! The generation loop: prompt prefill, sampling, streaming text and stop conditions, over any
//! [`Backend`] that turns token ids into next-token logits.
//!
//! [`Generation`] is a pull-based state machine: every call to [`Generation::next_chunk`]
//! produces one token (and whatever text became safe to emit), until it finishes with a
//! [`FinishReason`]. Limits are checked before any model work is done.

use std::rc::Rc;
use std::time::Instant;

use crate::constraint::{Constraint, ConstraintError, ConstraintSpec};
use crate::sampling::{Sampler, SamplingError, SamplingParams, TokenLogprob};
use crate::stop::{StopError, TextStream};
use crate::tokenizer::Tokenizer;

/// Errors reported by a [`Backend`].
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot drop part of its cache; the caller should [`Backend::reset`] instead.
    #[error("this backend cannot truncate its cache")]
    TruncateUnsupported,
    /// More positions were requested than the context holds.
    #[error("context full: {needed} positions needed, {n_ctx} available")]
    ContextFull {
        /// Positions needed.
        needed: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// Memory for this call (its positions in the cache, or the pass's working buffers) could
    /// not be had: the instance is at its memory limit. The session holds what it held before
    /// the call.
    #[error("{0}")]
    OutOfMemory(String),
    /// Any other failure (model execution, host call, …).
    #[error("backend failed: {0}")]
    Failed(String),
}

/// A model session with a KV cache: appends tokens, returns the logits of the last position.
///
/// Positions are implicit: the cache holds [`Backend::cached_tokens`] at positions
/// `0..cached_tokens().len()`, and [`Backend::prefill_and_logits`] appends after them.
pub trait Backend {
    /// Maximum number of positions (prompt + generated tokens).
    fn n_ctx(&self) -> usize;

    /// The tokens currently in the cache, in position order.
    fn cached_tokens(&self) -> &[u32];

    /// Drops every cached position `>= n` (keeps a prompt prefix for reuse). Backends that
    /// cannot do this return [`BackendError::TruncateUnsupported`].
    fn truncate(&mut self, n: usize) -> Result<(), BackendError>;

    /// Clears the cache.
    fn reset(&mut self);

    /// Announces that the cache will hold at most `positions` until its next truncation (a
    /// request's prompt plus its `max_tokens`), so a backend with bounded memory can refuse the
    /// request at its first step rather than midway. Backends that need not know ignore it.
    fn reserve(&mut self, positions: usize) {
        let _ = positions;
    }

    /// Appends `tokens` (non-empty) to the cache, runs the model over them and returns the
    /// logits of the last one (one per vocabulary id).
    fn prefill_and_logits(&mut self, tokens: &[u32]) -> Result<&[f32], BackendError>;

    /// Appends `tokens` (non-empty) to the cache, runs the model over them and returns each
    /// one's final normed hidden state (`tokens.len() * n_embd` values, row-major), for
    /// embeddings; no logits are computed.
    fn prefill_hidden(&mut self, tokens: &[u32]) -> Result<Vec<f32>, BackendError>;
}

/// Any pointer to a backend is one: `&mut B` (tests), `Box<dyn Backend>` (the component).
impl<P> Backend for P
where
    P: std::ops::DerefMut,
    P::Target: Backend,
{
    fn n_ctx(&self) -> usize {
        (**self).n_ctx()
    }
    fn cached_tokens(&self) -> &[u32] {
        (**self).cached_tokens()
    }
    fn truncate(&mut self, n: usize) -> Result<(), BackendError> {
        (**self).truncate(n)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn reserve(&mut self, positions: usize) {
        (**self).reserve(positions)
    }
    fn prefill_and_logits(&mut self, tokens: &[u32]) -> Result<&[f32], BackendError> {
        (**self).prefill_and_logits(tokens)
    }
    fn prefill_hidden(&mut self, tokens: &[u32]) -> Result<Vec<f32>, BackendError> {
        (**self).prefill_hidden(tokens)
    }
}

/// A source of monotonic time, in milliseconds since an arbitrary origin.
pub trait Clock {
    /// Now, in milliseconds.
    fn now_ms(&self) -> f64;
}

/// The standard monotonic clock (`std::time::Instant`; works on wasm32-wasip2).
#[derive(Debug, Clone, Copy)]
pub struct StdClock {
    origin: Instant,
}

impl Default for StdClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for StdClock {
    fn now_ms(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * 1000.0
    }
}

/// Errors from setting up or running a generation.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The prompt plus the requested tokens do not fit the context.
    #[error(
        "context overflow: {prompt_tokens} prompt tokens + {max_tokens} max tokens > context {n_ctx}"
    )]
    ContextOverflow {
        /// Prompt length.
        prompt_tokens: usize,
        /// Requested completion length.
        max_tokens: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// A request parameter is invalid.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Invalid sampling parameters, or unusable logits.
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    /// Invalid stop sequences.
    #[error(transparent)]
    Stop(#[from] StopError),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The constraint (schema or grammar) could not be built or followed.
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    /// Most tokens to generate (> 0).
    pub max_tokens: usize,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Stop sequences: generation ends before the first one, which is not part of the text.
    pub stop: Vec<String>,
    /// Keep generating past end-of-turn tokens (benchmarks).
    pub ignore_eos: bool,
    /// Report each token's log probability with this many most likely alternatives
    /// ([`Sampler::logprobs`]); `None` reports none.
    pub logprobs: Option<usize>,
    /// What the text must match (a JSON Schema or a grammar); `None` leaves it free.
    pub constraint: Option<ConstraintSpec>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
            logprobs: None,
            constraint: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-turn token or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    /// The OpenAI spelling: `stop` or `length`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens reused from the backend's cache (not recomputed).
    pub cached_prompt_tokens: usize,
    /// Tokens generated (including a final end-of-turn token).
    pub completion_tokens: usize,
}

/// Wall-clock measurements.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// Time to run the prompt through the model.
    pub prefill_ms: f64,
    /// From the first [`Generation::next_chunk`] call to the first sampled token.
    pub ttft_ms: f64,
    /// Generated tokens after the first, per second of decoding (0 if fewer than two).
    pub decode_tokens_per_s: f64,
    /// Time spent computing and applying constraint masks (0 without a constraint).
    pub constraint_ms: f64,
}

/// One step of output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chunk {
    /// Text safe to show now (may be empty while bytes are held back).
    pub text: String,
    /// Token ids generated in this step.
    pub tokens: Vec<u32>,
    /// With [`GenerateParams::logprobs`], one entry per token.
    pub logprobs: Vec<TokenLogprob>,
}

/// The whole result of a generation run to its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// All text.
    pub text: String,
    /// All generated ids.
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// Timings.
    pub timings: Timings,
    /// With [`GenerateParams::logprobs`], one entry per generated token.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// Where the state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing run yet.
    Start,
    /// This token was sampled but not yet fed to the backend.
    Feed(u32),
    /// Done.
    Finished(FinishReason),
}

/// A running generation over a backend. Call [`Generation::next_chunk`] until it returns
/// `Ok(None)`.
pub struct Generation<B: Backend> {
    backend: B,
    tokenizer: Rc<Tokenizer>,
    prompt: Vec<u32>,
    max_tokens: usize,
    ignore_eos: bool,
    sampler: Sampler,
    /// `Some(top)` while reporting log probabilities, with the entries so far.
    logprobs: Option<(usize, Vec<TokenLogprob>)>,
    /// The grammar the text must match.
    constraint: Option<Constraint>,
    /// With a constraint: the masked copy of the logits sampled from.
    masked: Vec<f32>,
    stream: TextStream,
    clock: Box<dyn Clock>,
    phase: Phase,
    generated: Vec<u32>,
    usage: Usage,
    timings: Timings,
    started_ms: f64,
    first_token_ms: f64,
    last_token_ms: f64,
}

impl<B: Backend> Generation<B> {
    /// Validates the request against the backend's context; does no model work yet.
    pub fn new(
        backend: B,
        tokenizer: Rc<Tokenizer>,
        prompt_ids: Vec<u32>,
        params: GenerateParams,
    ) -> Result<Self, GenerateError> {
        check_request(backend.n_ctx(), &tokenizer, &prompt_ids, &params)?;
        let mut sampler = Sampler::new(params.sampling)?;
        let window = params.sampling.repeat_last_n.min(prompt_ids.len());
        for &t in &prompt_ids[prompt_ids.len() - window..] {
            sampler.accept(t);
        }
        let stream = TextStream::new(params.stop)?;
        Ok(Self {
            backend,
            tokenizer,
            usage: Usage {
                prompt_tokens: prompt_ids.len(),
                ..Usage::default()
            },
            prompt: prompt_ids,
            max_tokens: params.max_tokens,
            ignore_eos: params.ignore_eos,
            sampler,
            logprobs: params.logprobs.map(|top| (top, Vec::new())),
            constraint: None,
            masked: Vec::new(),
            stream,
            clock: Box::new(StdClock::default()),
            phase: Phase::Start,
            generated: Vec::new(),
            timings: Timings::default(),
            started_ms: 0.0,
            first_token_ms: 0.0,
            last_token_ms: 0.0,
        })
    }

    /// Samples only tokens `constraint` allows.
    pub fn with_constraint(mut self, constraint: Constraint) -> Self {
        self.constraint = Some(constraint);
        self
    }

    /// Uses another clock (tests, or a host-provided one).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Produces the next token and the text that became safe to emit; `Ok(None)` once finished.
    /// After an error the generation should be dropped.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, GenerateError> {
        let t0 = self.clock.now_ms();
        let logits = match self.phase {
            Phase::Finished(_) => return Ok(None),
            Phase::Start => {
                self.started_ms = t0;
                let reuse = self.prepare_prefill()?;
                let positions = self.prompt.len().saturating_add(self.max_tokens);
                self.backend.reserve(positions.min(self.backend.n_ctx()));
                let logits = self.backend.prefill_and_logits(&self.prompt[reuse..])?;
                self.timings.prefill_ms = self.clock.now_ms() - t0;
                logits
            }
            Phase::Feed(token) => self.backend.prefill_and_logits(&[token])?,
        };
        let logits = match &mut self.constraint {
            Some(constraint) => {
                let t = self.clock.now_ms();
                self.masked.clear();
                self.masked.extend_from_slice(logits);
                constraint.mask(&mut self.masked)?;
                if self.max_tokens - self.generated.len() <= closing_window(self.max_tokens) {
                    constraint.steer_to_close(&mut self.masked);
                }
                self.timings.constraint_ms += self.clock.now_ms() - t;
                &self.masked[..]
            }
            None => logits,
        };
        let token = self.sampler.sample(logits)?;
        if let Some(constraint) = &mut self.constraint {
            let t = self.clock.now_ms();
            constraint.accept(token)?;
            self.timings.constraint_ms += self.clock.now_ms() - t;
        }
        let logprob = match &mut self.logprobs {
            Some((top, all)) => {
                let entry = self.sampler.logprobs(logits, token, *top);
                all.push(entry.clone());
                Some(entry)
            }
            None => None,
        };
        self.record_token(token);
        let mut chunk = self.emit(token);
        chunk.logprobs.extend(logprob);
        Ok(Some(chunk))
    }

    /// Keeps the longest prompt prefix already in the backend's cache (dropping the rest of the
    /// cache) and returns its length: the prompt tokens that need not be run again.
    fn prepare_prefill(&mut self) -> Result<usize, GenerateError> {
        let reuse = self.reusable_prefix();
        if reuse < self.backend.cached_tokens().len() {
            match self.backend.truncate(reuse) {
                Ok(()) => {}
                Err(BackendError::TruncateUnsupported) => self.backend.reset(),
                Err(e) => return Err(e.into()),
            }
        }
        let cached = self.backend.cached_tokens().len();
        if cached > reuse {
            return Err(BackendError::Failed(format!(
                "cache holds {cached} tokens after truncating to {reuse}"
            ))
            .into());
        }
        let reuse = cached;
        self.usage.cached_prompt_tokens = reuse;
        Ok(reuse)
    }

    /// Longest common prefix of the cache and the prompt, leaving at least one prompt token to
    /// run (we need its logits).
    fn reusable_prefix(&self) -> usize {
        let cached = self.backend.cached_tokens();
        let common = cached
            .iter()
            .zip(&self.prompt)
            .take_while(|(a, b)| a == b)
            .count();
        common.min(self.prompt.len() - 1)
    }

    fn record_token(&mut self, token: u32) {
        let now = self.clock.now_ms();
        if self.generated.is_empty() {
            self.first_token_ms = now;
            self.timings.ttft_ms = now - self.started_ms;
        }
        self.last_token_ms = now;
        self.generated.push(token);
        self.sampler.accept(token);
        self.usage.completion_tokens = self.generated.len();
        let decoded = self.generated.len() - 1;
        let secs = (self.last_token_ms - self.first_token_ms) / 1000.0;
        if decoded > 0 && secs > 0.0 {
            self.timings.decode_tokens_per_s = decoded as f64 / secs;
        }
    }

    /// Turns the sampled token into a chunk and decides whether to go on.
    fn emit(&mut self, token: u32) -> Chunk {
        let end_of_turn = !self.ignore_eos && self.tokenizer.is_eot(token);
        let mut text = String::new();
        let mut finish = None;
        if end_of_turn {
            finish = Some(FinishReason::Stop);
        } else {
            let bytes: &[u8] = if self.tokenizer.is_control(token) {
                &[]
            } else {
                self.tokenizer.token_bytes(token)
            };
            let pushed = self.stream.push(bytes);
            text = pushed.text;
            if pushed.stop.is_some() {
                finish = Some(FinishReason::Stop);
            }
        }
        if finish.is_none() && self.generated.len() >= self.max_tokens {
            finish = Some(FinishReason::Length);
        }
        self.phase = match finish {
            Some(reason) => {
                text.push_str(&self.stream.finish());
                Phase::Finished(reason)
            }
            None => Phase::Feed(token),
        };
        Chunk {
            text,
            tokens: vec![token],
            logprobs: Vec::new(),
        }
    }

    /// Why generation ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        match self.phase {
            Phase::Finished(r) => Some(r),
            _ => None,
        }
    }

    /// Whether generation has ended.
    pub fn is_finished(&self) -> bool {
        self.finish_reason().is_some()
    }

    /// Token counts so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Timings so far.
    pub fn timings(&self) -> Timings {
        self.timings
    }

    /// Tokens generated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.generated
    }

    /// With [`GenerateParams::logprobs`], the entries of the tokens generated so far.
    pub fn logprobs(&self) -> Option<&[TokenLogprob]> {
        self.logprobs.as_ref().map(|(_, all)| all.as_slice())
    }

    /// Ends the generation and hands the backend (and its KV cache) back for reuse.
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Runs to the end and collects everything.
    pub fn run_to_end(mut self) -> Result<Completion, GenerateError> {
        let mut text = String::new();
        while let Some(chunk) = self.next_chunk()? {
            text.push_str(&chunk.text);
        }
        Ok(Completion {
            text,
            finish_reason: self.finish_reason().unwrap_or(FinishReason::Length),
            usage: self.usage,
            timings: self.timings,
            tokens: self.generated,
            logprobs: self.logprobs.map(|(_, all)| all),
        })
    }
}

/// All the checks that must pass before any model work.
fn check_request(
    n_ctx: usize,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    params: &GenerateParams,
) -> Result<(), GenerateError> {
    if params.max_tokens == 0 {
        return Err(GenerateError::InvalidInput(
            "max_tokens must be at least 1".into(),
        ));
    }
    if prompt.is_empty() {
        return Err(GenerateError::InvalidInput(
            "the prompt has no tokens".into(),
        ));
    }
    if let Some(&id) = prompt
        .iter()
        .find(|&&id| id as usize >= tokenizer.vocab_size())
    {
        return Err(GenerateError::InvalidInput(format!(
            "prompt token id {id} is outside the vocabulary (size {})",
            tokenizer.vocab_size()
        )));
    }
    if prompt.len().saturating_add(params.max_tokens) > n_ctx {
        return Err(GenerateError::ContextOverflow {
            prompt_tokens: prompt.len(),
            max_tokens: params.max_tokens,
            n_ctx,
        });
    }
    if let Some(top) = params.logprobs.filter(|&top| top > MAX_TOP_LOGPROBS) {
        return Err(GenerateError::InvalidInput(format!(
            "logprobs asks for {top} alternatives per token; at most {MAX_TOP_LOGPROBS}"
        )));
    }
    params.sampling.validate()?;
    Ok(())
}

/// How many of the last tokens of a constrained generation's budget are spent closing the
/// text ([`Constraint::steer_to_close`]): a quarter of `max_tokens`, at most 64.
pub fn closing_window(max_tokens: usize) -> usize {
    (max_tokens / 4).min(64)
}

/// The most alternatives per token [`GenerateParams::logprobs`] may ask for (OpenAI's bound).
pub const MAX_TOP_LOGPROBS: usize = 20;
