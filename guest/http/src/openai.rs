//! OpenAI's request and response shapes: a request body becomes a [`GenerateRequest`] (every
//! field checked, a bad one named in the error), and completions become `chat.completion`,
//! `text_completion` and their streamed chunks.

use serde_json::{json, Map, Value};

use crate::api;
use crate::config::{DEFAULT_MAX_TOKENS, MAX_STOP_STRINGS};
use crate::error::ApiError;
use crate::tools;

/// `/v1/chat/completions` or `/v1/completions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Messages rendered with the model's chat template.
    Chat,
    /// A raw prompt.
    Text,
}

/// What to generate from.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Chat messages.
    Messages(Vec<api::Message>),
    /// A raw prompt.
    Text(String),
}

/// A checked generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The model the client asked for, if it named one.
    pub model: Option<String>,
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling and stopping.
    pub params: api::Params,
    /// Answer with server-sent events.
    pub stream: bool,
    /// With `stream`, end with a chunk that carries the usage (`stream_options.include_usage`).
    pub include_usage: bool,
    /// `/v1/completions`' `echo`: the answer's text starts with the prompt.
    pub echo: bool,
    /// The field the constraint came from (`response_format`, `json_schema` or `grammar`).
    pub constraint_field: Option<&'static str>,
}

impl GenerateRequest {
    /// `e` with the constraint's field named when the inference component could not compile
    /// the schema or grammar (it says which, not where the request gave it).
    pub fn name_constraint_error(&self, e: ApiError) -> ApiError {
        let compile = [
            "the JSON schema cannot be used",
            "the grammar cannot be used",
        ];
        match self.constraint_field {
            Some(field) if compile.iter().any(|c| e.message.starts_with(c)) => e.naming(field),
            _ => e,
        }
    }
}

/// What this front does with a request field that OpenAI's API (or llama.cpp's server) defines.
/// Every field of a request is one of these; any other name is refused with a 400 naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Used as OpenAI documents it.
    Honoured,
    /// Accepted at the value that means "off" (or the only one this server has), which is what
    /// it does; any other value is refused with a 400 naming the field.
    OnlyDefault,
    /// A label that changes no answer (in OpenAI's API it tags requests for monitoring or
    /// billing): type-checked, then not used.
    Label,
    /// Refused with a 400 naming the field whenever it is present and not `null`.
    Refused,
}

/// Every request field `/v1/chat/completions` knows, and what it does with it.
pub const CHAT_FIELDS: &[(&str, Support)] = &[
    ("messages", Support::Honoured),
    ("model", Support::Honoured),
    ("max_tokens", Support::Honoured),
    ("max_completion_tokens", Support::Honoured),
    ("n_predict", Support::Honoured),
    ("temperature", Support::Honoured),
    ("top_p", Support::Honoured),
    ("seed", Support::Honoured),
    ("stop", Support::Honoured),
    ("stream", Support::Honoured),
    ("stream_options", Support::Honoured),
    ("n", Support::Honoured),
    ("logprobs", Support::Honoured),
    ("top_logprobs", Support::Honoured),
    ("frequency_penalty", Support::OnlyDefault),
    ("presence_penalty", Support::OnlyDefault),
    ("logit_bias", Support::OnlyDefault),
    ("response_format", Support::Honoured),
    ("tools", Support::Honoured),
    ("tool_choice", Support::Honoured),
    ("parallel_tool_calls", Support::Honoured),
    ("modalities", Support::OnlyDefault),
    ("store", Support::OnlyDefault),
    ("service_tier", Support::OnlyDefault),
    ("user", Support::Label),
    ("safety_identifier", Support::Label),
    ("prompt_cache_key", Support::Label),
    ("metadata", Support::Label),
    ("audio", Support::Refused),
    ("prediction", Support::Refused),
    ("reasoning_effort", Support::Refused),
    ("verbosity", Support::Refused),
    ("web_search_options", Support::Refused),
    ("functions", Support::Refused),
    ("function_call", Support::Refused),
    ("top_k", Support::Honoured),
    ("min_p", Support::Honoured),
    ("repeat_penalty", Support::Honoured),
    ("repeat_last_n", Support::Honoured),
    ("ignore_eos", Support::Honoured),
    ("grammar", Support::Honoured),
    ("json_schema", Support::Honoured),
];

/// Every request field `/v1/completions` knows, and what it does with it.
pub const TEXT_FIELDS: &[(&str, Support)] = &[
    ("prompt", Support::Honoured),
    ("model", Support::Honoured),
    ("max_tokens", Support::Honoured),
    ("n_predict", Support::Honoured),
    ("temperature", Support::Honoured),
    ("top_p", Support::Honoured),
    ("seed", Support::Honoured),
    ("stop", Support::Honoured),
    ("stream", Support::Honoured),
    ("stream_options", Support::Honoured),
    ("echo", Support::Honoured),
    ("n", Support::Honoured),
    ("logprobs", Support::Honoured),
    ("best_of", Support::OnlyDefault),
    ("frequency_penalty", Support::OnlyDefault),
    ("presence_penalty", Support::OnlyDefault),
    ("logit_bias", Support::OnlyDefault),
    ("suffix", Support::OnlyDefault),
    ("user", Support::Label),
    ("top_k", Support::Honoured),
    ("min_p", Support::Honoured),
    ("repeat_penalty", Support::Honoured),
    ("repeat_last_n", Support::Honoured),
    ("ignore_eos", Support::Honoured),
    ("grammar", Support::Honoured),
    ("json_schema", Support::Honoured),
];

impl Endpoint {
    /// The fields this endpoint knows.
    pub fn fields(self) -> &'static [(&'static str, Support)] {
        match self {
            Endpoint::Chat => CHAT_FIELDS,
            Endpoint::Text => TEXT_FIELDS,
        }
    }
}

