//! Kernel dispatch: the scalar reference and per-architecture SIMD variants of the hot loops,
//! behind one set of functions that take an [`Isa`].
//!
//! All `unsafe` code and intrinsics live in the per-architecture files (`x86.rs`, `wasm.rs`,
//! `neon.rs`, and for the K-quants `x86_k.rs`, `wasm_k.rs`, `neon_k.rs`); every variant
//! reproduces the scalar reference bit for bit (see `crate::quant`).
//!
//! Matmul kernels per weight type ([`matmul_acts`]):
//!
//! | type | AVX2 | simd128 | NEON |
//! | --- | --- | --- | --- |
//! | Q4_0, Q5_0, Q8_0, IQ4_NL | 8 rows × block (`block_rows8`; row groups unpacked once for several tokens) | 4 rows × block (`offset_rows` for Q4_0/Q5_0, unpacked once for several tokens; `scaled_rows`, decoding by the relaxed dot on split activations) | 4 rows × block (`scaled_step`) |
//! | Q4_1 | 8 rows, unpacked once for several tokens; `Q4_1x8` repacked | 4 rows; `Q4_1x8` repacked | 4 rows |
//! | repacked eight rows at a time ([`matmul_x8`]: `Q4_1x8`, `Q4_0x8`, `Q5_0x8`, `Q5_1x8`, `Q8_0x8`) | a register holds 4 values of all 8 rows; tiles of 4 tokens | the same, 2 registers (loaded repacked for Q4_1, Q4_0, Q5_0 and Q5_1: [`packed_pays`]) | the scalar references (not loaded repacked) |
//! | Q5_1 | as Q5_0 with a min; `Q5_1x8` repacked | 4 rows, relaxed dot; `Q5_1x8` repacked | 4 rows |
//! | Q2_K, Q3_K, Q4_K, Q5_K, Q6_K | one row, each block decoded once for all tokens | the same | the same |
//! | Q4_K, Q5_K, Q6_K repacked eight rows at a time ([`matmul_x8_q8_k`]: `Q4_Kx8`, `Q5_Kx8`, `Q6_Kx8`) | a register holds 4 values of all 8 rows, sub-block sums times the rows' scales lane by lane; tiles of 4 tokens | the same, 2 registers, each group decoded once for several tokens (loaded repacked) | the scalar references (not loaded repacked) |
//! | F32, F16, BF16 | rows widened to `f32` (F16 by F16C), [`dot_f32`] | the same (F16 by an exact integer sequence) | rows widened by the reference, [`dot_f32`] |
//!
//! Rows a kernel leaves (fewer than a group) and the `Scalar` variant run the references in
//! `crate::quant`. Activations: Q8_1 quantization has AVX2 and simd128 variants; Q8_K
//! quantization an AVX2 one (the scalar reference elsewhere).

use std::cell::RefCell;

use crate::gguf::GgmlType;
use crate::quant::q8_1::{self, BlockQ8_1};
use crate::quant::q8_k::{self, BlockQ8_K};
use crate::quant::{iq4_nl, q2_k, q3_k, q4_0, q4_1, q4_k, q5_0, q5_1, q5_k, q6_k, q8_0};
use crate::quant::{q4_0x8, q4_1x8, q4_kx8, q5_0x8, q5_1x8, q5_kx8, q6_kx8, q8_0x8};
use crate::quant::{Partner, QK, QK_K};

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_k;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm_k;
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86;
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86_k;
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86_zmm;

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

/// Weight types [`matmul_acts`] supports (those with an activation partner,
/// [`crate::quant::partner`]).
pub fn matmul_supports(ty: GgmlType) -> bool {
    crate::quant::partner(ty).is_some()
}

/// One batch of `n_tok` activation rows in every form a weight type may take
/// ([`crate::quant::partner`]); a form no matrix of the batch needs may be empty.
#[derive(Debug, Clone, Copy)]
pub struct Acts<'a> {
    /// `n_tok × n_cols` values.
    pub x: &'a [f32],
    /// `n_tok × n_cols / 32` Q8_1 blocks.
    pub q8_1: &'a [BlockQ8_1],
    /// `n_tok × n_cols / 256` Q8_K blocks.
    pub q8_k: &'a [BlockQ8_K],
}

