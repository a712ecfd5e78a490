//! Model hyperparameters read from GGUF metadata (`{arch}.*`); nothing is hard-coded but what
//! defines a family ([`Arch`]): which norm, rotary layout and FFN activation it uses.

use crate::gguf::{GgmlType, Gguf, MetadataArray, MetadataValue};

use super::ModelError;

/// The model families the forward pass runs, by `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 1-3 (also SmolLM): RMSNorm, SwiGLU, rotary on adjacent pairs (Q/K permuted by the
    /// converter); Llama 3 rope frequency factors (`rope_freqs`) when present.
    Llama,
    /// Qwen2 / Qwen2.5: as Llama with Q/K/V biases and rotary on the two halves of each head.
    Qwen2,
    /// Qwen3: as Qwen2 without biases, with a per-head RMSNorm of queries and keys.
    Qwen3,
    /// Gemma 3: scaled embedding, GELU-gated FFN, norms before and after attention and FFN,
    /// sliding-window layers with their own rope base, optional final logit soft-capping.
    Gemma3,
    /// Phi-3: fused QKV and gate-up matrices, partial rotary on halves, LongRoPE factors.
    Phi3,
    /// GPT-2: learned positions, LayerNorm with bias, biased matmuls, GELU FFN, no rotary.
    Gpt2,
}

/// How rotary embedding pairs a head's dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i+1)` (llama.cpp's `NORM`: Llama GGUFs, whose converter permutes Q/K).
    Pairs,
    /// Dimensions `i` and `i + rope_dim/2` (llama.cpp's `NEOX`: Qwen, Gemma, Phi).
    Halves,
}

/// The normalization before attention, FFN and output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `x / rms(x) * w`.
    Rms,
    /// `(x - mean) / std(x) * w + b`.
    Layer,
}

/// The FFN's nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnAct {
    /// `down(silu(gate(x)) * up(x))`.
    SiluGated,
    /// `down(gelu_tanh(gate(x)) * up(x))`.
    GeluGated,
    /// `down(gelu_tanh(up(x)))` (no gate).
    Gelu,
}

impl Arch {
    /// The family named by `general.architecture`, if supported.
    pub fn from_name(name: &str) -> Option<Arch> {
        Some(match name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma3" => Arch::Gemma3,
            "phi3" => Arch::Phi3,
            "gpt2" => Arch::Gpt2,
            _ => return None,
        })
    }

    /// Every supported `general.architecture`, for messages.
    pub const NAMES: &'static str = "llama, qwen2, qwen3, gemma3, phi3, gpt2";

    /// The rotary layout, or `None` for learned positions.
    pub fn rope_style(self) -> Option<RopeStyle> {
        match self {
            Arch::Llama => Some(RopeStyle::Pairs),
            Arch::Qwen2 | Arch::Qwen3 | Arch::Gemma3 | Arch::Phi3 => Some(RopeStyle::Halves),
            Arch::Gpt2 => None,
        }
    }

    /// The norm kind.
    pub fn norm(self) -> NormKind {
        match self {
            Arch::Gpt2 => NormKind::Layer,
            _ => NormKind::Rms,
        }
    }

    /// The FFN activation.
    pub fn ffn(self) -> FfnAct {
        match self {
            Arch::Gemma3 => FfnAct::GeluGated,
            Arch::Gpt2 => FfnAct::Gelu,
            _ => FfnAct::SiluGated,
        }
    }

    /// Fewest tensors a layer of this family has (fused matrices count once).
    fn min_layer_tensors(self) -> usize {
        match self {
            Arch::Phi3 => 6,
            _ => 9,
        }
    }

    /// The metadata key of the norm epsilon.
    fn eps_key(self) -> &'static str {
        match self.norm() {
            NormKind::Rms => "attention.layer_norm_rms_epsilon",
            NormKind::Layer => "attention.layer_norm_epsilon",
        }
    }
}

/// Rotary embedding parameters (`{arch}.rope.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// Pairing of dimensions.
    pub style: RopeStyle,
    /// Rotated dims per head (`rope.dimension_count`, default `head_dim`); the rest pass.
    pub dim: usize,
    /// Base frequency (`rope.freq_base`, default 10000).
    pub base: f32,
    /// Position scale of linear scaling, `1 / rope.scaling.factor` (1 when unscaled).
    pub freq_scale: f32,
    /// Magnitude factor of cos and sin (`rope.scaling.attn_factor`, default 1).
    pub attn_factor: f32,
    /// Training context of the unscaled model (`rope.scaling.original_context_length`,
    /// default the context length): LongRoPE's long factors apply to contexts beyond it.
    pub n_ctx_orig: usize,
}

