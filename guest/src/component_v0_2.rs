//! The `edge:llm/inference@0.2.0` exports: 0.1.0's calls (opening, tokenizing, templating go
//! through the same code), plus per-token log probabilities, `n` answers per call and
//! constrained generation.
//!
//! A call with `n` answers runs them one after another on the model's one session: answer 0
//! evaluates the prompt, every later one finds it in the session's cache (all but its last
//! token, whose logits it needs) and samples with its own generator stream.

use std::cell::RefCell;
use std::rc::Rc;

use crate::bindings::exports::edge::llm0_1_0::inference as v1;
use crate::bindings::exports::edge::llm0_2_0::inference as wit;
use crate::call_stream::{CallScanner, Fragment};
use crate::chat;
use crate::component::{self, ModelResource};
use crate::constraint::ConstraintSpec;
use crate::embed::Pooling;
use crate::generate::{self, BackendError, GenerateError, GenerateParams, Generation};
use crate::model::LoadedModel;
use crate::sampling::{SplitMix64, TokenLogprob};
use crate::tools::{self, Tool, ToolChoice, ToolFormat, ToolRequest};
use crate::Backend;

/// The most answers one call may ask for.
pub const MAX_CHOICES: u32 = 16;

impl wit::Guest for component::Component {
    type Model = ModelV2;
    type Generation = GenerationV2;
}

/// A 0.2.0 `model` resource: the same loaded model as 0.1.0's.
pub struct ModelV2(ModelResource);

impl From<v1::Error> for wit::Error {
    fn from(e: v1::Error) -> Self {
        match e {
            v1::Error::InvalidInput(m) => Self::InvalidInput(m),
            v1::Error::ContextOverflow(o) => Self::ContextOverflow(wit::ContextOverflow {
                prompt_tokens: o.prompt_tokens,
                max_tokens: o.max_tokens,
                context_length: o.context_length,
            }),
            v1::Error::ModelNotFound(m) => Self::ModelNotFound(m),
            v1::Error::ModelNotSupported(m) => Self::ModelNotSupported(m),
            v1::Error::BackendError(m) => Self::BackendError(m),
            v1::Error::RuntimeError(m) => Self::RuntimeError(m),
        }
    }
}

fn error(e: GenerateError) -> wit::Error {
    match e {
        GenerateError::Backend(BackendError::OutOfMemory(m)) => wit::Error::OutOfMemory(m),
        e => v1::Error::from(e).into(),
    }
}

fn backend(b: v1::Backend) -> wit::Backend {
    match b {
        v1::Backend::WasiNn => wit::Backend::WasiNn,
        v1::Backend::Kernel => wit::Backend::Kernel,
    }
}

/// Chat messages, their tool calls' arguments parsed.
fn messages(m: Vec<wit::Message>) -> Result<Vec<chat::Message>, wit::Error> {
    m.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let tool_calls = m
                .tool_calls
                .into_iter()
                .map(|c| {
                    let arguments = serde_json::from_str(&c.arguments).map_err(|e| {
                        wit::Error::InvalidInput(format!(
                            "message {i}: the arguments of tool call `{}` are not JSON: {e}",
                            c.id
                        ))
                    })?;
                    Ok(tools::ToolCall {
                        id: c.id,
                        name: c.name,
                        arguments,
                    })
                })
                .collect::<Result<_, wit::Error>>()?;
            Ok(chat::Message {
                role: m.role,
                content: m.content,
                tool_calls,
                tool_call_id: m.tool_call_id,
            })
        })
        .collect()
}

