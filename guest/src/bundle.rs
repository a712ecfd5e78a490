//! The bundled model (feature `bundle`): the default model's GGUF is a data segment of the
//! component, loaded once per instance into a cache that `open` reuses.
//!
//! `init` (the world's export) fills the cache; run under `wasmtime wizer -f init`, the
//! snapshot starts with the weights parsed, the tokenizer and chat template built and one
//! session ready, so a fresh instance serves its first `open` without touching the bytes again.
//! Without pre-initialization the first `open` of the bundled model fills the cache.

use std::cell::OnceCell;
use std::rc::Rc;
use std::sync::Arc;

use edge_llm_kernel::{Model, ModelBytes};

use crate::known_models;
use crate::loading::kernel_model;
use crate::model::{LoadError, LoadedModel};

/// The GGUF file named by `$EDGE_LLM_BUNDLE_MODEL` when the component was built, its Q4_1
/// matrices repacked by `build.rs` (what [`Model::load_repacked`] reads).
static GGUF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bundle-model.gguf"));

/// The bundled model, loaded: its weights (views into [`GGUF`]) and the model as served with
/// its trained context length.
struct Bundled {
    model: Arc<Model>,
    served: Rc<LoadedModel>,
}

thread_local! {
    static CACHE: OnceCell<Bundled> = const { OnceCell::new() };
}

/// The name the bundled model answers to: the manifest's default model.
fn name() -> String {
    known_models::default_name().unwrap_or_else(|| "default".to_string())
}

/// Parses the bundled bytes (zero-copy: the weights stay in the data segment) and builds
/// the tokenizer, the chat template and one warm session.
fn load() -> Result<Bundled, LoadError> {
    let bytes: ModelBytes = Arc::new(GGUF);
    let model = Model::load_repacked(bytes)
        .map_err(|e| LoadError::NotSupported(format!("bundled model: {e}")))?;
    let model = Arc::new(model);
    let served = kernel_model(&name(), &model, None)?;
    served
        .warm_up()
        .map_err(|e| LoadError::Backend(format!("bundled model: {e}")))?;
    Ok(Bundled {
        model,
        served: Rc::new(served),
    })
}

/// Runs `f` on the loaded bundle, loading it first if this instance has not yet.
fn with_bundle<T>(f: impl FnOnce(&Bundled) -> T) -> Result<T, LoadError> {
    CACHE.with(|cache| {
        if cache.get().is_none() {
            // `load` does not touch the cache, so the cell is still empty here.
            let _ = cache.set(load()?);
        }
        cache
            .get()
            .map(f)
            .ok_or_else(|| LoadError::Backend("the bundled model's cache is empty".into()))
    })
}

/// True if `name_or_path` (or the sandbox path it resolves to) means the bundled model.
fn is_bundled(name_or_path: &str, path: &str) -> bool {
    let name = name();
    name_or_path == name || path == known_models::resolve(&name)
}

/// The bundled model if `name_or_path` names it (no file system access at all), else `None`.
/// A context length other than the trained one gets its own tokenizer and template, sharing
/// the loaded weights.
pub(crate) fn open(
    name_or_path: &str,
    path: &str,
    n_ctx: Option<usize>,
) -> Result<Option<Rc<LoadedModel>>, LoadError> {
    if !is_bundled(name_or_path, path) {
        return Ok(None);
    }
    let (model, served) = with_bundle(|b| (b.model.clone(), b.served.clone()))?;
    match n_ctx {
        Some(n) if n != served.info().context_length => Ok(Some(Rc::new(kernel_model(
            &served.info().name,
            &model,
            Some(n),
        )?))),
        _ => Ok(Some(served)),
    }
}

/// Loads the bundled model now (the world's `init`, for pre-initialization). A failure is left
/// for `open` to report: `init` has no error channel, and a bundle that cannot load is a build
/// bug.
pub(crate) fn init() {
    let _ = with_bundle(|_| ());
}