/// `out[r * n_tok + t] = dot(w[r], acts[t])` for weight rows `w` of any supported type, with the
/// activation form its type takes ([`matmul`], [`matmul_q8_k`] or [`matmul_float`]).
#[allow(clippy::too_many_arguments)]
pub fn matmul_acts(
    isa: Isa,
    ty: GgmlType,
    w: &[u8],
    n_cols: usize,
    acts: Acts<'_>,
    n_tok: usize,
    out: &mut [f32],
) {
    match crate::quant::partner(ty) {
        Some(Partner::Q8_1) => matmul(isa, ty, w, n_cols, acts.q8_1, n_tok, out),
        Some(Partner::Q8_K) => matmul_q8_k(isa, ty, w, n_cols, acts.q8_k, n_tok, out),
        Some(Partner::F32) => matmul_float(isa, ty, w, n_cols, acts.x, n_tok, out),
        None => {}
    }
}

/// Quantizes `x` (length a multiple of 256) into Q8_K activation blocks: AVX2 (the
/// reference's rounding is a `rintf` call per value: under `perf record` of `edge-llm bench
/// --model build/fidelity/llamacpp-Q4_K_M.gguf`, quantizing took 54 % as many samples as the
/// repacked matmuls, 1.6 % with AVX2), elsewhere the scalar reference.
pub fn quantize_q8_k(isa: Isa, x: &[f32], out: &mut [BlockQ8_K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    match isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 if x86::has_avx2() => x86::quantize_q8_k(x, out),
        _ => q8_k::quantize_row_ref(x, out),
    }
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

/// Quantized matrix times activations, for the weight types whose partner is Q8_1 (Q4_0,
/// Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL): for weight rows `w` (`n_rows` rows of `n_cols` elements of
/// type `ty`) and `n_tok` activation rows `acts` (`n_tok × n_cols/32` blocks), writes
/// `out[r * n_tok + t] = dot(w[r], acts[t])`.
///
/// Other types or inconsistent lengths leave `out` untouched; the model checks both at load.
/// Every type has a SIMD kernel on AVX2, simd128 and NEON (see the table above).
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
    let Some((w, out)) = clip(w, row_bytes, nb, acts.len(), n_tok, out) else {
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
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::Q5_0) if x86::has_avx2() => x86::matmul_q5_0(w, nb, acts, n_tok, out),
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::Q5_1) if x86::has_avx2() => x86::matmul_q5_1(w, nb, acts, n_tok, out),
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::IQ4_NL) if x86::has_avx2() => {
            x86::matmul_iq4_nl(w, nb, acts, n_tok, out)
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q4_1) => wasm::matmul_q4_1(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q8_0) => wasm::matmul_q8_0(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q4_0) => wasm::matmul_q4_0(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q5_0) => wasm::matmul_q5_0(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q5_1) => wasm::matmul_q5_1(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::IQ4_NL) => wasm::matmul_iq4_nl(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q4_1) => neon::matmul_q4_1(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q8_0) => neon::matmul_q8_0(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q4_0) => neon::matmul_q4_0(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q5_0) => neon::matmul_q5_0(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q5_1) => neon::matmul_q5_1(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::IQ4_NL) => neon::matmul_iq4_nl(w, nb, acts, n_tok, out),
        _ => 0,
    };
    let (w, out) = (&w[done * row_bytes..], &mut out[done * n_tok..]);
    matmul_ref(ty, w, row_bytes, nb, acts, n_tok, out);
}

/// True if `isa` reads some type's repacked rows faster than the GGUF layout
/// ([`packed_pays`]).
pub fn repacking_pays(isa: Isa) -> bool {
    PACKED.iter().any(|&ty| packed_pays(isa, ty))
}

