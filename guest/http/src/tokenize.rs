//! `POST /tokenize` and `POST /detokenize` in llama.cpp's server's shapes: request checking and
//! response bodies (unit-tested natively; `routes` calls the model).
//!
//! - `/tokenize`: `{"content": TEXT, "add_special": false, "parse_special": true,
//!   "with_pieces": false}` → `{"tokens": [ID, ...]}`, or with pieces `{"tokens": [{"id": ID,
//!   "piece": TEXT}, ...]}` (a piece that is not UTF-8 on its own is its list of bytes).
//! - `/detokenize`: `{"tokens": [ID, ...]}` → `{"content": TEXT}`.

use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// A checked `/tokenize` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizeRequest {
    /// The text.
    pub content: String,
    /// BOS/EOS as the model asks for them (llama.cpp's default: false).
    pub add_special: bool,
    /// Control tokens written in the text become those tokens (default: true).
    pub parse_special: bool,
    /// Answer each id with its piece.
    pub with_pieces: bool,
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    }
}

fn flag(map: &Map<String, Value>, name: &str, default: bool) -> Result<bool, ApiError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::invalid_param(name, "must be true or false")),
    }
}

fn no_other_fields(map: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid_param(
            k,
            "is not a field of this endpoint",
        )),
        None => Ok(()),
    }
}

/// Checks a `/tokenize` body.
pub fn parse_tokenize(body: &[u8]) -> Result<TokenizeRequest, ApiError> {
    let map = object(body)?;
    no_other_fields(
        &map,
        &["content", "add_special", "parse_special", "with_pieces"],
    )?;
    let content = match map.get("content") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(ApiError::invalid_param("content", "is required")),
        Some(_) => return Err(ApiError::invalid_param("content", "must be a string")),
    };
    Ok(TokenizeRequest {
        content,
        add_special: flag(&map, "add_special", false)?,
        parse_special: flag(&map, "parse_special", true)?,
        with_pieces: flag(&map, "with_pieces", false)?,
    })
}

/// Checks a `/detokenize` body: its token ids.
pub fn parse_detokenize(body: &[u8]) -> Result<Vec<u32>, ApiError> {
    let map = object(body)?;
    no_other_fields(&map, &["tokens"])?;
    let Some(Value::Array(ids)) = map.get("tokens") else {
        return Err(ApiError::invalid_param(
            "tokens",
            "must be a list of token ids",
        ));
    };
    ids.iter()
        .map(|v| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ApiError::invalid_param("tokens", format!("`{v}` is not a token id"))
                })
        })
        .collect()
}

/// The `/tokenize` answer: the ids, or with `pieces` (one per id) each id with its piece.
pub fn tokens_json(ids: &[u32], pieces: Option<&[Vec<u8>]>) -> Value {
    let Some(pieces) = pieces else {
        return json!({ "tokens": ids });
    };
    let tokens: Vec<Value> = ids
        .iter()
        .zip(pieces)
        .map(|(id, bytes)| {
            let piece = match std::str::from_utf8(bytes) {
                Ok(text) => json!(text),
                Err(_) => json!(bytes),
            };
            json!({"id": id, "piece": piece})
        })
        .collect();
    json!({ "tokens": tokens })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_requests_take_llama_cpp_fields() {
        let r = parse_tokenize(br#"{"content":"hi"}"#).unwrap();
        assert_eq!(
            r,
            TokenizeRequest {
                content: "hi".into(),
                add_special: false,
                parse_special: true,
                with_pieces: false
            }
        );
        let r = parse_tokenize(br#"{"content":"","add_special":true,"with_pieces":true}"#).unwrap();
        assert!(r.add_special && r.with_pieces);
        assert_eq!(
            parse_tokenize(br#"{}"#).unwrap_err().param.as_deref(),
            Some("content")
        );
        let bad = parse_tokenize(br#"{"content":"a","add_bos":true}"#).unwrap_err();
        assert_eq!(bad.param.as_deref(), Some("add_bos"));
        let bad = parse_tokenize(br#"{"content":"a","with_pieces":1}"#).unwrap_err();
        assert_eq!(bad.param.as_deref(), Some("with_pieces"));
        assert_eq!(parse_tokenize(b"[1]").unwrap_err().status, 400);
    }

    #[test]
    fn detokenize_requests_are_ids() {
        assert_eq!(
            parse_detokenize(br#"{"tokens":[1,2,49151]}"#).unwrap(),
            [1, 2, 49151]
        );
        for bad in [
            &br#"{"tokens":[-1]}"#[..],
            br#"{"tokens":[1.5]}"#,
            br#"{"tokens":"1"}"#,
            b"{}",
        ] {
            assert_eq!(
                parse_detokenize(bad).unwrap_err().param.as_deref(),
                Some("tokens")
            );
        }
    }

    #[test]
    fn pieces_are_text_or_bytes() {
        assert_eq!(tokens_json(&[5, 6], None), json!({"tokens": [5, 6]}));
        let pieces = [b"Hi".to_vec(), vec![0xE2]];
        assert_eq!(
            tokens_json(&[5, 6], Some(&pieces)),
            json!({"tokens": [{"id": 5, "piece": "Hi"}, {"id": 6, "piece": [226]}]})
        );
    }
}
