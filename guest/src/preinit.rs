//! The built-in model metadata (feature `preinit`): the GGUF header of the file that
//! `$EDGE_LLM_PREINIT_MODEL` named at build time (the default model; `build.rs` cuts it out) is
//! part of the component.
//!
//! `init` (the world's export) builds that model's tokenizer and chat template. Run under
//! `wasmtime wizer -f init`, the snapshot starts with them built, and opening a model whose
//! header is byte for byte this one (a host's wasi:nn graph of it, or the file itself) takes
//! them instead of parsing the header and building the tokenizer, most of an open's time.
//! Without pre-initialization the first such open builds them.

use std::cell::OnceCell;

use edge_llm_kernel::gguf::Gguf;
use edge_llm_nn_contract::GgufHeader;

use crate::model::ModelMetadata;

/// The built-in model's bytes before its tensor data, then its length (u64 little-endian): the
/// layout of [`Gguf::header_with_len`].
static HEADER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/preinit-header.bin"));

thread_local! {
    static BUILT: OnceCell<Option<ModelMetadata>> = const { OnceCell::new() };
}

/// The built-in model's metadata, built on first use; `None` if it cannot be (then every open
/// builds its own and reports what is wrong).
fn built() -> Option<ModelMetadata> {
    BUILT.with(|cell| {
        cell.get_or_init(|| {
            let gguf = Gguf::parse_header(HEADER).ok()?;
            ModelMetadata::from_gguf(&gguf).ok()
        })
        .clone()
    })
}

/// The built-in model's metadata if a file of `file_len` bytes whose bytes before the tensor
/// data are `prefix` is that model.
pub(crate) fn metadata_for(prefix: &[u8], file_len: u64) -> Option<ModelMetadata> {
    let built_in = GgufHeader::from_bytes(HEADER).ok()?;
    if prefix != built_in.prefix() || file_len != built_in.file_len() {
        return None;
    }
    built()
}

/// Builds the built-in model's tokenizer and chat template now (the world's `init`, for
/// pre-initialization).
pub(crate) fn init() {
    let _ = built();
}