/// Parses and checks a request body for `endpoint`.
pub fn parse_request(endpoint: Endpoint, body: &[u8]) -> Result<GenerateRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let f = Fields(&fields);
    f.refuse_unsupported(endpoint)?;
    let prompt = match endpoint {
        Endpoint::Chat => Prompt::Messages(messages(
            f.get("messages")
                .ok_or_else(|| ApiError::invalid_param("messages", "is required"))?,
        )?),
        Endpoint::Text => Prompt::Text(prompt(
            f.get("prompt")
                .ok_or_else(|| ApiError::invalid_param("prompt", "is required"))?,
        )?),
    };
    // The first given of OpenAI's two spellings, then llama.cpp's.
    let mut max_tokens = None;
    for name in ["max_completion_tokens", "max_tokens", "n_predict"] {
        if let (None, Some(n)) = (max_tokens, f.uint(name)?) {
            max_tokens = Some((name, n));
        }
    }
    let max_tokens = match max_tokens {
        None => DEFAULT_MAX_TOKENS,
        Some((name, 0)) => return Err(ApiError::invalid_param(name, "must be at least 1")),
        Some((_, n)) => u32::try_from(n).unwrap_or(u32::MAX),
    };
    let tools = match endpoint {
        Endpoint::Chat => tools::parse(
            f.get("tools"),
            f.get("tool_choice"),
            f.get("parallel_tool_calls"),
        )?,
        Endpoint::Text => tools::parse(None, None, None)?,
    };
    let constraint = f.constraint()?;
    let constraint_field = constraint.as_ref().map(|(field, _)| *field);
    let params = api::Params {
        max_tokens,
        temperature: f.float("temperature", 0.0..=2.0)?.unwrap_or(1.0),
        top_k: f
            .uint("top_k")?
            .map_or(0, |k| u32::try_from(k).unwrap_or(u32::MAX)),
        top_p: match f.float("top_p", 0.0..=1.0)? {
            Some(p) if p <= 0.0 => {
                return Err(ApiError::invalid_param("top_p", "must be above 0"));
            }
            p => p.unwrap_or(1.0),
        },
        min_p: f.float("min_p", 0.0..=1.0)?.unwrap_or(0.0),
        repeat_penalty: f.float("repeat_penalty", 0.01..=100.0)?.unwrap_or(1.0),
        repeat_last_n: f
            .uint("repeat_last_n")?
            .map_or(64, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        seed: f.seed()?,
        stop: f.stop()?,
        ignore_eos: f.bool("ignore_eos")?.unwrap_or(false),
        logprobs: f.logprobs(endpoint)?,
        constraint: constraint.map(|(_, c)| c),
        n: match f.uint("n")? {
            None => 1,
            Some(n @ 1..=MAX_CHOICES) => n as u32,
            Some(n) => {
                return Err(ApiError::invalid_param(
                    "n",
                    format!("must be from 1 to {MAX_CHOICES}, got {n}"),
                ))
            }
        },
        tools: tools.tools,
        tool_choice: tools.choice,
        parallel_tool_calls: tools.parallel,
    };
    if params.constraint.is_some()
        && !params.tools.is_empty()
        && !matches!(params.tool_choice, api::ToolChoice::None)
    {
        return Err(ApiError::invalid_param(
            "tool_choice",
            "tool calls cannot be combined with `response_format`, `json_schema` or `grammar`; set `tool_choice: \"none\"` or leave the constraint out",
        ));
    }
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => {
            let options = Fields(o);
            if let Some(name) = o.keys().find(|k| !STREAM_OPTIONS.contains(&k.as_str())) {
                return Err(ApiError::invalid_param(
                    &format!("stream_options.{name}"),
                    "unknown option; only `include_usage` and `include_obfuscation: false` are supported",
                ));
            }
            if options.bool("include_obfuscation")? == Some(true) {
                return Err(ApiError::invalid_param(
                    "stream_options.include_obfuscation",
                    "obfuscation padding is not supported; leave it out or set it to false",
                ));
            }
            options.bool("include_usage")?.unwrap_or(false)
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "stream_options",
                "must be an object such as {\"include_usage\": true}",
            ))
        }
    };
    let model = match f.get("model") {
        None => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(ApiError::invalid_param("model", "must be a string")),
    };
    let echo = f.bool("echo")?.unwrap_or(false);
    if echo && params.logprobs.is_some() {
        return Err(ApiError::invalid_param(
            "echo",
            "cannot be combined with `logprobs` (the prompt's tokens have no log probabilities here)",
        ));
    }
    Ok(GenerateRequest {
        model,
        prompt,
        params,
        stream,
        include_usage,
        echo,
        constraint_field,
    })
}

/// The most answers one request may ask for (`n`).
pub const MAX_CHOICES: u64 = 16;
/// The most alternatives per token: chat's `top_logprobs` (OpenAI's bound).
pub const MAX_TOP_LOGPROBS: u64 = 20;
/// The most alternatives per token: `/v1/completions`' integer `logprobs` (OpenAI's bound).
pub const MAX_TEXT_LOGPROBS: u64 = 5;

/// The keys `stream_options` may hold.
const STREAM_OPTIONS: &[&str] = &["include_usage", "include_obfuscation"];

