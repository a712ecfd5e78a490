//! edge-llm guest: the `edge:llm` inference component.
//!
//! The exports live in `component` (wasm32 only); everything else is ordinary Rust, tested
//! natively: tokenizer, chat templates, sampling, streaming text assembly, the generation loop,
//! and the two backends (the kernel in the sandbox, or the host's engine through wasi:nn).

pub mod chat;
pub mod generate;
pub mod kernel_backend;
pub mod known_models;
pub mod model;
pub mod sampling;
pub mod stop;
pub mod tokenizer;

pub use generate::Backend;

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "edge:llm/llm-inference",
        generate_all,
    });
    use super::component::Component;
    export!(Component with_types_in self);
}

#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(target_arch = "wasm32")]
mod nn_backend;
