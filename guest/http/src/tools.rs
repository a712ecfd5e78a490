//! OpenAI's tool calling: the `tools`, `tool_choice` and `parallel_tool_calls` fields, the tool
//! parts of messages (an assistant's `tool_calls`, a `tool` message's `tool_call_id`), and the
//! calls in responses and streamed deltas.

use serde_json::{json, Map, Value};

use crate::api;
use crate::error::ApiError;

/// A request's checked tool fields.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The functions the model may call.
    pub tools: Vec<api::Tool>,
    /// Which of them it may call.
    pub choice: api::ToolChoice,
    /// Whether one answer may call several.
    pub parallel: bool,
}

/// The most tools one request may list.
pub const MAX_TOOLS: usize = 128;

/// The keys of a `tools[i].function`.
const FUNCTION_KEYS: &[&str] = &["name", "description", "parameters", "strict"];

/// Reads `tools`, `tool_choice` and `parallel_tool_calls` (each `None` when absent or `null`).
pub fn parse(
    tools: Option<&Value>,
    choice: Option<&Value>,
    parallel: Option<&Value>,
) -> Result<Tools, ApiError> {
    let list = match tools {
        None => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_TOOLS => items
            .iter()
            .enumerate()
            .map(|(i, t)| tool(i, t))
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(items)) => {
            return Err(ApiError::invalid_param(
                "tools",
                format!("at most {MAX_TOOLS} tools, got {}", items.len()),
            ))
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "tools",
                "must be a list of {\"type\": \"function\", \"function\": {\"name\": ..., \"parameters\": {...}}}",
            ))
        }
    };
    for (i, t) in list.iter().enumerate() {
        if list[..i].iter().any(|u| u.name == t.name) {
            return Err(ApiError::invalid_param(
                &format!("tools[{i}].function.name"),
                format!("`{}` is given twice", t.name),
            ));
        }
    }
    let choice = match choice {
        None if list.is_empty() => api::ToolChoice::None,
        None => api::ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => api::ToolChoice::None,
            "auto" => api::ToolChoice::Auto,
            "required" => api::ToolChoice::Required,
            other => {
                return Err(ApiError::invalid_param(
                    "tool_choice",
                    format!("must be `none`, `auto`, `required` or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, got `{other}`"),
                ))
            }
        },
        Some(v) => {
            let name = v
                .as_object()
                .filter(|o| o.get("type").is_some_and(|t| t == "function"))
                .and_then(|o| o.get("function"))
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "tool_choice",
                        "must be `none`, `auto`, `required` or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    )
                })?;
            if !list.iter().any(|t| t.name == name) {
                return Err(ApiError::invalid_param(
                    "tool_choice.function.name",
                    format!("`{name}` is not among the request's tools"),
                ));
            }
            api::ToolChoice::Function(name.to_string())
        }
    };
    if list.is_empty() && !matches!(choice, api::ToolChoice::None | api::ToolChoice::Auto) {
        return Err(ApiError::invalid_param(
            "tool_choice",
            "needs `tools`: there is no tool to call",
        ));
    }
    let parallel = match parallel {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "parallel_tool_calls",
                "must be true or false",
            ))
        }
    };
    Ok(Tools {
        tools: list,
        choice,
        parallel,
    })
}

/// `tools[i]`: `{"type": "function", "function": {"name", "description"?, "parameters"?,
/// "strict"?}}`.
fn tool(i: usize, t: &Value) -> Result<api::Tool, ApiError> {
    let at = |key: &str| format!("tools[{i}]{key}");
    let Some(o) = t.as_object() else {
        return Err(ApiError::invalid_param(
            &at(""),
            "must be {\"type\": \"function\", \"function\": {...}}",
        ));
    };
    if let Some(k) = o
        .keys()
        .find(|k| !["type", "function"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid_param(
            &at(&format!(".{k}")),
            "unknown field",
        ));
    }
    if o.get("type").is_none_or(|t| t != "function") {
        return Err(ApiError::invalid_param(
            &at(".type"),
            "must be `function` (the only kind of tool)",
        ));
    }
    let Some(f) = o.get("function").and_then(Value::as_object) else {
        return Err(ApiError::invalid_param(
            &at(".function"),
            "is required: {\"name\": ..., \"parameters\": {...}}",
        ));
    };
    if let Some(k) = f.keys().find(|k| !FUNCTION_KEYS.contains(&k.as_str())) {
        return Err(ApiError::invalid_param(
            &at(&format!(".function.{k}")),
            "unknown field",
        ));
    }
    let name = match f.get("name").and_then(Value::as_str) {
        Some(n)
            if (1..=64).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            n
        }
        _ => {
            return Err(ApiError::invalid_param(
                &at(".function.name"),
                "must be 1 to 64 of a-z, A-Z, 0-9, `_` and `-`",
            ))
        }
    };
    let description = match f.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => {
            return Err(ApiError::invalid_param(
                &at(".function.description"),
                "must be a string",
            ))
        }
    };
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(o)) if o.get("type").is_none_or(|t| t == "object") => p.clone(),
        Some(_) => {
            return Err(ApiError::invalid_param(
                &at(".function.parameters"),
                "must be a JSON Schema of type `object`",
            ))
        }
    };
    if f.get("strict")
        .is_some_and(|s| !s.is_boolean() && !s.is_null())
    {
        return Err(ApiError::invalid_param(
            &at(".function.strict"),
            "must be true or false",
        ));
    }
    Ok(api::Tool {
        name: name.to_string(),
        description,
        parameters: parameters.to_string(),
    })
}

