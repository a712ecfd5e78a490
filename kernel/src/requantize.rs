//! Rewrites a GGUF file with its matrices in other types: each 2-D tensor is dequantized and
//! quantized again with this crate's simple quantizers (`quant::quantize_row`; not
//! llama.cpp's), everything else is copied. For tests and tools (e.g. a model in every type,
//! from the one model at hand), not for making production models.

use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgmlType, Gguf, GgufError, TensorInfo};
use crate::quant;

/// The type llama.cpp falls back to for a K-quant matrix whose rows are not whole 256-blocks.
pub fn k_quant_fallback(ty: GgmlType) -> GgmlType {
    match ty {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::IQ4_NL,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    }
}

/// The GGUF file `file` with every 2-D tensor `t` stored as `ty_for(t)` (a type with a
/// quantizer and whole blocks per row, else the tensor is copied unchanged), the metadata and
/// other tensors as they were.
pub fn requantize(
    file: &[u8],
    ty_for: impl Fn(&TensorInfo) -> GgmlType,
) -> Result<Vec<u8>, GgufError> {
    let g = Gguf::parse(file)?;
    let mut w = GgufWriter::new();
    for k in g.keys() {
        if let Some(v) = g.get(k) {
            w.add(k, v.clone());
        }
    }
    for t in g.tensors() {
        let data = g.tensor_data(file, t);
        let cols = t.dims.first().copied().unwrap_or(0);
        let ty = ty_for(t);
        let fits = ty.row_bytes(cols).is_some() && quant::partner(ty).is_some();
        if t.dims.len() != 2 || ty == t.ty || !fits || quant::partner(t.ty).is_none() {
            w.add_tensor(&t.name, t.ty, &t.dims, data.to_vec());
            continue;
        }
        let mut x = vec![0f32; t.n_elements() as usize];
        let row_bytes = data.len() / (t.dims[1] as usize).max(1);
        for (r, o) in data
            .chunks_exact(row_bytes)
            .zip(x.chunks_exact_mut(cols as usize))
        {
            quant::dequantize_row(t.ty, r, o);
        }
        let mut q = Vec::new();
        quant::quantize_row(ty, &x, &mut q);
        w.add_tensor(&t.name, ty, &t.dims, q);
    }
    Ok(w.to_bytes())
}