/// True if `isa` has a [`matmul_x8`] or [`matmul_x8_q8_k`] kernel for `ty` faster than
/// [`matmul`] or [`matmul_q8_k`] on the GGUF layout: every type [`packs`] names on AVX2; all
/// but Q8_0 on simd128 (its Q8_0 kernel, without a byte dot product, ran at 0.6-0.9× its
/// GGUF-layout one; its Q5_1 kernel decodes at 1.5-1.9× and runs 32 and 128 tokens at
/// 0.8-1.1×; the K-quants' decode at 1.5-1.8× and run 32 and 128 tokens at 1.6-3.2×;
/// `matmul_speed TYPE` under wasmtime).
pub fn packed_pays(isa: Isa, ty: GgmlType) -> bool {
    match isa {
        Isa::Avx2 => packs(ty),
        Isa::Simd128 => packs(ty) && ty != GgmlType::Q8_0,
        _ => false,
    }
}

/// The widest AVX-512 VNNI vectors the AVX2 kernels may use, where the machine has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vnni {
    /// None: AVX2's `maddubs`.
    Off,
    /// 256-bit `vpdpbusd` (AVX-512 VNNI and VL).
    Bits256,
    /// 512-bit too (and AVX-512 F): the repacked types' tile of several tokens, and
    /// attention's scores and value sums of the query heads that share a key head.
    Bits512,
}

impl Vnni {
    /// The widths this machine's kernels can run, narrowest first ([`Vnni::Off`] on every
    /// machine), for tests and timing to select each in turn with [`allow_vnni`].
    pub fn available() -> Vec<Vnni> {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            let mut v = vec![Vnni::Off];
            if x86::has_avx2() && x86::vnni_detected() {
                v.push(Vnni::Bits256);
                if x86_zmm::available() {
                    v.push(Vnni::Bits512);
                }
            }
            v
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        {
            vec![Vnni::Off]
        }
    }
}

/// Lets the AVX2 kernels use AVX-512 VNNI up to `widest` where the machine has it (the
/// default: [`Vnni::Bits512`]) or not at all (for tests and timing: every width gives the same
/// bits). Returns false, changing nothing, where there are no AVX2 kernels.
pub fn allow_vnni(widest: Vnni) -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        x86::allow_vnni(widest);
        true
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        let _ = widest;
        false
    }
}

/// Weight types whose rows repack eight at a time (`quant::rows8`): Q4_1 ([`q4_1x8`]), Q4_0
/// ([`q4_0x8`]), Q5_0 ([`q5_0x8`]), Q5_1 ([`q5_1x8`]) and Q8_0 ([`q8_0x8`]), read by
/// [`matmul_x8`]; Q4_K ([`q4_kx8`]), Q5_K ([`q5_kx8`]) and Q6_K ([`q6_kx8`]), read by
/// [`matmul_x8_q8_k`].
pub fn packs(ty: GgmlType) -> bool {
    PACKED.contains(&ty)
}

/// The types [`packs`] names.
const PACKED: [GgmlType; 8] = {
    use GgmlType::*;
    [Q4_1, Q4_0, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K]
};

/// Repacks the full groups of eight rows of `rows` (rows of `n_cols` elements of type `ty`,
/// one of [`packs`]) in place; other types are left as they are.
pub fn repack(ty: GgmlType, rows: &mut [u8], n_cols: usize, scratch: &mut Vec<u8>) {
    let nb = n_cols / QK;
    match ty {
        GgmlType::Q4_K => q4_kx8::repack(rows, n_cols / QK_K, scratch),
        GgmlType::Q5_K => q5_kx8::repack(rows, n_cols / QK_K, scratch),
        GgmlType::Q6_K => q6_kx8::repack(rows, n_cols / QK_K, scratch),
        GgmlType::Q4_1 => q4_1x8::repack(rows, nb, scratch),
        GgmlType::Q4_0 => q4_0x8::repack(rows, nb, scratch),
        GgmlType::Q5_0 => q5_0x8::repack(rows, nb, scratch),
        GgmlType::Q5_1 => q5_1x8::repack(rows, nb, scratch),
        GgmlType::Q8_0 => q8_0x8::repack(rows, nb, scratch),
        _ => {}
    }
}

