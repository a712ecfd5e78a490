//! A `wasi:http` component for the sandbox tests (`tests/e2e/sandbox.rs`), not part of
//! edge-llm: `GET /egress?to=HOST:PORT` tries one outgoing `GET http://HOST:PORT/` and answers
//! 200 with what became of it, `sent: STATUS` or `refused: ERROR-CODE`; `GET /health` answers
//! 200 (the warm-up request of `edge-llm serve`).

#[cfg(target_arch = "wasm32")]
mod export {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
        Scheme,
    };

    struct Egress;

    impl wasip2::exports::http::incoming_handler::Guest for Egress {
        fn handle(request: IncomingRequest, out: ResponseOutparam) {
            let path = request.path_with_query().unwrap_or_default();
            let body = match path.strip_prefix("/egress?to=") {
                Some(to) => try_request(to),
                None => "ok".to_string(),
            };
            let response = OutgoingResponse::new(Fields::new());
            let Ok(outgoing) = response.body() else {
                return;
            };
            ResponseOutparam::set(out, Ok(response));
            if let Ok(stream) = outgoing.write() {
                let _ = stream.blocking_write_and_flush(body.as_bytes());
            }
            let _ = OutgoingBody::finish(outgoing, None);
        }
    }

    /// Sends `GET http://{authority}/` and says what happened.
    fn try_request(authority: &str) -> String {
        let request = OutgoingRequest::new(Fields::new());
        let _ = request.set_scheme(Some(&Scheme::Http));
        let _ = request.set_authority(Some(authority));
        let _ = request.set_path_with_query(Some("/"));
        match outgoing_handler::handle(request, None) {
            Err(code) => format!("refused: {code:?}"),
            Ok(pending) => {
                pending.subscribe().block();
                match pending.get() {
                    Some(Ok(Ok(response))) => format!("sent: {}", response.status()),
                    Some(Ok(Err(code))) => format!("refused: {code:?}"),
                    other => format!("failed: {other:?}"),
                }
            }
        }
    }

    wasip2::http::proxy::export!(Egress);
}
