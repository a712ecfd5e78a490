//! edge-llm guest: the `edge:llm` inference component.
//!
//! The exports live in `component` (`edge:llm/inference@0.1.0`) and `component_v0_2`
//! (`@0.2.0`), wasm32 only; everything else is ordinary Rust, tested
//! natively: tokenizer, chat templates, sampling, streaming text assembly, the generation loop,
//! and the two backends (the kernel in the sandbox, or the host's engine through wasi:nn).

pub mod call_stream;
pub mod chat;
pub mod constraint;
pub mod embed;
pub mod gbnf;
pub mod generate;
pub mod kernel_backend;
pub mod known_models;
pub mod model;
pub mod sampling;
pub mod stop;
pub mod tokenizer;
pub mod tools;

pub use generate::Backend;

#[cfg(all(feature = "wasi-nn", feature = "bundle"))]
compile_error!(
    "the `bundle` feature is for hosts without wasi:nn: build with `--no-default-features --features bundle`"
);

/// The world this build implements, chosen by features: `wasi-nn` (default) imports the host's
/// engine; without it the component is standalone; `bundle` adds the model and `init`;
/// `preinit` adds the model's metadata and `init` to `wasi-nn`.
#[cfg(target_arch = "wasm32")]
mod bindings {
    #[cfg(all(feature = "wasi-nn", not(feature = "preinit")))]
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "edge:llm/llm-inference@0.2.0",
        generate_all,
    });
    #[cfg(feature = "preinit")]
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "edge:llm/llm-inference-preinit@0.2.0",
        generate_all,
    });
    #[cfg(not(any(feature = "wasi-nn", feature = "bundle")))]
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "edge:llm/llm-inference-standalone@0.2.0",
        generate_all,
    });
    #[cfg(all(feature = "bundle", not(feature = "wasi-nn")))]
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "edge:llm/llm-inference-bundle@0.2.0",
        generate_all,
    });
    use super::component::Component;
    export!(Component with_types_in self);
}

// The component's modules depend one way: `preinit` (the built-in model metadata) <- `loading`
// (model files, kernel-served models) <- `bundle` (the built-in model) <- `component` (the
// exports, including the worlds' `init`).
#[cfg(all(target_arch = "wasm32", feature = "bundle"))]
mod bundle;
#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(target_arch = "wasm32")]
mod component_v0_2;
#[cfg(target_arch = "wasm32")]
mod loading;
#[cfg(all(target_arch = "wasm32", feature = "wasi-nn"))]
mod nn_backend;
#[cfg(all(target_arch = "wasm32", feature = "preinit"))]
mod preinit;