/// Row `r`'s bytes in the GGUF layout (`out`, one row long) of `rows`, rows of `n_cols`
/// elements of type `ty` that [`repack`] rewrote: the inverse of the repacking for one row
/// (for reading a repacked matrix's rows one at a time, as an embedding lookup does).
pub fn gguf_row(ty: GgmlType, rows: &[u8], n_cols: usize, r: usize, out: &mut [u8]) {
    let nb = n_cols / QK;
    match ty {
        GgmlType::Q4_K => q4_kx8::gguf_row(rows, n_cols / QK_K, r, out),
        GgmlType::Q5_K => q5_kx8::gguf_row(rows, n_cols / QK_K, r, out),
        GgmlType::Q6_K => q6_kx8::gguf_row(rows, n_cols / QK_K, r, out),
        GgmlType::Q4_1 => q4_1x8::gguf_row(rows, nb, r, out),
        GgmlType::Q4_0 => q4_0x8::gguf_row(rows, nb, r, out),
        GgmlType::Q5_0 => q5_0x8::gguf_row(rows, nb, r, out),
        GgmlType::Q5_1 => q5_1x8::gguf_row(rows, nb, r, out),
        GgmlType::Q8_0 => q8_0x8::gguf_row(rows, nb, r, out),
        _ => {
            debug_assert!(!packs(ty), "{ty} repacks but has no gguf_row");
            out.copy_from_slice(&rows[r * out.len()..(r + 1) * out.len()]);
        }
    }
}

/// [`matmul`] for rows of `ty` repacked by [`repack`] (a tail of fewer than 8 rows in the
/// GGUF layout); the results are bit for bit those of the unpacked rows. AVX2 and simd128
/// have kernels for it; elsewhere the scalar references run. Types [`packs`] does not name
/// leave `out` untouched.
pub fn matmul_x8(
    isa: Isa,
    ty: GgmlType,
    w: &[u8],
    n_cols: usize,
    acts: &[BlockQ8_1],
    n_tok: usize,
    out: &mut [f32],
) {
    let reference = match ty {
        GgmlType::Q4_1 => q4_1x8::matmul_ref,
        GgmlType::Q4_0 => q4_0x8::matmul_ref,
        GgmlType::Q5_0 => q5_0x8::matmul_ref,
        GgmlType::Q5_1 => q5_1x8::matmul_ref,
        GgmlType::Q8_0 => q8_0x8::matmul_ref,
        _ => return,
    };
    x8_frame(
        ty,
        w,
        n_cols,
        acts,
        n_tok,
        out,
        reference,
        |w, nb, out| match isa {
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx2 => x86::matmul_x8(ty, w, nb, acts, n_tok, out),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => wasm::matmul_x8(ty, w, nb, acts, n_tok, out),
            _ => {
                let _ = (w, nb, out);
                0
            }
        },
    );
}

/// The frame of the repacked matmuls, as in [`matmul`]: `w` and `out` cut to whole rows
/// ([`clip`]), `kernel` does whole groups of 8 (it returns the rows it did, none without
/// one), `reference` the rest (a shorter tail in the GGUF layout, or everything).
#[allow(clippy::too_many_arguments)]
fn x8_frame<A>(
    ty: GgmlType,
    w: &[u8],
    n_cols: usize,
    acts: &[A],
    n_tok: usize,
    out: &mut [f32],
    reference: fn(&[u8], usize, &[A], usize, &mut [f32]),
    kernel: impl FnOnce(&[u8], usize, &mut [f32]) -> usize,
) {
    let nb = n_cols / ty.block_size() as usize;
    let Some(row_bytes) = ty.row_bytes(n_cols as u64) else {
        return;
    };
    let row_bytes = row_bytes as usize;
    let Some((w, out)) = clip(w, row_bytes, nb, acts.len(), n_tok, out) else {
        return;
    };
    let done = kernel(w, nb, out);
    let (w, out) = (&w[done * row_bytes..], &mut out[done * n_tok..]);
    reference(w, nb, acts, n_tok, out);
}

/// [`matmul_x8`] or [`matmul_x8_q8_k`], with the activation form `ty` takes: the matmul of a
/// matrix repacked by [`repack`].
#[allow(clippy::too_many_arguments)]
pub fn matmul_x8_acts(
    isa: Isa,
    ty: GgmlType,
    w: &[u8],
    n_cols: usize,
    acts: Acts<'_>,
    n_tok: usize,
    out: &mut [f32],
) {
    match crate::quant::partner(ty) {
        Some(Partner::Q8_K) => matmul_x8_q8_k(isa, ty, w, n_cols, acts.q8_k, n_tok, out),
        _ => matmul_x8(isa, ty, w, n_cols, acts.q8_1, n_tok, out),
    }
}

