//! The repacked-model cache: a model file with its matrices already in the kernel's packed
//! layouts ([`Model::load_packed`]), written on first use and memory-mapped read-only afterwards.
//!
//! Reading the 98 MB default model into fresh memory and repacking it cost ~70 ms per start,
//! most of it the kernel zeroing that memory; a mapping of the cached copy reads the page cache
//! (shared by every process that maps it). An entry `<dir>/packed/<key>.gguf` is keyed by the
//! source file's identity (canonical path, size, modification time), the packed layouts'
//! version and the kernels that choose which matrices to pack, so a changed file, layout or
//! choice gets a new entry. Before use an entry's size must equal the source's and its header
//! must load like any model file's. Its tensor bytes are trusted as the source's own are after
//! their first sha256 check ([`crate::models::verify`]): a corrupt entry could give wrong
//! logits, never unsafety. The directory can be deleted at any time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use edge_llm_kernel::quant::rows8;
use edge_llm_kernel::simd::Isa;
use edge_llm_kernel::{Model, ModelError};
use sha2::{Digest, Sha256};

use crate::models::file_identity;
use crate::{cache, HostError};

/// Loads the model at `path` with its matrices repacked: mapped from the entry in `dir`
/// when there is a valid one, else read and repacked (and stored there, when `dir` is given).
/// I/O errors are the outer error; a malformed file is the inner one, which `preload` reports
/// like a malformed mapped file.
pub(crate) fn load(
    path: &Path,
    dir: Option<&Path>,
) -> Result<Result<Model, ModelError>, HostError> {
    let Some(dir) = dir else {
        return read_packed(path);
    };
    let meta = std::fs::metadata(path).map_err(|e| HostError::io(path, e))?;
    let entry = entry_path(dir, path, &meta);
    if let Some(model) = load_entry(&entry, meta.len()) {
        return Ok(Ok(model));
    }
    let model = read_packed(path)?;
    // A model with nothing to repack (no such matrices) is not copied into the cache.
    if let Some(m) = model.as_ref().ok().filter(|m| m.weights().any_repacked()) {
        // The cache only saves time: a failure to write it is logged, not an error.
        if let Err(e) = cache::write_whole(&entry, m.bytes()) {
            tracing::debug!(entry = %entry.display(), "not cached: {e}");
        }
    }
    Ok(model)
}

fn entry_path(dir: &Path, path: &Path, meta: &std::fs::Metadata) -> PathBuf {
    let key = hex::encode(Sha256::digest(format!(
        "{}\0rows8 layout {} for {}",
        file_identity(path, meta),
        rows8::LAYOUT_VERSION,
        Isa::best().name()
    )));
    dir.join("packed").join(format!("{}.gguf", &key[..32]))
}

/// The model in `entry`, if there is one of `len` bytes that loads.
fn load_entry(entry: &Path, len: u64) -> Option<Model> {
    let started = Instant::now();
    let map = cache::map_file(entry).ok()?;
    if map.len() as u64 != len {
        tracing::debug!(entry = %entry.display(), "size differs from the model's: rebuilt");
        return None;
    }
    match Model::load_repacked(Arc::new(map)) {
        Ok(model) => {
            tracing::debug!(entry = %entry.display(), elapsed = ?started.elapsed(), "repacked model mapped");
            Some(model)
        }
        Err(e) => {
            tracing::debug!(entry = %entry.display(), "does not load ({e}): rebuilt");
            None
        }
    }
}

/// Reads the GGUF file at `path` into anonymous memory (huge pages where the kernel grants
/// them, so the copy takes few page faults) and loads it with the Q4_1 matrices repacked in
/// place. (A copy-on-write mapping took 3x longer, two faults per 4 KiB page; repacking on a
/// background thread while the guest starts slowed both on two cores.)
fn read_packed(path: &Path) -> Result<Result<Model, ModelError>, HostError> {
    use std::io::Read;
    let io = |e| HostError::io(path, e);
    let started = Instant::now();
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let len = usize::try_from(len).map_err(|_| {
        HostError::ModelLoad(format!(
            "{}: {len} bytes do not fit in memory",
            path.display()
        ))
    })?;
    let mut bytes = memmap2::MmapMut::map_anon(len).map_err(io)?;
    #[cfg(target_os = "linux")]
    let _ = bytes.advise(memmap2::Advice::HugePage); // only a hint
    file.read_exact(&mut bytes).map_err(io)?;
    let model = Model::load_packed(bytes);
    tracing::debug!(model = %path.display(), elapsed = ?started.elapsed(), "read and repacked");
    Ok(model)
}
