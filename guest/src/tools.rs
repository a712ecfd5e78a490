//! Tool calls: how a chat with tools is shown to the model, what its answer is constrained to,
//! and how calls are parsed out of the answer.
//!
//! 1. [`ToolFormat::detect`] picks the model's call format from its chat template, as llama.cpp
//!    does: a template that renders `tools` and writes `<tool_call>` is Hermes/Qwen's, one that
//!    renders `tools` with Llama 3's headers and an `ipython` role is Llama 3's JSON; any other
//!    is [`ToolFormat::Generic`], for which [`system_prompt`] describes the tools and the JSON
//!    answer expected in the system message.
//! 2. [`constraint`] is what the answer must match: for `required` or a named function, a call
//!    whose arguments validate against the tool's schema; for `auto` in the generic format,
//!    that or `{"response": text}`; for `auto` in a model's own format, nothing (the answer is
//!    parsed, and is plain content when it does not parse as a call).
//! 3. [`parse`] splits an answer into its content and its calls.

use std::hash::{BuildHasher, Hasher};

use serde_json::{json, Map, Value};

use crate::chat::{ChatTemplate, Message};
use crate::constraint::ConstraintSpec;

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// The JSON Schema of its arguments (an object schema).
    pub parameters: Value,
}

/// Whether and which tools the model may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// No call: the tools are not shown.
    None,
    /// Text or calls, as the model decides.
    Auto,
    /// At least one call.
    Required,
    /// A call of this tool.
    Function(String),
}

/// The tools of one chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    /// The tools.
    pub tools: Vec<Tool>,
    /// Which of them the model may call.
    pub choice: ToolChoice,
    /// Whether one answer may make several calls.
    pub parallel: bool,
}

/// A call the model made (or a history's assistant message holds).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// `call_` and random characters, or the id the history gave.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, a JSON value (an object for every well-formed call).
    pub arguments: Value,
}

/// Why a tool request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// A tool's name is empty, too long, has other characters than `[A-Za-z0-9_-]`, or repeats.
    #[error("tool {index}: the name `{name}` {why}")]
    BadName {
        /// The tool's place in the list.
        index: usize,
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A tool's `parameters` is not an object schema.
    #[error("tool `{name}`: `parameters` must be a JSON Schema object of type `object`")]
    BadParameters {
        /// The tool's name.
        name: String,
    },
    /// The named function is not among the tools.
    #[error("tool_choice names `{0}`, which is not among the tools")]
    UnknownChoice(String),
    /// `required` or a named function without tools.
    #[error("tool_choice `required` or a named function needs at least one tool")]
    NoTools,
}

/// How an error about a tool's `parameters` schema begins (the constraint built from the
/// tools' schemas did not compile), so a front can name the field.
pub const SCHEMA_ERROR_PREFIX: &str = "tools: a `parameters` schema cannot be enforced: ";

/// The longest tool name (OpenAI's bound).
pub const MAX_NAME_LEN: usize = 64;

impl ToolRequest {
    /// Checks names, schemas and the choice.
    pub fn check(&self) -> Result<(), ToolError> {
        for (index, tool) in self.tools.iter().enumerate() {
            let bad = |why| ToolError::BadName {
                index,
                name: tool.name.clone(),
                why,
            };
            if tool.name.is_empty() || tool.name.len() > MAX_NAME_LEN {
                return Err(bad("must be 1 to 64 characters long"));
            }
            if !tool
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(bad("may hold only A-Z, a-z, 0-9, `_` and `-`"));
            }
            if self.tools[..index].iter().any(|t| t.name == tool.name) {
                return Err(bad("is given twice"));
            }
            let object = tool.parameters.as_object();
            if !object.is_some_and(|o| o.get("type").is_none_or(|t| t == "object")) {
                return Err(ToolError::BadParameters {
                    name: tool.name.clone(),
                });
            }
        }
        match &self.choice {
            ToolChoice::Function(name) if !self.tools.iter().any(|t| &t.name == name) => {
                Err(ToolError::UnknownChoice(name.clone()))
            }
            ToolChoice::Required | ToolChoice::Function(_) if self.tools.is_empty() => {
                Err(ToolError::NoTools)
            }
            _ => Ok(()),
        }
    }

    /// Whether the model is shown tools and its answer parsed for calls.
    pub fn is_active(&self) -> bool {
        self.choice != ToolChoice::None && !self.tools.is_empty()
    }

    /// The tools the model may call: all, or the named one.
    fn callable(&self) -> impl Iterator<Item = &Tool> {
        self.tools.iter().filter(move |t| match &self.choice {
            ToolChoice::Function(name) => &t.name == name,
            _ => true,
        })
    }

    /// `tools` as chat templates read it: OpenAI's `[{"type": "function", "function": {...}}]`.
    pub fn template_value(&self) -> Value {
        self.tools.iter().map(openai_tool).collect()
    }
}