/// [`matmul_q8_k`] for Q4_K, Q5_K or Q6_K rows repacked by [`repack`] (a tail of fewer than 8
/// rows in the GGUF layout); the results are bit for bit those of the unpacked rows. AVX2
/// and simd128 have kernels for it; elsewhere the scalar references run. Other types leave
/// `out` untouched.
pub fn matmul_x8_q8_k(
    isa: Isa,
    ty: GgmlType,
    w: &[u8],
    n_cols: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) {
    let reference = match ty {
        GgmlType::Q4_K => q4_kx8::matmul_ref,
        GgmlType::Q5_K => q5_kx8::matmul_ref,
        GgmlType::Q6_K => q6_kx8::matmul_ref,
        _ => return,
    };
    x8_frame(
        ty,
        w,
        n_cols,
        acts,
        n_tok,
        out,
        reference,
        |w, nb, out| match isa {
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx2 => x86_k::matmul_x8(ty, w, nb, acts, n_tok, out),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => wasm_k::matmul_x8(ty, w, nb, acts, n_tok, out),
            _ => {
                let _ = (w, nb, out);
                0
            }
        },
    );
}

/// `w` and `out` cut to the whole rows both hold, or `None` when there is nothing to compute
/// (no rows, no tokens, or fewer activation blocks than `n_tok` tokens of `nb`). The kernels
/// then index within these lengths.
fn clip<'w, 'o>(
    w: &'w [u8],
    row_bytes: usize,
    nb: usize,
    n_acts: usize,
    n_tok: usize,
    out: &'o mut [f32],
) -> Option<(&'w [u8], &'o mut [f32])> {
    if row_bytes == 0 || n_tok == 0 || n_acts < nb * n_tok {
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
        GgmlType::Q5_0 => q5_0::vec_dot_ref,
        GgmlType::Q5_1 => q5_1::vec_dot_ref,
        GgmlType::Q8_0 => q8_0::vec_dot_ref,
        GgmlType::IQ4_NL => iq4_nl::vec_dot_ref,
        _ => return,
    };
    rows_ref(dot, w, row_bytes, nb, acts, n_tok, out);
}

/// `out[r * n_tok + t] = dot(row r, acts[t])` for every whole row of `w`, one at a time: the
/// scalar path of the matmuls, whatever the activation block type.
fn rows_ref<A>(
    dot: fn(&[u8], &[A]) -> f32,
    w: &[u8],
    row_bytes: usize,
    nb: usize,
    acts: &[A],
    n_tok: usize,
    out: &mut [f32],
) {
    for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(n_tok)) {
        for (t, v) in o.iter_mut().enumerate() {
            *v = dot(row, &acts[t * nb..(t + 1) * nb]);
        }
    }
}

