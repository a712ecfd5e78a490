//! The `wasi:http` plumbing: reading a bounded request body, sending a JSON response, and
//! streaming server-sent events.
//!
//! Two things every response of a request carries are set once per request, so the routes
//! need not pass them along: the CORS headers ([`set_response_headers`]), and, for a host
//! that asks for them (`EDGE_LLM_USAGE_TRAILERS=1`, as `edge-llm serve` does for its
//! `/metrics`), the request's token counts as trailers ([`record_usage`]).

use std::cell::RefCell;
use std::io::{Read, Write};

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::OutputStream;

use crate::api;
use crate::error::ApiError;

/// The trailer with a request's prompt tokens.
pub const PROMPT_TOKENS_TRAILER: &str = "x-edge-llm-prompt-tokens";
/// The trailer with a request's generated tokens.
pub const COMPLETION_TOKENS_TRAILER: &str = "x-edge-llm-completion-tokens";

thread_local! {
    /// Headers every response of the current request gets.
    static RESPONSE_HEADERS: RefCell<Vec<(&'static str, String)>> = const { RefCell::new(Vec::new()) };
    /// The current request's (prompt, generated) tokens, once known.
    static USAGE: RefCell<Option<(u32, u32)>> = const { RefCell::new(None) };
}

/// Sets the headers every response of the current request gets, and forgets the last
/// request's usage.
pub fn set_response_headers(headers: Vec<(&'static str, String)>) {
    RESPONSE_HEADERS.with(|h| *h.borrow_mut() = headers);
    USAGE.with(|u| *u.borrow_mut() = None);
}

/// Records the current request's token counts, sent as trailers when the host asks for them.
pub fn record_usage(usage: &api::Usage) {
    USAGE.with(|u| *u.borrow_mut() = Some((usage.prompt_tokens, usage.completion_tokens)));
}

/// The usage trailers, when the host asks for them and the request has usage.
fn usage_trailers() -> Option<Fields> {
    if std::env::var("EDGE_LLM_USAGE_TRAILERS").ok().as_deref() != Some("1") {
        return None;
    }
    let (prompt, completion) = USAGE.with(|u| *u.borrow())?;
    let trailers = Fields::new();
    let _ = trailers.set(PROMPT_TOKENS_TRAILER, &[prompt.to_string().into_bytes()]);
    let _ = trailers.set(
        COMPLETION_TOKENS_TRAILER,
        &[completion.to_string().into_bytes()],
    );
    Some(trailers)
}

/// The parts of a request the routes look at.
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: Method,
    /// The path without the query string.
    pub path: String,
    inner: IncomingRequest,
}

impl Request {
    /// Wraps an incoming request.
    pub fn new(inner: IncomingRequest) -> Self {
        let path = inner.path_with_query().unwrap_or_else(|| "/".into());
        let path = path.split('?').next().unwrap_or("/").to_string();
        Self {
            method: inner.method(),
            path,
            inner,
        }
    }

    /// The first value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.inner.headers().get(name);
        values
            .first()
            .and_then(|v| String::from_utf8(v.clone()).ok())
    }

    /// The first value of header `name`, as bytes.
    pub fn header_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.inner.headers().get(name).into_iter().next()
    }

    /// The whole body, refused with 413 once it exceeds `limit` bytes (by its `content-length`
    /// before reading anything, or while reading when the length is not announced).
    pub fn body(&self, limit: usize) -> Result<Vec<u8>, ApiError> {
        let too_large = || {
            ApiError::payload_too_large(format!(
                "the request body exceeds {limit} bytes (EDGE_LLM_MAX_BODY_BYTES)"
            ))
        };
        let declared = self.inner.headers().get("content-length");
        if let Some(len) = declared.first() {
            let len = std::str::from_utf8(len)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("content-length is not a number"))?;
            if len > limit as u64 {
                return Err(too_large());
            }
        }
        let body = self
            .inner
            .consume()
            .map_err(|()| ApiError::bad_request("the request body was already read"))?;
        let mut bytes = Vec::new();
        {
            let stream = body
                .stream()
                .map_err(|()| ApiError::bad_request("the request body cannot be read"))?;
            let read = stream
                .take(limit as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")));
            read?;
        }
        if bytes.len() > limit {
            return Err(too_large());
        }
        Ok(bytes)
    }
}