/// The request's tools, checked; `None` without tools.
fn tool_request(p: &wit::Params) -> Result<Option<ToolRequest>, wit::Error> {
    if p.tools.is_empty() && matches!(p.tool_choice, wit::ToolChoice::None | wit::ToolChoice::Auto)
    {
        return Ok(None);
    }
    let tools = p
        .tools
        .iter()
        .map(|t| {
            let parameters = serde_json::from_str(&t.parameters).map_err(|e| {
                wit::Error::InvalidInput(format!(
                    "tool `{}`: `parameters` is not JSON: {e}",
                    t.name
                ))
            })?;
            Ok(Tool {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters,
            })
        })
        .collect::<Result<_, wit::Error>>()?;
    let request = ToolRequest {
        tools,
        choice: match &p.tool_choice {
            wit::ToolChoice::None => ToolChoice::None,
            wit::ToolChoice::Auto => ToolChoice::Auto,
            wit::ToolChoice::Required => ToolChoice::Required,
            wit::ToolChoice::Function(name) => ToolChoice::Function(name.clone()),
        },
        parallel: p.parallel_tool_calls,
    };
    request.check().map_err(component::invalid)?;
    if request.is_active() && p.constraint.is_some() {
        return Err(wit::Error::InvalidInput(
            "a constraint cannot be combined with tools unless tool-choice is `none`".into(),
        ));
    }
    Ok(Some(request))
}

fn tool_call(c: tools::ToolCall) -> wit::ToolCall {
    wit::ToolCall {
        id: c.id,
        name: c.name,
        arguments: c.arguments.to_string(),
    }
}

/// The generation parameters of answer 0, and the number of answers.
fn params(p: wit::Params) -> Result<(GenerateParams, u32), wit::Error> {
    if !(1..=MAX_CHOICES).contains(&p.n) {
        return Err(wit::Error::InvalidInput(format!(
            "n must be from 1 to {MAX_CHOICES}, got {}",
            p.n
        )));
    }
    let mut g = component::params(v1::Params {
        max_tokens: p.max_tokens,
        temperature: p.temperature,
        top_k: p.top_k,
        top_p: p.top_p,
        min_p: p.min_p,
        repeat_penalty: p.repeat_penalty,
        repeat_last_n: p.repeat_last_n,
        seed: p.seed,
        stop: p.stop,
        ignore_eos: p.ignore_eos,
    })?;
    g.logprobs = p.logprobs.map(|n| n as usize);
    g.constraint = p.constraint.map(constraint).transpose()?;
    Ok((g, p.n))
}

fn constraint(c: wit::Constraint) -> Result<ConstraintSpec, wit::Error> {
    Ok(match c {
        wit::Constraint::JsonSchema(text) => {
            ConstraintSpec::JsonSchema(serde_json::from_str(&text).map_err(|e| {
                wit::Error::InvalidInput(format!("the JSON schema is not valid JSON: {e}"))
            })?)
        }
        wit::Constraint::JsonObject => ConstraintSpec::JsonObject,
        wit::Constraint::Lark(g) => ConstraintSpec::Lark(g),
        wit::Constraint::Gbnf(g) => ConstraintSpec::Gbnf(g),
    })
}

