//! Known models (`models/manifest.json`, compiled in), where their files are, and their integrity.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::UNIX_EPOCH;

use edge_llm_kernel::gguf::Gguf;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::HostError;

const MANIFEST: &str = include_str!("../../models/manifest.json");

/// One entry of the model manifest.
#[derive(Clone, Debug, Deserialize)]
pub struct KnownModel {
    /// The name callers use, e.g. `smollm2-135m-instruct`.
    pub name: String,
    /// The GGUF file name under the model directory.
    pub file: String,
    /// The file's size in bytes.
    pub size: u64,
    /// The file's sha256, lowercase hex.
    pub sha256: String,
}

/// `models/manifest.json`.
#[derive(Deserialize)]
struct Manifest {
    /// The name of the default model.
    default: String,
    models: Vec<KnownModel>,
}

/// The manifest, parsed on first use. It is part of the source tree, compiled in, and checked
/// by the tests (`manifest_parses_and_has_its_default`), so it always parses.
static MANIFEST_PARSED: LazyLock<Manifest> = LazyLock::new(|| {
    serde_json::from_str(MANIFEST).unwrap_or(Manifest {
        default: String::new(),
        models: Vec::new(),
    })
});

/// All models the manifest knows.
pub fn known() -> &'static [KnownModel] {
    &MANIFEST_PARSED.models
}

/// The manifest's default model.
pub fn default_model() -> Option<&'static KnownModel> {
    find(&MANIFEST_PARSED.default)
}

/// The known model with this name or file name.
pub fn find(name_or_file: &str) -> Option<&'static KnownModel> {
    known()
        .iter()
        .find(|k| k.name == name_or_file || k.file == name_or_file)
}

/// The directory that holds fetched models: `$EDGE_LLM_MODEL_DIR`, else `models/` in the current
/// directory, else the `models/` of the source tree this binary was built in.
pub fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EDGE_LLM_MODEL_DIR") {
        return dir.into();
    }
    let here = PathBuf::from("models");
    if here.join("manifest.json").is_file() {
        return here;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))
}

/// Resolves `--model`: a path to a file, a known name, or (when absent) `$EDGE_LLM_MODEL` or the
/// default model in [`model_dir`].
pub fn resolve(model: Option<&str>) -> Result<PathBuf, HostError> {
    let env = std::env::var("EDGE_LLM_MODEL").ok();
    let wanted = model.or(env.as_deref());
    let path = match wanted {
        Some(m) if Path::new(m).is_file() => PathBuf::from(m),
        Some(m) => match find(m) {
            Some(k) => model_dir().join(&k.file),
            None => PathBuf::from(m),
        },
        None => {
            let k = default_model()
                .ok_or_else(|| HostError::ModelNotFound("the manifest names no default".into()))?;
            model_dir().join(&k.file)
        }
    };
    if !path.is_file() {
        let hint = if wanted.is_none() {
            "; run `just model` to fetch it"
        } else {
            ""
        };
        return Err(HostError::ModelNotFound(format!(
            "{}{hint}",
            path.display()
        )));
    }
    Ok(path)
}

/// Checks a known model file against the manifest's sha256 (unknown files pass unchecked).
///
/// Hashing 98 MB costs tens of milliseconds, so a successful check leaves a stamp in
/// `stamp_dir` keyed by the file's path, size and modification time; a changed file is hashed
/// again.
pub fn verify(path: &Path, stamp_dir: Option<&Path>) -> Result<(), HostError> {
    let Some(known) = path.file_name().and_then(|f| f.to_str()).and_then(find) else {
        return Ok(());
    };
    let meta = std::fs::metadata(path).map_err(|e| HostError::io(path, e))?;
    let key = hex::encode(Sha256::digest(format!(
        "{}\0{}",
        file_identity(path, &meta),
        known.sha256
    )));
    let stamp = stamp_dir.map(|d| d.join("verified").join(key));
    if stamp.as_ref().is_some_and(|s| s.is_file()) {
        tracing::debug!(model = %path.display(), "sha256 already verified (stamp)");
        return Ok(());
    }
    if meta.len() != known.size {
        return Err(HostError::ModelIntegrity(format!(
            "{} is {} bytes, the manifest says {} for {}",
            path.display(),
            meta.len(),
            known.size,
            known.name
        )));
    }
    tracing::debug!(model = %path.display(), "verifying sha256");
    let got = sha256_file(path)?;
    if got != known.sha256 {
        return Err(HostError::ModelIntegrity(format!(
            "{} has sha256 {got}, the manifest says {} for {}",
            path.display(),
            known.sha256,
            known.name
        )));
    }
    if let Some(stamp) = stamp {
        // A stamp only saves time; failing to write one is not an error.
        let _ = stamp.parent().map(std::fs::create_dir_all);
        let _ = std::fs::write(stamp, &known.sha256);
    }
    Ok(())
}