fn openai_tool(t: &Tool) -> Value {
    let mut function = Map::new();
    function.insert("name".into(), json!(t.name));
    if let Some(d) = &t.description {
        function.insert("description".into(), json!(d));
    }
    function.insert("parameters".into(), t.parameters.clone());
    json!({"type": "function", "function": function})
}

/// How a model writes its tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// Hermes 2 Pro / Qwen 2.5: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, any
    /// number of them after the content.
    Hermes,
    /// Llama 3.x: the whole answer is `{"name": ..., "parameters": {...}}` (optionally after
    /// `<|python_tag|>`).
    Llama3Json,
    /// Any other model: the answer is one JSON object, `{"tool_calls": [{"name", "arguments"}]}`,
    /// `{"tool_call": {"name", "arguments"}}` or `{"response": text}`.
    Generic,
}

impl ToolFormat {
    /// The format of a template whose source is `source`; `renders_tools` says whether the
    /// template shows a `tools` list it is given (without that, a model's own format cannot
    /// be relied on).
    pub fn detect(source: &str, renders_tools: bool) -> Self {
        if !renders_tools {
            ToolFormat::Generic
        } else if source.contains("<tool_call>") {
            ToolFormat::Hermes
        } else if source.contains("<|start_header_id|>")
            && (source.contains("ipython") || source.contains("<|python_tag|>"))
        {
            ToolFormat::Llama3Json
        } else {
            ToolFormat::Generic
        }
    }
}

/// The system prompt's description of the tools and of the answer expected, for templates that
/// do not render `tools` (the generic format).
pub fn system_prompt(request: &ToolRequest) -> String {
    let tools: Vec<Value> = request.callable().map(openai_tool).collect();
    let tools = serde_json::to_string_pretty(&tools).unwrap_or_default();
    let call = r#"{"tool_calls": [{"name": "<tool name>", "arguments": {<arguments>}}]}"#;
    let how = match &request.choice {
        ToolChoice::Function(name) => {
            format!("Call the tool `{name}`: answer with one JSON object, {call}.")
        }
        ToolChoice::Required => format!("Call one of them: answer with one JSON object, {call}."),
        ToolChoice::Auto | ToolChoice::None => format!(
            "Answer with one JSON object: {call} to call tools, or {{\"response\": \"<your reply>\"}} to reply to the user."
        ),
    };
    format!(
        "You can call these tools (the arguments follow each tool's JSON Schema):\n{tools}\n{how}"
    )
}

