//! `POST /v1/embeddings` in OpenAI's shape: request checking and the response body
//! (unit-tested natively; `routes` calls the model's `embed`).
//!
//! Every field OpenAI defines is honoured or refused with a 400 naming it ([`FIELDS`], listed
//! in the README's `| embeddings field |` table); vectors are L2-normalized, pooled as the
//! model's metadata says (else the mean over tokens), as floats or as base64 of little-endian
//! f32s.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::api;
use crate::error::ApiError;

/// The request fields and what is done with each.
pub const FIELDS: [(&str, &str); 5] = [
    (
        "input",
        "honoured: a string, a list of strings, a list of token ids, or a list of lists of them",
    ),
    ("model", "honoured: the served model's name, or an alias"),
    ("encoding_format", "honoured: `float` (default) or `base64`"),
    ("dimensions", "only the model's embedding width"),
    ("user", "label: a string, checked, changes no vector"),
];

/// The most inputs one request may embed (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// How the vectors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON numbers.
    Float,
    /// A base64 string of the little-endian f32 bytes.
    Base64,
}

/// A checked embeddings request.
#[derive(Debug, Clone)]
pub struct EmbeddingsRequest {
    /// The inputs, in order.
    pub inputs: Vec<api::EmbedInput>,
    /// The requested model name, if any.
    pub model: Option<String>,
    /// How to write the vectors.
    pub encoding: Encoding,
    /// The width asked for, if any (only the model's is served).
    pub dimensions: Option<u64>,
}

fn token_ids(items: &[Value]) -> Option<Vec<u32>> {
    items
        .iter()
        .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect()
}

fn inputs(value: Option<&Value>) -> Result<Vec<api::EmbedInput>, ApiError> {
    let invalid = |why: &str| ApiError::invalid_param("input", why);
    let shape =
        "must be a string, a list of strings, a list of token ids, or a list of lists of token ids";
    let inputs = match value {
        None | Some(Value::Null) => return Err(invalid("is required")),
        Some(Value::String(s)) => vec![api::EmbedInput::Text(s.clone())],
        Some(Value::Array(items)) if items.is_empty() => return Err(invalid("is an empty list")),
        Some(Value::Array(items)) => match &items[0] {
            Value::String(_) => items
                .iter()
                .map(|v| v.as_str().map(|s| api::EmbedInput::Text(s.to_string())))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(shape))?,
            Value::Number(_) => vec![api::EmbedInput::Tokens(
                token_ids(items).ok_or_else(|| invalid(shape))?,
            )],
            Value::Array(_) => items
                .iter()
                .map(|v| {
                    v.as_array()
                        .and_then(|ids| token_ids(ids))
                        .map(api::EmbedInput::Tokens)
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(shape))?,
            _ => return Err(invalid(shape)),
        },
        Some(_) => return Err(invalid(shape)),
    };
    if inputs.len() > MAX_INPUTS {
        return Err(invalid(&format!(
            "holds {} inputs; at most {MAX_INPUTS}",
            inputs.len()
        )));
    }
    let empty = inputs.iter().position(|i| match i {
        api::EmbedInput::Text(t) => t.is_empty(),
        api::EmbedInput::Tokens(ids) => ids.is_empty(),
    });
    if let Some(i) = empty {
        return Err(invalid(&format!("input {i} is empty")));
    }
    Ok(inputs)
}

/// Checks an embeddings body.
pub fn parse_request(body: &[u8]) -> Result<EmbeddingsRequest, ApiError> {
    let map: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => return Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    };
    if let Some(k) = map.keys().find(|k| !FIELDS.iter().any(|(f, _)| f == k)) {
        return Err(ApiError::invalid_param(
            k,
            "is not a field of /v1/embeddings",
        ));
    }
    let model = match map.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(ApiError::invalid_param("model", "must be a string")),
    };
    let encoding = match map.get("encoding_format") {
        None | Some(Value::Null) => Encoding::Float,
        Some(Value::String(f)) if f == "float" => Encoding::Float,
        Some(Value::String(f)) if f == "base64" => Encoding::Base64,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("must be `float` or `base64`, got {other}"),
            ))
        }
    };
    let dimensions =
        match map.get("dimensions") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|&n| n > 0).ok_or_else(|| {
                ApiError::invalid_param("dimensions", "must be a positive integer")
            })?),
        };
    match map.get("user") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(_) => return Err(ApiError::invalid_param("user", "must be a string")),
    }
    Ok(EmbeddingsRequest {
        inputs: inputs(map.get("input"))?,
        model,
        encoding,
        dimensions,
    })
}