/// The sampling settings a GGUF file recommends in its `general.sampling.*` metadata (the keys
/// llama.cpp reads as a model's defaults); each is `None` where the file says nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RecommendedSampling {
    /// `general.sampling.temp`.
    pub temperature: Option<f32>,
    /// `general.sampling.top_k`.
    pub top_k: Option<u32>,
    /// `general.sampling.top_p`.
    pub top_p: Option<f32>,
    /// `general.sampling.min_p`.
    pub min_p: Option<f32>,
    /// `general.sampling.penalty_repeat`.
    pub repeat_penalty: Option<f32>,
    /// `general.sampling.penalty_last_n`.
    pub repeat_last_n: Option<u32>,
}

impl RecommendedSampling {
    /// Reads the settings from parsed GGUF metadata (a key of the wrong type counts as absent).
    pub fn from_gguf(gguf: &Gguf) -> Self {
        let float = |key: &str| gguf.get_f32(&format!("general.sampling.{key}")).ok();
        let int = |key: &str| gguf.get_u32(&format!("general.sampling.{key}")).ok();
        Self {
            temperature: float("temp"),
            top_k: int("top_k"),
            top_p: float("top_p"),
            min_p: float("min_p"),
            repeat_penalty: float("penalty_repeat"),
            repeat_last_n: int("penalty_last_n"),
        }
    }

    /// Each setting of `self`, else `other`'s.
    pub fn or(&self, other: &Self) -> Self {
        Self {
            temperature: self.temperature.or(other.temperature),
            top_k: self.top_k.or(other.top_k),
            top_p: self.top_p.or(other.top_p),
            min_p: self.min_p.or(other.min_p),
            repeat_penalty: self.repeat_penalty.or(other.repeat_penalty),
            repeat_last_n: self.repeat_last_n.or(other.repeat_last_n),
        }
    }

    /// Reads the settings from the GGUF file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, HostError> {
        Ok(Self::from_gguf(&read_header(path)?))
    }
}

/// Maps a model file read-only. Model files may be anyone's (`--model PATH`), so nothing here
/// trusts their contents: the GGUF parser and the kernel bounds-check every offset and size
/// they read from the bytes.
pub(crate) fn map_model_file(path: &Path) -> Result<memmap2::Mmap, HostError> {
    let file = std::fs::File::open(path).map_err(|e| HostError::io(path, e))?;
    // SAFETY: a read-only mapping. Its bytes are only ever read as untrusted data, so
    // contents that change under it give wrong numbers, never out-of-bounds access. What a
    // mapping cannot guard against remains: another process truncating the file while it is
    // mapped makes a later read fault (SIGBUS) and end this process. Files are mapped rather
    // than read because the model is most of the memory; a host that cannot accept that risk
    // for files it does not control can copy them into its model directory first.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| HostError::io(path, e))
}

/// Parses the header of the GGUF file at `path` (metadata and tensor table; the tensor data is
/// mapped, not read).
pub fn read_header(path: &Path) -> Result<Gguf, HostError> {
    let map = map_model_file(path)?;
    Gguf::parse(&map).map_err(|e| HostError::ModelLoad(format!("{}: {e}", path.display())))
}

/// How many tensors of each type (`Q4_1`, `F32`, ...) a GGUF file holds, by type name.
pub fn tensor_types(gguf: &Gguf) -> std::collections::BTreeMap<&'static str, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for t in gguf.tensors() {
        *counts.entry(t.ty.name()).or_insert(0) += 1;
    }
    counts
}

/// A file's identity for caches keyed by it: canonical path, size and modification time
/// (nanoseconds), NUL-separated; a rewritten file gets a new one.
pub(crate) fn file_identity(path: &Path, meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("{}\0{}\0{mtime}", canonical.display(), meta.len())
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, HostError> {
    let mut file = std::fs::File::open(path).map_err(|e| HostError::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| HostError::io(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_and_has_its_default() {
        let default = default_model().expect("default model in manifest");
        assert_eq!(default.name, "smollm2-135m-instruct");
        assert_eq!(default.sha256.len(), 64);
        assert!(find(&default.file).is_some());
    }

    #[test]
    fn recommended_sampling_reads_the_keys_llama_cpp_reads() {
        let mut w = edge_llm_kernel::gguf::writer::GgufWriter::new();
        w.add_str("general.architecture", "llama")
            .add_f32("general.sampling.temp", 0.6)
            .add_u32("general.sampling.top_k", 20)
            .add_f32("general.sampling.penalty_repeat", 1.1)
            .add_str("general.sampling.top_p", "not a number");
        let gguf = Gguf::parse(&w.to_bytes()).expect("parses");
        let got = RecommendedSampling::from_gguf(&gguf);
        assert_eq!(
            got,
            RecommendedSampling {
                temperature: Some(0.6),
                top_k: Some(20),
                repeat_penalty: Some(1.1),
                ..RecommendedSampling::default()
            }
        );
    }

    #[test]
    fn tampered_known_model_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let known = default_model().expect("default model");
        let path = dir.path().join(&known.file);
        std::fs::write(&path, b"not a model").expect("write");
        let err = verify(&path, None).expect_err("a wrong file must be refused");
        assert!(matches!(err, HostError::ModelIntegrity(_)), "{err}");
    }
}
