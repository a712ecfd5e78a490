//! Weight views: quantized matrices by byte range into the model file, small F32 vectors
//! (norms) copied out.

use crate::gguf::{GgmlType, Gguf, TensorInfo};
use crate::quant::{self, Partner};
use crate::simd::{self, Acts, Isa};

use super::config::{Arch, NormKind};
use super::{Config, ModelError};

/// A 2-D weight matrix: `rows` rows of `cols` elements, stored in the file at `offset`.
#[derive(Debug, Clone)]
pub struct QMatrix {
    /// Element type.
    pub ty: GgmlType,
    /// Output rows (`ne[1]`).
    pub rows: usize,
    /// Input columns (`ne[0]`).
    pub cols: usize,
    /// Absolute byte offset in the file.
    pub offset: usize,
    /// Bytes per row.
    pub row_bytes: usize,
    /// How the rows are stored.
    pub layout: Layout,
}

/// The storage order of a matrix's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// As in the GGUF file.
    Gguf,
    /// Rows repacked in groups of 8 ([`crate::quant::rows8`]: Q4_1, Q4_0, Q5_0, Q5_1, Q8_0,
    /// Q4_K, Q5_K and Q6_K).
    Rows8,
}

impl QMatrix {
    /// The bytes of this matrix within `file`.
    pub fn bytes<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        file.get(self.offset..self.offset + self.rows * self.row_bytes)
            .unwrap_or(&[])
    }

    /// `out[r * n_tok + t] = row r · acts[t]` for the rows in `w`, a slice of this matrix's
    /// bytes that starts at a row (a multiple of 8 rows in, when repacked).
    pub fn matmul(&self, isa: Isa, w: &[u8], acts: Acts<'_>, n_tok: usize, out: &mut [f32]) {
        match self.layout {
            Layout::Gguf => simd::matmul_acts(isa, self.ty, w, self.cols, acts, n_tok, out),
            Layout::Rows8 => simd::matmul_x8_acts(isa, self.ty, w, self.cols, acts, n_tok, out),
        }
    }

    /// The activation form this matrix's matmul takes.
    pub fn partner(&self) -> Partner {
        quant::partner(self.ty).unwrap_or(Partner::Q8_1)
    }

    /// Dequantizes row `r` into `out` (`cols` long).
    pub fn dequantize_row(&self, file: &[u8], r: usize, out: &mut [f32]) {
        if r >= self.rows {
            return;
        }
        match self.layout {
            Layout::Gguf => {
                let start = self.offset + r * self.row_bytes;
                if let Some(row) = file.get(start..start + self.row_bytes) {
                    quant::dequantize_row(self.ty, row, out);
                }
            }
            Layout::Rows8 => GGUF_ROW.with_borrow_mut(|row| {
                row.resize(self.row_bytes, 0);
                simd::gguf_row(self.ty, self.bytes(file), self.cols, r, row);
                quant::dequantize_row(self.ty, row, out);
            }),
        }
    }
}