/// Typed access to a request's fields; `null` counts as absent.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// Refuses a field `endpoint` does not know, a refused one, one at a value this server
    /// does not implement, and a label of the wrong type: each with a 400 naming it.
    fn refuse_unsupported(&self, endpoint: Endpoint) -> Result<(), ApiError> {
        for (name, value) in self.0 {
            let Some(&(_, support)) = endpoint.fields().iter().find(|(n, _)| n == name) else {
                return Err(ApiError::invalid_param(
                    name,
                    "unknown field (the README's table lists the fields this server knows)",
                ));
            };
            if value.is_null() {
                continue;
            }
            let refused = |why: &str| Err(ApiError::invalid_param(name, why));
            match support {
                Support::Honoured => {}
                Support::Refused => return refused(refusal(name)),
                Support::Label => check_label(name, value)?,
                Support::OnlyDefault => {
                    if !is_default(name, value) {
                        return refused(only_default(name));
                    }
                }
            }
        }
        Ok(())
    }

    fn uint(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    ApiError::invalid_param(
                        name,
                        format!("must be a non-negative integer, got {v}"),
                    )
                })
            })
            .transpose()
    }

    fn float(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<Option<f32>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        match v.as_f64() {
            Some(x) if range.contains(&x) => Ok(Some(x as f32)),
            _ => Err(ApiError::invalid_param(
                name,
                format!(
                    "must be a number from {} to {}, got {v}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| {
                v.as_bool().ok_or_else(|| {
                    ApiError::invalid_param(name, format!("must be true or false, got {v}"))
                })
            })
            .transpose()
    }

    /// How many alternatives per token to report, if any: chat's `logprobs: true` with
    /// `top_logprobs` (0 to 20), or `/v1/completions`' integer `logprobs` (0 to 5).
    fn logprobs(&self, endpoint: Endpoint) -> Result<Option<u32>, ApiError> {
        let bounded = |name: &str, max: u64| -> Result<Option<u32>, ApiError> {
            match self.uint(name)? {
                Some(n) if n > max => Err(ApiError::invalid_param(
                    name,
                    format!("must be from 0 to {max}, got {n}"),
                )),
                n => Ok(n.map(|n| n as u32)),
            }
        };
        match endpoint {
            Endpoint::Text => bounded("logprobs", MAX_TEXT_LOGPROBS),
            Endpoint::Chat => {
                let top = bounded("top_logprobs", MAX_TOP_LOGPROBS)?;
                match (self.bool("logprobs")?.unwrap_or(false), top) {
                    (true, top) => Ok(Some(top.unwrap_or(0))),
                    (false, Some(_)) => Err(ApiError::invalid_param(
                        "top_logprobs",
                        "needs `logprobs: true`",
                    )),
                    (false, None) => Ok(None),
                }
            }
        }
    }

    /// What the text must be: `response_format` (`json_object`, or `json_schema` with its
    /// `schema`), or llama.cpp's `json_schema` (a schema) or `grammar` (GBNF); at most one.
    /// The request's constraint, and the field it came from.
    fn constraint(&self) -> Result<Option<(&'static str, api::Constraint)>, ApiError> {
        let mut found: Vec<(&'static str, api::Constraint)> = Vec::new();
        if let Some(format) = self.get("response_format") {
            if let Some(c) = response_format(format)? {
                found.push(("response_format", c));
            }
        }
        if let Some(schema) = self.get("json_schema") {
            if !schema.is_object() && !schema.is_boolean() {
                return Err(ApiError::invalid_param(
                    "json_schema",
                    "must be a JSON Schema object",
                ));
            }
            found.push((
                "json_schema",
                api::Constraint::JsonSchema(schema.to_string()),
            ));
        }
        if let Some(grammar) = self.get("grammar") {
            let Some(g) = grammar.as_str() else {
                return Err(ApiError::invalid_param(
                    "grammar",
                    "must be a GBNF grammar (a string)",
                ));
            };
            found.push(("grammar", api::Constraint::Gbnf(g.to_string())));
        }
        match found.len() {
            0 | 1 => Ok(found.pop()),
            _ => Err(ApiError::invalid_param(
                found[1].0,
                format!(
                    "cannot be combined with `{}`; give one constraint",
                    found[0].0
                ),
            )),
        }
    }

    /// Any JSON integer; a negative one keeps its bits.
    fn seed(&self) -> Result<u64, ApiError> {
        match self.get("seed") {
            None => Ok(0),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_i64().map(|i| i as u64))
                .ok_or_else(|| {
                    ApiError::invalid_param("seed", format!("must be an integer, got {v}"))
                }),
        }
    }

    /// A string or a list of strings.
    fn stop(&self) -> Result<Vec<String>, ApiError> {
        let stops = match self.get("stop") {
            None => return Ok(Vec::new()),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    ApiError::invalid_param("stop", "must be a string or a list of strings")
                })?,
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "stop",
                    "must be a string or a list of strings",
                ))
            }
        };
        if stops.len() > MAX_STOP_STRINGS {
            return Err(ApiError::invalid_param(
                "stop",
                format!(
                    "at most {MAX_STOP_STRINGS} stop strings, got {}",
                    stops.len()
                ),
            ));
        }
        if stops.iter().any(String::is_empty) {
            return Err(ApiError::invalid_param(
                "stop",
                "stop strings must not be empty",
            ));
        }
        Ok(stops)
    }
}

/// Why a [`Support::Refused`] field is refused.
fn refusal(name: &str) -> &'static str {
    match name {
        "audio" => "this server generates text only",
        "prediction" => "predicted outputs are not supported",
        "reasoning_effort" | "verbosity" => {
            "the served model is not a reasoning model; leave this field out"
        }
        "web_search_options" => "this server has no web search",
        "functions" | "function_call" => "the deprecated function-calling fields are not supported",
        _ => "not supported",
    }
}

/// What a [`Support::OnlyDefault`] field accepts, for its error.
fn only_default(name: &str) -> &'static str {
    match name {
        "best_of" => "only `best_of: 1` is supported",
        "frequency_penalty" | "presence_penalty" => {
            "only 0 is supported; `repeat_penalty` (as llama.cpp spells it) is"
        }
        "logit_bias" => "only an empty map is supported",
        "modalities" => "this server generates text only: `[\"text\"]`",
        "store" => "this server stores no completions: only `false` is supported",
        "service_tier" => "this server has one tier: `auto` or `default`",
        "suffix" => "insertion after a suffix is not supported; only an empty suffix is",
        _ => "only the default value is supported",
    }
}

/// Whether `value` of a [`Support::OnlyDefault`] field is the value this server implements.
fn is_default(name: &str, value: &Value) -> bool {
    match name {
        "best_of" => value.as_u64() == Some(1),
        "frequency_penalty" | "presence_penalty" => value.as_f64() == Some(0.0),
        "logit_bias" => value.as_object().is_some_and(Map::is_empty),
        "modalities" => value == &json!(["text"]),
        "store" => value == &Value::Bool(false),
        "service_tier" => value == "auto" || value == "default",
        "suffix" => value == "",
        _ => false,
    }
}

/// Type-checks a [`Support::Label`] field: a string, or for `metadata` a map of strings.
fn check_label(name: &str, value: &Value) -> Result<(), ApiError> {
    let ok = match name {
        "metadata" => value
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string)),
        _ => value.is_string(),
    };
    if ok {
        Ok(())
    } else if name == "metadata" {
        Err(ApiError::invalid_param(name, "must be a map of strings"))
    } else {
        Err(ApiError::invalid_param(name, "must be a string"))
    }
}

