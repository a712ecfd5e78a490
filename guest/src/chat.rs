//! Chat prompts: renders the model's Jinja chat template (`tokenizer.chat_template`) with
//! minijinja, the way Hugging Face's `apply_chat_template` does.
//!
//! Templates come from model files, which may be hostile: rendering runs with a fuel budget
//! (bounded instruction count), a low recursion limit and a cap on the output size, and every
//! failure is a typed [`ChatError`].
//!
//! Messages come from users, who may be hostile too: a message whose text is `<|im_end|>` must
//! not end its turn. [`ChatTemplate::encode`] therefore tokenizes a chat so that only the
//! template's own text yields control tokens, and the messages' texts are plain text:
//!
//! 1. It renders the chat twice: as is, and with every non-empty message text wrapped in two
//!    marker characters (an opening and a closing one) that occur nowhere in the messages, the
//!    template source or the BOS/EOS texts (the first two unused of the Unicode noncharacters
//!    U+FDD0..U+FDEF, then the private-use planes 15 and 16). The string functions templates
//!    use on message texts (`trim`, `strip`/`lstrip`/`rstrip`, `startswith`/`endswith`,
//!    `split`, `title`) treat the markers as invisible: trimming moves past them, a split keeps
//!    each piece of a message's text wrapped.
//! 2. The markers are taken out of the marked rendering, leaving each message text's byte range
//!    in the prompt. The ranges are trusted only if the markers pair up and the text left is
//!    exactly the plain rendering; a template that did something else with the markers (sliced
//!    a message, compared it, measured its length) leaves the chat untracked.
//! 3. The prompt is tokenized whole (so tokens across a message's edges are those of the plain
//!    text), with control-token strings parsed only where they overlap no message text
//!    ([`Tokenizer::encode_with_plain_spans`]).
//!
//! An untracked chat is tokenized with control tokens parsed throughout, which is safe only if
//! no message contains a control token's text: if one does, it is refused
//! ([`ChatError::UntrackedControlText`]). A role containing a control token's text is always
//! refused (roles are compared by templates, so they cannot be marked).

mod python;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::Write;
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use edge_llm_kernel::gguf::Gguf;
use minijinja::value::Value;
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior};

use crate::tokenizer::Tokenizer;
use crate::tools::ToolCall;

/// GGUF key of the chat template.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// Resource limits for rendering a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    /// Template instructions allowed per render (minijinja fuel).
    pub fuel: u64,
    /// Nesting depth allowed (loops, macros, includes).
    pub recursion: usize,
    /// Largest rendered prompt, in bytes.
    pub max_output_bytes: usize,
    /// Largest template source accepted, in bytes.
    pub max_template_bytes: usize,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        Self {
            fuel: 1_000_000,
            recursion: 64,
            max_output_bytes: 4 << 20,
            max_template_bytes: 256 << 10,
        }
    }
}

/// The instant templates read with `strftime_now` (Llama 3's "Today Date", for one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    /// The system clock, in UTC.
    #[default]
    System,
    /// A fixed instant, in seconds since the Unix epoch (UTC).
    Fixed(i64),
}

