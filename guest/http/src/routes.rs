//! Routing and the generation endpoints, one-shot and streamed.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};

use crate::access;
use crate::api;
use crate::config::Config;
use crate::embeddings;
use crate::error::ApiError;
use crate::openai::{self, Endpoint, GenerateRequest, Prompt, ResponseMeta};
use crate::served::{self, Served};
use crate::tokenize;
use crate::tools;
use crate::wire::{self, EventStream, Request};

/// Answers one request; every failure becomes an OpenAI-style error response.
pub fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let request = Request::new(request);
    let Some(out) = admit(&request, out) else {
        return;
    };
    let path = canonical_path(&request.path);
    let endpoint = match (path, &request.method) {
        ("/v1/chat/completions", Method::Post) => Some(Endpoint::Chat),
        ("/v1/completions", Method::Post) => Some(Endpoint::Text),
        _ => None,
    };
    if let Some(endpoint) = endpoint {
        return match prepare(&request, endpoint) {
            Ok((served, meta, req)) if req.stream => stream(out, &served, &meta, &req),
            Ok((served, meta, req)) => match generate(&served, &req) {
                Ok(mut c) => {
                    if let (true, Prompt::Text(p)) = (req.echo, &req.prompt) {
                        for choice in &mut c.choices {
                            choice.text.insert_str(0, p);
                        }
                    }
                    wire::record_usage(&c.usage);
                    wire::send_json(out, 200, &meta.completion(&c))
                }
                Err(e) => wire::send_error(out, &e),
            },
            Err(e) => wire::send_error(out, &e),
        };
    }
    let method = method_name(&request.method);
    let result = match (path, &request.method) {
        ("/v1/models", Method::Get) => served::get().map(|s| models(&s)),
        ("/v1/embeddings", Method::Post) => embeddings_route(&request),
        ("/tokenize", Method::Post) => tokenize_route(&request),
        ("/detokenize", Method::Post) => detokenize_route(&request),
        ("/health", Method::Get) => served::get().map(|s| {
            json!({"status": "ok", "model": s.config.model, "backend": openai::fingerprint(s.info.backend)})
        }),
        (
            "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings" | "/tokenize"
            | "/detokenize",
            _,
        ) => Err(ApiError::method_not_allowed(
            &method,
            &request.path,
            "POST",
        )),
        ("/v1/models" | "/health", _) => Err(ApiError::method_not_allowed(
            &method,
            &request.path,
            "GET",
        )),
        _ => Err(ApiError::no_route(&method, &request.path)),
    };
    match result {
        Ok(value) => wire::send_json(out, 200, &value),
        Err(e) => wire::send_error(out, &e),
    }
}

/// The route `path` is served by: OpenAI's routes also answer without their `/v1` prefix,
/// as llama.cpp's server has them (clients given a base URL without `/v1` send those).
fn canonical_path(path: &str) -> &str {
    match path {
        "/chat/completions" => "/v1/chat/completions",
        "/completions" => "/v1/completions",
        "/models" => "/v1/models",
        other => other,
    }
}

/// Applies the access rules: sets the CORS headers of the request's responses, answers a
/// CORS preflight (204) or a request without a valid API key (401); hands `out` back when the
/// request may go on.
fn admit(request: &Request, out: ResponseOutparam) -> Option<ResponseOutparam> {
    let config = match Config::current() {
        Ok(c) => c,
        Err(e) => {
            wire::send_error(out, &ApiError::unavailable(e));
            return None;
        }
    };
    let origin = request.header("origin");
    let preflight = matches!(request.method, Method::Options)
        && request.header("access-control-request-method").is_some();
    if preflight {
        let asked = request.header("access-control-request-headers");
        let headers = access::preflight_headers(&config, origin.as_deref(), asked.as_deref());
        wire::set_response_headers(headers);
        wire::send_empty(out, 204);
        return None;
    }
    wire::set_response_headers(access::cors_headers(&config, origin.as_deref()));
    let authorization = request.header_bytes("authorization");
    if let Err(e) = access::authorize(&config, &request.path, authorization.as_deref()) {
        wire::send_error(out, &e);
        return None;
    }
    Some(out)
}