thread_local! {
    /// The GGUF bytes of the row [`QMatrix::dequantize_row`] reads from a repacked matrix (one
    /// row per embedding lookup, so no allocation per token).
    static GGUF_ROW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A norm's weight and, for LayerNorm, its bias (`[n]` each).
#[derive(Debug, Clone)]
pub struct Norm {
    /// Scale, `[n]`.
    pub w: Vec<f32>,
    /// Shift, `[n]` (LayerNorm only).
    pub b: Option<Vec<f32>>,
}

/// The weights of one transformer block. Optional parts are those only some families have;
/// fused matrices of the file (`attn_qkv`, Phi-3's gate-up `ffn_up`) are read as views of
/// their row ranges, so every family runs the same matmuls.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// Pre-attention norm, `[n_embd]`.
    pub attn_norm: Norm,
    /// Query projection, `[n_embd] -> [n_head * head_dim]`.
    pub wq: QMatrix,
    /// Key projection, `[n_embd] -> [n_head_kv * head_dim]`.
    pub wk: QMatrix,
    /// Value projection, `[n_embd] -> [n_head_kv * head_dim]`.
    pub wv: QMatrix,
    /// Query, key and value biases (Qwen2, GPT-2), `[n_head * head_dim]`, `[kv_dim]`, `[kv_dim]`.
    pub qkv_bias: Option<[Vec<f32>; 3]>,
    /// Per-head RMSNorm weights of queries and keys (Qwen3, Gemma 3), `[head_dim]` each.
    pub qk_norm: Option<[Vec<f32>; 2]>,
    /// Output projection, `[n_head * head_dim] -> [n_embd]`.
    pub wo: QMatrix,
    /// Output projection bias (GPT-2), `[n_embd]`.
    pub wo_bias: Option<Vec<f32>>,
    /// RMSNorm of the attention output before the residual (Gemma 3), `[n_embd]`.
    pub attn_post_norm: Option<Vec<f32>>,
    /// Pre-FFN norm, `[n_embd]`.
    pub ffn_norm: Norm,
    /// FFN gate, `[n_embd] -> [n_ff]` (absent without a gate: GPT-2).
    pub w_gate: Option<QMatrix>,
    /// FFN up, `[n_embd] -> [n_ff]`.
    pub w_up: QMatrix,
    /// FFN up bias (GPT-2), `[n_ff]`.
    pub up_bias: Option<Vec<f32>>,
    /// FFN down, `[n_ff] -> [n_embd]`.
    pub w_down: QMatrix,
    /// FFN down bias (GPT-2), `[n_embd]`.
    pub down_bias: Option<Vec<f32>>,
    /// RMSNorm of the FFN output before the residual (Gemma 3), `[n_embd]`.
    pub ffn_post_norm: Option<Vec<f32>>,
}

impl LayerWeights {
    /// The block's matrices.
    fn matrices_mut(&mut self) -> impl Iterator<Item = &mut QMatrix> {
        [
            &mut self.wq,
            &mut self.wk,
            &mut self.wv,
            &mut self.wo,
            &mut self.w_up,
            &mut self.w_down,
        ]
        .into_iter()
        .chain(self.w_gate.as_mut())
    }

    /// The block's matrices.
    fn matrices(&self) -> impl Iterator<Item = &QMatrix> {
        [
            &self.wq,
            &self.wk,
            &self.wv,
            &self.wo,
            &self.w_up,
            &self.w_down,
        ]
        .into_iter()
        .chain(self.w_gate.as_ref())
    }
}

/// Per-dimension rotary frequency factors (`[rope_dim / 2]`): each angle is divided by its
/// factor.
#[derive(Debug, Clone, Default)]
pub struct RopeFactors {
    /// Llama 3's `rope_freqs`, used at every context size.
    pub fixed: Option<Vec<f32>>,
    /// LongRoPE's `rope_factors_long`, for contexts beyond the original one.
    pub long: Option<Vec<f32>>,
    /// LongRoPE's `rope_factors_short`, for the others.
    pub short: Option<Vec<f32>>,
}

impl RopeFactors {
    /// The factors a session of `n_ctx` positions uses (as llama.cpp picks them).
    pub fn for_context(&self, n_ctx: usize, n_ctx_orig: usize) -> Option<&[f32]> {
        let longrope = if n_ctx > n_ctx_orig {
            &self.long
        } else {
            &self.short
        };
        self.fixed.as_deref().or(longrope.as_deref())
    }
}

/// All weights of the model.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Token embedding, `n_vocab` rows of `n_embd`.
    pub token_embd: QMatrix,
    /// Learned position embedding (GPT-2), `n_ctx_train` rows of `n_embd`.
    pub pos_embd: Option<QMatrix>,
    /// Rotary frequency factors.
    pub rope_factors: RopeFactors,
    /// Transformer blocks.
    pub layers: Vec<LayerWeights>,
    /// Final norm, `[n_embd]`.
    pub output_norm: Norm,
    /// Output projection `[n_embd] -> [n_vocab]` (`output.weight`, or the tied `token_embd`).
    pub output: QMatrix,
    /// Output bias, `[n_vocab]`.
    pub output_bias: Option<Vec<f32>>,
}

