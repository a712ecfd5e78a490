//! Chat prompts: renders the model's Jinja chat template (`tokenizer.chat_template`) with
//! minijinja, the way Hugging Face's `apply_chat_template` does.
//!
//! Templates come from model files, which may be hostile: rendering runs with a fuel budget
//! (bounded instruction count), a low recursion limit and a cap on the output size, and every
//! failure is a typed [`ChatError`].

use std::io::Write;

use edge_llm_kernel::gguf::Gguf;
use minijinja::value::Value;
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior};

use crate::tokenizer::Tokenizer;

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
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// The text of the message.
    pub content: String,
}

impl Message {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
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
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("limits", &self.limits)
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
        let mut env = build_env(limits);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|e| ChatError::Syntax(describe(&e)))?;
        Ok(Self {
            env,
            limits,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// Renders a conversation. With `add_generation_prompt` the template appends the opening of
    /// the assistant's turn.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        if messages.is_empty() {
            return Err(ChatError::NoMessages);
        }
        if let Some(index) = messages.iter().position(|m| m.role.is_empty()) {
            return Err(ChatError::EmptyRole { index });
        }
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ChatError::Render(describe(&e)))?;
        let ctx = Value::from_iter([
            ("messages", messages_value(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ]);
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

fn messages_value(messages: &[Message]) -> Value {
    messages
        .iter()
        .map(|m| {
            Value::from_iter([
                ("role", Value::from(m.role.as_str())),
                ("content", Value::from(m.content.as_str())),
            ])
        })
        .collect()
}

fn build_env(limits: TemplateLimits) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(limits.recursion);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    // HF templates are written for Python Jinja2: keep whitespace and trailing newline as is.
    env.set_keep_trailing_newline(true);
    env.add_function("raise_exception", raise_exception);
    env.set_unknown_method_callback(python_methods);
    env
}

fn raise_exception(msg: &str) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISE_MARKER}{msg}"),
    ))
}

/// The few Python `str`/`dict` methods that chat templates commonly call.
fn python_methods(
    _state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, minijinja::Error> {
    if let Some(s) = value.as_str() {
        return string_method(s, method, args);
    }
    if value.kind() == minijinja::value::ValueKind::Map {
        return map_method(value, method, args);
    }
    Err(minijinja::Error::from(ErrorKind::UnknownMethod))
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

fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Value, minijinja::Error> {
    let arg = str_arg(args, 0)?;
    let chars =
        |a: Option<&str>| -> Vec<char> { a.map(|a| a.chars().collect()).unwrap_or_default() };
    let v = match (method, arg) {
        ("strip", None) => Value::from(s.trim()),
        ("lstrip", None) => Value::from(s.trim_start()),
        ("rstrip", None) => Value::from(s.trim_end()),
        ("strip", a) => Value::from(s.trim_matches(&chars(a)[..])),
        ("lstrip", a) => Value::from(s.trim_start_matches(&chars(a)[..])),
        ("rstrip", a) => Value::from(s.trim_end_matches(&chars(a)[..])),
        ("startswith", Some(a)) => Value::from(s.starts_with(a)),
        ("endswith", Some(a)) => Value::from(s.ends_with(a)),
        ("upper", None) => Value::from(s.to_uppercase()),
        ("lower", None) => Value::from(s.to_lowercase()),
        ("title", None) => Value::from(title_case(s)),
        ("split", None) => s.split_whitespace().map(Value::from).collect(),
        ("split", Some(sep)) if !sep.is_empty() => s.split(sep).map(Value::from).collect(),
        ("replace", Some(from)) if !from.is_empty() => {
            let to = str_arg(args, 1)?.unwrap_or("");
            Value::from(s.replace(from, to))
        }
        _ => return Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
    };
    Ok(v)
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn map_method(map: &Value, method: &str, args: &[Value]) -> Result<Value, minijinja::Error> {
    match method {
        "get" => {
            let key = args.first().cloned().unwrap_or_default();
            let found = map.get_item(&key).ok().filter(|v| !v.is_undefined());
            Ok(found.unwrap_or_else(|| args.get(1).cloned().unwrap_or_default()))
        }
        "keys" => Ok(map.try_iter()?.collect()),
        "values" => Ok(map
            .try_iter()?
            .map(|k| map.get_item(&k).unwrap_or_default())
            .collect()),
        "items" => Ok(map
            .try_iter()?
            .map(|k| {
                let v = map.get_item(&k).unwrap_or_default();
                Value::from(vec![k, v])
            })
            .collect()),
        _ => Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
    }
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
    fn python_string_methods() {
        let t = tmpl("{{ messages[0].content.strip().upper() }}|{{ messages[0]['content'].startswith(' h') }}");
        let out = t.render(&[Message::user(" hi ")], false).expect("renders");
        assert_eq!(out, "HI|True");
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