fn method_name(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Post => "POST".into(),
        Method::Head => "HEAD".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Options => "OPTIONS".into(),
        Method::Patch => "PATCH".into(),
        Method::Connect => "CONNECT".into(),
        Method::Trace => "TRACE".into(),
        Method::Other(o) => o.clone(),
    }
}

/// `POST /v1/embeddings`: one pooled, normalized vector per input.
fn embeddings_route(request: &Request) -> Result<serde_json::Value, ApiError> {
    let served = served::get()?;
    let req = embeddings::parse_request(&request.body(served.config.max_body_bytes)?)?;
    let model = served.check_model(req.model.as_deref())?;
    let result = served
        .model
        .embed(&req.inputs)
        .map_err(|e| ApiError::from(e).naming("input"))?;
    let width = result.vectors.first().map_or(0, Vec::len);
    embeddings::check_dimensions(req.dimensions, width)?;
    wire::record_usage(&api::Usage {
        prompt_tokens: result.prompt_tokens,
        completion_tokens: 0,
        cached_prompt_tokens: 0,
    });
    Ok(embeddings::response(&model, &result, req.encoding))
}

/// `POST /tokenize`: text to ids (and pieces), as llama.cpp's server answers.
fn tokenize_route(request: &Request) -> Result<serde_json::Value, ApiError> {
    let served = served::get()?;
    let req = tokenize::parse_tokenize(&request.body(served.config.max_body_bytes)?)?;
    let ids = served
        .model
        .tokenize_special(&req.content, req.add_special, req.parse_special)
        .map_err(|e| ApiError::from(e).naming("content"))?;
    let pieces = match req.with_pieces {
        true => Some(served.model.token_pieces(&ids)?),
        false => None,
    };
    Ok(tokenize::tokens_json(&ids, pieces.as_deref()))
}

/// `POST /detokenize`: ids to text.
fn detokenize_route(request: &Request) -> Result<serde_json::Value, ApiError> {
    let served = served::get()?;
    let ids = tokenize::parse_detokenize(&request.body(served.config.max_body_bytes)?)?;
    let content = served
        .model
        .detokenize(&ids)
        .map_err(|e| ApiError::from(e).naming("tokens"))?;
    Ok(json!({ "content": content }))
}

/// The served model, then each alias it answers to (but `*`).
fn models(s: &Served) -> serde_json::Value {
    let names =
        std::iter::once(&s.config.model).chain(s.config.aliases.iter().filter(|a| *a != "*"));
    let data: Vec<_> = names
        .map(|id| {
            json!({
                "id": id,
                "object": "model",
                "created": 0,
                "owned_by": "edge-llm",
                "context_length": s.info.context_length,
            })
        })
        .collect();
    json!({"object": "list", "data": data})
}

/// Opens the model, reads and checks the body.
fn prepare(
    request: &Request,
    endpoint: Endpoint,
) -> Result<(std::rc::Rc<Served>, ResponseMeta, GenerateRequest), ApiError> {
    let served = served::get()?;
    let body = request.body(served.config.max_body_bytes)?;
    let req = openai::parse_request(endpoint, &body)?;
    let model = served.check_model(req.model.as_deref())?;
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Text => "cmpl",
    };
    let meta = ResponseMeta {
        id: format!("{prefix}-{:016x}", wasip2::random::random::get_random_u64()),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model,
        endpoint,
    };
    Ok((served, meta, req))
}

fn generate(s: &Served, req: &GenerateRequest) -> Result<api::Completion, ApiError> {
    Ok(match &req.prompt {
        Prompt::Messages(m) => s
            .model
            .chat(m, &req.params)
            .map_err(|e| req.name_constraint_error(tools::name_schema_error(e.into())))?,
        Prompt::Text(p) => s
            .model
            .complete(p, &req.params)
            .map_err(|e| req.name_constraint_error(e.into()))?,
    })
}