/// `messages[i].tool_calls`: `[{"id", "type": "function", "function": {"name", "arguments"}}]`,
/// the arguments a JSON text.
pub fn message_calls(i: usize, calls: &Value) -> Result<Vec<api::ToolCall>, ApiError> {
    let Some(items) = calls.as_array() else {
        return Err(ApiError::invalid_param(
            &format!("messages[{i}].tool_calls"),
            "must be a list of tool calls",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let at = |key: &str| format!("messages[{i}].tool_calls[{j}]{key}");
            let string = |v: Option<&Value>, key: &str| {
                v.and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::invalid_param(&at(key), "is required (a string)"))
            };
            if c.get("type").is_some_and(|t| t != "function") {
                return Err(ApiError::invalid_param(&at(".type"), "must be `function`"));
            }
            let f = c.get("function");
            let id = string(c.get("id"), ".id")?;
            let name = string(f.and_then(|f| f.get("name")), ".function.name")?;
            let arguments = string(f.and_then(|f| f.get("arguments")), ".function.arguments")?;
            if serde_json::from_str::<Value>(&arguments).is_err() {
                return Err(ApiError::invalid_param(
                    &at(".function.arguments"),
                    "must be a JSON text",
                ));
            }
            Ok(api::ToolCall {
                id,
                name,
                arguments,
            })
        })
        .collect()
}

/// How the inference component's error about a tool's `parameters` schema begins.
const SCHEMA_ERROR_PREFIX: &str = "tools: ";

/// An error of the inference component, with `tools` named when the tools' schemas caused it.
pub fn name_schema_error(e: ApiError) -> ApiError {
    match e.message.strip_prefix(SCHEMA_ERROR_PREFIX) {
        Some(why) if e.status == 400 && e.param.is_none() => ApiError::invalid_param("tools", why),
        _ => e,
    }
}

/// Calls in a response message's shape.
pub fn calls_json(calls: &[api::ToolCall]) -> Value {
    calls
        .iter()
        .map(|c| {
            json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
        })
        .collect()
}

/// The assistant message of a one-shot answer: with calls, `content` is `null` when the answer
/// has no other text.
pub fn message(text: &str, calls: &[api::ToolCall]) -> Value {
    let mut m = Map::new();
    m.insert("role".into(), json!("assistant"));
    if calls.is_empty() {
        m.insert("content".into(), json!(text));
    } else {
        let content = if text.is_empty() {
            Value::Null
        } else {
            json!(text)
        };
        m.insert("content".into(), content);
        m.insert("tool_calls".into(), calls_json(calls));
    }
    Value::Object(m)
}