/// What the answer must match, if anything (see the module doc).
pub fn constraint(format: ToolFormat, request: &ToolRequest) -> Option<ConstraintSpec> {
    let forced = matches!(
        request.choice,
        ToolChoice::Required | ToolChoice::Function(_)
    );
    let one_of = |schemas: Vec<Value>| match schemas.len() {
        1 => schemas.into_iter().next().unwrap_or_default(),
        _ => json!({"anyOf": schemas}),
    };
    let call_schema = |arguments_key: &str| -> Vec<Value> {
        request
            .callable()
            .map(|t| {
                json!({
                    "type": "object",
                    "properties": {"name": {"const": t.name}, arguments_key: closed(&t.parameters)},
                    "required": ["name", arguments_key],
                    "additionalProperties": false,
                })
            })
            .collect()
    };
    match format {
        ToolFormat::Generic => {
            let mut calls = json!({
                "type": "array",
                "items": one_of(call_schema("arguments")),
                "minItems": 1,
            });
            if !request.parallel {
                calls["maxItems"] = json!(1);
            }
            let calls = json!({
                "type": "object",
                "properties": {"tool_calls": calls},
                "required": ["tool_calls"],
                "additionalProperties": false,
            });
            let response = json!({
                "type": "object",
                "properties": {"response": {"type": "string"}},
                "required": ["response"],
                "additionalProperties": false,
            });
            Some(ConstraintSpec::JsonSchema(if forced {
                calls
            } else {
                json!({"anyOf": [calls, response]})
            }))
        }
        _ if !forced => None,
        ToolFormat::Llama3Json => Some(ConstraintSpec::JsonSchema(one_of(call_schema(
            "parameters",
        )))),
        ToolFormat::Hermes => {
            let mut call = one_of(call_schema("arguments"));
            // Compact JSON inside the tags, as JSON Schema constraints are written.
            call["x-guidance"] = json!({"whitespace_flexible": false});
            let repeat = if request.parallel { "+" } else { "" };
            Some(ConstraintSpec::Lark(format!(
                "start: (\"<tool_call>\\n\" call \"\\n</tool_call>\"){repeat}\ncall: %json {call}\n"
            )))
        }
    }
}

/// `schema` with `additionalProperties: false` in every object schema that lists `properties`
/// and says nothing of others (as OpenAI's strict mode requires): the arguments generated
/// still validate against `schema`, and a small model cannot ramble on in keys of its own.
pub fn closed(schema: &Value) -> Value {
    let Some(o) = schema.as_object() else {
        return schema.clone();
    };
    let mut o = o.clone();
    if o.contains_key("properties")
        && !o.contains_key("additionalProperties")
        && !o.contains_key("patternProperties")
    {
        o.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (key, value) in o.iter_mut() {
        match (key.as_str(), value) {
            ("properties" | "$defs" | "definitions", Value::Object(map)) => {
                for sub in map.values_mut() {
                    *sub = closed(sub);
                }
            }
            ("anyOf" | "oneOf" | "allOf" | "prefixItems", Value::Array(list)) => {
                for sub in list.iter_mut() {
                    *sub = closed(sub);
                }
            }
            ("items" | "additionalProperties", sub @ Value::Object(_)) => *sub = closed(sub),
            _ => {}
        }
    }
    Value::Object(o)
}

/// An answer split into its content and its calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The text that is not a call (the whole answer when it holds none).
    pub content: String,
    /// The calls, in order.
    pub calls: Vec<ToolCall>,
}

impl Parsed {
    fn content(text: &str) -> Self {
        Self {
            content: text.to_string(),
            calls: Vec::new(),
        }
    }
}

/// Splits `text` into content and calls of `format`; text that does not parse as calls is
/// content. Only calls of tools in `request` count.
pub fn parse(format: ToolFormat, request: &ToolRequest, text: &str) -> Parsed {
    let known = |name: &str| request.tools.iter().any(|t| t.name == name);
    let parsed = match format {
        ToolFormat::Hermes => parse_hermes(text),
        ToolFormat::Llama3Json => parse_llama3(text),
        ToolFormat::Generic => parse_generic(text),
    };
    match parsed {
        Some(p) if p.calls.iter().all(|c| known(&c.name)) => p,
        _ => Parsed::content(text),
    }
}

/// A call object: `name` and its arguments under `arguments_key` (an object, or a JSON text of
/// one, as some models write).
fn call_from(v: &Value, arguments_keys: &[&str]) -> Option<ToolCall> {
    let o = v.as_object()?;
    let name = o.get("name")?.as_str()?;
    let arguments = arguments_keys.iter().find_map(|k| o.get(*k))?;
    let arguments = match arguments {
        Value::String(s) => serde_json::from_str(s).ok()?,
        v => v.clone(),
    };
    Some(ToolCall {
        id: new_call_id(),
        name: name.to_string(),
        arguments,
    })
}

