//! Models whose matrices are of every supported type, alone and mixed: they load, and their
//! logits equal (float types: bit for bit) or stay close to those of the same model with every
//! matrix stored as the `f32` values its type dequantizes to, run with `f32` weights (the
//! difference is then only the activations' 8-bit quantization). Unsupported types and
//! K-quant rows that are not whole blocks fail with a one-line error naming the tensor.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use edge_llm_kernel::gguf::writer::RawTensor;
use edge_llm_kernel::gguf::GgmlType::{self, *};
use edge_llm_kernel::simd::Isa;
use edge_llm_kernel::tiny::{tiny_model_typed, tiny_model_writer, TinyShape, TinyTypes};
use edge_llm_kernel::{Model, ModelError, Session, SessionOptions};

/// Every supported matrix type.
static TYPES: [GgmlType; 14] = [
    F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
];

const TOKENS: [u32; 7] = [1, 72, 101, 108, 108, 111, 2];

fn load(types: TinyTypes) -> Arc<Model> {
    let bytes = tiny_model_typed(11, TinyShape::WIDE, types).to_bytes();
    Arc::new(Model::load(Arc::new(bytes)).unwrap_or_else(|e| panic!("{types:?}: {e}")))
}

/// Logits of every position of [`TOKENS`] as one batch, then of one more token alone.
fn logits(model: &Arc<Model>, isa: Isa, threads: usize) -> Vec<f32> {
    let opts = SessionOptions { n_ctx: 64, threads };
    let mut s = Session::new(model.clone(), opts).unwrap();
    s.set_isa(isa);
    let mut v = s.forward_all(&TOKENS, &|| false).unwrap().to_vec();
    v.extend_from_slice(s.forward(&[3], &|| false).unwrap());
    v
}

/// Relative RMS difference of `got` from `want`.
fn rel_rms(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| f64::from(*b).powi(2)).sum();
    (num / den).sqrt()
}

/// Checks the model of `types` against its F32 twin; returns the relative RMS difference.
fn check(types: TinyTypes, label: &str) -> f64 {
    let model = load(types);
    let twin = load(TinyTypes {
        as_f32: true,
        ..types
    });
    let want = logits(&twin, Isa::Scalar, 1);
    let got = logits(&model, Isa::best(), 1);
    assert!(want.iter().all(|v| v.is_finite()), "{label}");
    // Every variant and thread count gives the same bits.
    for (isa, threads) in [(Isa::Scalar, 1), (Isa::best(), 2)] {
        let other = logits(&model, isa, threads);
        assert!(
            other
                .iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{label}: {isa:?} at {threads} threads differs from {:?}",
            Isa::best()
        );
    }
    let rel = rel_rms(&got, &want);
    println!("{label}: relative RMS difference from the f32 twin {rel:.5}");
    rel
}

#[test]
fn each_type_runs_and_matches_its_f32_twin() {
    for (i, ty) in TYPES.iter().enumerate() {
        let types = TinyTypes {
            token_embd: *ty,
            output: Some(*ty),
            layers: std::slice::from_ref(&TYPES[i]),
            as_f32: false,
        };
        let rel = check(types, ty.name());
        if matches!(ty, F32 | F16 | BF16) {
            // Float rows meet f32 activations: the twin's arithmetic exactly.
            assert_eq!(rel, 0.0, "{ty}");
        } else {
            assert!(rel > 0.0 && rel < 0.08, "{ty}: {rel}");
        }
    }
}

#[test]
fn mixed_types_run_and_match_the_f32_twin() {
    // Each of the 14 types once among the 2 × 7 layer matrices, in two orders; separate and
    // tied outputs.
    static REVERSED: [GgmlType; 14] = [
        Q6_K, Q5_K, Q4_K, Q3_K, Q2_K, IQ4_NL, Q8_0, Q5_1, Q5_0, Q4_1, Q4_0, BF16, F16, F32,
    ];
    for (layers, token_embd, output) in [
        (&TYPES, Q4_K, Some(Q6_K)),
        (&REVERSED, Q8_0, None),
        (&TYPES, Q5_0, None),
        (&REVERSED, F16, Some(Q5_K)),
    ] {
        let types = TinyTypes {
            token_embd,
            output,
            layers,
            as_f32: false,
        };
        let label = format!(
            "embd {token_embd}, output {output:?}, layers from {}",
            layers[0]
        );
        let rel = check(types, &label);
        assert!(rel > 0.0 && rel < 0.08, "{label}: {rel}");
    }
}

#[test]
fn unsupported_types_fail_naming_the_tensor() {
    let n_vocab = edge_llm_kernel::tiny::vocab().len();
    let cols = edge_llm_kernel::tiny::shape::N_EMBD as u64;
    for ty in [Q8_1, I8, I32] {
        let mut w = tiny_model_writer(0);
        let bytes = ty.row_bytes(cols).unwrap() as usize * n_vocab;
        w.add_raw_tensor(RawTensor {
            name: "output.weight".into(),
            ty_code: ty.code(),
            dims: vec![cols, n_vocab as u64],
            data: vec![0; bytes],
            offset: None,
        });
        let err = Model::load(Arc::new(w.to_bytes())).unwrap_err();
        assert!(matches!(err, ModelError::TensorType { .. }), "{ty}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains("output.weight") && msg.contains(ty.name()),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }
}

#[test]
fn k_quant_rows_must_be_whole_blocks() {
    // The tiny model is 64 wide: a Q4_K attn_q cannot hold its rows in 256-element blocks.
    static Q4K: [GgmlType; 1] = [Q4_K];
    let types = TinyTypes {
        layers: &Q4K,
        ..TinyTypes::TINY
    };
    let err = Model::load(Arc::new(
        tiny_model_typed(0, TinyShape::TINY, types).to_bytes(),
    ))
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("blk.0.attn_q.weight") && msg.contains("Q4_K") && msg.contains("256"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    println!("{msg}");
}

#[test]
fn repacking_the_matrices_of_a_mixed_model_changes_no_logit() {
    // The seven repacked types among others (2 layers × 7 matrices cycle through these 8, so
    // each type lands on one or two kinds of matrix; the K-quants on whole 256-blocks): `load_packed` repacks those this machine's
    // kernels read faster repacked, `load_repacked` reads a copy of its bytes the same way.
    static MIX: [GgmlType; 8] = [Q4_1, Q5_0, Q4_K, Q4_0, Q8_0, Q5_1, Q6_K, Q5_K];
    let types = TinyTypes {
        token_embd: Q6_K,
        output: Some(Q4_1),
        layers: &MIX,
        as_f32: false,
    };
    let bytes = tiny_model_typed(5, TinyShape::WIDE, types).to_bytes();
    let plain = Arc::new(Model::load(Arc::new(bytes.clone())).unwrap());
    let packed = Arc::new(Model::load_packed(bytes.clone()).unwrap());
    let pays = edge_llm_kernel::simd::repacking_pays(Isa::best());
    assert_eq!(packed.weights().any_repacked(), pays);
    if pays {
        assert_ne!(packed.bytes(), &bytes[..], "nothing moved");
    }
    let cached = Arc::new(Model::load_repacked(Arc::new(packed.bytes().to_vec())).unwrap());
    assert_eq!(cached.weights().any_repacked(), pays);
    for threads in [1, 2] {
        let c = logits(&cached, Isa::best(), threads);
        let (a, b) = (
            logits(&plain, Isa::best(), threads),
            logits(&packed, Isa::best(), threads),
        );
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{threads} threads"
        );
        assert!(
            a.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{threads} threads, reloaded"
        );
    }
}