/// `messages`: a non-empty list of `{role, content}`, content a string or text parts.
fn messages(value: &Value) -> Result<Vec<api::Message>, ApiError> {
    let bad = |i: usize, what: &str| ApiError::invalid_param(&format!("messages[{i}]"), what);
    let items = value
        .as_array()
        .ok_or_else(|| ApiError::invalid_param("messages", "must be a list of messages"))?;
    if items.is_empty() {
        return Err(ApiError::invalid_param("messages", "must not be empty"));
    }
    let mut out: Vec<api::Message> = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let message = {
            let Some(fields) = m.as_object() else {
                return Err(bad(
                    i,
                    "each message must be an object with `role` and `content`",
                ));
            };
            let is_tool = m.get("role").and_then(Value::as_str) == Some("tool");
            for (key, value) in fields {
                // A tool result's `name` is checked below, once its call is known.
                if key == "name" && is_tool {
                    continue;
                }
                if let Some(why) = message_field_refusal(key, value) {
                    return Err(ApiError::invalid_param(
                        &format!("messages[{i}].{key}"),
                        why,
                    ));
                }
            }
            let role = match m.get("role").and_then(Value::as_str) {
                Some(r @ ("system" | "user" | "assistant" | "tool")) => r,
                Some("developer") => "system",
                Some(other) => {
                    return Err(bad(
                        i,
                        &format!(
                            "unknown role `{other}`; use system, developer, user, assistant or tool"
                        ),
                    ))
                }
                None => return Err(bad(i, "each message needs a string `role`")),
            };
            let tool_calls = match m.get("tool_calls").filter(|c| !c.is_null()) {
                Some(_) if role != "assistant" => {
                    return Err(ApiError::invalid_param(
                        &format!("messages[{i}].tool_calls"),
                        "only an assistant message holds tool calls",
                    ))
                }
                Some(calls) => tools::message_calls(i, calls)?,
                None => Vec::new(),
            };
            let tool_call_id = match (role, m.get("tool_call_id")) {
                ("tool", Some(Value::String(id))) => Some(id.clone()),
                ("tool", _) => {
                    return Err(ApiError::invalid_param(
                        &format!("messages[{i}].tool_call_id"),
                        "a tool message needs the id of the call it answers (a string)",
                    ))
                }
                (_, None | Some(Value::Null)) => None,
                (_, Some(_)) => {
                    return Err(ApiError::invalid_param(
                        &format!("messages[{i}].tool_call_id"),
                        "only a tool message has one",
                    ))
                }
            };
            if let (Some(name), Some(id)) = (m.get("name").filter(|n| !n.is_null()), &tool_call_id)
            {
                check_tool_result_name(i, name, id, &out)?;
            }
            let content = match m.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| match (p.get("type"), p.get("text")) {
                        (Some(t), Some(Value::String(s))) if t == "text" => Ok(s.as_str()),
                        _ => Err(bad(i, "only text content parts are supported")),
                    })
                    .collect::<Result<String, _>>()?,
                Some(_) => {
                    return Err(bad(i, "`content` must be a string or a list of text parts"))
                }
            };
            api::Message {
                role: role.into(),
                content,
                tool_calls,
                tool_call_id,
            }
        };
        out.push(message);
    }
    Ok(out)
}

/// A tool result's `name` (which llama.cpp's server and several client libraries send): the
/// name of the tool whose call, earlier in the chat, has the id the result answers. The id
/// already says which call it is, so a matching name changes nothing; any other is a 400.
fn check_tool_result_name(
    i: usize,
    name: &Value,
    id: &str,
    earlier: &[api::Message],
) -> Result<(), ApiError> {
    let called = earlier
        .iter()
        .flat_map(|m| &m.tool_calls)
        .find(|c| c.id == id)
        .map(|c| c.name.as_str());
    match (name.as_str(), called) {
        (Some(n), Some(c)) if n == c => Ok(()),
        (_, Some(c)) => Err(ApiError::invalid_param(
            &format!("messages[{i}].name"),
            format!("must be `{c}`, the tool the call `{id}` called"),
        )),
        (_, None) => Err(ApiError::invalid_param(
            &format!("messages[{i}].name"),
            format!("no earlier assistant message has a call `{id}` to name the tool of"),
        )),
    }
}

/// `response_format`: `{"type": "text"}` (no constraint), `{"type": "json_object"}` (with
/// llama.cpp's optional `schema`), or `{"type": "json_schema", "json_schema": {"name", "schema",
/// "strict", "description"}}`. The schema is enforced whether `strict` is true or not.
fn response_format(format: &Value) -> Result<Option<api::Constraint>, ApiError> {
    let bad = |why: &str| ApiError::invalid_param("response_format", why);
    let Some(o) = format.as_object() else {
        return Err(bad("must be an object such as {\"type\": \"json_object\"}"));
    };
    let schema = |s: &Value, name: &str| -> Result<api::Constraint, ApiError> {
        if s.is_object() || s.is_boolean() {
            Ok(api::Constraint::JsonSchema(s.to_string()))
        } else {
            Err(ApiError::invalid_param(
                name,
                "must be a JSON Schema object",
            ))
        }
    };
    let known = |keys: &[&str]| match o.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid_param(
            &format!("response_format.{k}"),
            "unknown field",
        )),
        None => Ok(()),
    };
    match o.get("type").and_then(Value::as_str) {
        Some("text") => known(&["type"]).map(|()| None),
        Some("json_object") => {
            known(&["type", "schema"])?;
            match o.get("schema").filter(|s| !s.is_null()) {
                Some(s) => schema(s, "response_format.schema").map(Some),
                None => Ok(Some(api::Constraint::JsonObject)),
            }
        }
        Some("json_schema") => {
            known(&["type", "json_schema"])?;
            let Some(js) = o.get("json_schema").and_then(Value::as_object) else {
                return Err(ApiError::invalid_param(
                    "response_format.json_schema",
                    "is required: {\"name\": ..., \"schema\": {...}}",
                ));
            };
            if let Some(k) = js
                .keys()
                .find(|k| !["name", "schema", "strict", "description"].contains(&k.as_str()))
            {
                return Err(ApiError::invalid_param(
                    &format!("response_format.json_schema.{k}"),
                    "unknown field",
                ));
            }
            if !js.get("name").is_some_and(Value::is_string) {
                return Err(ApiError::invalid_param(
                    "response_format.json_schema.name",
                    "is required (a string)",
                ));
            }
            if js
                .get("strict")
                .is_some_and(|s| !s.is_boolean() && !s.is_null())
            {
                return Err(ApiError::invalid_param(
                    "response_format.json_schema.strict",
                    "must be true or false",
                ));
            }
            match js.get("schema").filter(|s| !s.is_null()) {
                Some(s) => schema(s, "response_format.json_schema.schema").map(Some),
                // No schema: any JSON value.
                None => Ok(Some(api::Constraint::JsonSchema("{}".into()))),
            }
        }
        _ => Err(bad("`type` must be `text`, `json_object` or `json_schema`")),
    }
}

/// Why a message's field is refused, if it is: messages hold a `role` and a `content`, an
/// assistant's `tool_calls`, a tool's `tool_call_id`; an assistant's `refusal` may be `null`;
/// the deprecated `function_call` is not supported and `name` is not something chat templates
/// render, so both are refused rather than dropped.
fn message_field_refusal(key: &str, value: &Value) -> Option<&'static str> {
    match key {
        "role" | "content" | "tool_calls" | "tool_call_id" => None,
        "refusal" if value.is_null() => None,
        "refusal" => Some("only `null` is supported"),
        "function_call" => Some("the deprecated function call is not supported; use `tool_calls`"),
        "name" => Some("participant names are not supported (chat templates do not render them)"),
        _ => Some("unknown message field"),
    }
}