/// The streamed deltas of one entry of a chunk's `tool-calls`, in OpenAI's shape and order: an
/// entry with an id begins the answer's next call (index `begun`, which it counts): its id,
/// type and name with empty arguments, then its arguments if it has some; an entry without
/// one carries more of the arguments of the call begun last.
pub fn call_deltas(begun: &mut usize, c: &api::ToolCall) -> Vec<Value> {
    let mut deltas = Vec::with_capacity(2);
    if !c.id.is_empty() {
        deltas.push(
            json!({"tool_calls": [{"index": *begun, "id": c.id, "type": "function",
            "function": {"name": c.name, "arguments": ""}}]}),
        );
        *begun += 1;
    }
    if !c.arguments.is_empty() {
        let index = begun.saturating_sub(1);
        deltas.push(
            json!({"tool_calls": [{"index": index, "function": {"arguments": c.arguments}}]}),
        );
    }
    deltas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "description": "d",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
    }

    fn param(r: Result<Tools, ApiError>) -> Option<String> {
        r.unwrap_err().param
    }

    #[test]
    fn tools_and_choices_are_read() {
        let tools = json!([weather()]);
        let t = parse(Some(&tools), None, None).unwrap();
        assert_eq!(t.tools[0].name, "get_weather");
        assert!(matches!(t.choice, api::ToolChoice::Auto));
        assert!(t.parallel);
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        let t = parse(Some(&tools), Some(&named), Some(&json!(false))).unwrap();
        assert!(matches!(&t.choice, api::ToolChoice::Function(n) if n == "get_weather"));
        assert!(!t.parallel);
        let choice = |c: &str| parse(Some(&tools), Some(&json!(c)), None).unwrap().choice;
        assert!(matches!(choice("none"), api::ToolChoice::None));
        assert!(matches!(choice("required"), api::ToolChoice::Required));
        assert!(matches!(
            parse(None, None, None).unwrap().choice,
            api::ToolChoice::None
        ));
        let no_params = json!([{"type": "function", "function": {"name": "now"}}]);
        let t = parse(Some(&no_params), None, None).unwrap();
        let parameters: Value = serde_json::from_str(&t.tools[0].parameters).unwrap();
        assert_eq!(parameters, json!({"type": "object", "properties": {}}));
    }

    #[test]
    fn bad_tool_fields_are_named() {
        let tools = json!([weather()]);
        let other = json!({"type": "function", "function": {"name": "nope"}});
        assert_eq!(
            param(parse(Some(&tools), Some(&other), None)).as_deref(),
            Some("tool_choice.function.name")
        );
        assert_eq!(
            param(parse(Some(&json!({})), None, None)).as_deref(),
            Some("tools")
        );
        assert_eq!(
            param(parse(None, Some(&json!("required")), None)).as_deref(),
            Some("tool_choice")
        );
        assert_eq!(
            param(parse(Some(&tools), Some(&json!("sometimes")), None)).as_deref(),
            Some("tool_choice")
        );
        assert_eq!(
            param(parse(Some(&tools), None, Some(&json!("yes")))).as_deref(),
            Some("parallel_tool_calls")
        );
        for (tool, at) in [
            (json!("f"), "tools[0]"),
            (
                json!({"type": "retrieval", "function": {"name": "f"}}),
                "tools[0].type",
            ),
            (json!({"type": "function"}), "tools[0].function"),
            (
                json!({"type": "function", "function": {"name": "a b"}}),
                "tools[0].function.name",
            ),
            (
                json!({"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}),
                "tools[0].function.parameters",
            ),
            (
                json!({"type": "function", "function": {"name": "f", "parameters": "{}"}}),
                "tools[0].function.parameters",
            ),
            (
                json!({"type": "function", "function": {"name": "f", "colour": 1}}),
                "tools[0].function.colour",
            ),
            (
                json!({"type": "function", "function": {"name": "f"}, "x": 1}),
                "tools[0].x",
            ),
        ] {
            assert_eq!(
                param(parse(Some(&json!([tool])), None, None)).as_deref(),
                Some(at),
                "{tool}"
            );
        }
        let twice = json!([weather(), weather()]);
        assert_eq!(
            param(parse(Some(&twice), None, None)).as_deref(),
            Some("tools[1].function.name")
        );
    }

    #[test]
    fn schema_errors_name_the_tools() {
        let e = name_schema_error(ApiError::bad_request(
            "tools: a `parameters` schema cannot be enforced: unknown keyword uniqueItems",
        ));
        assert_eq!(e.param.as_deref(), Some("tools"));
        assert!(e.message.contains("uniqueItems"), "{}", e.message);
        let other = name_schema_error(ApiError::bad_request("the prompt is too long"));
        assert_eq!(other.param, None);
    }

    #[test]
    fn history_calls_and_responses_have_openai_shapes() {
        let calls = json!([{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]);
        let c = message_calls(2, &calls).unwrap();
        assert_eq!(
            (c[0].id.as_str(), c[0].name.as_str()),
            ("call_1", "get_weather")
        );
        let bad = json!([{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]);
        assert_eq!(
            message_calls(2, &bad).unwrap_err().param.as_deref(),
            Some("messages[2].tool_calls[0].function.arguments")
        );
        let m = message("", &c);
        assert_eq!(m["content"], Value::Null);
        assert_eq!(m["tool_calls"], calls);
        assert_eq!(
            message("hi", &[]),
            json!({"role": "assistant", "content": "hi"})
        );
        let mut begun = 0;
        let deltas = call_deltas(&mut begun, &c[0]);
        assert_eq!(deltas.len(), 2);
        let (head, args) = (&deltas[0], &deltas[1]);
        assert_eq!(head["tool_calls"][0]["function"]["arguments"], "");
        assert_eq!(head["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            args["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        // Streamed fragments: a call begun with its name only, its arguments in pieces, then
        // the next call.
        let mut begun = 0;
        let fragment = |id: &str, name: &str, arguments: &str| api::ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        };
        let first = call_deltas(&mut begun, &fragment("call_a", "f", ""));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0]["tool_calls"][0]["index"], 0);
        let more = call_deltas(&mut begun, &fragment("", "", "{\"x\""));
        assert_eq!(
            more,
            [json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\""}}]})]
        );
        let second = call_deltas(&mut begun, &fragment("call_b", "g", "{}"));
        assert_eq!(second[0]["tool_calls"][0]["index"], 1);
        assert_eq!(second[1]["tool_calls"][0]["index"], 1);
        assert_eq!(begun, 2);
    }
}
