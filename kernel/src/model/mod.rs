//! The model of any supported family ([`Arch`]): configuration and weight views over the GGUF bytes ([`Model`]), and
//! inference state ([`Session`]: KV cache, scratch buffers, thread pool).

mod config;
mod forward;
mod kv_cache;
mod perplexity;
mod team;
mod weights;

use std::sync::Arc;

use thiserror::Error;

use crate::gguf::{GgmlType, Gguf, GgufError};
use crate::simd;

pub use config::{Arch, Config, FfnAct, NormKind, Rope, RopeStyle, SlidingWindow};
pub use forward::{Batch, ForwardError, Session, SessionOptions, Step, PREFILL_CHUNK};
pub use kv_cache::KvCache;
pub use perplexity::{perplexity, Perplexity};
pub use weights::{LayerWeights, Layout, Norm, QMatrix, RopeFactors, Weights};

/// The bytes of a GGUF model file (a `Vec<u8>`, a memory map, a static blob ...).
pub type ModelBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// Why a model could not be loaded or a session created.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The GGUF file is malformed or lacks a required metadata key.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `general.architecture` names no supported family ([`Arch`]).
    #[error("unsupported architecture `{0}` (supported: {names})", names = Arch::NAMES)]
    UnsupportedArch(String),
    /// A required tensor is absent.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// A tensor has a type the kernels do not support in its role.
    #[error("tensor `{name}` has unsupported type {ty}")]
    TensorType {
        /// Tensor name.
        name: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A tensor's shape does not match the configuration.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// Tensor name.
        name: String,
        /// Expected dims (`ne[0]` first).
        expected: Vec<u64>,
        /// Dims in the file.
        found: Vec<u64>,
    },
    /// The metadata describes an inconsistent model.
    #[error("bad model configuration: {0}")]
    BadConfig(String),
    /// Session options are invalid.
    #[error("invalid session options: {0}")]
    BadOptions(String),
}

/// A loaded model: the file bytes, parsed metadata, configuration and weight views.
pub struct Model {
    bytes: ModelBytes,
    gguf: Gguf,
    config: Config,
    weights: Weights,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish()
    }
}

/// The kernels whose choice of matrices to repack ([`simd::packed_pays`]) this build's
/// repacked files follow: simd128's in a wasm guest (so [`Model::repack_in_place`]'s output
/// reads right whichever kernel runs), else this machine's best.
fn repack_isa() -> simd::Isa {
    if cfg!(target_arch = "wasm32") {
        simd::Isa::Simd128
    } else {
        simd::Isa::best()
    }
}

impl Model {
    /// Parses the GGUF file and checks the architecture, every needed tensor, its type and shape.
    pub fn load(bytes: ModelBytes) -> Result<Model, ModelError> {
        let (gguf, config, weights) = Model::parse((*bytes).as_ref())?;
        Ok(Model {
            bytes,
            gguf,
            config,
            weights,
        })
    }

    /// [`Model::load`] for bytes the model may rewrite: the transformer blocks' and the output's
    /// matrices of the types this machine's kernels read faster repacked
    /// ([`simd::packed_pays`]: Q4_1, Q4_0, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K on AVX2, all
    /// but Q8_0 on simd128) are first repacked in place. Logits are bit for bit those of
    /// [`Model::load`]; only tensor data changes, the header and metadata stay as they were.
    pub fn load_packed<B>(mut bytes: B) -> Result<Model, ModelError>
    where
        B: AsRef<[u8]> + AsMut<[u8]> + Send + Sync + 'static,
    {
        let (gguf, config, mut weights) = Model::parse(bytes.as_ref())?;
        if simd::repacking_pays(simd::Isa::best()) {
            weights.repack(&gguf, bytes.as_mut(), repack_isa());
        }
        Ok(Model {
            bytes: Arc::new(bytes),
            gguf,
            config,
            weights,
        })
    }

    /// Repacks the GGUF file `bytes` in place as [`Model::load_packed`] does in a wasm guest
    /// (the simd128 kernels' choice of matrices, [`crate::quant::rows8`]), on any machine: the
    /// output is what [`Model::load_repacked`] reads in the guest (a component's built-in
    /// model).
    pub fn repack_in_place(bytes: &mut [u8]) -> Result<(), ModelError> {
        let (gguf, _, mut weights) = Model::parse(bytes)?;
        weights.repack(&gguf, bytes, simd::Isa::Simd128);
        Ok(())
    }

    fn parse(file: &[u8]) -> Result<(Gguf, Config, Weights), ModelError> {
        let gguf = Gguf::parse(file)?;
        let config = Config::from_gguf(&gguf)?;
        let weights = Weights::from_gguf(&gguf, file, &config)?;
        Ok((gguf, config, weights))
    }

    /// [`Model::load`] for the bytes an earlier [`Model::load_packed`] of the same file on this
    /// machine left where it repacked them (e.g. a host's cache of them), or, in a wasm guest,
    /// that [`Model::repack_in_place`] made: the matrices it repacks are read as repacked
    /// (whichever kernel runs: the scalar references read the repacked layouts too). Bytes
    /// that are not such an output give wrong logits, not unsafety.
    pub fn load_repacked(bytes: ModelBytes) -> Result<Model, ModelError> {
        let mut model = Model::load(bytes)?;
        let len = model.bytes().len();
        model
            .weights
            .assume_repacked(&model.gguf, len, repack_isa());
        Ok(model)
    }

    /// The parsed GGUF metadata and tensor table.
    pub fn gguf(&self) -> &Gguf {
        &self.gguf
    }

    /// The model configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The weight views.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        (*self.bytes).as_ref()
    }
}