fn parse_hermes(text: &str) -> Option<Parsed> {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let start = text.find(OPEN)?;
    let mut calls = Vec::new();
    let mut rest = &text[start..];
    while let Some(after) = rest.trim_start().strip_prefix(OPEN) {
        // A call the answer did not finish (cut by max_tokens) is still read to its end.
        let (body, next) = after.split_once(CLOSE).unwrap_or((after, ""));
        let value: Value = serde_json::from_str(body.trim()).ok()?;
        calls.push(call_from(&value, &["arguments", "parameters"])?);
        rest = next;
    }
    if !rest.trim().is_empty() {
        return None;
    }
    Some(Parsed {
        content: text[..start].trim_end().to_string(),
        calls,
    })
}

fn parse_llama3(text: &str) -> Option<Parsed> {
    let body = text.trim_start();
    let body = body.strip_prefix("<|python_tag|>").unwrap_or(body).trim();
    if !body.starts_with('{') {
        return None;
    }
    let value: Value = serde_json::from_str(body).ok()?;
    Some(Parsed {
        content: String::new(),
        calls: vec![call_from(&value, &["parameters", "arguments"])?],
    })
}

fn parse_generic(text: &str) -> Option<Parsed> {
    let value: Value = serde_json::from_str(text.trim()).ok()?;
    let o = value.as_object()?;
    if let Some(calls) = o.get("tool_calls") {
        let calls = calls
            .as_array()?
            .iter()
            .map(|c| call_from(c, &["arguments"]))
            .collect::<Option<Vec<_>>>()?;
        return (!calls.is_empty()).then_some(Parsed {
            content: String::new(),
            calls,
        });
    }
    if let Some(call) = o.get("tool_call") {
        return Some(Parsed {
            content: String::new(),
            calls: vec![call_from(call, &["arguments"])?],
        });
    }
    let response = o.get("response")?.as_str()?;
    Some(Parsed::content(response))
}

/// A chat ready for its template: messages (with the generic format's system prompt and the
/// stand-ins for what the template does not render), the `tools` variable, and the format the
/// answer is parsed in.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedChat {
    /// The messages to render.
    pub messages: Vec<Message>,
    /// The template's `tools` variable, for a template that renders it.
    pub tools: Option<Value>,
    /// How the answer writes calls; `None` when the model may not call tools.
    pub format: Option<ToolFormat>,
}

/// What a template renders of the tool parts of a chat, found by rendering small probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateCaps {
    /// It shows the `tools` list.
    pub tools: bool,
    /// It shows an assistant message's `tool_calls`.
    pub tool_calls: bool,
    /// It shows a `tool` message's text.
    pub tool_role: bool,
}

const PROBE_NAME: &str = "edge_llm_probe_tool";
const PROBE_TEXT: &str = "edge_llm_probe_result";

impl TemplateCaps {
    /// Probes `template`; a probe whose rendering fails counts as not rendered.
    pub fn probe(template: &ChatTemplate) -> Self {
        let user = Message::user("x");
        let tools = json!([{"type": "function", "function": {"name": PROBE_NAME, "description": "d",
            "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}]);
        let shows = |messages: &[Message], tools: Option<&Value>, needle: &str| {
            template
                .render_with_tools(messages, tools, false)
                .is_ok_and(|t| t.contains(needle))
        };
        let mut call = Message::assistant("");
        call.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: PROBE_NAME.into(),
            arguments: json!({"a": "b"}),
        }];
        let mut result = Message::new("tool", PROBE_TEXT);
        result.tool_call_id = Some("call_1".into());
        Self {
            tools: shows(std::slice::from_ref(&user), Some(&tools), PROBE_NAME),
            tool_calls: shows(&[user.clone(), call], None, PROBE_NAME),
            tool_role: shows(&[user, Message::assistant("ok"), result], None, PROBE_TEXT),
        }
    }
}

/// Prepares a chat for `template` (see [`PreparedChat`]); `request` is `None` without tools.
pub fn prepare(
    template: &ChatTemplate,
    caps: TemplateCaps,
    messages: &[Message],
    request: Option<&ToolRequest>,
) -> PreparedChat {
    let active = request.filter(|r| r.is_active());
    let format = active.map(|_| ToolFormat::detect(template.source(), caps.tools));
    let mut out: Vec<Message> = messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if !m.tool_calls.is_empty() && !caps.tool_calls {
                let calls = generic_calls_text(&std::mem::take(&mut m.tool_calls));
                m.content = match m.content.is_empty() {
                    true => calls,
                    false => format!("{}\n{calls}", m.content),
                };
            }
            if m.role == "tool" && !caps.tool_role {
                let response = json!({"tool_response": {
                    "tool_call_id": m.tool_call_id.take(), "content": m.content}});
                m = Message::user(response.to_string());
            }
            m
        })
        .collect();
    if let (Some(request), Some(ToolFormat::Generic)) = (active, format) {
        let prompt = system_prompt(request);
        match out.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{prompt}", first.content);
            }
            _ => out.insert(0, Message::system(prompt)),
        }
    }
    PreparedChat {
        messages: out,
        tools: active
            .filter(|_| caps.tools)
            .map(ToolRequest::template_value),
        format,
    }
}