/// Refuses `dimensions` other than the model's width (vectors are not shortened).
pub fn check_dimensions(asked: Option<u64>, width: usize) -> Result<(), ApiError> {
    match asked {
        Some(n) if n != width as u64 => Err(ApiError::invalid_param(
            "dimensions",
            format!(
                "this model's embeddings have {width} dimensions; shortening them is not supported"
            ),
        )),
        _ => Ok(()),
    }
}

/// The response body: OpenAI's list of embeddings with its usage.
pub fn response(model: &str, e: &api::Embeddings, encoding: Encoding) -> Value {
    let data: Vec<Value> = e
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = match encoding {
                Encoding::Float => json!(v),
                Encoding::Base64 => {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": e.prompt_tokens, "total_tokens": e.prompt_tokens},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_take_every_openai_shape() {
        let text = |s: &str| api::EmbedInput::Text(s.into());
        let r = parse_request(br#"{"input":"hi","model":"m"}"#).unwrap();
        assert_eq!(format!("{:?}", r.inputs), format!("{:?}", [text("hi")]));
        assert_eq!(
            (r.model.as_deref(), r.encoding, r.dimensions),
            (Some("m"), Encoding::Float, None)
        );
        let r =
            parse_request(br#"{"input":["a","b"],"encoding_format":"base64","dimensions":576}"#)
                .unwrap();
        assert_eq!(
            format!("{:?}", r.inputs),
            format!("{:?}", [text("a"), text("b")])
        );
        assert_eq!((r.encoding, r.dimensions), (Encoding::Base64, Some(576)));
        let r = parse_request(br#"{"input":[1,2,3]}"#).unwrap();
        assert_eq!(
            format!("{:?}", r.inputs),
            format!("{:?}", [api::EmbedInput::Tokens(vec![1, 2, 3])])
        );
        let r = parse_request(br#"{"input":[[1],[2,3]],"user":"u"}"#).unwrap();
        assert_eq!(
            format!("{:?}", r.inputs),
            format!(
                "{:?}",
                [
                    api::EmbedInput::Tokens(vec![1]),
                    api::EmbedInput::Tokens(vec![2, 3])
                ]
            )
        );
    }

    #[test]
    fn bad_requests_name_their_field() {
        for (body, field) in [
            (&br#"{}"#[..], "input"),
            (br#"{"input":""}"#, "input"),
            (br#"{"input":[]}"#, "input"),
            (br#"{"input":["a",1]}"#, "input"),
            (br#"{"input":[1,-2]}"#, "input"),
            (br#"{"input":[[1],[]]}"#, "input"),
            (br#"{"input":{"a":1}}"#, "input"),
            (
                br#"{"input":"a","encoding_format":"int8"}"#,
                "encoding_format",
            ),
            (br#"{"input":"a","dimensions":0}"#, "dimensions"),
            (br#"{"input":"a","user":1}"#, "user"),
            (br#"{"input":"a","pooling":"cls"}"#, "pooling"),
        ] {
            let e = parse_request(body).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(field)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(check_dimensions(Some(576), 576).is_ok() && check_dimensions(None, 576).is_ok());
        assert_eq!(
            check_dimensions(Some(64), 576)
                .unwrap_err()
                .param
                .as_deref(),
            Some("dimensions")
        );
    }

    #[test]
    fn vectors_are_floats_or_little_endian_base64() {
        let e = api::Embeddings {
            vectors: vec![vec![1.0, -0.5]],
            pooling: api::Pooling::Mean,
            prompt_tokens: 3,
        };
        let floats = response("m", &e, Encoding::Float);
        assert_eq!(floats["data"][0]["embedding"], json!([1.0, -0.5]));
        assert_eq!(
            floats["usage"],
            json!({"prompt_tokens": 3, "total_tokens": 3})
        );
        assert_eq!(floats["data"][0]["object"], "embedding");
        let b64 = response("m", &e, Encoding::Base64);
        // 1.0 = 00 00 80 3f, -0.5 = 00 00 00 bf.
        assert_eq!(b64["data"][0]["embedding"], "AACAPwAAAL8=");
    }

    #[test]
    fn the_readme_lists_every_field() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .expect("README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| embeddings field |"))
            .take_while(|l| l.starts_with('|'))
            .collect();
        for (name, _) in FIELDS {
            assert!(
                table.iter().any(|l| l
                    .split('|')
                    .nth(1)
                    .is_some_and(|c| c.trim() == format!("`{name}`"))),
                "README.md's embeddings field table lacks `{name}`"
            );
        }
    }
}
