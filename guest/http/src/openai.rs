//! OpenAI's request and response shapes: a request body becomes a [`GenerateRequest`] (every
//! field checked, a bad one named in the error), and completions become `chat.completion`,
//! `text_completion` and their streamed chunks.

use serde_json::{json, Map, Value};

use crate::api;
use crate::config::{DEFAULT_MAX_TOKENS, MAX_STOP_STRINGS};
use crate::error::ApiError;

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
}

/// Parses and checks a request body for `endpoint`.
pub fn parse_request(endpoint: Endpoint, body: &[u8]) -> Result<GenerateRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let f = Fields(&fields);
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
    if let Some(n) = f.uint("n")? {
        if n != 1 {
            return Err(ApiError::invalid_param("n", "only `n: 1` is supported"));
        }
    }
    let max_tokens = match f.uint("max_completion_tokens")? {
        Some(n) => Some(n),
        None => f.uint("max_tokens")?,
    };
    let max_tokens = match max_tokens {
        None => DEFAULT_MAX_TOKENS,
        Some(0) => return Err(ApiError::invalid_param("max_tokens", "must be at least 1")),
        Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
    };
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
    };
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => Fields(o).bool("include_usage")?.unwrap_or(false),
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
    Ok(GenerateRequest {
        model,
        prompt,
        params,
        stream,
        include_usage,
    })
}

/// Typed access to a request's fields; `null` counts as absent.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
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

/// `messages`: a non-empty list of `{role, content}`, content a string or text parts.
fn messages(value: &Value) -> Result<Vec<api::Message>, ApiError> {
    let bad = |i: usize, what: &str| ApiError::invalid_param(&format!("messages[{i}]"), what);
    let items = value
        .as_array()
        .ok_or_else(|| ApiError::invalid_param("messages", "must be a list of messages"))?;
    if items.is_empty() {
        return Err(ApiError::invalid_param("messages", "must not be empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.get("role").and_then(Value::as_str) {
                Some(r @ ("system" | "user" | "assistant")) => r,
                Some("developer") => "system",
                Some(other) => {
                    return Err(bad(
                        i,
                        &format!(
                            "unknown role `{other}`; use system, developer, user or assistant"
                        ),
                    ))
                }
                None => return Err(bad(i, "each message needs a string `role`")),
            };
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
            Ok(api::Message {
                role: role.into(),
                content,
            })
        })
        .collect()
}

/// `prompt`: a string, or a list holding exactly one string.
fn prompt(value: &Value) -> Result<String, ApiError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            Ok(items[0].as_str().unwrap_or_default().to_string())
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

    /// The whole response of a one-shot request.
    pub fn completion(&self, c: &api::Completion) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": null,
                "finish_reason": finish_reason(c.finish_reason),
            }),
            Endpoint::Text => json!({
                "index": 0,
                "text": c.text,
                "logprobs": null,
                "finish_reason": finish_reason(c.finish_reason),
            }),
        };
        let mut m = self.envelope(false, json!([choice]));
        m.insert("usage".into(), usage(&c.usage));
        m.insert("system_fingerprint".into(), json!(fingerprint(c.backend)));
        m.insert(
            "timings".into(),
            json!({
                "prefill_ms": c.timings.prefill_ms,
                "ttft_ms": c.timings.ttft_ms,
                "decode_tokens_per_s": c.timings.decode_tokens_per_s,
            }),
        );
        Value::Object(m)
    }

    /// A streamed chunk: `text` (for chat, with the assistant role on the first chunk) or the
    /// final `finish_reason`.
    pub fn chunk(&self, text: &str, first: bool, finish: Option<api::FinishReason>) -> Value {
        let reason = finish.map(finish_reason);
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let delta = match (first, finish) {
                    (true, _) => json!({"role": "assistant", "content": text}),
                    (false, None) => json!({"content": text}),
                    (false, Some(_)) => json!({}),
                };
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": reason})
            }
            Endpoint::Text => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": reason})
            }
        };
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
                r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#,
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

    #[test]
    fn responses_have_openai_shapes() {
        let meta = ResponseMeta {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m".into(),
            endpoint: Endpoint::Chat,
        };
        let c = api::Completion {
            text: "Paris".into(),
            tokens: vec![1, 2],
            finish_reason: api::FinishReason::Length,
            usage: api::Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                cached_prompt_tokens: 1,
            },
            timings: api::Timings {
                prefill_ms: 1.0,
                ttft_ms: 2.0,
                decode_tokens_per_s: 3.0,
            },
            backend: api::Backend::Kernel,
        };
        let v = meta.completion(&c);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "Paris");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["total_tokens"], 5);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
        let first = meta.chunk("Pa", true, None);
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        let last = meta.chunk("", false, Some(api::FinishReason::Stop));
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(last["choices"][0]["delta"], json!({}));
        assert_eq!(meta.usage_chunk(&c.usage)["choices"], json!([]));
        let text = ResponseMeta {
            endpoint: Endpoint::Text,
            ..meta
        };
        assert_eq!(text.completion(&c)["choices"][0]["text"], "Paris");
        assert_eq!(text.chunk("x", true, None)["object"], "text_completion");
    }
}