fn find<'a>(g: &'a Gguf, name: &str) -> Result<&'a TensorInfo, ModelError> {
    g.tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
}

fn check_shape(t: &TensorInfo, expected: &[usize]) -> Result<(), ModelError> {
    let exp: Vec<u64> = expected.iter().map(|&d| d as u64).collect();
    if t.dims != exp {
        return Err(ModelError::TensorShape {
            name: t.name.clone(),
            expected: exp,
            found: t.dims.clone(),
        });
    }
    Ok(())
}

fn matrix(
    g: &Gguf,
    name: &str,
    cols: usize,
    rows: usize,
    allowed: fn(GgmlType) -> bool,
) -> Result<QMatrix, ModelError> {
    let t = find(g, name)?;
    check_shape(t, &[cols, rows])?;
    if !allowed(t.ty) {
        return Err(ModelError::TensorType {
            name: name.to_string(),
            ty: t.ty,
        });
    }
    // Rows are whole blocks of their type: the GGUF reader refuses any other tensor.
    Ok(QMatrix {
        ty: t.ty,
        rows,
        cols,
        offset: t.offset as usize,
        row_bytes: (t.size as usize) / rows,
        layout: Layout::Gguf,
    })
}

fn vector(g: &Gguf, file: &[u8], name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
    let t = find(g, name)?;
    check_shape(t, &[n])?;
    let mut v = vec![0f32; n];
    match t.ty {
        GgmlType::F32 => quant::f32::dequantize_row(g.tensor_data(file, t), &mut v),
        GgmlType::F16 => quant::f16::dequantize_row(g.tensor_data(file, t), &mut v),
        ty => {
            return Err(ModelError::TensorType {
                name: name.to_string(),
                ty,
            })
        }
    }
    Ok(v)
}

/// `name` as a vector if the file has it.
fn opt_vector(g: &Gguf, file: &[u8], name: &str, n: usize) -> Result<Option<Vec<f32>>, ModelError> {
    match g.tensor(name) {
        Some(_) => vector(g, file, name, n).map(Some),
        None => Ok(None),
    }
}

/// Rows `start..start + rows` of `m` as a matrix of their own.
fn rows_of(m: &QMatrix, start: usize, rows: usize) -> QMatrix {
    QMatrix {
        offset: m.offset + start * m.row_bytes,
        rows,
        ..m.clone()
    }
}

/// A norm `{name}.weight` with its `{name}.bias` when `with_bias`.
fn norm(g: &Gguf, file: &[u8], name: &str, n: usize, with_bias: bool) -> Result<Norm, ModelError> {
    Ok(Norm {
        w: vector(g, file, &format!("{name}.weight"), n)?,
        b: if with_bias {
            Some(vector(g, file, &format!("{name}.bias"), n)?)
        } else {
            None
        },
    })
}

impl Weights {
    /// Repacks the transformer blocks' and the output's matrices of the types whose repacked
    /// rows `isa` reads faster ([`simd::packed_pays`], of those [`simd::packs`] names) in `file`
    /// in place to [`Layout::Rows8`]; a tied `token_embd` then reads its rows through
    /// [`simd::gguf_row`]. A matrix whose bytes overlap any other tensor's (a hostile file can
    /// alias them) keeps the GGUF layout, so no other view of the file changes meaning.
    pub fn repack(&mut self, g: &Gguf, file: &mut [u8], isa: Isa) {
        let mut scratch = Vec::new();
        for m in self.packable(g, file.len(), isa) {
            let bytes = &mut file[m.offset..m.offset + m.rows * m.row_bytes];
            simd::repack(m.ty, bytes, m.cols, &mut scratch);
            m.layout = Layout::Rows8;
        }
        self.tie_embedding();
    }

    /// A tied `token_embd` is the output matrix's bytes, so it reads them in its layout.
    fn tie_embedding(&mut self) {
        if self.token_embd.offset == self.output.offset {
            self.token_embd.layout = self.output.layout;
        }
    }