/// Sliding-window attention of some layers (`{arch}.attention.sliding_window*`).
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    /// A query at position `p` sees keys at `p - window + 1 ..= p`.
    pub window: usize,
    /// Per layer, whether it slides.
    pub layers: Vec<bool>,
    /// Rope base of the sliding layers (`rope.freq_base_swa`, default 10000); they are never
    /// scaled.
    pub rope_base: f32,
}

/// Shapes and constants of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `general.architecture`.
    pub arch: String,
    /// Its family.
    pub family: Arch,
    /// Vocabulary size (rows of `token_embd`).
    pub n_vocab: usize,
    /// Training context length (`context_length`).
    pub n_ctx_train: usize,
    /// Embedding width, the residual stream size (`embedding_length`).
    pub n_embd: usize,
    /// FFN hidden width (`feed_forward_length`).
    pub n_ff: usize,
    /// Number of transformer blocks (`block_count`).
    pub n_layer: usize,
    /// Query heads (`attention.head_count`).
    pub n_head: usize,
    /// Key/value heads (`attention.head_count_kv`), divides `n_head`.
    pub n_head_kv: usize,
    /// Per-head width (`attention.key_length`, default `n_embd / n_head`).
    pub head_dim: usize,
    /// Rotary embedding, `None` for learned positions.
    pub rope: Option<Rope>,
    /// Norm kind and its epsilon (`attention.layer_norm_rms_epsilon` or `_epsilon`).
    pub norm: NormKind,
    /// Norm epsilon.
    pub norm_eps: f32,
    /// FFN activation.
    pub ffn: FfnAct,
    /// Attention score scale (`1 / sqrt(head_dim)`).
    pub attn_scale: f32,
    /// Factor of the token embedding (Gemma: `sqrt(n_embd)`).
    pub embd_scale: Option<f32>,
    /// Final logit soft-capping `c · tanh(logit / c)` (`final_logit_softcapping`).
    pub logit_softcap: Option<f32>,
    /// Sliding-window layers, if any.
    pub swa: Option<SlidingWindow>,
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

    /// Query width per position, `n_head * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Rotated dims per head (0 without rotary).
    pub fn rope_dim(&self) -> usize {
        self.rope.as_ref().map_or(0, |r| r.dim)
    }

    /// Whether layer `l` attends through a sliding window.
    pub fn is_swa(&self, l: usize) -> bool {
        self.swa
            .as_ref()
            .is_some_and(|s| s.layers.get(l).copied().unwrap_or(false))
    }

    /// Reads the configuration from metadata and checks it is consistent.
    pub fn from_gguf(g: &Gguf) -> Result<Config, ModelError> {
        let arch = g.get_str("general.architecture")?.to_string();
        let family =
            Arch::from_name(&arch).ok_or_else(|| ModelError::UnsupportedArch(arch.clone()))?;
        let key = |k: &str| format!("{arch}.{k}");
        let has = |k: &str| g.get(&key(k)).is_some();
        let u = |k: &str| -> Result<usize, ModelError> { Ok(g.get_u32(&key(k))? as usize) };
        let u_or = |k: &str, d: usize| if has(k) { u(k) } else { Ok(d) };
        let f_or = |k: &str, d: f32| -> Result<f32, ModelError> {
            Ok(if has(k) { g.get_f32(&key(k))? } else { d })
        };
        let bad = |s: String| Err(ModelError::BadConfig(s));

        let n_embd = u("embedding_length")?;
        let n_head = u("attention.head_count")?;
        let n_head_kv = u_or("attention.head_count_kv", n_head)?;
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
        let head_dim = u_or("attention.key_length", n_embd / n_head)?;
        if u_or("attention.value_length", head_dim)? != head_dim || head_dim == 0 {
            return bad("key and value heads of different widths are not supported".into());
        }
        let n_ctx_train = u("context_length")?;
        let rope = match family.rope_style() {
            None => None,
            Some(style) => {
                let dim = u_or("rope.dimension_count", head_dim)?;
                if dim > head_dim || dim % 2 != 0 {
                    return bad(format!(
                        "rope dimension {dim} does not fit head dim {head_dim}"
                    ));
                }
                let scaling = match g.get(&key("rope.scaling.type")) {
                    Some(_) => g.get_str(&key("rope.scaling.type"))?,
                    None => "linear",
                };
                let factor = f_or("rope.scaling.factor", 0.0)?;
                let freq_scale = match scaling {
                    "none" => 1.0,
                    "linear" | "longrope" if factor == 0.0 => 1.0,
                    "linear" | "longrope" => 1.0 / factor,
                    other => return bad(format!("rope scaling `{other}` is not supported")),
                };
                Some(Rope {
                    style,
                    dim,
                    base: f_or("rope.freq_base", 10000.0)?,
                    freq_scale,
                    attn_factor: f_or("rope.scaling.attn_factor", 1.0)?,
                    n_ctx_orig: u_or("rope.scaling.original_context_length", n_ctx_train)?,
                })
            }
        };
        let n_layer = u("block_count")?;
        let swa = match family {
            Arch::Gemma3 if u_or("attention.sliding_window", 0)? > 0 => Some(SlidingWindow {
                window: u("attention.sliding_window")?,
                layers: swa_layers(g, &key("attention.sliding_window_pattern"), n_layer)?,
                rope_base: f_or("rope.freq_base_swa", 10000.0)?,
            }),
            _ => None,
        };
        let softcap = f_or("final_logit_softcapping", 0.0)?;
        let n_vocab = match g.tensor("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
            _ => return Err(ModelError::MissingTensor("token_embd.weight".into())),
        };
        let cfg = Config {
            family,
            n_vocab,
            n_ctx_train,
            n_embd,
            n_ff: u("feed_forward_length")?,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            rope,
            norm: family.norm(),
            norm_eps: g.get_f32(&key(family.eps_key()))?,
            ffn: family.ffn(),
            // Gemma 3 27B (62 layers) scales by n_embd / n_head, not its head width (as
            // llama.cpp does, after gemma_pytorch's config).
            attn_scale: match family {
                Arch::Gemma3 if n_layer == 62 => 1.0 / libm::sqrtf((n_embd / n_head) as f32),
                _ => 1.0 / libm::sqrtf(head_dim as f32),
            },
            embd_scale: (family == Arch::Gemma3).then(|| libm::sqrtf(n_embd as f32)),
            logit_softcap: (family == Arch::Gemma3 && softcap > 0.0).then_some(softcap),
            swa,
            n_params: g.tensors().iter().map(|t| t.n_elements()).sum(),
            quant: dominant_type(g),
            arch,
        };
        if cfg.n_layer == 0 || cfg.n_ff == 0 || cfg.n_ctx_train == 0 {
            return bad("block_count, feed_forward_length and context_length must be > 0".into());
        }
        // A block count the file cannot back is refused before anything is sized by it (found
        // by fuzzing: a count of 2^32 asked for 22 GB).
        let per_layer = family.min_layer_tensors();
        if cfg.n_layer > g.tensors().len() / per_layer {
            return bad(format!(
                "block_count {} needs {} tensors, the file has {}",
                cfg.n_layer,
                cfg.n_layer.saturating_mul(per_layer),
                g.tensors().len()
            ));
        }
        Ok(cfg)
    }

    /// The family's specific hyper-parameters as `(name, value)` pairs, for `info`.
    pub fn family_params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("norm", format!("{:?} eps {}", self.norm, self.norm_eps)),
            ("ffn", format!("{:?}", self.ffn)),
        ];
        match &self.rope {
            Some(r) => {
                p.push((
                    "rope",
                    format!(
                        "{:?} {} of {} dims, base {}",
                        r.style, r.dim, self.head_dim, r.base
                    ),
                ));
                if r.freq_scale != 1.0 {
                    p.push(("rope_freq_scale", r.freq_scale.to_string()));
                }
                if r.attn_factor != 1.0 {
                    p.push(("rope_attn_factor", r.attn_factor.to_string()));
                }
            }
            None => p.push(("positions", "learned".into())),
        }
        if let Some(s) = &self.swa {
            let n = s.layers.iter().filter(|&&b| b).count();
            p.push((
                "sliding_window",
                format!(
                    "{} tokens on {n} of {} layers, rope base {}",
                    s.window, self.n_layer, s.rope_base
                ),
            ));
        }
        if let Some(e) = self.embd_scale {
            p.push(("embedding_scale", e.to_string()));
        }
        if let Some(c) = self.logit_softcap {
            p.push(("logit_softcap", c.to_string()));
        }
        p
    }
}

/// Which of `n_layer` layers slide: `key` as a per-layer array, or as a period `n` (every
/// `n`-th layer global, the others sliding; default 6, Gemma 3's), as llama.cpp reads it.
fn swa_layers(g: &Gguf, key: &str, n_layer: usize) -> Result<Vec<bool>, ModelError> {
    let period = match g.get(key) {
        Some(MetadataValue::Array(MetadataArray::Bool(v))) if v.len() >= n_layer => {
            return Ok(v[..n_layer].to_vec());
        }
        Some(MetadataValue::Array(MetadataArray::U32(v))) if v.len() >= n_layer => {
            return Ok(v[..n_layer].iter().map(|&x| x != 0).collect());
        }
        Some(MetadataValue::Array(_)) => {
            return Err(ModelError::BadConfig(format!(
                "{key} must have one bool per layer"
            )))
        }
        Some(_) => g.get_u32(key)? as usize,
        None => 6,
    };
    Ok((0..n_layer)
        .map(|l| period == 0 || l % period < period - 1)
        .collect())
}

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
