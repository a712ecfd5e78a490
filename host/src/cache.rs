//! The precompiled-component cache: compile the guest once, load it by mmap afterwards.
//!
//! An entry is `<key>.cwasm` plus `<key>.cwasm.sha256`, where the key hashes the component's
//! bytes (the sum is remembered per file identity in `sha256/`) and the engine's compatibility
//! hash (wasmtime version, target, settings). Before an
//! entry is deserialized its bytes are hashed and compared with the sidecar we wrote next to it,
//! so a truncated, corrupt or foreign file is rebuilt, never executed.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

use crate::models::file_identity;
use crate::HostError;

/// What the cache did for one load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// The precompiled entry was valid and loaded.
    Hit,
    /// There was no entry: the component was compiled and stored.
    Miss,
    /// The entry was invalid (the reason says how) and was rebuilt.
    Rebuilt(String),
    /// Caching is off: the component was compiled in memory.
    Disabled,
}

impl std::fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheStatus::Hit => write!(f, "cache hit"),
            CacheStatus::Miss => write!(f, "compiled (cache miss)"),
            CacheStatus::Rebuilt(why) => write!(f, "compiled (cache entry rebuilt: {why})"),
            CacheStatus::Disabled => write!(f, "compiled (cache disabled)"),
        }
    }
}

/// The platform's cache directory for edge-llm: `$EDGE_LLM_CACHE_DIR`, else the platform's
/// user cache directory (`$XDG_CACHE_HOME` or `~/.cache` on Linux) + `edge-llm`, else a
/// directory under the temp dir.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EDGE_LLM_CACHE_DIR") {
        return dir.into();
    }
    dirs::cache_dir().map_or_else(
        || std::env::temp_dir().join("edge-llm-cache"),
        |dir| dir.join("edge-llm"),
    )
}

/// Compiles the component `wasm` (the bytes of the file at `component`) or loads its
/// precompiled form from `dir` (no caching when `dir` is `None`).
pub fn load(
    engine: &Engine,
    component: &Path,
    wasm: &[u8],
    dir: Option<&Path>,
) -> Result<(Component, CacheStatus), HostError> {
    let Some(dir) = dir else {
        return Ok((compile(engine, wasm)?, CacheStatus::Disabled));
    };
    let path = entry_path(engine, &component_sha256(component, wasm, dir), dir);
    let status = match check_entry(&path) {
        Ok(()) => {
            // SAFETY: `check_entry` verified that the file's bytes hash to the sidecar written
            // by `store` below, i.e. this is a `.cwasm` this program serialized with a
            // compatible engine; wasmtime's own header check ran too. Only such files are
            // deserialized.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    tracing::debug!(entry = %path.display(), "precompiled component loaded");
                    return Ok((component, CacheStatus::Hit));
                }
                Err(e) => CacheStatus::Rebuilt(format!("deserialize failed: {e}")),
            }
        }
        Err(None) => CacheStatus::Miss,
        Err(Some(why)) => CacheStatus::Rebuilt(why),
    };
    tracing::debug!(entry = %path.display(), %status, "compiling the component");
    let component = compile(engine, wasm)?;
    store(&component, &path)?;
    // Run from the entry just written, as a hit would: mapped from the file, the component's
    // initial memory needs no memfd copy (whose sealing some kernels refuse now and then).
    // SAFETY: `store` has just serialized this engine's compilation of `wasm` to `path`.
    match unsafe { Component::deserialize_file(engine, &path) } {
        Ok(mapped) => Ok((mapped, status)),
        Err(e) => {
            tracing::debug!(entry = %path.display(), "mapping the new entry failed: {e}");
            Ok((component, status))
        }
    }
}

fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component, HostError> {
    Component::new(engine, wasm).map_err(|e| HostError::Component(format!("{e:#}")))
}

fn entry_path(engine: &Engine, component_sha256: &str, dir: &Path) -> PathBuf {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let key = format!("{}-{:016x}", &component_sha256[..32], engine_hash.finish());
    dir.join("components").join(format!("{key}.cwasm"))
}

/// The sha256 of the component file at `path` (whose bytes are `wasm`), remembered in `dir`
/// under the file's identity (path, size, modification time), as a model's verification is:
/// hashing the 21 MB pre-initialized guest cost ~15 ms a start.
fn component_sha256(path: &Path, wasm: &[u8], dir: &Path) -> String {
    let memo = std::fs::metadata(path).ok().map(|meta| {
        let id = hex::encode(Sha256::digest(file_identity(path, &meta)));
        dir.join("components").join("sha256").join(&id[..32])
    });
    let remembered = memo.as_ref().and_then(|m| std::fs::read_to_string(m).ok());
    if let Some(sum) = remembered.filter(|s| s.len() == 64) {
        return sum;
    }
    let sum = hex::encode(Sha256::digest(wasm));
    if let Some(memo) = memo {
        // A memo only saves time; failing to write one is not an error.
        let _ = write_whole(&memo, sum.as_bytes());
    }
    sum
}

fn sidecar(path: &Path) -> PathBuf {
    path.with_extension("cwasm.sha256")
}

/// `Ok` for a valid entry, `Err(None)` for a missing one, `Err(Some(reason))` for a bad one.
fn check_entry(path: &Path) -> Result<(), Option<String>> {
    if !path.exists() {
        return Err(None);
    }
    let want = std::fs::read_to_string(sidecar(path))
        .map_err(|_| Some("its checksum file is missing".to_string()))?;
    let bytes = map_file(path).map_err(|e| Some(format!("unreadable: {e}")))?;
    if hex::encode(Sha256::digest(&bytes)) != want.trim() {
        return Err(Some("its bytes do not match the checksum we wrote".into()));
    }
    match Engine::detect_precompiled(&bytes) {
        Some(Precompiled::Component) => Ok(()),
        _ => Err(Some("not a precompiled component for this engine".into())),
    }
}

/// Maps a file read-only: reading it through the page cache, where `std::fs::read` would
/// first have the kernel zero as much fresh memory (the larger part of a cache hit's time).
pub(crate) fn map_file(path: &Path) -> std::io::Result<memmap2::Mmap> {
    let file = std::fs::File::open(path)?;
    // SAFETY: read-only; the files mapped here are our build outputs and cache entries, held
    // only while a component loads. Like every mmap user we rely on nobody truncating them in
    // that time (our own writers write a new file and rename it over).
    unsafe { memmap2::Mmap::map(&file) }
}

fn store(component: &Component, path: &Path) -> Result<(), HostError> {
    let bytes = component
        .serialize()
        .map_err(|e| HostError::Component(format!("serialize: {e:#}")))?;
    // The sidecar first: an entry without its sidecar is rebuilt, never half trusted.
    let sum = hex::encode(Sha256::digest(&bytes));
    write_whole(&sidecar(path), sum.as_bytes()).map_err(|e| HostError::io(path, e))?;
    write_whole(path, &bytes).map_err(|e| HostError::io(path, e))
}

/// Writes `bytes` to `path` (creating its directory) under a temporary name, then renames it
/// over: a reader or a crash never sees part of a file. The name is unique per process and
/// call, so concurrent writers of the same file do not collide.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(".tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