/// `call_` and 24 random letters and digits, as OpenAI's ids look.
pub fn new_call_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // std's RandomState draws its keys from the system (WASI's `random`), but a pre-initialized
    // component may have drawn them in its snapshot, so the clock is mixed in too.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut id = String::from("call_");
    let mut bits = 0u64;
    for i in 0..24 {
        if i % 8 == 0 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(now);
            h.write_usize(i);
            bits = h.finish();
        }
        id.push(ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char);
        bits /= ALPHABET.len() as u64;
    }
    id
}

/// The generic format's text for an assistant message's calls, for templates that do not
/// render `tool_calls` (so a history shows the model the answers it is asked to give).
pub fn generic_calls_text(calls: &[ToolCall]) -> String {
    let calls: Vec<Value> = calls
        .iter()
        .map(|c| json!({"name": c.name, "arguments": c.arguments, "id": c.id}))
        .collect();
    json!({ "tool_calls": calls }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: Some("Weather in a city".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }
    }

    fn request(choice: ToolChoice) -> ToolRequest {
        ToolRequest {
            tools: vec![weather()],
            choice,
            parallel: true,
        }
    }

    #[test]
    fn requests_are_checked() {
        assert!(request(ToolChoice::Auto).check().is_ok());
        assert_eq!(
            request(ToolChoice::Function("nope".into())).check(),
            Err(ToolError::UnknownChoice("nope".into()))
        );
        let mut r = request(ToolChoice::Auto);
        r.tools[0].name = "bad name".into();
        assert!(matches!(
            r.check(),
            Err(ToolError::BadName { index: 0, .. })
        ));
        let mut r = request(ToolChoice::Auto);
        r.tools.push(weather());
        assert!(matches!(
            r.check(),
            Err(ToolError::BadName { index: 1, .. })
        ));
        let mut r = request(ToolChoice::Auto);
        r.tools[0].parameters = json!({"type": "string"});
        assert!(matches!(r.check(), Err(ToolError::BadParameters { .. })));
        let r = ToolRequest {
            tools: vec![],
            choice: ToolChoice::Required,
            parallel: true,
        };
        assert_eq!(r.check(), Err(ToolError::NoTools));
    }

    #[test]
    fn formats_are_detected_from_the_template() {
        assert_eq!(
            ToolFormat::detect("{{ '<tool_call>' }}{{ tools }}", true),
            ToolFormat::Hermes
        );
        assert_eq!(
            ToolFormat::detect("<|start_header_id|>ipython{{ tools }}", true),
            ToolFormat::Llama3Json
        );
        assert_eq!(
            ToolFormat::detect("{{ '<tool_call>' }}", false),
            ToolFormat::Generic
        );
        assert_eq!(
            ToolFormat::detect("<|im_start|>{{ tools }}", true),
            ToolFormat::Generic
        );
    }

    #[test]
    fn hermes_calls_follow_the_content() {
        let r = request(ToolChoice::Auto);
        let text = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}</tool_call>";
        let p = parse(ToolFormat::Hermes, &r, text);
        assert_eq!(p.content, "Let me look.");
        assert_eq!(p.calls.len(), 2);
        assert_eq!(p.calls[1].arguments, json!({"city": "Rome"}));
        assert!(p.calls[0].id.starts_with("call_") && p.calls[0].id.len() == 29);
        assert_ne!(p.calls[0].id, p.calls[1].id);
        // Not a call: plain content, whole.
        for text in [
            "<tool_call>{oops</tool_call>",
            "Sunny.",
            "<tool_call>{\"name\": \"other\", \"arguments\": {}}</tool_call>",
        ] {
            assert_eq!(parse(ToolFormat::Hermes, &r, text), Parsed::content(text));
        }
    }

    #[test]
    fn llama3_calls_are_the_whole_answer() {
        let r = request(ToolChoice::Auto);
        let p = parse(
            ToolFormat::Llama3Json,
            &r,
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
        );
        assert_eq!(p.content, "");
        assert_eq!(p.calls[0].name, "get_weather");
        assert_eq!(p.calls[0].arguments, json!({"city": "Oslo"}));
        let text = "It is {cold} there.";
        assert_eq!(
            parse(ToolFormat::Llama3Json, &r, text),
            Parsed::content(text)
        );
    }

    #[test]
    fn generic_answers_are_calls_or_a_response() {
        let r = request(ToolChoice::Auto);
        let p = parse(
            ToolFormat::Generic,
            &r,
            r#"{"tool_calls":[{"name":"get_weather","arguments":{"city":"Lima"}}]}"#,
        );
        assert_eq!(p.calls[0].arguments, json!({"city": "Lima"}));
        let p = parse(
            ToolFormat::Generic,
            &r,
            r#"{"tool_call":{"name":"get_weather","arguments":"{\"city\":\"Kyiv\"}"}}"#,
        );
        assert_eq!(p.calls[0].arguments, json!({"city": "Kyiv"}));
        let p = parse(ToolFormat::Generic, &r, r#"{"response":"Hello!"}"#);
        assert_eq!(p, Parsed::content("Hello!"));
        assert_eq!(parse(ToolFormat::Generic, &r, "Hi"), Parsed::content("Hi"));
        assert_eq!(
            parse(ToolFormat::Generic, &r, r#"{"tool_calls":[]}"#).calls,
            vec![]
        );
    }

    #[test]
    fn argument_schemas_are_closed_where_they_leave_other_properties_open() {
        let s = json!({"type": "object", "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "c": {"type": "array", "items": {"properties": {"d": {}}}},
            "e": {"type": "object", "properties": {}, "additionalProperties": true},
            "properties": {"anyOf": [{"properties": {}}, {"type": "string"}]}},
            "$defs": {"x": {"properties": {}, "patternProperties": {"^y": {}}}}});
        let c = closed(&s);
        assert_eq!(c["additionalProperties"], false);
        assert_eq!(c["properties"]["a"]["additionalProperties"], false);
        assert_eq!(c["properties"]["c"]["items"]["additionalProperties"], false);
        assert_eq!(c["properties"]["e"]["additionalProperties"], true);
        assert_eq!(
            c["properties"]["properties"]["anyOf"][0]["additionalProperties"],
            false
        );
        assert_eq!(
            c["properties"]["properties"]["anyOf"][1],
            json!({"type": "string"})
        );
        assert_eq!(c["$defs"]["x"].get("additionalProperties"), None);
        assert_eq!(
            c["properties"]["a"]["properties"]["b"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn constraints_match_the_format_and_choice() {
        let Some(ConstraintSpec::JsonSchema(s)) =
            constraint(ToolFormat::Generic, &request(ToolChoice::Required))
        else {
            panic!("a schema")
        };
        assert_eq!(s["required"], json!(["tool_calls"]));
        assert_eq!(
            s["properties"]["tool_calls"]["items"]["properties"]["name"]["const"],
            "get_weather"
        );
        let Some(ConstraintSpec::JsonSchema(s)) =
            constraint(ToolFormat::Generic, &request(ToolChoice::Auto))
        else {
            panic!("a schema")
        };
        assert_eq!(s["anyOf"][1]["required"], json!(["response"]));
        assert_eq!(
            constraint(ToolFormat::Hermes, &request(ToolChoice::Auto)),
            None
        );
        let Some(ConstraintSpec::Lark(g)) =
            constraint(ToolFormat::Hermes, &request(ToolChoice::Required))
        else {
            panic!("a grammar")
        };
        assert!(g.starts_with("start: (\"<tool_call>\\n\" call"), "{g}");
        let Some(ConstraintSpec::JsonSchema(s)) = constraint(
            ToolFormat::Llama3Json,
            &request(ToolChoice::Function("get_weather".into())),
        ) else {
            panic!("a schema")
        };
        assert_eq!(s["required"], json!(["name", "parameters"]));
    }

    /// ChatML without tools (SmolLM2's), and a Hermes-style one that lists `tools` and renders
    /// `tool_calls` and `tool` turns.
    const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    const HERMES: &str = "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t.function | tojson }}{% endfor %}</tools> Call with <tool_call></tool_call><|im_end|>\n{% endif %}{% for m in messages %}{% if m.tool_calls %}<|im_start|>assistant\n{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}<|im_end|>\n{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>{{ m.content }}</tool_response><|im_end|>\n{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    fn history() -> Vec<Message> {
        let mut call = Message::assistant("");
        call.tool_calls = vec![ToolCall {
            id: "call_9".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
        }];
        let mut result = Message::new("tool", "18 C");
        result.tool_call_id = Some("call_9".into());
        vec![Message::user("Weather?"), call, result]
    }

    fn template(source: &str) -> ChatTemplate {
        ChatTemplate::new(source, "", "", crate::chat::TemplateLimits::default()).unwrap()
    }

    #[test]
    fn a_template_without_tools_gets_the_generic_format() {
        let t = template(CHATML);
        let caps = TemplateCaps::probe(&t);
        assert_eq!(
            caps,
            TemplateCaps {
                tools: false,
                tool_calls: false,
                tool_role: true
            }
        );
        let chat = prepare(&t, caps, &history(), Some(&request(ToolChoice::Auto)));
        assert_eq!(chat.format, Some(ToolFormat::Generic));
        assert_eq!(chat.tools, None);
        assert_eq!(chat.messages[0].role, "system");
        assert!(chat.messages[0].content.contains("get_weather"));
        assert_eq!(
            chat.messages[2].content,
            r#"{"tool_calls":[{"name":"get_weather","arguments":{"city":"Paris"},"id":"call_9"}]}"#
        );
        assert_eq!(chat.messages[3].role, "tool");
        // `none`: no system prompt, no format, the history still shown.
        let chat = prepare(&t, caps, &history(), Some(&request(ToolChoice::None)));
        assert_eq!((chat.format, chat.messages.len()), (None, 3));
    }

    #[test]
    fn a_hermes_template_renders_the_tools_itself() {
        let t = template(HERMES);
        let caps = TemplateCaps::probe(&t);
        assert_eq!(
            caps,
            TemplateCaps {
                tools: true,
                tool_calls: true,
                tool_role: true
            }
        );
        let chat = prepare(&t, caps, &history(), Some(&request(ToolChoice::Required)));
        assert_eq!(chat.format, Some(ToolFormat::Hermes));
        assert_eq!(chat.messages, history());
        let text = t
            .render_with_tools(&chat.messages, chat.tools.as_ref(), true)
            .unwrap();
        assert!(
            text.starts_with("<|im_start|>system\n<tools>{\"name\": \"get_weather\""),
            "{text}"
        );
        assert!(
            text.contains("<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>"),
            "{text}"
        );
        assert!(
            text.contains("<tool_response>18 C</tool_response>"),
            "{text}"
        );
    }

    #[test]
    fn the_generic_prompt_names_the_tools_and_the_answer() {
        let p = system_prompt(&request(ToolChoice::Auto));
        assert!(
            p.contains("get_weather") && p.contains("\"response\""),
            "{p}"
        );
        let p = system_prompt(&request(ToolChoice::Function("get_weather".into())));
        assert!(p.contains("Call the tool `get_weather`"), "{p}");
        let call = ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: json!({"a": 1}),
        };
        assert_eq!(
            generic_calls_text(&[call]),
            r#"{"tool_calls":[{"name":"f","arguments":{"a":1},"id":"call_1"}]}"#
        );
    }
}