/// A response whose status and headers have been sent; the body follows.
pub struct Body {
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
}

impl Body {
    /// Sends the status and headers.
    pub fn start(out: ResponseOutparam, status: u16, content_type: &str) -> Body {
        let headers = Fields::new();
        // Both values are valid header values; a refusal would only lose the header.
        let _ = headers.set("content-type", &[content_type.as_bytes().to_vec()]);
        if content_type == EVENT_STREAM {
            let _ = headers.set("cache-control", &[b"no-cache".to_vec()]);
        }
        RESPONSE_HEADERS.with(|h| {
            for (name, value) in h.borrow().iter() {
                let _ = headers.set(name, &[value.as_bytes().to_vec()]);
            }
        });
        let response = OutgoingResponse::new(headers);
        let _ = response.set_status_code(status);
        let body = response.body().ok();
        ResponseOutparam::set(out, Ok(response));
        let stream = body.as_ref().and_then(|b| b.write().ok());
        Body { stream, body }
    }

    /// Writes and flushes `bytes`; an error means the client has gone.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stream = self.stream.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Ends the body.
    pub fn finish(mut self) {
        drop(self.stream.take());
        if let Some(body) = self.body.take() {
            // The client may have gone; nothing is left to tell it.
            let _ = OutgoingBody::finish(body, usage_trailers());
        }
    }
}

/// Sends a response with no body (a CORS preflight's 204).
pub fn send_empty(out: ResponseOutparam, status: u16) {
    let headers = Fields::new();
    RESPONSE_HEADERS.with(|h| {
        for (name, value) in h.borrow().iter() {
            let _ = headers.set(name, &[value.as_bytes().to_vec()]);
        }
    });
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let body = response.body().ok();
    ResponseOutparam::set(out, Ok(response));
    if let Some(body) = body {
        let _ = OutgoingBody::finish(body, None);
    }
}

/// The content type of server-sent events.
pub const EVENT_STREAM: &str = "text/event-stream";

/// Sends a whole JSON response.
pub fn send_json(out: ResponseOutparam, status: u16, value: &serde_json::Value) {
    let mut body = Body::start(out, status, "application/json");
    let mut text = value.to_string();
    text.push('\n');
    // A client that hung up has nobody left to read an error.
    let _ = body.send(text.as_bytes());
    body.finish();
}

/// Sends an error as OpenAI does: its status and `{"error": {...}}`, with `Retry-After` when
/// the error has one.
pub fn send_error(out: ResponseOutparam, error: &ApiError) {
    if let Some(seconds) = error.retry_after {
        RESPONSE_HEADERS.with(|h| h.borrow_mut().push(("retry-after", seconds.to_string())));
    }
    send_json(out, error.status, &error.to_json());
}

/// A server-sent events stream: `data: <json>` events, ended by `data: [DONE]`.
pub struct EventStream(Body);

impl EventStream {
    /// Sends 200 with `content-type: text/event-stream`.
    pub fn start(out: ResponseOutparam) -> Self {
        Self(Body::start(out, 200, EVENT_STREAM))
    }

    /// Sends one event.
    pub fn event(&mut self, value: &serde_json::Value) -> std::io::Result<()> {
        self.0.send(format!("data: {value}\n\n").as_bytes())
    }

    /// Sends `data: [DONE]` and ends the body.
    pub fn done(mut self) {
        let _ = self.0.send(b"data: [DONE]\n\n");
        self.0.finish();
    }

    /// Sends `error` as the last event and ends the body without `[DONE]`: the response is
    /// whole and says why it stopped. (A body dropped unfinished is an aborted response: the
    /// stock `wasmtime serve` then loses the events not yet flushed, this one included.)
    pub fn fail(mut self, error: &ApiError) {
        let _ = self.event(&error.to_json());
        self.0.finish();
    }
}