/// Answer `index`'s seed: answer 0 keeps `seed` (so one answer samples as 0.1.0 does), the
/// others draw theirs from a generator keyed by `seed` and the index.
pub fn choice_seed(seed: u64, index: u32) -> u64 {
    if index == 0 {
        return seed;
    }
    SplitMix64::new(seed ^ u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

impl ModelV2 {
    fn start_complete(&self, prompt: &str, p: wit::Params) -> Result<GenerationV2, wit::Error> {
        if tool_request(&p)?.is_some_and(|r| r.is_active()) {
            return Err(wit::Error::InvalidInput(
                "tools need a chat: a raw completion has no template to show them".into(),
            ));
        }
        let ids = self.0.prompt_ids(prompt)?;
        let (params, n) = params(p)?;
        GenerationV2::start(self.0.loaded().clone(), ids, params, n, None)
    }

    fn start_chat(&self, m: Vec<wit::Message>, p: wit::Params) -> Result<GenerationV2, wit::Error> {
        let request = tool_request(&p)?;
        let (ids, format) = self
            .0
            .loaded()
            .chat_ids_with_tools(&messages(m)?, request.as_ref())
            .map_err(component::invalid)?;
        let (mut params, n) = params(p)?;
        let tools = match (format, request) {
            (Some(format), Some(request)) => {
                if let Some(c) = tools::constraint(format, &request) {
                    params.constraint = Some(c);
                }
                Some((format, request))
            }
            _ => None,
        };
        let constrained = tools.is_some() && params.constraint.is_some();
        GenerationV2::start(self.0.loaded().clone(), ids, params, n, tools).map_err(|e| match e {
            // The only constraint is the tools' call: a schema it cannot compile is theirs.
            wit::Error::InvalidInput(m) if constrained => {
                wit::Error::InvalidInput(format!("{}{m}", tools::SCHEMA_ERROR_PREFIX))
            }
            e => e,
        })
    }
}

impl wit::GuestModel for ModelV2 {
    fn open(name_or_path: String, options: wit::OpenOptions) -> Result<wit::Model, wit::Error> {
        let options = v1::OpenOptions {
            backend: options.backend.map(|b| match b {
                wit::Backend::WasiNn => v1::Backend::WasiNn,
                wit::Backend::Kernel => v1::Backend::Kernel,
            }),
            context_length: options.context_length,
        };
        let model = component::open(&name_or_path, options)?;
        Ok(wit::Model::new(ModelV2(ModelResource::new(model))))
    }

    fn info(&self) -> wit::ModelInfo {
        let i = self.0.describe();
        wit::ModelInfo {
            name: i.name,
            architecture: i.architecture,
            parameters: i.parameters,
            context_length: i.context_length,
            trained_context_length: i.trained_context_length,
            vocab_size: i.vocab_size,
            quantization: i.quantization,
            backend: backend(i.backend),
        }
    }

    fn warm_up(&self) -> Result<(), wit::Error> {
        Ok(self.0.warm_up_session()?)
    }

    fn tokenize(&self, text: String, parse_control: bool) -> Result<Vec<u32>, wit::Error> {
        Ok(self.0.tokenize_text(&text, parse_control)?)
    }

    fn detokenize(&self, tokens: Vec<u32>) -> Result<String, wit::Error> {
        Ok(self.0.detokenize_ids(&tokens)?)
    }

    fn tokenize_special(
        &self,
        text: String,
        add_special: bool,
        parse_control: bool,
    ) -> Result<Vec<u32>, wit::Error> {
        self.0
            .loaded()
            .tokenizer()
            .tokenize(&text, add_special, parse_control)
            .map_err(|e| wit::Error::InvalidInput(e.to_string()))
    }

    fn token_pieces(&self, tokens: Vec<u32>) -> Result<Vec<Vec<u8>>, wit::Error> {
        let tokenizer = self.0.loaded().tokenizer();
        let n_vocab = tokenizer.vocab_size();
        tokens
            .iter()
            .map(|&id| match (id as usize) < n_vocab {
                true => Ok(tokenizer.token_bytes(id).to_vec()),
                false => Err(wit::Error::InvalidInput(format!(
                    "token id {id} is outside the vocabulary of {n_vocab} tokens"
                ))),
            })
            .collect()
    }

    fn embed(&self, inputs: Vec<wit::EmbedInput>) -> Result<wit::Embeddings, wit::Error> {
        let loaded = self.0.loaded();
        let pooling = loaded.pooling().map_err(error)?;
        let tokenizer = loaded.tokenizer();
        let n_vocab = tokenizer.vocab_size();
        let ids = inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| {
                let ids = match input {
                    wit::EmbedInput::Text(text) => tokenizer
                        .tokenize(&text, true, true)
                        .map_err(|e| wit::Error::InvalidInput(format!("input {i}: {e}")))?,
                    wit::EmbedInput::Tokens(ids) => ids,
                };
                if let Some(id) = ids.iter().find(|&&id| id as usize >= n_vocab) {
                    return Err(wit::Error::InvalidInput(format!(
                        "input {i}: token id {id} is outside the vocabulary of {n_vocab} tokens"
                    )));
                }
                Ok(ids)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let vectors = loaded.embed(&ids).map_err(error)?;
        let prompt_tokens = ids.iter().map(Vec::len).sum::<usize>();
        Ok(wit::Embeddings {
            vectors,
            pooling: match pooling {
                Pooling::Mean => wit::Pooling::Mean,
                Pooling::Cls => wit::Pooling::Cls,
                Pooling::Last => wit::Pooling::Last,
            },
            prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
        })
    }

    fn apply_chat_template(&self, m: Vec<wit::Message>) -> Result<String, wit::Error> {
        self.0
            .loaded()
            .render_chat(&messages(m)?)
            .map_err(|e| wit::Error::InvalidInput(e.to_string()))
    }

    fn complete(&self, prompt: String, p: wit::Params) -> Result<wit::Completion, wit::Error> {
        self.start_complete(&prompt, p)?.run_to_end()
    }

    fn chat(&self, m: Vec<wit::Message>, p: wit::Params) -> Result<wit::Completion, wit::Error> {
        self.start_chat(m, p)?.run_to_end()
    }

    fn stream_complete(
        &self,
        prompt: String,
        p: wit::Params,
    ) -> Result<wit::Generation, wit::Error> {
        Ok(wit::Generation::new(self.start_complete(&prompt, p)?))
    }

    fn stream_chat(
        &self,
        m: Vec<wit::Message>,
        p: wit::Params,
    ) -> Result<wit::Generation, wit::Error> {
        Ok(wit::Generation::new(self.start_chat(m, p)?))
    }
}

/// A 0.2.0 `generation`: its answers one after another, then the summary.
pub struct GenerationV2 {
    model: Rc<LoadedModel>,
    prompt: Vec<u32>,
    params: GenerateParams,
    n: u32,
    /// With tools: the format answers are parsed in, and the request.
    tools: Option<(ToolFormat, ToolRequest)>,
    /// With a call forced (`required` or a named function): the format, whose calls stream
    /// their arguments as they are generated.
    streams_calls: Option<ToolFormat>,
    state: RefCell<State>,
}

enum State {
    Running(Box<Running>),
    Done(wit::Completion),
    Failed,
}

/// The answer being generated and those already finished.
struct Running {
    index: u32,
    generation: Generation<Box<dyn Backend>>,
    text: String,
    done: Vec<wit::Choice>,
    /// Answer 0's usage and timings, which the summary reports (with every answer's tokens).
    first: Option<(generate::Usage, generate::Timings)>,
    completion_tokens: usize,
    /// With tools, once the answer has ended: its content, calls and finish reason.
    parsed: Option<(String, Vec<wit::ToolCall>, wit::FinishReason)>,
    /// With streamed calls: the scanner following the answer, and the ids of the calls it
    /// has begun (the parsed calls get these, so the summary names them as streamed).
    calls: Option<(CallScanner, Vec<String>)>,
}

impl Running {
    fn new(
        index: u32,
        generation: Generation<Box<dyn Backend>>,
        streams_calls: Option<ToolFormat>,
    ) -> Box<Self> {
        Box::new(Self {
            index,
            generation,
            text: String::new(),
            done: Vec::new(),
            first: None,
            completion_tokens: 0,
            parsed: None,
            calls: streams_calls.map(|f| (CallScanner::new(f), Vec::new())),
        })
    }

    /// With streamed calls: the calls `text` (the answer's next piece) begins and continues,
    /// as the chunk's `tool-calls` carry them: a new call with its id and name, then more
    /// argument text under an empty id.
    fn stream_calls(&mut self, text: &str) -> Vec<wit::ToolCall> {
        let Some((scanner, ids)) = &mut self.calls else {
            return Vec::new();
        };
        scanner
            .feed(text)
            .into_iter()
            .map(|Fragment { name, arguments }| match name {
                Some(name) => {
                    let id = tools::new_call_id();
                    ids.push(id.clone());
                    wit::ToolCall {
                        id,
                        name,
                        arguments,
                    }
                }
                None => wit::ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments,
                },
            })
            .collect()
    }

    /// The answer's parsed calls named with the ids they were streamed under.
    fn name_as_streamed(&self, calls: &mut [wit::ToolCall]) {
        if let Some((_, ids)) = &self.calls {
            name_as_streamed(ids, calls);
        }
    }
}

/// Gives `calls` the `ids` their streamed fragments had (when the parse found them all).
fn name_as_streamed(ids: &[String], calls: &mut [wit::ToolCall]) {
    if ids.len() == calls.len() {
        for (call, id) in calls.iter_mut().zip(ids) {
            call.id = id.clone();
        }
    }
}

fn finish_reason(r: generate::FinishReason) -> wit::FinishReason {
    match r {
        generate::FinishReason::Stop => wit::FinishReason::Stop,
        generate::FinishReason::Length => wit::FinishReason::Length,
    }
}

impl GenerationV2 {
    fn start(
        model: Rc<LoadedModel>,
        prompt: Vec<u32>,
        params: GenerateParams,
        n: u32,
        tools: Option<(ToolFormat, ToolRequest)>,
    ) -> Result<Self, wit::Error> {
        let generation = model.start(prompt.clone(), params.clone()).map_err(error)?;
        let streams_calls = tools.as_ref().and_then(|(format, request)| {
            matches!(
                request.choice,
                ToolChoice::Required | ToolChoice::Function(_)
            )
            .then_some(*format)
        });
        Ok(Self {
            model,
            prompt,
            params,
            n,
            tools,
            streams_calls,
            state: RefCell::new(State::Running(Running::new(0, generation, streams_calls))),
        })
    }

    /// An answer's content and tool calls; `reason` becomes `tool-calls` when it made some.
    fn parse(
        &self,
        text: &str,
        reason: &mut Option<wit::FinishReason>,
    ) -> (String, Vec<wit::ToolCall>) {
        let Some((format, request)) = &self.tools else {
            return (text.to_string(), Vec::new());
        };
        let parsed = tools::parse(*format, request, text);
        if !parsed.calls.is_empty() {
            *reason = Some(wit::FinishReason::ToolCalls);
        }
        (
            parsed.content,
            parsed.calls.into_iter().map(tool_call).collect(),
        )
    }

    fn candidate(&self, (token, logprob): (u32, f32)) -> wit::TokenCandidate {
        let tokenizer = self.model.tokenizer();
        let bytes = if tokenizer.is_control(token) {
            Vec::new()
        } else {
            tokenizer.token_bytes(token).to_vec()
        };
        wit::TokenCandidate {
            token,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
            logprob,
        }
    }

    fn logprob(&self, l: &TokenLogprob) -> wit::TokenLogprob {
        wit::TokenLogprob {
            chosen: self.candidate(l.chosen),
            top: l.top.iter().map(|&t| self.candidate(t)).collect(),
        }
    }

    /// The next chunk of the current answer; once it ends, the first of the next answer's;
    /// `None` after the last.
    fn next_chunk(&self) -> Result<Option<wit::Chunk>, wit::Error> {
        let mut state = self.state.borrow_mut();
        loop {
            let State::Running(run) = &mut *state else {
                return Ok(None);
            };
            match run.generation.next_chunk() {
                Ok(Some(chunk)) => {
                    run.text.push_str(&chunk.text);
                    let mut reason = run.generation.finish_reason().map(finish_reason);
                    let (text, tool_calls) = match (&self.tools, reason) {
                        // A forced call streams its arguments as they come.
                        (Some(_), None) => (String::new(), run.stream_calls(&chunk.text)),
                        // Otherwise the text waits for the end of the answer, to be parsed.
                        (Some(_), Some(_)) => {
                            let fragments = run.stream_calls(&chunk.text);
                            let (content, mut calls) = self.parse(&run.text, &mut reason);
                            run.name_as_streamed(&mut calls);
                            run.parsed = reason.map(|r| (content.clone(), calls.clone(), r));
                            match run.calls {
                                // Streamed: the last fragments; no text beside the calls, even
                                // of a call cut off by max-tokens.
                                Some(_) => (String::new(), fragments),
                                None => (content, calls),
                            }
                        }
                        (None, _) => (chunk.text, Vec::new()),
                    };
                    return Ok(Some(wit::Chunk {
                        choice: run.index,
                        text,
                        tokens: chunk.tokens,
                        logprobs: chunk.logprobs.iter().map(|l| self.logprob(l)).collect(),
                        finish_reason: reason,
                        tool_calls,
                    }));
                }
                Ok(None) => {
                    if let Err(e) = self.next_answer(&mut state) {
                        *state = State::Failed;
                        return Err(e);
                    }
                }
                Err(e) => {
                    *state = State::Failed;
                    return Err(error(e));
                }
            }
        }
    }

    /// Records the finished answer and starts the next one, or ends with the summary.
    fn next_answer(&self, state: &mut State) -> Result<(), wit::Error> {
        let State::Running(run) = std::mem::replace(state, State::Failed) else {
            return Ok(());
        };
        let Running {
            index,
            generation,
            text,
            mut done,
            first,
            completion_tokens,
            parsed,
            calls,
        } = *run;
        let usage = generation.usage();
        let first = first.unwrap_or((usage, generation.timings()));
        let completion_tokens = completion_tokens + usage.completion_tokens;
        let mut reason = finish_reason(
            generation
                .finish_reason()
                .unwrap_or(generate::FinishReason::Length),
        );
        let (text, tool_calls) = match (&self.tools, parsed) {
            (_, Some((content, calls, r))) => {
                reason = r;
                (content, calls)
            }
            (Some(_), None) => {
                let mut r = Some(reason);
                let (content, mut parsed) = self.parse(&text, &mut r);
                if let Some((_, ids)) = &calls {
                    name_as_streamed(ids, &mut parsed);
                }
                reason = r.unwrap_or(reason);
                (content, parsed)
            }
            (None, None) => (text, Vec::new()),
        };
        done.push(wit::Choice {
            index,
            text,
            tool_calls,
            tokens: generation.tokens().to_vec(),
            finish_reason: reason,
            logprobs: generation
                .logprobs()
                .map(|all| all.iter().map(|l| self.logprob(l)).collect()),
        });
        self.model.park(generation.into_backend());
        let index = index + 1;
        if index < self.n {
            let mut params = self.params.clone();
            params.sampling.seed = choice_seed(params.sampling.seed, index);
            let generation = self
                .model
                .start(self.prompt.clone(), params)
                .map_err(error)?;
            let mut next = Running::new(index, generation, self.streams_calls);
            next.done = done;
            next.first = Some(first);
            next.completion_tokens = completion_tokens;
            *state = State::Running(next);
            return Ok(());
        }
        let (usage, timings) = first;
        *state = State::Done(wit::Completion {
            choices: done,
            usage: wit::Usage {
                prompt_tokens: usage.prompt_tokens as u32,
                completion_tokens: completion_tokens as u32,
                cached_prompt_tokens: usage.cached_prompt_tokens as u32,
            },
            timings: wit::Timings {
                prefill_ms: timings.prefill_ms,
                ttft_ms: timings.ttft_ms,
                decode_tokens_per_s: timings.decode_tokens_per_s,
                constraint_ms: timings.constraint_ms,
            },
            backend: backend(component::backend(self.model.info().backend)),
        });
        Ok(())
    }

    fn summary(&self) -> Option<wit::Completion> {
        match &*self.state.borrow() {
            State::Done(c) => Some(c.clone()),
            _ => None,
        }
    }

    fn run_to_end(self) -> Result<wit::Completion, wit::Error> {
        while self.next_chunk()?.is_some() {}
        self.summary()
            .ok_or_else(|| wit::Error::RuntimeError("generation ended without a summary".into()))
    }
}

impl Drop for GenerationV2 {
    fn drop(&mut self) {
        // A cancelled generation still leaves a useful KV cache (its prompt prefix).
        if let State::Running(run) = std::mem::replace(self.state.get_mut(), State::Failed) {
            self.model.park(run.generation.into_backend());
        }
    }
}

impl wit::GuestGeneration for GenerationV2 {
    fn next(&self) -> Result<Option<wit::Chunk>, wit::Error> {
        self.next_chunk()
    }

    fn finish(&self) -> Option<wit::Completion> {
        self.summary()
    }
}