/// Errors from loading or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The model has no `tokenizer.chat_template`.
    #[error("the model has no chat template (`{CHAT_TEMPLATE_KEY}`)")]
    NoTemplate,
    /// The template metadata could not be read.
    #[error("reading `{CHAT_TEMPLATE_KEY}`: {0}")]
    Metadata(String),
    /// The template source is larger than [`TemplateLimits::max_template_bytes`].
    #[error("chat template is {size} bytes, more than the {limit}-byte limit")]
    TemplateTooLarge {
        /// Template size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The template does not parse.
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    /// The template ran out of fuel (too many instructions).
    #[error("chat template exceeded its instruction budget ({fuel} steps)")]
    OutOfFuel {
        /// The budget.
        fuel: u64,
    },
    /// The template nested too deeply.
    #[error("chat template exceeded the recursion limit ({limit})")]
    RecursionLimit {
        /// The limit.
        limit: usize,
    },
    /// The rendered prompt grew past [`TemplateLimits::max_output_bytes`].
    #[error("rendered chat prompt exceeds {limit} bytes")]
    OutputTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The template raised an exception (`raise_exception(...)`).
    #[error("chat template raised an error: {0}")]
    Raised(String),
    /// Any other rendering error.
    #[error("chat template failed to render: {0}")]
    Render(String),
    /// A chat needs at least one message.
    #[error("the chat has no messages")]
    NoMessages,
    /// A message has an empty role.
    #[error("message {index} has an empty role")]
    EmptyRole {
        /// Index of the message.
        index: usize,
    },
    /// A message's role contains the text of a control token.
    #[error("message {index}'s role contains the control token `{token}`")]
    ControlTokenInRole {
        /// Index of the message.
        index: usize,
        /// The control token's text.
        token: String,
    },
    /// A message contains the text of a control token, and the template handles message texts
    /// in a way that keeps them from being told apart from its own text (see the module doc).
    #[error(
        "message {index} contains the control token text `{token}`, and this chat template \
         rewrites message texts too much to keep them apart from its own control tokens"
    )]
    UntrackedControlText {
        /// Index of the message.
        index: usize,
        /// The control token's text.
        token: String,
    },
    /// A tool definition or a message's tool call contains a control token's text (they are
    /// rendered as the template's own text, so it would become that token).
    #[error("a tool or tool call contains the control token text `{0}`")]
    ControlTokenInTools(String),
    /// The rendered prompt could not be tokenized.
    #[error("tokenizing the chat prompt: {0}")]
    Tokenize(String),
}

