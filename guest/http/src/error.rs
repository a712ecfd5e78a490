//! Errors as OpenAI's API reports them: an HTTP status and `{"error": {message, type, param,
//! code}}`.

use serde_json::json;

use crate::api;

/// One failed request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// OpenAI's `type`: `invalid_request_error`, `not_found_error`, `server_error`.
    pub kind: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code, e.g. `context_length_exceeded`, `model_not_found`.
    pub code: Option<&'static str>,
    /// Seconds after which the same request may succeed (`Retry-After`).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }

    /// 400 naming the field at fault (the message is prefixed with it).
    pub fn invalid_param(param: &str, message: impl std::fmt::Display) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::bad_request(format!("`{param}`: {message}"))
        }
    }

    /// This error with `param` as the field at fault, when it is a 400 that names none (an
    /// inference component's `invalid-input` about a field only the front knows the name of).
    pub fn naming(self, param: &str) -> Self {
        match (self.status, &self.param) {
            (400, None) => Self {
                message: format!("`{param}`: {}", self.message),
                param: Some(param.to_string()),
                ..self
            },
            _ => self,
        }
    }

    /// 401: no API key, or not one of the server's (OpenAI's `invalid_api_key`).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            code: Some("invalid_api_key"),
            ..Self::new(401, "invalid_request_error", message)
        }
    }

    /// 404: no such route.
    pub fn no_route(method: &str, path: &str) -> Self {
        Self::new(
            404,
            "not_found_error",
            format!("no route for {method} {path}"),
        )
    }

    /// 404: the request names a model this server does not serve.
    pub fn model_not_found(name: &str, served: &str) -> Self {
        Self {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..Self::new(
                404,
                "invalid_request_error",
                format!("the model `{name}` does not exist here; this server serves `{served}`"),
            )
        }
    }

    /// 405: the route exists with another method.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> Self {
        Self::new(
            405,
            "invalid_request_error",
            format!("{method} is not allowed on {path}; use {allowed}"),
        )
    }

    /// 413: the body is over the limit.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(413, "invalid_request_error", message)
    }

    /// 503: the model cannot be opened, or cannot take the request now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "server_error", message)
    }

    /// The response body.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl From<api::Error> for ApiError {
    fn from(e: api::Error) -> Self {
        match e {
            api::Error::InvalidInput(m) => Self::bad_request(m),
            // An embedding's input asks for no tokens beyond itself.
            api::Error::ContextOverflow(o) if o.max_tokens == 0 => Self {
                code: Some("context_length_exceeded"),
                ..Self::bad_request(format!(
                    "an input ({} tokens) exceeds the model's context of {} tokens",
                    o.prompt_tokens, o.context_length
                ))
            },
            api::Error::ContextOverflow(o) => Self {
                code: Some("context_length_exceeded"),
                ..Self::bad_request(format!(
                    "the prompt ({} tokens) plus max_tokens ({}) exceed the model's context of {} tokens",
                    o.prompt_tokens, o.max_tokens, o.context_length
                ))
            },
            api::Error::ModelNotFound(m) => Self {
                code: Some("model_not_found"),
                ..Self::unavailable(format!("model not found: {m}"))
            },
            api::Error::ModelNotSupported(m) => {
                Self::unavailable(format!("model not supported: {m}"))
            }
            api::Error::BackendError(m) => Self::new(500, "server_error", format!("backend: {m}")),
            api::Error::RuntimeError(m) => Self::new(500, "server_error", m),
            // The instance's memory cannot hold this request's cache or working buffers now;
            // requests that end give theirs back (`edge-llm serve`'s KV budget answers alike).
            api::Error::OutOfMemory(m) => Self {
                code: Some("kv_memory_exhausted"),
                retry_after: Some(1),
                ..Self::unavailable(m)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_out_of_memory_is_a_503_to_retry() {
        let why = "out of memory: the KV cache of 1801 positions needs 45 MiB";
        let e = ApiError::from(api::Error::OutOfMemory(why.into()));
        assert_eq!(e.status, 503);
        assert_eq!(e.code, Some("kv_memory_exhausted"));
        assert_eq!(e.retry_after, Some(1));
        assert_eq!(e.to_json()["error"]["message"], why);
    }
}
