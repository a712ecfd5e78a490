//! The `wasi:http` plumbing: reading a bounded request body, sending a JSON response, and
//! streaming server-sent events.

use std::io::{Read, Write};

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::OutputStream;

use crate::error::ApiError;

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
            let _ = OutgoingBody::finish(body, None);
        }
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

/// Sends an error as OpenAI does: its status and `{"error": {...}}`.
pub fn send_error(out: ResponseOutparam, error: &ApiError) {
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
}