/// `prompt`: a string, or a list holding exactly one string.
fn prompt(value: &Value) -> Result<String, ApiError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            Ok(items[0].as_str().unwrap_or_default().to_string())
        }
        Value::Array(items) if items.iter().any(|i| i.is_number() || i.is_array()) => {
            Err(ApiError::invalid_param(
                "prompt",
                "token-id prompts are not supported; send the prompt as text",
            ))
        }
        Value::Array(_) => Err(ApiError::invalid_param(
            "prompt",
            "only one prompt per request is supported",
        )),
        _ => Err(ApiError::invalid_param("prompt", "must be a string")),
    }
}

/// What every response of one request shares.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model's name.
    pub model: String,
    /// Chat or text.
    pub endpoint: Endpoint,
}

impl ResponseMeta {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Text, _) => "text_completion",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!(self.object(chunk)));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        m.insert("choices".into(), choices);
        m
    }

    /// The log probabilities of some tokens in this endpoint's shape: chat's `content` list,
    /// or `/v1/completions`' parallel lists with `text_offset`s counted from `offset`.
    pub fn logprobs(&self, l: &[api::TokenLogprob], offset: usize) -> Value {
        match self.endpoint {
            Endpoint::Chat => {
                let entry = |c: &api::TokenCandidate| json!({"token": c.text, "logprob": c.logprob, "bytes": c.bytes});
                let content: Vec<Value> = l
                    .iter()
                    .map(|t| {
                        let mut e = entry(&t.chosen);
                        e["top_logprobs"] = t.top.iter().map(entry).collect();
                        e
                    })
                    .collect();
                json!({"content": content, "refusal": null})
            }
            Endpoint::Text => {
                let mut offsets = Vec::with_capacity(l.len());
                let mut at = offset;
                for t in l {
                    offsets.push(at);
                    at += t.chosen.text.len();
                }
                json!({
                    "tokens": l.iter().map(|t| t.chosen.text.as_str()).collect::<Vec<_>>(),
                    "token_logprobs": l.iter().map(|t| t.chosen.logprob).collect::<Vec<_>>(),
                    "top_logprobs": l.iter().map(|t| {
                        t.top.iter().map(|c| (c.text.clone(), json!(c.logprob))).collect::<Map<_, _>>()
                    }).collect::<Vec<_>>(),
                    "text_offset": offsets,
                })
            }
        }
    }

    /// The whole response of a one-shot request.
    pub fn completion(&self, c: &api::Completion) -> Value {
        let choices: Vec<Value> = c
            .choices
            .iter()
            .map(|ch| {
                let logprobs = ch
                    .logprobs
                    .as_ref()
                    .map_or(Value::Null, |l| self.logprobs(l, 0));
                match self.endpoint {
                    Endpoint::Chat => json!({
                        "index": ch.index,
                        "message": tools::message(&ch.text, &ch.tool_calls),
                        "logprobs": logprobs,
                        "finish_reason": finish_reason(ch.finish_reason),
                    }),
                    Endpoint::Text => json!({
                        "index": ch.index,
                        "text": ch.text,
                        "logprobs": logprobs,
                        "finish_reason": finish_reason(ch.finish_reason),
                    }),
                }
            })
            .collect();
        let mut m = self.envelope(false, Value::Array(choices));
        m.insert("usage".into(), usage(&c.usage));
        m.insert("system_fingerprint".into(), json!(fingerprint(c.backend)));
        m.insert(
            "timings".into(),
            json!({
                "prefill_ms": c.timings.prefill_ms,
                "ttft_ms": c.timings.ttft_ms,
                "decode_tokens_per_s": c.timings.decode_tokens_per_s,
                "constraint_ms": c.timings.constraint_ms,
            }),
        );
        Value::Object(m)
    }

    /// A streamed chunk of answer `index`: `text` (for chat, with the assistant role on an
    /// answer's first chunk) with its tokens' `logprobs` (already in [`Self::logprobs`]' shape),
    /// or the answer's `finish_reason`.
    pub fn chunk(
        &self,
        index: u32,
        text: &str,
        first: bool,
        logprobs: Option<Value>,
        finish: Option<api::FinishReason>,
    ) -> Value {
        let reason = finish.map(finish_reason);
        let logprobs = logprobs.unwrap_or(Value::Null);
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let delta = match (first, finish) {
                    (true, _) => json!({"role": "assistant", "content": text}),
                    (false, None) => json!({"content": text}),
                    (false, Some(_)) => json!({}),
                };
                json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason})
            }
            Endpoint::Text => {
                json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason})
            }
        };
        Value::Object(self.envelope(true, json!([choice])))
    }

    /// A streamed chat chunk of answer `index` holding `delta` (a tool call's, say).
    pub fn delta_chunk(&self, index: u32, delta: Value) -> Value {
        let choice =
            json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": null});
        Value::Object(self.envelope(true, json!([choice])))
    }

    /// The last streamed chunk when usage was asked for: no choices, the usage.
    pub fn usage_chunk(&self, u: &api::Usage) -> Value {
        let mut m = self.envelope(true, json!([]));
        m.insert("usage".into(), usage(u));
        Value::Object(m)
    }
}

fn finish_reason(r: api::FinishReason) -> &'static str {
    match r {
        api::FinishReason::Stop => "stop",
        api::FinishReason::Length => "length",
        api::FinishReason::ToolCalls => "tool_calls",
    }
}

fn usage(u: &api::Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cached_prompt_tokens },
    })
}

