//! Kernel dispatch: the scalar reference and per-architecture SIMD variants of the hot loops,
//! behind one set of functions that take an [`Isa`].
//!
//! All `unsafe` code and intrinsics live in the per-architecture files (`x86.rs`, `wasm.rs`,
//! `neon.rs`); every variant reproduces the scalar reference bit for bit (see `crate::quant`).

use crate::gguf::GgmlType;
use crate::quant::q8_1::{self, BlockQ8_1};
use crate::quant::{q4_0, q4_1, q4_1x8, q8_0, QK};

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86;

/// An instruction-set variant of the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable scalar reference.
    Scalar,
    /// x86-64 AVX2 + F16C (runtime detected).
    Avx2,
    /// WebAssembly simd128 (compile-time).
    Simd128,
    /// aarch64 NEON (baseline on aarch64).
    Neon,
}

impl Isa {
    /// The variants usable on this machine, scalar first.
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Scalar];
        let best = Isa::best();
        if best != Isa::Scalar {
            v.push(best);
        }
        v
    }

    /// The fastest variant usable on this machine (detected once).
    pub fn best() -> Isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            if x86::has_avx2() {
                return Isa::Avx2;
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            return Isa::Simd128;
        }
        #[cfg(target_arch = "aarch64")]
        {
            return Isa::Neon;
        }
        #[allow(unreachable_code)]
        Isa::Scalar
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Simd128 => "simd128",
            Isa::Neon => "neon",
        }
    }
}

/// Weight types [`matmul`] supports.
pub fn matmul_supports(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
}

/// Quantizes `x` (length a multiple of 32) into Q8_1 activation blocks.
pub fn quantize_q8_1(isa: Isa, x: &[f32], out: &mut [BlockQ8_1]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    match isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 if x86::has_avx2() => x86::quantize_q8_1(x, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => wasm::quantize_q8_1(x, out),
        _ => q8_1::quantize_row_ref(x, out),
    }
}

/// Quantized matrix times activations: for weight rows `w` (`n_rows` rows of `n_cols`
/// elements of type `ty`) and `n_tok` activation rows `acts` (`n_tok × n_cols/32` blocks),
/// writes `out[r * n_tok + t] = dot(w[r], acts[t])`.
///
/// Unsupported types (see [`matmul_supports`]) or inconsistent lengths leave `out` untouched;
/// the model checks both at load.
pub fn matmul(
    isa: Isa,
    ty: GgmlType,
    w: &[u8],
    n_cols: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) {
    let nb = n_cols / QK;
    let Some(row_bytes) = ty.row_bytes(n_cols as u64) else {
        return;
    };
    let row_bytes = row_bytes as usize;
    let Some((w, out)) = clip(w, row_bytes, nb, acts, n_tok, out) else {
        return;
    };
    // Each SIMD kernel computes whole groups of rows and says how many rows it did; the
    // scalar reference does the rest (all of them without a kernel).
    let done = match (isa, ty) {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::Q4_1) if x86::has_avx2() => x86::matmul_q4_1(w, nb, acts, n_tok, out),
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::Q8_0) if x86::has_avx2() => x86::matmul_q8_0(w, nb, acts, n_tok, out),
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::Q4_0) if x86::has_avx2() => x86::matmul_q4_0(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q4_1) => wasm::matmul_q4_1(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q8_0) => wasm::matmul_q8_0(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q4_0) => wasm::matmul_q4_0(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q4_1) => neon::matmul_q4_1(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q8_0) => neon::matmul_q8_0(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q4_0) => neon::matmul_q4_0(w, nb, acts, n_tok, out),
        _ => 0,
    };
    let (w, out) = (&w[done * row_bytes..], &mut out[done * n_tok..]);
    matmul_ref(ty, w, row_bytes, nb, acts, n_tok, out);
}

/// True if `isa` has a [`matmul_q4_1x8`] kernel faster than [`matmul`] on the GGUF layout.
pub fn packed_q4_1_pays(isa: Isa) -> bool {
    isa == Isa::Avx2 || isa == Isa::Simd128
}