/// [`matmul`] for the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) with Q8_K activations
/// (`n_tok × n_cols/256` blocks).
pub fn matmul_q8_k(
    isa: Isa,
    ty: GgmlType,
    w: &[u8],
    n_cols: usize,
    acts: &[BlockQ8_K],
    n_tok: usize,
    out: &mut [f32],
) {
    let nb = n_cols / QK_K;
    if crate::quant::partner(ty) != Some(Partner::Q8_K) {
        return;
    }
    let Some(row_bytes) = ty.row_bytes(n_cols as u64) else {
        return;
    };
    let row_bytes = row_bytes as usize;
    let Some((w, out)) = clip(w, row_bytes, nb, acts.len(), n_tok, out) else {
        return;
    };
    let done = match (isa, ty) {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::Q2_K) => x86_k::matmul_q2_k(w, nb, acts, n_tok, out),
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::Q3_K) => x86_k::matmul_q3_k(w, nb, acts, n_tok, out),
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::Q4_K) => x86_k::matmul_q4_k(w, nb, acts, n_tok, out),
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::Q5_K) => x86_k::matmul_q5_k(w, nb, acts, n_tok, out),
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::Q6_K) => x86_k::matmul_q6_k(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q2_K) => wasm_k::matmul_q2_k(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q3_K) => wasm_k::matmul_q3_k(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q4_K) => wasm_k::matmul_q4_k(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q5_K) => wasm_k::matmul_q5_k(w, nb, acts, n_tok, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::Q6_K) => wasm_k::matmul_q6_k(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q2_K) => neon_k::matmul_q2_k(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q3_K) => neon_k::matmul_q3_k(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q4_K) => neon_k::matmul_q4_k(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q5_K) => neon_k::matmul_q5_k(w, nb, acts, n_tok, out),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q6_K) => neon_k::matmul_q6_k(w, nb, acts, n_tok, out),
        _ => 0,
    };
    let (w, out) = (&w[done * row_bytes..], &mut out[done * n_tok..]);
    let dot = match ty {
        GgmlType::Q2_K => q2_k::vec_dot_ref,
        GgmlType::Q3_K => q3_k::vec_dot_ref,
        GgmlType::Q4_K => q4_k::vec_dot_ref,
        GgmlType::Q5_K => q5_k::vec_dot_ref,
        GgmlType::Q6_K => q6_k::vec_dot_ref,
        _ => return,
    };
    rows_ref(dot, w, row_bytes, nb, acts, n_tok, out);
}

thread_local! {
    /// One dequantized weight row of [`matmul_float`] (grows to the widest row, then stays).
    static FLOAT_ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// [`matmul`] for float weights (F32, F16, BF16) with `f32` activations (`n_tok × n_cols`):
/// each row is widened to `f32` exactly, then dotted with every token by [`dot_f32`], so every
/// variant equals the scalar reference ([`crate::quant::f32::dot_ref`]) bit for bit.
pub fn matmul_float(
    isa: Isa,
    ty: GgmlType,
    w: &[u8],
    n_cols: usize,
    x: &[f32],
    n_tok: usize,
    out: &mut [f32],
) {
    if crate::quant::partner(ty) != Some(Partner::F32) {
        return;
    }
    let Some(row_bytes) = ty.row_bytes(n_cols as u64) else {
        return;
    };
    let row_bytes = row_bytes as usize;
    let Some((w, out)) = clip(w, row_bytes, n_cols, x.len(), n_tok, out) else {
        return;
    };
    FLOAT_ROW.with_borrow_mut(|buf| {
        if buf.len() < n_cols {
            buf.resize(n_cols, 0.0);
        }
        let row_f = &mut buf[..n_cols];
        for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(n_tok)) {
            widen_row(isa, ty, row, row_f);
            for (t, v) in o.iter_mut().enumerate() {
                *v = dot_f32(isa, row_f, &x[t * n_cols..(t + 1) * n_cols]);
            }
        }
    });
}

