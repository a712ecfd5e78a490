//! Loading a model for the component's kernel: reading its file, and serving its weights with
//! the tokenizer and chat template of its metadata (the built-in ones of the preinit build's
//! model when it is that model).
//!
//! Module order (each uses only those before it): `preinit`, `loading`, `bundle`, `component`.

use std::sync::Arc;

use edge_llm_kernel::gguf::Gguf;
use edge_llm_kernel::Model;

use crate::generate::BackendError;
use crate::kernel_backend::KernelBackend;
use crate::model::{BackendKind, LoadError, LoadedModel, ModelMetadata};
use crate::Backend;

/// Reads a model file from the preopened directories.
pub(crate) fn read_model_file(path: &str) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound(format!(
            "{path} (not preloaded by the host, and no such file in the preopened directories)"
        )),
        std::io::ErrorKind::OutOfMemory => LoadError::Resources(format!(
            "{path}: the model does not fit in this instance's memory"
        )),
        _ => LoadError::NotFound(format!("{path}: {e}")),
    })
}

/// The pre-built metadata of the model built into this component (feature `preinit`) if a
/// file of `file_len` bytes whose bytes before the tensor data are `prefix` is that model.
#[cfg_attr(not(feature = "preinit"), allow(unused_variables))]
pub(crate) fn built_in_metadata(prefix: &[u8], file_len: u64) -> Option<ModelMetadata> {
    #[cfg(feature = "preinit")]
    return crate::preinit::metadata_for(prefix, file_len);
    #[cfg(not(feature = "preinit"))]
    None
}

/// Reads a model file and serves it with the kernel.
pub(crate) fn open_kernel(
    name: &str,
    path: &str,
    n_ctx: Option<usize>,
) -> Result<LoadedModel, LoadError> {
    let bytes = read_model_file(path)?;
    let model = match Model::load_packed(bytes) {
        Ok(model) => Arc::new(model),
        Err(e) => {
            return open_vocabulary_only(name, path, n_ctx)
                .unwrap_or_else(|| Err(LoadError::NotSupported(format!("{path}: {e}"))));
        }
    };
    kernel_model(name, &model, n_ctx)
}

/// A GGUF file without tensors (llama.cpp's vocabulary-only files, as `llama-tokenize` reads
/// them): served for tokenizing and rendering chats; generating fails, naming the file. `None`
/// if the file holds tensors (or does not parse): then it is a model that failed to load.
fn open_vocabulary_only(
    name: &str,
    path: &str,
    n_ctx: Option<usize>,
) -> Option<Result<LoadedModel, LoadError>> {
    let gguf = Gguf::parse(&read_model_file(path).ok()?).ok()?;
    if !gguf.tensors().is_empty() {
        return None;
    }
    let meta = match ModelMetadata::from_gguf(&gguf) {
        Ok(meta) => meta,
        Err(e) => return Some(Err(e)),
    };
    let path = path.to_owned();
    let factory = Box::new(move |_| {
        Err(BackendError::Failed(format!(
            "{path} holds no weights (a vocabulary-only GGUF): it can tokenize, not generate"
        )))
    });
    Some(LoadedModel::new(
        name,
        &meta,
        n_ctx,
        BackendKind::Kernel,
        factory,
    ))
}

/// Serves a loaded kernel model: tokenizer, chat template, and kernel sessions on demand.
pub(crate) fn kernel_model(
    name: &str,
    model: &Arc<Model>,
    n_ctx: Option<usize>,
) -> Result<LoadedModel, LoadError> {
    let bytes = model.bytes();
    let data_offset = usize::try_from(model.gguf().data_offset()).unwrap_or(usize::MAX);
    let prefix = bytes.get(..data_offset).unwrap_or(bytes);
    let meta = match built_in_metadata(prefix, bytes.len() as u64) {
        Some(meta) => meta,
        None => ModelMetadata::from_gguf(model.gguf())?,
    };
    let for_sessions = model.clone();
    let factory = Box::new(move |n_ctx| {
        KernelBackend::new(for_sessions.clone(), n_ctx).map(|b| Box::new(b) as Box<dyn Backend>)
    });
    LoadedModel::new(name, &meta, n_ctx, BackendKind::Kernel, factory)
}