    /// Whether any matrix's matmul takes the activation form `p`.
    pub fn any_partner(&self, p: Partner) -> bool {
        self.output.partner() == p
            || self
                .layers
                .iter()
                .any(|l| l.matrices().any(|m| m.partner() == p))
    }

    /// Whether any matrix is in the [`Layout::Rows8`] layout (what [`Weights::repack`] did,
    /// if anything).
    pub fn any_repacked(&self) -> bool {
        self.output.layout == Layout::Rows8
            || self
                .layers
                .iter()
                .any(|l| l.matrices().any(|m| m.layout == Layout::Rows8))
    }

    /// Reads the matrices [`Weights::repack`] repacks for `isa` as [`Layout::Rows8`], moving
    /// no bytes: for a file that is an earlier repack's output for `isa` (a cache of one),
    /// whose header is the original's and so picks the same matrices.
    pub fn assume_repacked(&mut self, g: &Gguf, file_len: usize, isa: Isa) {
        for m in self.packable(g, file_len, isa) {
            m.layout = Layout::Rows8;
        }
        self.tie_embedding();
    }

    /// The transformer blocks' and the output's matrices of a type whose repacked rows `isa`
    /// reads faster, still in the GGUF layout, whose bytes lie in a file of `file_len` bytes
    /// and overlap no other tensor's.
    fn packable(&mut self, g: &Gguf, file_len: usize, isa: Isa) -> Vec<&mut QMatrix> {
        let ranges: Vec<(usize, usize)> = g
            .tensors()
            .iter()
            .map(|t| (t.offset as usize, (t.offset + t.size) as usize))
            .collect();
        let mut packable = Vec::new();
        let matrices = self.layers.iter_mut().flat_map(|l| l.matrices_mut());
        for m in matrices.chain([&mut self.output]) {
            let (start, end) = (m.offset, m.offset + m.rows * m.row_bytes);
            let sharing = ranges
                .iter()
                .filter(|&&(s, e)| s < end && start < e)
                .count();
            if simd::packed_pays(isa, m.ty)
                && m.layout == Layout::Gguf
                && sharing == 1
                && end <= file_len
            {
                packable.push(m);
            }
        }
        packable
    }