/// [`matmul`] for Q4_1 rows repacked by [`q4_1x8::repack`] (a tail of fewer than 8 rows in
/// the GGUF layout); the results are bit for bit those of the unpacked rows. AVX2 and simd128
/// have a kernel for it; elsewhere the scalar reference runs.
pub fn matmul_q4_1x8(
    isa: Isa,
    w: &[u8],
    n_cols: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) {
    let nb = n_cols / QK;
    let row_bytes = nb * q4_1::BLOCK_BYTES;
    let Some((w, out)) = clip(w, row_bytes, nb, acts, n_tok, out) else {
        return;
    };
    // As in `matmul`: the kernel does whole groups, the reference the rest (a shorter tail in
    // the GGUF layout, or everything without a kernel).
    let done = match isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 => x86::matmul_q4_1x8(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => wasm::matmul_q4_1x8(w, nb, acts, n_tok, out),
        _ => 0,
    };
    let (w, out) = (&w[done * row_bytes..], &mut out[done * n_tok..]);
    q4_1x8::matmul_ref(w, nb, acts, n_tok, out);
}

/// `w` and `out` cut to the whole rows both hold, or `None` when there is nothing to compute
/// (no rows, no tokens, or fewer activation blocks than `n_tok` tokens of `nb`). The kernels
/// then index within these lengths.
fn clip<'w, 'o>(
    w: &'w [u8],
    row_bytes: usize,
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &'o mut [f32],
) -> Option<(&'w [u8], &'o mut [f32])> {
    if row_bytes == 0 || n_tok == 0 || acts.len() < nb * n_tok {
        return None;
    }
    let n_rows = (w.len() / row_bytes).min(out.len() / n_tok);
    Some((&w[..n_rows * row_bytes], &mut out[..n_rows * n_tok]))
}

/// Scalar reference matmul, one row at a time (also the rows a SIMD kernel leaves).
fn matmul_ref(
    ty: GgmlType,
    w: &[u8],
    row_bytes: usize,
    nb: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) {
    let dot = match ty {
        GgmlType::Q4_0 => q4_0::vec_dot_ref,
        GgmlType::Q4_1 => q4_1::vec_dot_ref,
        GgmlType::Q8_0 => q8_0::vec_dot_ref,
        _ => return,
    };
    for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(n_tok)) {
        for (t, v) in o.iter_mut().enumerate() {
            *v = dot(row, &acts[t * nb..(t + 1) * nb]);
        }
    }
}

/// Deterministic 8-partial-sum `f32` dot product of the common length of `a` and `b`, bit for
/// bit [`crate::quant::f32::dot_ref`] in every variant.
#[inline]
pub fn dot_f32(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    match isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 if x86::has_avx2() => x86::dot_f32(a, b),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => wasm::dot_f32(a, b),
        _ => crate::quant::f32::dot_ref(a, b),
    }
}

/// SwiGLU in place, `gate[i] = silu(gate[i]) · up[i]`: bit for bit [`crate::activation::swiglu`] in
/// every variant (the same loop, compiled 8 lanes wide for AVX2; the wasm build vectorizes it
/// with simd128 already).
#[inline]
pub fn swiglu(isa: Isa, gate: &mut [f32], up: &[f32]) {
    match isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 if x86::has_avx2() => x86::swiglu(gate, up),
        _ => crate::activation::swiglu(gate, up),
    }
}

/// Rounds every element of `x` to the nearest half float (ties to even) in place, bit for bit
/// [`crate::quant::f16::round_slice`] in every variant (F16C's conversions on AVX2).
#[inline]
pub fn round_f16(isa: Isa, x: &mut [f32]) {
    match isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 if x86::has_avx2() => x86::round_f16(x),
        _ => crate::quant::f16::round_slice(x),
    }
}

/// `out[j] = dot_f32(q, rows[j · stride..][..q.len()])` for every `j < out.len()` (attention's
/// scores), bit for bit [`dot_f32`]. `rows` must hold `(out.len() - 1) · stride + q.len()`
/// elements when `out` is not empty.
#[inline]
pub fn dots_f32(isa: Isa, q: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if isa == Isa::Avx2 && x86::dots_f32(q, rows, stride, out) {
        return;
    }
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot_f32(isa, q, &rows[j * stride..][..q.len()]);
    }
}

/// `out[d] = Σ_j w[j] · rows[j · stride + d]`, bit for bit
/// [`crate::quant::f32::weighted_sum_ref`] in every variant (attention's sum of values).
/// `rows` must hold `(w.len() - 1) · stride + out.len()` elements when `w` is not empty.
#[inline]
pub fn weighted_sum_f32(isa: Isa, w: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    match isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 if x86::has_avx2() => x86::weighted_sum_f32(w, rows, stride, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => wasm::weighted_sum_f32(w, rows, stride, out),
        _ => crate::quant::f32::weighted_sum_ref(w, rows, stride, out),
    }
}
