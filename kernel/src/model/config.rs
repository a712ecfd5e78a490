//! Model hyperparameters read from GGUF metadata (`llama.*`); nothing is hard-coded.

use crate::gguf::{GgmlType, Gguf};

use super::ModelError;

/// Shapes and constants of a llama model.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `general.architecture` (always `"llama"`).
    pub arch: String,
    /// Vocabulary size (rows of `token_embd`).
    pub n_vocab: usize,
    /// Training context length (`llama.context_length`).
    pub n_ctx_train: usize,
    /// Embedding width, the residual stream size (`llama.embedding_length`).
    pub n_embd: usize,
    /// FFN hidden width (`llama.feed_forward_length`).
    pub n_ff: usize,
    /// Number of transformer blocks (`llama.block_count`).
    pub n_layer: usize,
    /// Query heads (`llama.attention.head_count`).
    pub n_head: usize,
    /// Key/value heads (`llama.attention.head_count_kv`), divides `n_head`.
    pub n_head_kv: usize,
    /// Per-head width, `n_embd / n_head`.
    pub head_dim: usize,
    /// Rotated dims per head (`llama.rope.dimension_count`, default `head_dim`).
    pub rope_dim: usize,
    /// RoPE base frequency (`llama.rope.freq_base`, default 10000).
    pub rope_freq_base: f32,
    /// RMSNorm epsilon (`llama.attention.layer_norm_rms_epsilon`).
    pub rms_eps: f32,
    /// Total number of weights.
    pub n_params: u64,
    /// Quantization name, e.g. `"Q4_1"`.
    pub quant: String,
}

impl Config {
    /// Key/value width per position, `n_head_kv * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Reads the configuration from metadata and checks it is consistent.
    pub fn from_gguf(g: &Gguf) -> Result<Config, ModelError> {
        let arch = g.get_str("general.architecture")?.to_string();
        if arch != "llama" {
            return Err(ModelError::UnsupportedArch(arch));
        }
        let u = |k: &str| -> Result<usize, ModelError> {
            Ok(g.get_u32(&format!("llama.{k}"))? as usize)
        };
        let n_embd = u("embedding_length")?;
        let n_head = u("attention.head_count")?;
        let n_head_kv = match g.get("llama.attention.head_count_kv") {
            Some(_) => u("attention.head_count_kv")?,
            None => n_head,
        };
        let bad = |s: String| Err(ModelError::BadConfig(s));
        if n_head == 0 || n_head_kv == 0 || n_embd == 0 || n_embd % n_head != 0 {
            return bad(format!(
                "n_embd {n_embd} is not a multiple of n_head {n_head}"
            ));
        }
        if n_head % n_head_kv != 0 {
            return bad(format!(
                "n_head {n_head} is not a multiple of n_head_kv {n_head_kv}"
            ));
        }
        let head_dim = n_embd / n_head;
        let rope_dim = match g.get("llama.rope.dimension_count") {
            Some(_) => u("rope.dimension_count")?,
            None => head_dim,
        };
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return bad(format!(
                "rope dimension {rope_dim} does not fit head dim {head_dim}"
            ));
        }
        let n_vocab = match g.tensor("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
            _ => return Err(ModelError::MissingTensor("token_embd.weight".into())),
        };
        let n_params = g.tensors().iter().map(|t| t.n_elements()).sum();
        let quant = dominant_type(g);
        let cfg = Config {
            arch,
            n_vocab,
            n_ctx_train: u("context_length")?,
            n_embd,
            n_ff: u("feed_forward_length")?,
            n_layer: u("block_count")?,
            n_head,
            n_head_kv,
            head_dim,
            rope_dim,
            rope_freq_base: match g.get("llama.rope.freq_base") {
                Some(_) => g.get_f32("llama.rope.freq_base")?,
                None => 10000.0,
            },
            rms_eps: g.get_f32("llama.attention.layer_norm_rms_epsilon")?,
            n_params,
            quant,
        };
        if cfg.n_layer == 0 || cfg.n_ff == 0 || cfg.n_ctx_train == 0 {
            return bad("block_count, feed_forward_length and context_length must be > 0".into());
        }
        // Each layer has nine tensors; a block count the file cannot back is refused before
        // anything is sized by it (found by fuzzing: a count of 2^32 asked for 22 GB).
        if cfg.n_layer > g.tensors().len() / LAYER_TENSORS {
            return bad(format!(
                "block_count {} needs {} tensors, the file has {}",
                cfg.n_layer,
                cfg.n_layer.saturating_mul(LAYER_TENSORS),
                g.tensors().len()
            ));
        }
        Ok(cfg)
    }
}

/// Tensors per transformer layer (norms, Q/K/V/O, gate/up/down).
const LAYER_TENSORS: usize = 9;

/// The quantization name: from `general.file_type` when known, else the type holding the most
/// bytes among the 2-D tensors.
fn dominant_type(g: &Gguf) -> String {
    let by_file_type = match g.get_u32("general.file_type") {
        Ok(0) => Some("F32"),
        Ok(1) => Some("F16"),
        Ok(2) => Some("Q4_0"),
        Ok(3) => Some("Q4_1"),
        Ok(7) => Some("Q8_0"),
        Ok(8) => Some("Q5_0"),
        Ok(9) => Some("Q5_1"),
        _ => None,
    };
    if let Some(s) = by_file_type {
        return s.to_string();
    }
    let mut best: Option<(GgmlType, u64)> = None;
    let mut totals: Vec<(GgmlType, u64)> = Vec::new();
    for t in g.tensors().iter().filter(|t| t.dims.len() >= 2) {
        match totals.iter_mut().find(|(ty, _)| *ty == t.ty) {
            Some(e) => e.1 += t.size,
            None => totals.push((t.ty, t.size)),
        }
    }
    for &(ty, n) in &totals {
        if best.is_none_or(|(_, b)| n > b) {
            best = Some((ty, n));
        }
    }
    best.map(|(t, _)| t.name().to_string())
        .unwrap_or_else(|| "unknown".into())
}