    /// Finds and checks every tensor the forward pass of `c`'s family needs.
    pub fn from_gguf(g: &Gguf, file: &[u8], c: &Config) -> Result<Weights, ModelError> {
        let (e, f, q, kv) = (c.n_embd, c.n_ff, c.q_dim(), c.kv_dim());
        if e % quant::QK != 0 || f % quant::QK != 0 || q % quant::QK != 0 {
            return Err(ModelError::BadConfig(format!(
                "n_embd {e}, n_ff {f} and n_head*head_dim {q} must be multiples of 32"
            )));
        }
        let mm = simd::matmul_supports;
        let biased = c.family == Arch::Gpt2;
        let layer_norm = c.norm == NormKind::Layer;
        let mut layers = Vec::with_capacity(c.n_layer);
        for l in 0..c.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let b = |s: &str| format!("blk.{l}.{s}.bias");
            let has = |name: &str| g.tensor(name).is_some();
            // Q, K and V: three matrices, or row ranges of one fused `attn_qkv`.
            let (wq, wk, wv, fused_bias) = if has(&n("attn_qkv")) {
                let qkv = matrix(g, &n("attn_qkv"), e, q + 2 * kv, mm)?;
                let bias = opt_vector(g, file, &b("attn_qkv"), q + 2 * kv)?;
                let bias =
                    bias.map(|v| [v[..q].to_vec(), v[q..q + kv].to_vec(), v[q + kv..].to_vec()]);
                (
                    rows_of(&qkv, 0, q),
                    rows_of(&qkv, q, kv),
                    rows_of(&qkv, q + kv, kv),
                    bias,
                )
            } else {
                let wq = matrix(g, &n("attn_q"), e, q, mm)?;
                let wk = matrix(g, &n("attn_k"), e, kv, mm)?;
                let wv = matrix(g, &n("attn_v"), e, kv, mm)?;
                (wq, wk, wv, None)
            };
            let qkv_bias = match fused_bias {
                Some(bias) => Some(bias),
                None => match opt_vector(g, file, &b("attn_q"), q)? {
                    Some(bq) => Some([
                        bq,
                        vector(g, file, &b("attn_k"), kv)?,
                        vector(g, file, &b("attn_v"), kv)?,
                    ]),
                    None => None,
                },
            };
            if biased && qkv_bias.is_none() {
                return Err(ModelError::MissingTensor(b("attn_qkv")));
            }
            let qk_norm = match opt_vector(g, file, &n("attn_q_norm"), c.head_dim)? {
                Some(qn) => Some([qn, vector(g, file, &n("attn_k_norm"), c.head_dim)?]),
                None => None,
            };
            if matches!(c.family, Arch::Qwen3 | Arch::Gemma3) && qk_norm.is_none() {
                return Err(ModelError::MissingTensor(n("attn_q_norm")));
            }
            let gemma = c.family == Arch::Gemma3;
            let post = |name: &str| -> Result<Option<Vec<f32>>, ModelError> {
                if gemma {
                    vector(g, file, &n(name), e).map(Some)
                } else {
                    Ok(None)
                }
            };
            // FFN: gate and up, or (Phi-3) one `ffn_up` of 2·n_ff rows, gate first; no gate
            // for GPT-2.
            let (w_gate, w_up) = match c.family {
                Arch::Gpt2 => (None, matrix(g, &n("ffn_up"), e, f, mm)?),
                Arch::Phi3 => {
                    let up = matrix(g, &n("ffn_up"), e, 2 * f, mm)?;
                    (Some(rows_of(&up, 0, f)), rows_of(&up, f, f))
                }
                _ => (
                    Some(matrix(g, &n("ffn_gate"), e, f, mm)?),
                    matrix(g, &n("ffn_up"), e, f, mm)?,
                ),
            };
            let bias = |name: &str, len: usize| -> Result<Option<Vec<f32>>, ModelError> {
                if biased {
                    vector(g, file, &b(name), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(LayerWeights {
                attn_norm: norm(g, file, &format!("blk.{l}.attn_norm"), e, layer_norm)?,
                wq,
                wk,
                wv,
                qkv_bias,
                qk_norm,
                wo: matrix(g, &n("attn_output"), q, e, mm)?,
                wo_bias: bias("attn_output", e)?,
                attn_post_norm: post("post_attention_norm")?,
                ffn_norm: norm(g, file, &format!("blk.{l}.ffn_norm"), e, layer_norm)?,
                w_gate,
                w_up,
                up_bias: bias("ffn_up", f)?,
                w_down: matrix(g, &n("ffn_down"), f, e, mm)?,
                down_bias: bias("ffn_down", e)?,
                ffn_post_norm: post("post_ffw_norm")?,
            });
        }
        let token_embd = matrix(g, "token_embd.weight", e, c.n_vocab, mm)?;
        let output = if g.tensor("output.weight").is_some() {
            matrix(g, "output.weight", e, c.n_vocab, mm)?
        } else {
            if !mm(token_embd.ty) {
                return Err(ModelError::TensorType {
                    name: "token_embd.weight (tied output)".into(),
                    ty: token_embd.ty,
                });
            }
            token_embd.clone()
        };
        let pos_embd = match c.family {
            Arch::Gpt2 => Some(matrix(g, "position_embd.weight", e, c.n_ctx_train, mm)?),
            _ => None,
        };
        let half = c.rope_dim() / 2;
        let factors = |name: &str| match c.rope {
            Some(_) => opt_vector(g, file, name, half),
            None => Ok(None),
        };
        let rope_factors = RopeFactors {
            fixed: factors("rope_freqs.weight")?,
            long: factors("rope_factors_long.weight")?,
            short: factors("rope_factors_short.weight")?,
        };
        Ok(Weights {
            token_embd,
            pos_embd,
            rope_factors,
            layers,
            output_norm: norm(g, file, "output_norm", e, layer_norm)?,
            output,
            output_bias: opt_vector(g, file, "output.bias", c.n_vocab)?,
        })
    }
}
