//! Weight views: quantized matrices by byte range into the model file, small F32 vectors
//! (norms) copied out.

use crate::gguf::{GgmlType, Gguf, TensorInfo};
use crate::quant::{self, q4_1x8, Partner};
use crate::simd::{self, Acts, Isa};

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
    /// Q4_1 rows repacked in groups of 8 ([`q4_1x8`]).
    Q4_1x8,
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
            Layout::Q4_1x8 => simd::matmul_q4_1x8(isa, w, self.cols, acts.q8_1, n_tok, out),
        }
    }

    /// The activation form this matrix's matmul takes.
    pub fn partner(&self) -> Partner {
        quant::partner(self.ty).unwrap_or(Partner::Q8_1)
    }

    /// Dequantizes row `r` into `out` (`cols` long).
    pub fn dequantize_row(&self, file: &[u8], r: usize, out: &mut [f32]) {
        let start = self.offset + r * self.row_bytes;
        let Some(row) = file.get(start..start + self.row_bytes) else {
            return;
        };
        quant::dequantize_row(self.ty, row, out);
    }
}

/// The weights of one transformer block.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// Pre-attention RMSNorm weight, `[n_embd]`.
    pub attn_norm: Vec<f32>,
    /// Query projection, `[n_embd] -> [n_head * head_dim]`.
    pub wq: QMatrix,
    /// Key projection, `[n_embd] -> [n_head_kv * head_dim]`.
    pub wk: QMatrix,
    /// Value projection, `[n_embd] -> [n_head_kv * head_dim]`.
    pub wv: QMatrix,
    /// Output projection, `[n_head * head_dim] -> [n_embd]`.
    pub wo: QMatrix,
    /// Pre-FFN RMSNorm weight, `[n_embd]`.
    pub ffn_norm: Vec<f32>,
    /// FFN gate, `[n_embd] -> [n_ff]`.
    pub w_gate: QMatrix,
    /// FFN up, `[n_embd] -> [n_ff]`.
    pub w_up: QMatrix,
    /// FFN down, `[n_ff] -> [n_embd]`.
    pub w_down: QMatrix,
}

/// All weights of the model.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Token embedding, `n_vocab` rows of `n_embd`.
    pub token_embd: QMatrix,
    /// Transformer blocks.
    pub layers: Vec<LayerWeights>,
    /// Final RMSNorm weight, `[n_embd]`.
    pub output_norm: Vec<f32>,
    /// Output projection `[n_embd] -> [n_vocab]` (`output.weight`, or the tied `token_embd`).
    pub output: QMatrix,
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

impl Weights {
    /// Repacks the transformer blocks' Q4_1 matrices of `file` in place to [`Layout::Q4_1x8`].
    /// A matrix whose bytes overlap any other tensor's (a hostile file can alias them) keeps
    /// the GGUF layout, so no other view of the file changes meaning.
    pub fn repack_q4_1(&mut self, g: &Gguf, file: &mut [u8]) {
        let mut scratch = Vec::new();
        for m in self.packable_q4_1(g, file.len()) {
            let bytes = &mut file[m.offset..m.offset + m.rows * m.row_bytes];
            q4_1x8::repack(bytes, m.cols / quant::QK, &mut scratch);
            m.layout = Layout::Q4_1x8;
        }
    }

    /// Whether any matrix's matmul takes the activation form `p`.
    pub fn any_partner(&self, p: Partner) -> bool {
        self.output.partner() == p
            || self.layers.iter().any(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                    .iter()
                    .any(|m| m.partner() == p)
            })
    }

    /// Whether any matrix is in the [`Layout::Q4_1x8`] layout (what [`Weights::repack_q4_1`]
    /// did, if anything).
    pub fn any_repacked(&self) -> bool {
        self.layers.iter().any(|l| {
            [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                .iter()
                .any(|m| m.layout == Layout::Q4_1x8)
        })
    }

    /// Reads the matrices [`Weights::repack_q4_1`] repacks as [`Layout::Q4_1x8`], moving no
    /// bytes: for a file that is an earlier repack's output (a cache of one), whose header is
    /// the original's and so picks the same matrices.
    pub fn assume_q4_1_repacked(&mut self, g: &Gguf, file_len: usize) {
        for m in self.packable_q4_1(g, file_len) {
            m.layout = Layout::Q4_1x8;
        }
    }

    /// The transformer blocks' Q4_1 matrices still in the GGUF layout whose bytes lie in a
    /// file of `file_len` bytes and overlap no other tensor's.
    fn packable_q4_1(&mut self, g: &Gguf, file_len: usize) -> Vec<&mut QMatrix> {
        let ranges: Vec<(usize, usize)> = g
            .tensors()
            .iter()
            .map(|t| (t.offset as usize, (t.offset + t.size) as usize))
            .collect();
        let mut packable = Vec::new();
        for l in &mut self.layers {
            for m in [
                &mut l.wq,
                &mut l.wk,
                &mut l.wv,
                &mut l.wo,
                &mut l.w_gate,
                &mut l.w_up,
                &mut l.w_down,
            ] {
                let (start, end) = (m.offset, m.offset + m.rows * m.row_bytes);
                let sharing = ranges
                    .iter()
                    .filter(|&&(s, e)| s < end && start < e)
                    .count();
                if m.ty == GgmlType::Q4_1
                    && m.layout == Layout::Gguf
                    && sharing == 1
                    && end <= file_len
                {
                    packable.push(m);
                }
            }
        }
        packable
    }

    /// Finds and checks every tensor the forward pass needs.
    pub fn from_gguf(g: &Gguf, file: &[u8], c: &Config) -> Result<Weights, ModelError> {
        let (e, f, q, kv) = (c.n_embd, c.n_ff, c.n_head * c.head_dim, c.kv_dim());
        if e % quant::QK != 0 || f % quant::QK != 0 || q % quant::QK != 0 {
            return Err(ModelError::BadConfig(format!(
                "n_embd {e}, n_ff {f} and n_head*head_dim {q} must be multiples of 32"
            )));
        }
        let mm = simd::matmul_supports;
        let mut layers = Vec::with_capacity(c.n_layer);
        for l in 0..c.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            layers.push(LayerWeights {
                attn_norm: vector(g, file, &n("attn_norm"), e)?,
                wq: matrix(g, &n("attn_q"), e, q, mm)?,
                wk: matrix(g, &n("attn_k"), e, kv, mm)?,
                wv: matrix(g, &n("attn_v"), e, kv, mm)?,
                wo: matrix(g, &n("attn_output"), q, e, mm)?,
                ffn_norm: vector(g, file, &n("ffn_norm"), e)?,
                w_gate: matrix(g, &n("ffn_gate"), e, f, mm)?,
                w_up: matrix(g, &n("ffn_up"), e, f, mm)?,
                w_down: matrix(g, &n("ffn_down"), f, e, mm)?,
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
        Ok(Weights {
            token_embd,
            layers,
            output_norm: vector(g, file, "output_norm.weight", e)?,
            output,
        })
    }
}