/// `system_fingerprint`: which engine answered.
pub fn fingerprint(b: api::Backend) -> &'static str {
    match b {
        api::Backend::WasiNn => "edge-llm-wasi-nn",
        api::Backend::Kernel => "edge-llm-kernel",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<GenerateRequest, ApiError> {
        parse_request(Endpoint::Chat, body.as_bytes())
    }

    #[test]
    fn a_full_chat_request_maps_every_parameter() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"system","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]}],
                "max_tokens":16,"temperature":0,"top_p":0.5,"seed":-1,"stop":["\n"],
                "top_k":40,"min_p":0.05,"repeat_penalty":1.1,"stream":true,"ignore_eos":true,
                "stream_options":{"include_usage":true},"n":1,"user":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(r.model.as_deref(), Some("m"));
        let Prompt::Messages(m) = &r.prompt else {
            panic!("not a chat")
        };
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].content, "hi there");
        assert_eq!(r.params.max_tokens, 16);
        assert_eq!(r.params.temperature, 0.0);
        assert_eq!(r.params.top_p, 0.5);
        assert_eq!(r.params.seed, u64::MAX);
        assert_eq!(r.params.stop, vec!["\n".to_string()]);
        assert_eq!((r.params.top_k, r.params.min_p), (40, 0.05));
        assert!((r.params.repeat_penalty - 1.1).abs() < 1e-6);
        assert!(r.stream && r.include_usage && r.params.ignore_eos);
    }

    #[test]
    fn defaults_follow_openai() {
        let r =
            chat(r#"{"messages":[{"role":"user","content":"hi"}],"temperature":null}"#).unwrap();
        assert_eq!(r.params.temperature, 1.0);
        assert_eq!(r.params.top_p, 1.0);
        assert_eq!(r.params.max_tokens, DEFAULT_MAX_TOKENS);
        assert!(!r.stream && r.model.is_none());
        let t = parse_request(Endpoint::Text, br#"{"prompt":["once"]}"#).unwrap();
        assert!(matches!(&t.prompt, Prompt::Text(p) if p == "once"));
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases = [
            ("{", None),
            ("[]", None),
            (r#"{"messages":[]}"#, Some("messages")),
            (r#"{"messages":"hi"}"#, Some("messages")),
            (r#"{}"#, Some("messages")),
            (
                r#"{"messages":[{"role":"robot","content":"x"}]}"#,
                Some("messages[0]"),
            ),
            (r#"{"messages":[{"content":"x"}]}"#, Some("messages[0]")),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                Some("messages[0]"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"temperature":-1}"#,
                Some("temperature"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
                Some("temperature"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"top_p":0}"#,
                Some("top_p"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"top_p":1.5}"#,
                Some("top_p"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":-3}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"n":0}"#,
                Some("n"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"stop":[1]}"#,
                Some("stop"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"stop":[""]}"#,
                Some("stop"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"seed":1.5}"#,
                Some("seed"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
                Some("stream"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"model":7}"#,
                Some("model"),
            ),
        ];
        for (body, param) in cases {
            let e = chat(body).expect_err(body);
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), param, "{body}: {}", e.message);
        }
        let many = format!(
            r#"{{"messages":[{{"role":"user","content":"x"}}],"stop":{}}}"#,
            serde_json::to_string(&vec!["s"; 10_000]).unwrap()
        );
        assert_eq!(chat(&many).unwrap_err().param.as_deref(), Some("stop"));
        let e = parse_request(Endpoint::Text, br#"{"prompt":["a","b"]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
    }

    fn with(endpoint: Endpoint, field: &str, value: Value) -> Result<GenerateRequest, ApiError> {
        let mut body = match endpoint {
            Endpoint::Chat => json!({"messages": [{"role": "user", "content": "x"}]}),
            Endpoint::Text => json!({"prompt": "x"}),
        };
        body[field] = value;
        parse_request(endpoint, body.to_string().as_bytes())
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        for endpoint in [Endpoint::Chat, Endpoint::Text] {
            for name in [
                "temprature",
                "cache_prompt",
                "mirostat",
                "timings_per_token",
            ] {
                let e = with(endpoint, name, json!(1)).unwrap_err();
                assert_eq!((e.status, e.param.as_deref()), (400, Some(name)));
                assert!(e.message.contains("unknown field"), "{}", e.message);
            }
        }
        assert_eq!(
            with(Endpoint::Text, "messages", json!([]))
                .unwrap_err()
                .param
                .as_deref(),
            Some("messages")
        );
        assert_eq!(
            with(Endpoint::Chat, "echo", json!(true))
                .unwrap_err()
                .param
                .as_deref(),
            Some("echo")
        );
    }

    #[test]
    fn every_known_field_is_honoured_or_refused_at_other_values() {
        // (field, a value that is served, a value that is refused)
        let chat = [
            ("n", json!(16), json!(17)),
            ("frequency_penalty", json!(0), json!(0.5)),
            ("presence_penalty", json!(0.0), json!(-1)),
            ("logit_bias", json!({}), json!({"42": 5})),
            ("logprobs", json!(true), json!(1)),
            (
                "response_format",
                json!({"type": "text"}),
                json!({"type": "xml"}),
            ),
            (
                "tools",
                json!([{"type": "function", "function": {"name": "f"}}]),
                json!({"type": "function", "function": {"name": "f"}}),
            ),
            ("tool_choice", json!("none"), json!("required")),
            ("parallel_tool_calls", json!(false), json!("yes")),
            ("modalities", json!(["text"]), json!(["text", "audio"])),
            ("store", json!(false), json!(true)),
            ("service_tier", json!("auto"), json!("priority")),
            ("user", json!("u-1"), json!(7)),
            ("safety_identifier", json!("s"), json!([])),
            ("prompt_cache_key", json!("k"), json!(1)),
            ("metadata", json!({"a": "b"}), json!({"a": 1})),
        ];
        for (name, good, bad) in chat {
            with(Endpoint::Chat, name, good.clone())
                .unwrap_or_else(|e| panic!("{name} {good}: {e:?}"));
            let e = with(Endpoint::Chat, name, bad.clone()).expect_err(name);
            assert_eq!(e.param.as_deref(), Some(name), "{name} {bad}");
        }
        let text = [
            ("best_of", json!(1), json!(3)),
            ("logprobs", json!(5), json!(6)),
            ("n", json!(3), json!(0)),
            ("suffix", json!(""), json!("end")),
            ("echo", json!(false), json!("no")),
        ];
        for (name, good, bad) in text {
            with(Endpoint::Text, name, good.clone())
                .unwrap_or_else(|e| panic!("{name} {good}: {e:?}"));
            let e = with(Endpoint::Text, name, bad.clone()).expect_err(name);
            assert_eq!(e.param.as_deref(), Some(name), "{name} {bad}");
        }
        for (endpoint, table) in [(Endpoint::Chat, CHAT_FIELDS), (Endpoint::Text, TEXT_FIELDS)] {
            for (name, support) in table {
                // `null` is absent, whatever the field.
                if !matches!(*name, "messages" | "prompt") {
                    with(endpoint, name, Value::Null).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                }
                if *support == Support::Refused {
                    let e = with(endpoint, name, json!({})).expect_err(name);
                    assert_eq!(e.param.as_deref(), Some(*name));
                }
            }
        }
        let e = with(
            Endpoint::Chat,
            "stream_options",
            json!({"include_usage": true, "x": 1}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("stream_options.x"));
        assert!(with(Endpoint::Text, "echo", json!(true)).unwrap().echo);
    }

    #[test]
    fn logprobs_and_n_map_to_the_parameters() {
        let p = |body: &str| chat(body).map(|r| (r.params.logprobs, r.params.n));
        let m = r#""messages":[{"role":"user","content":"x"}]"#;
        assert_eq!(p(&format!("{{{m}}}")).unwrap(), (None, 1));
        assert_eq!(
            p(&format!(r#"{{{m},"logprobs":true}}"#)).unwrap(),
            (Some(0), 1)
        );
        assert_eq!(
            p(&format!(
                r#"{{{m},"logprobs":true,"top_logprobs":3,"n":4}}"#
            ))
            .unwrap(),
            (Some(3), 4)
        );
        assert_eq!(
            p(&format!(r#"{{{m},"logprobs":false}}"#)).unwrap(),
            (None, 1)
        );
        let e = p(&format!(r#"{{{m},"top_logprobs":3}}"#)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("top_logprobs"));
        let e = p(&format!(r#"{{{m},"logprobs":true,"top_logprobs":21}}"#)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("top_logprobs"));
        let t = parse_request(Endpoint::Text, br#"{"prompt":"x","logprobs":2}"#).unwrap();
        assert_eq!(t.params.logprobs, Some(2));
        let e = parse_request(
            Endpoint::Text,
            br#"{"prompt":"x","logprobs":2,"echo":true}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("echo"));
    }

    #[test]
    fn constraints_come_from_response_format_json_schema_or_grammar() {
        let c = |field: &str, value: Value| {
            with(Endpoint::Chat, field, value).map(|r| r.params.constraint)
        };
        assert!(c("response_format", json!({"type": "text"}))
            .unwrap()
            .is_none());
        assert!(matches!(
            c("response_format", json!({"type": "json_object"})).unwrap(),
            Some(api::Constraint::JsonObject)
        ));
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        for strict in [json!(true), json!(false), Value::Null] {
            let got = c(
                "response_format",
                json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": strict}}),
            )
            .unwrap();
            assert!(
                matches!(got, Some(api::Constraint::JsonSchema(s)) if serde_json::from_str::<Value>(&s).unwrap() == schema)
            );
        }
        let got = c(
            "response_format",
            json!({"type": "json_object", "schema": schema}),
        )
        .unwrap();
        assert!(matches!(got, Some(api::Constraint::JsonSchema(_))));
        assert!(matches!(
            c("json_schema", schema.clone()).unwrap(),
            Some(api::Constraint::JsonSchema(_))
        ));
        assert!(matches!(
            c("grammar", json!("root ::= \"a\"")).unwrap(),
            Some(api::Constraint::Gbnf(g)) if g == "root ::= \"a\""
        ));
        let t = parse_request(
            Endpoint::Text,
            br#"{"prompt":"x","grammar":"root ::= \"a\""}"#,
        )
        .unwrap();
        assert!(matches!(
            t.params.constraint,
            Some(api::Constraint::Gbnf(_))
        ));
        for (field, value, param) in [
            (
                "response_format",
                json!({"type": "json_schema"}),
                "response_format.json_schema",
            ),
            (
                "response_format",
                json!({"type": "json_schema", "json_schema": {"schema": {}}}),
                "response_format.json_schema.name",
            ),
            (
                "response_format",
                json!({"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}),
                "response_format.json_schema.schema",
            ),
            (
                "response_format",
                json!({"type": "json_schema", "json_schema": {"name": "x", "colour": 1}}),
                "response_format.json_schema.colour",
            ),
            (
                "response_format",
                json!({"type": "json_object", "extra": 1}),
                "response_format.extra",
            ),
            ("response_format", json!("json"), "response_format"),
            ("json_schema", json!("{}"), "json_schema"),
            ("grammar", json!(7), "grammar"),
        ] {
            let e = c(field, value.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{value}: {}", e.message);
        }
        let both = r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"},"grammar":"root ::= \"a\""}"#;
        assert_eq!(chat(both).unwrap_err().param.as_deref(), Some("grammar"));
    }

    #[test]
    fn message_fields_other_than_role_and_content_are_refused() {
        let ok = json!([{"role": "assistant", "content": "x", "refusal": null}, {"role": "user", "content": "y"}]);
        with(Endpoint::Chat, "messages", ok).unwrap();
        for (key, value) in [
            ("name", json!("bob")),
            ("tool_calls", json!([])),
            ("tool_call_id", json!("c1")),
            ("function_call", json!({})),
            ("refusal", json!("no")),
            ("colour", json!("red")),
        ] {
            let mut m = json!({"role": "user", "content": "x"});
            m[key] = value;
            let e = with(Endpoint::Chat, "messages", json!([m])).unwrap_err();
            assert_eq!(e.param, Some(format!("messages[0].{key}")), "{}", e.message);
        }
        let e = with(Endpoint::Chat, "messages", json!(["hi"])).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0]"));
    }

    #[test]
    fn tool_histories_and_tool_fields_map_to_the_parameters() {
        let r = chat(
            r#"{"messages":[{"role":"user","content":"Weather in Paris?"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
                  "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"18 C"}],
              "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],
              "tool_choice":"required","parallel_tool_calls":false}"#,
        )
        .unwrap();
        let Prompt::Messages(m) = &r.prompt else {
            panic!("not a chat")
        };
        assert_eq!(m[1].content, "");
        assert_eq!(m[1].tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(
            (m[2].role.as_str(), m[2].tool_call_id.as_deref()),
            ("tool", Some("call_1"))
        );
        assert!(matches!(r.params.tool_choice, api::ToolChoice::Required));
        assert!(!r.params.parallel_tool_calls);
        assert_eq!(r.params.tools[0].name, "get_weather");
        let e = chat(r#"{"messages":[{"role":"tool","content":"x"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        let e = chat(
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"},
               "tools":[{"type":"function","function":{"name":"f"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        let e = parse_request(Endpoint::Text, br#"{"prompt":"x","tools":[]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools"));
    }

    /// The README's table of request fields lists every field each endpoint knows.
    #[test]
    fn llama_cpp_spellings_and_tool_result_names_are_read() {
        let text = |body: &str| parse_request(Endpoint::Text, body.as_bytes());
        // n_predict is llama.cpp's max_tokens; OpenAI's spellings come first.
        assert_eq!(
            text(r#"{"prompt":"x","n_predict":7}"#)
                .unwrap()
                .params
                .max_tokens,
            7
        );
        assert_eq!(
            text(r#"{"prompt":"x","n_predict":7,"max_tokens":3}"#)
                .unwrap()
                .params
                .max_tokens,
            3
        );
        for bad in [
            r#"{"prompt":"x","n_predict":-1}"#,
            r#"{"prompt":"x","n_predict":0}"#,
        ] {
            assert_eq!(text(bad).unwrap_err().param.as_deref(), Some("n_predict"));
        }
        let e = text(r#"{"prompt":[1780,314]}"#).unwrap_err();
        assert!(e.message.contains("token-id prompts"), "{}", e.message);
        let e = text(r#"{"prompt":["a","b"]}"#).unwrap_err();
        assert!(e.message.contains("one prompt"), "{}", e.message);
        // A tool result may name the tool its call called, and only that one.
        let history = |name: &str| {
            format!(
                r#"{{"messages":[{{"role":"user","content":"x"}},
                {{"role":"assistant","content":null,"tool_calls":[{{"id":"call_1","type":"function",
                  "function":{{"name":"calc","arguments":"{{}}"}}}}]}},
                {{"role":"tool","tool_call_id":"call_1","name":{name},"content":"2"}}]}}"#
            )
        };
        assert!(chat(&history("\"calc\"")).is_ok());
        for bad in ["\"search\"", "3"] {
            let e = chat(&history(bad)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("messages[2].name"), "{bad}");
        }
        let e = chat(
            &history("\"calc\"")
                .replace("\"tool_call_id\":\"call_1\"", "\"tool_call_id\":\"call_9\""),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[2].name"));
        let e = chat(r#"{"messages":[{"role":"user","content":"x","name":"bob"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].name"));
    }

    #[test]
    fn constraint_errors_name_the_field_the_constraint_came_from() {
        let compile = ApiError::bad_request("the JSON schema cannot be used: Invalid type: hiccup");
        for (body, field) in [
            (r#""json_schema":{"type":"hiccup"}"#, "json_schema"),
            (
                r#""response_format":{"type":"json_object","schema":{"type":"hiccup"}}"#,
                "response_format",
            ),
            (r#""grammar":"root ::= (""#, "grammar"),
        ] {
            let r = chat(&format!(
                r#"{{"messages":[{{"role":"user","content":"x"}}],{body}}}"#
            ))
            .unwrap();
            let e = r.name_constraint_error(compile.clone());
            assert_eq!(e.param.as_deref(), Some(field));
            assert!(e
                .message
                .starts_with(&format!("`{field}`: the JSON schema")));
        }
        let plain = chat(r#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap();
        assert_eq!(plain.name_constraint_error(compile.clone()).param, None);
        let r = chat(r#"{"messages":[{"role":"user","content":"x"}],"grammar":"root ::= \"a\""}"#)
            .unwrap();
        let other = ApiError::bad_request("the prompt is too long");
        assert_eq!(r.name_constraint_error(other).param, None);
    }

    #[test]
    fn the_readme_lists_every_field() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .expect("README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| field |"))
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert!(!table.is_empty(), "README.md has no `| field |` table");
        for (endpoint, fields) in [("chat", CHAT_FIELDS), ("completions", TEXT_FIELDS)] {
            for (name, _) in fields {
                let row = table
                    .iter()
                    .find(|l| {
                        let first = l.split('|').nth(1).unwrap_or_default();
                        first.split(',').any(|f| f.trim() == format!("`{name}`"))
                    })
                    .unwrap_or_else(|| panic!("README.md's field table lacks `{name}`"));
                let cell = row.split('|').nth(2).unwrap_or_default();
                assert!(
                    cell.contains(endpoint) || cell.contains("both"),
                    "README.md's row for `{name}` does not name {endpoint}: {row}"
                );
            }
        }
    }

    #[test]
    fn responses_have_openai_shapes() {
        let meta = ResponseMeta {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m".into(),
            endpoint: Endpoint::Chat,
        };
        let candidate = |token: u32, text: &str, logprob: f32| api::TokenCandidate {
            token,
            text: text.into(),
            bytes: text.as_bytes().to_vec(),
            logprob,
        };
        let logprobs = vec![
            api::TokenLogprob {
                chosen: candidate(1, "Par", -0.5),
                top: vec![candidate(1, "Par", -0.5), candidate(7, "Lon", -1.5)],
            },
            api::TokenLogprob {
                chosen: candidate(2, "is", -0.25),
                top: vec![candidate(2, "is", -0.25)],
            },
        ];
        let c = api::Completion {
            choices: vec![
                api::Choice {
                    index: 0,
                    text: "Paris".into(),
                    tool_calls: vec![],
                    tokens: vec![1, 2],
                    finish_reason: api::FinishReason::Length,
                    logprobs: Some(logprobs.clone()),
                },
                api::Choice {
                    index: 1,
                    text: "Rome".into(),
                    tool_calls: vec![],
                    tokens: vec![3],
                    finish_reason: api::FinishReason::Stop,
                    logprobs: None,
                },
            ],
            usage: api::Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                cached_prompt_tokens: 1,
            },
            timings: api::Timings {
                prefill_ms: 1.0,
                ttft_ms: 2.0,
                decode_tokens_per_s: 3.0,
                constraint_ms: 0.0,
            },
            backend: api::Backend::Kernel,
        };
        let v = meta.completion(&c);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "Paris");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["choices"][1]["index"], 1);
        assert_eq!(v["choices"][1]["message"]["content"], "Rome");
        assert_eq!(v["choices"][1]["logprobs"], Value::Null);
        let content = &v["choices"][0]["logprobs"]["content"];
        assert_eq!(content[0]["token"], "Par");
        assert_eq!(content[0]["logprob"], -0.5);
        assert_eq!(content[0]["bytes"], json!([80, 97, 114]));
        assert_eq!(content[0]["top_logprobs"][1]["token"], "Lon");
        assert_eq!(content[1]["top_logprobs"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["usage"]["total_tokens"], 5);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
        let first = meta.chunk(0, "Pa", true, None, None);
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        let second = meta.chunk(1, "Ro", false, None, None);
        assert_eq!(second["choices"][0]["index"], 1);
        let last = meta.chunk(0, "", false, None, Some(api::FinishReason::Stop));
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(last["choices"][0]["delta"], json!({}));
        assert_eq!(meta.usage_chunk(&c.usage)["choices"], json!([]));
        let text = ResponseMeta {
            endpoint: Endpoint::Text,
            ..meta
        };
        let t = text.completion(&c);
        assert_eq!(t["choices"][0]["text"], "Paris");
        let l = &t["choices"][0]["logprobs"];
        assert_eq!(l["tokens"], json!(["Par", "is"]));
        assert_eq!(l["token_logprobs"], json!([-0.5, -0.25]));
        assert_eq!(l["top_logprobs"][0], json!({"Par": -0.5, "Lon": -1.5}));
        assert_eq!(l["text_offset"], json!([0, 3]));
        assert_eq!(text.logprobs(&logprobs, 10)["text_offset"], json!([10, 13]));
        assert_eq!(
            text.chunk(0, "x", true, None, None)["object"],
            "text_completion"
        );
    }
}
