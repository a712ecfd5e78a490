//! `edge-llm-http`: an OpenAI-compatible HTTP front for any component that exports
//! `edge:llm/inference`.
//!
//! It exports `wasi:http/incoming-handler` and imports `inference` (the `llm-client` world) and
//! nothing model-specific. Composed with an inference component (`just compose-http`) it runs
//! under the stock `wasmtime serve` or `edge-llm serve`:
//!
//! | route                       | what                                                  |
//! |-----------------------------|-------------------------------------------------------|
//! | `POST /v1/chat/completions` | chat, one-shot or `stream: true` (server-sent events) |
//! | `POST /v1/completions`      | raw prompt completion, one-shot or streamed           |
//! | `GET /v1/models`            | the served model                                      |
//! | `GET /health`               | 200 once the model opens, 503 if it cannot            |
//! | `POST /v1/embeddings`       | OpenAI's embeddings: pooled, normalized vectors       |
//! | `POST /tokenize`            | text to token ids (and pieces), llama.cpp's shape     |
//! | `POST /detokenize`          | token ids to text, llama.cpp's shape                  |
//!
//! With `EDGE_LLM_API_KEYS` set, every route but `/health` needs `Authorization: Bearer KEY`
//! (401 otherwise); with `EDGE_LLM_CORS_ORIGINS`, browsers from those origins may call it
//! (preflights answered) ([`access`]).
//!
//! Configuration comes from the environment the host gives the component ([`config`]).

pub mod access;
pub mod config;
pub mod embeddings;
pub mod error;
pub mod openai;
#[cfg(target_arch = "wasm32")]
mod routes;
#[cfg(target_arch = "wasm32")]
mod served;
pub mod tokenize;
pub mod tools;
#[cfg(target_arch = "wasm32")]
mod wire;

#[allow(clippy::all, unused_qualifications)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.2.0",
        world: "edge:llm/llm-client@0.2.0",
        generate_all,
    });
}

pub use bindings::edge::llm0_2_0::inference as api;

/// The exported `wasi:http/incoming-handler`. It and the modules that do HTTP exist only in
/// the wasm build (the export's symbol name is not a valid native one); natively the crate's
/// request parsing and response shapes are unit-tested.
#[cfg(target_arch = "wasm32")]
mod export {
    use wasip2::http::types::{IncomingRequest, ResponseOutparam};

    struct Front;

    impl wasip2::exports::http::incoming_handler::Guest for Front {
        fn handle(request: IncomingRequest, out: ResponseOutparam) {
            crate::routes::handle(request, out);
        }
    }

    wasip2::http::proxy::export!(Front);
}