/// A rendered chat and where its messages' texts lie in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedChat {
    /// The prompt, exactly as [`ChatTemplate::render`] renders it.
    pub text: String,
    /// The byte ranges of `text` that came from message texts, in order and disjoint; `None`
    /// if the template handled message texts in a way they could not be followed through.
    pub message_text: Option<Vec<Range<usize>>>,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool`, …
    pub role: String,
    /// The text of the message.
    pub content: String,
    /// An assistant message's tool calls, rendered as OpenAI's `tool_calls` (each
    /// `{id, type: "function", function: {name, arguments}}`, the arguments a JSON object).
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message's `tool_call_id`.
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template, ready to render conversations.
pub struct ChatTemplate {
    env: Environment<'static>,
    limits: TemplateLimits,
    clock: Clock,
    bos_token: String,
    eos_token: String,
    /// Marker candidates that the template source, BOS or EOS text contain (never used).
    reserved: BTreeSet<char>,
    /// The template's source.
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("limits", &self.limits)
            .field("clock", &self.clock)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

const TEMPLATE_NAME: &str = "chat";

impl ChatTemplate {
    /// Loads `tokenizer.chat_template` from a GGUF file. `bos_token`/`eos_token` are the texts
    /// the template sees in those variables (usually the tokenizer's BOS/EOS token text).
    pub fn from_gguf(
        gguf: &Gguf,
        bos_token: &str,
        eos_token: &str,
        limits: TemplateLimits,
    ) -> Result<Self, ChatError> {
        if gguf.get(CHAT_TEMPLATE_KEY).is_none() {
            return Err(ChatError::NoTemplate);
        }
        let source = gguf
            .get_str(CHAT_TEMPLATE_KEY)
            .map_err(|e| ChatError::Metadata(e.to_string()))?;
        Self::new(source, bos_token, eos_token, limits)
    }

    /// Loads the model's template with `bos_token`/`eos_token` set to the texts of the
    /// tokenizer's BOS and EOS tokens (empty when the model has none).
    pub fn for_model(
        gguf: &Gguf,
        tokenizer: &Tokenizer,
        limits: TemplateLimits,
    ) -> Result<Self, ChatError> {
        let text = |id: Option<u32>| id.map(|id| tokenizer.token_text(id)).unwrap_or_default();
        Self::from_gguf(
            gguf,
            &text(tokenizer.bos_id()),
            &text(tokenizer.eos_id()),
            limits,
        )
    }

    /// Compiles a template from source.
    pub fn new(
        source: &str,
        bos_token: &str,
        eos_token: &str,
        limits: TemplateLimits,
    ) -> Result<Self, ChatError> {
        if source.len() > limits.max_template_bytes {
            return Err(ChatError::TemplateTooLarge {
                size: source.len(),
                limit: limits.max_template_bytes,
            });
        }
        let clock = Clock::default();
        let mut env = build_env(limits, clock);
        env.add_template_owned(TEMPLATE_NAME, generation_blocks_as_ifs(source).into_owned())
            .map_err(|e| ChatError::Syntax(describe(&e)))?;
        Ok(Self {
            env,
            limits,
            clock,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            reserved: marker_candidates_in([source, bos_token, eos_token]),
            source: source.to_owned(),
        })
    }

    /// Renders a conversation. With `add_generation_prompt` the template appends the opening of
    /// the assistant's turn.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        self.render_with(messages, add_generation_prompt, None, None)
    }

    /// Renders a conversation with the template's `tools` variable set (OpenAI's tool list).
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        self.render_with(messages, add_generation_prompt, None, tools)
    }

    /// The template's source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation like [`ChatTemplate::render`] and finds where each message's text
    /// landed in the prompt (see the module doc).
    pub fn render_tracked(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<RenderedChat, ChatError> {
        self.render_tracked_with_tools(messages, None, add_generation_prompt)
    }

    fn render_tracked_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<RenderedChat, ChatError> {
        let text = self.render_with(messages, add_generation_prompt, None, tools)?;
        let marks = Marks::pick(&self.reserved, messages);
        let message_text = match marks {
            // A marked rendering may fail where the plain one did not (a template that tests a
            // message's length, say): then the chat is untracked, not refused.
            Some(marks) => {
                match self.render_with(messages, add_generation_prompt, Some(marks), tools) {
                    Ok(marked) => marks
                        .strip(&marked)
                        .and_then(|(plain, spans)| (plain == text).then_some(spans)),
                    Err(_) => None,
                }
            }
            None => None,
        };
        Ok(RenderedChat { text, message_text })
    }

    /// Renders and tokenizes a conversation so that only the template's own text yields
    /// control tokens: a message's text is tokenized as plain text even where it spells one
    /// (see the module doc).
    pub fn encode(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, ChatError> {
        self.encode_with_tools(tokenizer, messages, None, add_generation_prompt)
    }

    /// [`ChatTemplate::encode`] with the template's `tools` variable set. The tools and the
    /// messages' tool calls are rendered as template text, so none of them may contain a
    /// control token's text ([`ChatError::ControlTokenInTools`]).
    pub fn encode_with_tools(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, ChatError> {
        for (index, m) in messages.iter().enumerate() {
            if let Some(token) = tokenizer.control_text_in(&m.role) {
                return Err(ChatError::ControlTokenInRole {
                    index,
                    token: token.to_owned(),
                });
            }
            let calls = m
                .tool_calls
                .iter()
                .flat_map(|c| [c.id.clone(), c.name.clone(), c.arguments.to_string()])
                .chain(m.tool_call_id.clone());
            for text in calls {
                if let Some(token) = tokenizer.control_text_in(&text) {
                    return Err(ChatError::ControlTokenInTools(token.to_owned()));
                }
            }
        }
        if let Some(token) = tools.and_then(|t| tokenizer.control_text_in(&t.to_string())) {
            return Err(ChatError::ControlTokenInTools(token.to_owned()));
        }
        let rendered = self.render_tracked_with_tools(messages, tools, add_generation_prompt)?;
        let plain = match rendered.message_text {
            Some(spans) => spans,
            None => {
                for (index, m) in messages.iter().enumerate() {
                    if let Some(token) = tokenizer.control_text_in(&m.content) {
                        return Err(ChatError::UntrackedControlText {
                            index,
                            token: token.to_owned(),
                        });
                    }
                }
                Vec::new()
            }
        };
        tokenizer
            .encode_with_plain_spans(&rendered.text, &plain)
            .map_err(|e| ChatError::Tokenize(e.to_string()))
    }

    /// Sets the instant `strftime_now` formats.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
        add_strftime_now(&mut self.env, clock);
    }

    /// Renders the template with a context of the caller's: `messages` (OpenAI-shaped maps,
    /// which may carry `tool_calls`, `tool_call_id`, `name` or a `null` content), `tools`,
    /// `add_generation_prompt` and any variable a template reads. `bos_token` and `eos_token`
    /// are the model's unless the context sets them. Message texts are not tracked (see
    /// [`ChatTemplate::encode`] for chats whose texts must stay plain text).
    pub fn render_context(&self, context: Value) -> Result<String, ChatError> {
        let tokens = Value::from_iter([
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ]);
        self.render_value(minijinja::context! { ..context, ..tokens })
    }

    fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        marks: Option<Marks>,
        tools: Option<&serde_json::Value>,
    ) -> Result<String, ChatError> {
        if messages.is_empty() {
            return Err(ChatError::NoMessages);
        }
        if let Some(index) = messages.iter().position(|m| m.role.is_empty()) {
            return Err(ChatError::EmptyRole { index });
        }
        let mut ctx = vec![
            ("messages", messages_value(messages, marks)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ];
        if let Some(marks) = marks {
            ctx.push((MARKS_VAR, Value::from(marks.to_string())));
        }
        if let Some(tools) = tools {
            ctx.push(("tools", Value::from_serialize(tools)));
        }
        self.render_value(Value::from_iter(ctx))
    }

    fn render_value(&self, ctx: Value) -> Result<String, ChatError> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ChatError::Render(describe(&e)))?;
        let mut out = CappedWriter::new(self.limits.max_output_bytes);
        let result = tmpl.render_captured_to(ctx, &mut out);
        if out.overflowed {
            return Err(ChatError::OutputTooLarge {
                limit: self.limits.max_output_bytes,
            });
        }
        result.map_err(|e| self.classify(&e))?;
        String::from_utf8(out.buf).map_err(|e| ChatError::Render(e.to_string()))
    }

    /// Renders one user message with the template's default system prompt and the assistant's
    /// turn opened (what `edge-llm run --chat` does).
    pub fn render_user(&self, prompt: &str) -> Result<String, ChatError> {
        self.render(&[Message::user(prompt)], true)
    }

    fn classify(&self, err: &minijinja::Error) -> ChatError {
        let text = describe(err);
        match err.kind() {
            ErrorKind::OutOfFuel => ChatError::OutOfFuel {
                fuel: self.limits.fuel,
            },
            ErrorKind::InvalidOperation if text.contains("recursion") => {
                ChatError::RecursionLimit {
                    limit: self.limits.recursion,
                }
            }
            ErrorKind::InvalidOperation if text.contains(RAISE_MARKER) => {
                ChatError::Raised(raised_message(err))
            }
            _ => ChatError::Render(text),
        }
    }
}

const RAISE_MARKER: &str = "raise_exception: ";

fn raised_message(err: &minijinja::Error) -> String {
    let detail = err.detail().unwrap_or_default();
    detail
        .strip_prefix(RAISE_MARKER)
        .unwrap_or(detail)
        .to_owned()
}

/// Error text with the minijinja kind, detail and line.
fn describe(err: &minijinja::Error) -> String {
    match err.line() {
        Some(line) => format!("{err} (line {line})"),
        None => err.to_string(),
    }
}

fn messages_value(messages: &[Message], marks: Option<Marks>) -> Value {
    messages
        .iter()
        .map(|m| {
            let content = match marks {
                // An empty text has nothing to protect, and templates test it for emptiness.
                Some(marks) if !m.content.is_empty() => {
                    Value::from(format!("{}{}{}", marks.open, m.content, marks.close))
                }
                _ => Value::from(m.content.as_str()),
            };
            let mut fields = vec![("role", Value::from(m.role.as_str())), ("content", content)];
            if !m.tool_calls.is_empty() {
                let calls: Vec<serde_json::Value> = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        })
                    })
                    .collect();
                fields.push(("tool_calls", Value::from_serialize(&calls)));
            }
            if let Some(id) = &m.tool_call_id {
                fields.push(("tool_call_id", Value::from(id.as_str())));
            }
            Value::from_iter(fields)
        })
        .collect()
}

/// The context variable holding the markers of a tracked rendering (its two characters).
const MARKS_VAR: &str = "__edge_llm_message_marks";

/// Marker candidates, in order of preference: the noncharacters U+FDD0..U+FDEF, then the
/// private-use planes 15 and 16.
fn marker_candidates() -> impl Iterator<Item = char> {
    (0xFDD0..=0xFDEF)
        .chain(0xF_0000..=0xF_FFFD)
        .chain(0x10_0000..=0x10_FFFD)
        .filter_map(char::from_u32)
}

fn is_marker_candidate(c: char) -> bool {
    matches!(c, '\u{FDD0}'..='\u{FDEF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}')
}

/// The marker candidates that occur in `texts`.
fn marker_candidates_in<'a>(texts: impl IntoIterator<Item = &'a str>) -> BTreeSet<char> {
    texts
        .into_iter()
        .flat_map(str::chars)
        .filter(|&c| is_marker_candidate(c))
        .collect()
}

/// The two characters that wrap each message text in a tracked rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marks {
    open: char,
    close: char,
}

impl std::fmt::Display for Marks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.open, self.close)
    }
}

impl Marks {
    /// The first two candidates that occur neither in `reserved` nor in any message.
    fn pick(reserved: &BTreeSet<char>, messages: &[Message]) -> Option<Self> {
        let used =
            marker_candidates_in(messages.iter().flat_map(|m| [m.role.as_str(), &m.content]));
        let mut free = marker_candidates().filter(|c| !reserved.contains(c) && !used.contains(c));
        Some(Self {
            open: free.next()?,
            close: free.next()?,
        })
    }

    /// The markers of the rendering `state` belongs to, if it is a tracked one.
    fn of(state: &State) -> Option<Self> {
        let value = state.lookup(MARKS_VAR)?;
        let mut chars = value.as_str()?.chars();
        Some(Self {
            open: chars.next()?,
            close: chars.next()?,
        })
    }

    fn is_mark(marks: Option<Self>, c: char) -> bool {
        marks.is_some_and(|m| c == m.open || c == m.close)
    }

    /// `marked` without its markers, and the byte ranges of that text the marker pairs
    /// enclosed (empty ones left out); `None` unless every marker pairs up, unnested.
    fn strip(self, marked: &str) -> Option<(String, Vec<Range<usize>>)> {
        let mut text = String::with_capacity(marked.len());
        let mut spans: Vec<Range<usize>> = Vec::new();
        let mut open_at = None;
        for c in marked.chars() {
            if c == self.open {
                if open_at.replace(text.len()).is_some() {
                    return None;
                }
            } else if c == self.close {
                let start = open_at.take()?;
                if start < text.len() {
                    spans.push(start..text.len());
                }
            } else {
                text.push(c);
            }
        }
        open_at.is_none().then_some((text, spans))
    }
}

/// Removes the characters `strip` selects from the start and/or end of `s`, passing over
/// markers (which stay, in order) as if they were not there.
fn strip_marked(
    s: &str,
    marks: Option<Marks>,
    strip: impl Fn(char) -> bool,
    start: bool,
    end: bool,
) -> String {
    let mut front = String::new();
    let mut rest = s;
    if start {
        let mut cut = s.len();
        for (i, c) in s.char_indices() {
            if Marks::is_mark(marks, c) {
                front.push(c);
            } else if !strip(c) {
                cut = i;
                break;
            }
        }
        rest = &s[cut..];
    }
    let mut back = Vec::new();
    if end {
        let mut cut = 0;
        for (i, c) in rest.char_indices().rev() {
            if Marks::is_mark(marks, c) {
                back.push(c);
            } else if !strip(c) {
                cut = i + c.len_utf8();
                break;
            }
        }
        rest = &rest[..cut];
    }
    let mut out = front;
    out.push_str(rest);
    out.extend(back.iter().rev());
    out
}

/// `s` without markers.
fn unmarked(s: &str, marks: Option<Marks>) -> Cow<'_, str> {
    if s.chars().any(|c| Marks::is_mark(marks, c)) {
        s.chars().filter(|&c| !Marks::is_mark(marks, c)).collect()
    } else {
        Cow::Borrowed(s)
    }
}

/// Splits `s` at `sep` (or at whitespace, dropping empty pieces: Python's `str.split`), each
/// piece of a marked text wrapped in its own markers.
fn split_marked(s: &str, sep: Option<&str>, marks: Option<Marks>) -> Vec<String> {
    let pieces: Vec<&str> = match sep {
        Some(sep) => s.split(sep).collect(),
        None => s.split(char::is_whitespace).collect(),
    };
    // Whether the piece starts inside a message text (separators hold no markers).
    let mut inside = false;
    let mut out = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let mut text = String::with_capacity(piece.len() + 8);
        let mut empty = true;
        if let (true, Some(m)) = (inside, marks) {
            text.push(m.open);
        }
        for c in piece.chars() {
            match marks {
                Some(m) if c == m.open => inside = true,
                Some(m) if c == m.close => inside = false,
                _ => empty = false,
            }
            text.push(c);
        }
        if let (true, Some(m)) = (inside, marks) {
            text.push(m.close);
        }
        if sep.is_some() || !empty {
            out.push(text);
        }
    }
    out
}

/// The environment Hugging Face's `apply_chat_template` renders in: Jinja2 with `trim_blocks`
/// and `lstrip_blocks`, the trailing newline kept, and its additions `raise_exception`,
/// `strftime_now` and a `tojson` with `json.dumps`'s options.
fn build_env(limits: TemplateLimits, clock: Clock) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(limits.recursion);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.add_function("raise_exception", raise_exception);
    add_strftime_now(&mut env, clock);
    env.add_filter("tojson", python::tojson);
    env.add_filter("length", length);
    env.add_filter("count", length);
    env.add_filter("string", |value: &Value| {
        python::str(value).map(Value::from)
    });
    env.add_test("iterable", |value: &Value| python::is_iterable(value));
    env.set_formatter(|out, _state, value| python::format(out, value));
    env.add_filter("trim", trim_filter);
    env.set_unknown_method_callback(python_methods);
    env
}

/// `length`, where Jinja2 counts an undefined value as empty.
fn length(value: &Value) -> Result<Value, minijinja::Error> {
    if value.is_undefined() {
        return Ok(Value::from(0));
    }
    minijinja::filters::length(value).map(Value::from)
}

fn add_strftime_now(env: &mut Environment<'static>, clock: Clock) {
    env.add_function("strftime_now", move |format: &str| {
        strftime_now(clock, format)
    });
}

/// Python's `datetime.now().strftime(format)`, in UTC.
fn strftime_now(clock: Clock, format: &str) -> Result<Value, minijinja::Error> {
    use chrono::format::{Item, StrftimeItems};
    let seconds = match clock {
        Clock::System => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        Clock::Fixed(seconds) => seconds,
    };
    let bad = |what: &str| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("strftime_now: {what}"))
    };
    let now = chrono::DateTime::from_timestamp(seconds, 0)
        .ok_or_else(|| bad("the clock is out of range"))?;
    let items: Vec<Item> = StrftimeItems::new(format).collect();
    if items.iter().any(|item| matches!(item, Item::Error)) {
        return Err(bad(&format!("unsupported format {format:?}")));
    }
    Ok(Value::from(
        now.format_with_items(items.into_iter()).to_string(),
    ))
}

/// Hugging Face's templates may mark the assistant's text with `{% generation %}` …
/// `{% endgeneration %}` (its `AssistantTracker` extension), which renders the body unchanged.
/// minijinja has no such tag: each is rewritten as `{% if true %}` / `{% endif %}`, which
/// renders the same, whitespace control included.
fn generation_blocks_as_ifs(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        // The tag's inside: from after `{%` to the next `%}` (an unclosed tag ends the scan).
        let Some(len) = rest[start + 2..].find("%}") else {
            break;
        };
        let inner = &rest[start + 2..start + 2 + len];
        let body = inner
            .trim_start_matches(['-', '+'])
            .trim_end_matches(['-', '+'])
            .trim();
        let replacement = match body {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        out.push_str(&rest[..start + 2]);
        match replacement {
            Some(r) => {
                let at = inner.find(body).unwrap_or(0);
                out.push_str(&inner[..at]);
                out.push_str(r);
                out.push_str(&inner[at + body.len()..]);
            }
            None => out.push_str(inner),
        }
        out.push_str("%}");
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn raise_exception(msg: &str) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISE_MARKER}{msg}"),
    ))
}

/// minijinja's `trim` filter, passing over message-text markers.
fn trim_filter(state: &State, value: String, chars: Option<String>) -> Value {
    let marks = Marks::of(state);
    Value::from(match chars {
        Some(chars) => {
            let chars: Vec<char> = chars.chars().collect();
            strip_marked(&value, marks, |c| chars.contains(&c), true, true)
        }
        None => strip_marked(&value, marks, char::is_whitespace, true, true),
    })
}

/// Python's `str`, `dict` and `list` methods: the string methods that must pass over message
/// markers here, the rest from minijinja-contrib's `pycompat`.
fn python_methods(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, minijinja::Error> {
    let marker_aware = match value.as_str() {
        Some(s) => string_method(s, method, args, Marks::of(state)),
        None => Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
    };
    match marker_aware {
        Err(e) if e.kind() == ErrorKind::UnknownMethod => {
            minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
        }
        result => result,
    }
}

fn str_arg(args: &[Value], i: usize) -> Result<Option<&str>, minijinja::Error> {
    match args.get(i) {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| {
            minijinja::Error::new(ErrorKind::InvalidOperation, "expected a string argument")
        }),
    }
}

fn string_method(
    s: &str,
    method: &str,
    args: &[Value],
    marks: Option<Marks>,
) -> Result<Value, minijinja::Error> {
    let arg = str_arg(args, 0)?;
    let chars: Vec<char> = arg.map(|a| a.chars().collect()).unwrap_or_default();
    let strip = |start, end| match arg {
        None => Value::from(strip_marked(s, marks, char::is_whitespace, start, end)),
        Some(_) => Value::from(strip_marked(s, marks, |c| chars.contains(&c), start, end)),
    };
    let v = match (method, arg) {
        ("strip", _) => strip(true, true),
        ("lstrip", _) => strip(true, false),
        ("rstrip", _) => strip(false, true),
        ("startswith", Some(a)) => Value::from(unmarked(s, marks).starts_with(a)),
        ("endswith", Some(a)) => Value::from(unmarked(s, marks).ends_with(a)),
        ("title", None) => Value::from(title_case(s, marks)),
        ("split", None) => split_marked(s, None, marks)
            .into_iter()
            .map(Value::from)
            .collect(),
        ("split", Some(sep)) if !sep.is_empty() => split_marked(s, Some(sep), marks)
            .into_iter()
            .map(Value::from)
            .collect(),
        _ => return Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
    };
    Ok(v)
}

fn title_case(s: &str, marks: Option<Marks>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if Marks::is_mark(marks, c) {
            out.push(c);
            continue;
        }
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// An in-memory writer that refuses to grow past a limit.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl CappedWriter {
    fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
            overflowed: false,
        }
    }
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpl(src: &str) -> ChatTemplate {
        ChatTemplate::new(src, "<s>", "</s>", TemplateLimits::default()).expect("compiles")
    }

    #[test]
    fn generation_tags_become_ifs_and_other_text_stays() {
        for (source, want) in [
            (
                "a{%- generation -%}b{% endgeneration %}c",
                "a{%- if true -%}b{% endif %}c",
            ),
            (
                "{% if add_generation_prompt %}x{% endif %}",
                "{% if add_generation_prompt %}x{% endif %}",
            ),
            // Found by the fuzzer: `{%}` closes where it opens, and a tag left open.
            ("{%}}generation{% if", "{%}}generation{% if"),
            ("generation {%", "generation {%"),
            ("{%%}generation", "{%%}generation"),
        ] {
            assert_eq!(generation_blocks_as_ifs(source), want, "{source:?}");
        }
    }

    #[test]
    fn python_string_methods() {
        let t = tmpl(
            "{{ messages[0].content.strip().upper() }}|{{ messages[0]['content'].startswith(' h') }}",
        );
        let out = t.render(&[Message::user(" hi ")], false).expect("renders");
        assert_eq!(out, "HI|True");
    }

    const M: Marks = Marks {
        open: '\u{FDD0}',
        close: '\u{FDD1}',
    };

    /// `[` and `]` for the markers, to read results.
    fn shown(s: &str) -> String {
        s.replace(M.open, "[").replace(M.close, "]")
    }

    #[test]
    fn markers_pair_up_or_nothing() {
        let marked = "a\u{FDD0}bc\u{FDD1}d\u{FDD0}\u{FDD1}e\u{FDD0}f\u{FDD1}";
        let (text, spans) = M.strip(marked).expect("balanced");
        assert_eq!(text, "abcdef");
        assert_eq!(spans, [1..3, 5..6]);
        for unbalanced in [
            "\u{FDD0}a",
            "a\u{FDD1}",
            "\u{FDD0}\u{FDD0}a\u{FDD1}\u{FDD1}",
            "\u{FDD1}a\u{FDD0}",
        ] {
            assert_eq!(M.strip(unbalanced), None, "{unbalanced:?}");
        }
    }

    #[test]
    fn stripping_passes_over_markers() {
        let ws = char::is_whitespace;
        let s = " \u{FDD0}  a b \u{FDD1} ";
        assert_eq!(shown(&strip_marked(s, Some(M), ws, true, true)), "[a b]");
        assert_eq!(shown(&strip_marked(s, Some(M), ws, true, false)), "[a b ] ");
        assert_eq!(
            shown(&strip_marked(s, Some(M), ws, false, true)),
            " [  a b]"
        );
        assert_eq!(
            shown(&strip_marked("\u{FDD0} \u{FDD1}", Some(M), ws, true, true)),
            "[]"
        );
        assert_eq!(
            shown(&strip_marked("\u{FDD0} \u{FDD1}", Some(M), ws, false, true)),
            "[]"
        );
        // Without markers it is `str::trim_matches`.
        assert_eq!(
            strip_marked("xxaxbxx", None, |c| c == 'x', true, true),
            "axb"
        );
    }

    #[test]
    fn splitting_keeps_each_piece_marked() {
        let s = "x\u{FDD0}a</t>b</t>c\u{FDD1}y";
        let pieces: Vec<String> = split_marked(s, Some("</t>"), Some(M))
            .iter()
            .map(|p| shown(p))
            .collect();
        assert_eq!(pieces, ["x[a]", "[b]", "[c]y"]);
        let pieces: Vec<String> = split_marked("\u{FDD0} a  b \u{FDD1}", None, Some(M))
            .iter()
            .map(|p| shown(p))
            .collect();
        assert_eq!(pieces, ["[a]", "[b]"]);
        assert_eq!(split_marked(" a  b ", None, None), ["a", "b"]);
        assert_eq!(split_marked("a,,b", Some(","), None), ["a", "", "b"]);
    }

    #[test]
    fn markers_avoid_characters_in_use() {
        let reserved = marker_candidates_in(["\u{FDD0}"]);
        let marks = Marks::pick(&reserved, &[Message::user("\u{FDD1}\u{FDD3}")]).expect("picks");
        assert_eq!((marks.open, marks.close), ('\u{FDD2}', '\u{FDD4}'));
    }

    #[test]
    fn raise_exception_is_typed() {
        let t = tmpl("{{ raise_exception('no system role') }}");
        match t.render(&[Message::user("x")], false) {
            Err(ChatError::Raised(m)) => assert_eq!(m, "no system role"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