/// Streams the generation as server-sent events. The response head waits for the first
/// step (the prompt's prefill), so errors found until then (bad parameters, context overflow,
/// a backend that cannot take the request) still get their own status; a client that hangs up
/// cancels the generation.
fn stream(out: ResponseOutparam, s: &Served, meta: &ResponseMeta, req: &GenerateRequest) {
    let started = match &req.prompt {
        Prompt::Messages(m) => s.model.stream_chat(m, &req.params),
        Prompt::Text(p) => s.model.stream_complete(p, &req.params),
    };
    let generation = match started {
        Ok(g) => g,
        Err(e) => {
            let e = req.name_constraint_error(tools::name_schema_error(ApiError::from(e)));
            return wire::send_error(out, &e);
        }
    };
    let mut first = match generation.next() {
        Ok(chunk) => Some(chunk),
        Err(e) => return wire::send_error(out, &ApiError::from(e)),
    };
    let mut events = EventStream::start(out);
    let chat = meta.endpoint == Endpoint::Chat;
    let echo = match (req.echo, &req.prompt) {
        (true, Prompt::Text(p)) => Some(p.as_str()),
        _ => None,
    };
    // Per answer: whether it has begun, and where its next token's text starts.
    let mut begun = vec![false; req.params.n as usize];
    let mut offsets = vec![0usize; req.params.n as usize];
    // Per answer: the tool calls it has begun.
    let mut calls_begun = vec![0usize; req.params.n as usize];
    loop {
        let next = match first.take() {
            Some(chunk) => Ok(chunk),
            None => generation.next(),
        };
        let chunk = match next {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return events.fail(&ApiError::from(e)),
        };
        let i = chunk.choice as usize;
        let mut sent: std::io::Result<()> = Ok(());
        if !begun.get(i).copied().unwrap_or(true) {
            begun[i] = true;
            if chat {
                sent = sent
                    .and_then(|()| events.event(&meta.chunk(chunk.choice, "", true, None, None)));
            }
            if let Some(p) = echo {
                sent = sent
                    .and_then(|()| events.event(&meta.chunk(chunk.choice, p, false, None, None)));
            }
        }
        if !chunk.text.is_empty() || !chunk.logprobs.is_empty() {
            let logprobs = req.params.logprobs.map(|_| {
                let offset = offsets.get(i).copied().unwrap_or(0);
                meta.logprobs(&chunk.logprobs, offset)
            });
            if let Some(o) = offsets.get_mut(i) {
                *o += chunk
                    .logprobs
                    .iter()
                    .map(|l| l.chosen.text.len())
                    .sum::<usize>();
            }
            sent = sent.and_then(|()| {
                events.event(&meta.chunk(chunk.choice, &chunk.text, false, logprobs, None))
            });
        }
        for call in &chunk.tool_calls {
            let Some(begun) = calls_begun.get_mut(i) else {
                break;
            };
            for delta in tools::call_deltas(begun, call) {
                sent = sent.and_then(|()| events.event(&meta.delta_chunk(chunk.choice, delta)));
            }
        }
        if let Some(reason) = chunk.finish_reason {
            sent = sent.and_then(|()| {
                events.event(&meta.chunk(chunk.choice, "", false, None, Some(reason)))
            });
        }
        if sent.is_err() {
            return; // the client has gone; dropping `generation` cancels it
        }
    }
    let Some(done) = generation.finish() else {
        let error = ApiError::from(api::Error::RuntimeError(
            "the generation ended without a summary".into(),
        ));
        return events.fail(&error);
    };
    wire::record_usage(&done.usage);
    if req.include_usage && events.event(&meta.usage_chunk(&done.usage)).is_err() {
        return;
    }
    events.done();
}