/// A row of float weights (F32, F16, BF16) as `f32`, exactly (F16 with F16C on AVX2, four
/// at a time on simd128).
fn widen_row(isa: Isa, ty: GgmlType, row: &[u8], out: &mut [f32]) {
    match (isa, ty) {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        (Isa::Avx2, GgmlType::F16) => x86::widen_f16(row, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, GgmlType::F16) => wasm::widen_f16(row, out),
        _ => {
            crate::quant::dequantize_row(ty, row, out);
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

/// `x[i] = e^(x[i] − shift)` in place: bit for bit [`crate::activation::exp_shifted`] in every
/// variant (the same loop, compiled 8 lanes wide for AVX2; simd128 vectorizes it already).
#[inline]
pub fn exp_shifted(isa: Isa, x: &mut [f32], shift: f32) {
    match isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 if x86::has_avx2() => x86::exp_shifted(x, shift),
        _ => crate::activation::exp_shifted(x, shift),
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

/// [`crate::ops::transpose_ref`] in every variant (AVX2: blocks of 8 rows by 8 or 4 tokens
/// transposed in registers).
#[inline]
pub fn transpose(
    isa: Isa,
    src: &[f32],
    rows: usize,
    n: usize,
    t0: usize,
    dst: &mut [f32],
    add: bool,
) {
    match isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 if x86::has_avx2() => x86::transpose(src, rows, n, t0, dst, add),
        _ => crate::ops::transpose_ref(src, rows, n, t0, dst, add),
    }
}

/// Rounds every element of `x` to the nearest half float (ties to even) into `out`'s bits,
/// bit for bit [`crate::quant::f16::narrow_slice`] in every variant (F16C on AVX2): how keys
/// and values enter the cache.
#[inline]
pub fn narrow_f16(isa: Isa, x: &[f32], out: &mut [u16]) {
    match isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 if x86::has_avx2() => x86::narrow_f16(x, out),
        _ => crate::quant::f16::narrow_slice(x, out),
    }
}

/// `out[j] = q · rows[j · stride..][..q.len()]` for every `j < out.len()` over rows of half
/// floats (attention's scores over the f16 key cache), bit for bit
/// [`crate::quant::f32::dot_f16_ref`]. `rows` must hold `(out.len() - 1) · stride + q.len()`
/// elements when `out` is not empty.
#[inline]
pub fn dots_f16(isa: Isa, q: &[f32], rows: &[u16], stride: usize, out: &mut [f32]) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if isa == Isa::Avx2 && x86::dots_f16(q, rows, stride, out) {
        return;
    }
    for (j, o) in out.iter_mut().enumerate() {
        let r = &rows[j * stride..][..q.len()];
        *o = match isa {
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => wasm::dot_f16(q, r),
            _ => crate::quant::f32::dot_f16_ref(q, r),
        };
    }
}

/// [`dots_f16`] of each of the `H = q.len() / hd` query heads in `q` (the query heads of one
/// key head, `hd` values each) with the same rows: `out` holds each head's scores one after
/// another (`out.len() / H` each), each bit for bit that head's [`dots_f16`]. With 512-bit
/// vectors each row is widened once for all the heads, two rows to a register.
#[inline]
pub fn dots_f16_heads(
    isa: Isa,
    q: &[f32],
    hd: usize,
    rows: &[u16],
    stride: usize,
    out: &mut [f32],
) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if isa == Isa::Avx2 && x86::dots_f16_heads(q, hd, rows, stride, out) {
        return;
    }
    let heads = q.len().checked_div(hd).unwrap_or(0);
    let m = out.len().checked_div(heads).unwrap_or(0);
    for (qh, o) in q
        .chunks_exact(hd.max(1))
        .zip(out.chunks_exact_mut(m.max(1)))
    {
        dots_f16(isa, qh, rows, stride, o);
    }
}

/// [`weighted_sum_f16`] for the `H = w.len() / m` heads that share these rows (the query heads
/// of one key head): `w` holds each head's `m` weights one after another and `out` their
/// sums (`out.len() / H` each); each sum is bit for bit that head's [`weighted_sum_f16`]. With
/// 512-bit vectors each row is read once for all the heads, whose sums run side by side.
#[inline]
pub fn weighted_sum_f16_heads(
    isa: Isa,
    w: &[f32],
    m: usize,
    rows: &[u16],
    stride: usize,
    out: &mut [f32],
) {
    let heads = w.len().checked_div(m).unwrap_or(0);
    let hd = out.len().checked_div(heads).unwrap_or(0);
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if isa == Isa::Avx2 && x86::weighted_sum_f16_heads(w, m, rows, stride, out, hd) {
        return;
    }
    for (wh, o) in w
        .chunks_exact(m.max(1))
        .zip(out.chunks_exact_mut(hd.max(1)))
    {
        weighted_sum_f16(isa, wh, rows, stride, o);
    }
}

/// `out[d] = Σ_j w[j] · rows[j · stride + d]` over rows of half floats, bit for bit
/// [`crate::quant::f32::weighted_sum_f16_ref`] in every variant (attention's sum over the f16
/// value cache). `rows` must hold `(w.len() - 1) · stride + out.len()` elements when `w` is
/// not empty.
#[inline]
pub fn weighted_sum_f16(isa: Isa, w: &[f32], rows: &[u16], stride: usize, out: &mut [f32]) {
    match isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 if x86::has_avx2() => x86::weighted_sum_f16(w, rows, stride, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => wasm::weighted_sum_f16(w, rows, stride, out),
        _ => crate::quant::f32::weighted_sum_f16_ref(w, rows, stride, out),
    }
}
