//! GGUF reader tests: the tiny model round-trips through writer → reader → `Model::load` →
//! forward, and a table of corrupted files is rejected with the expected error, never a panic.
#![allow(clippy::unwrap_used, clippy::cast_lossless)]

use std::sync::Arc;

use edge_llm_kernel::gguf::writer::{GgufWriter, RawTensor};
use edge_llm_kernel::gguf::{GgmlType, Gguf, GgufError, MetadataArray, MetadataValue};
use edge_llm_kernel::tiny::tiny_model_gguf;
use edge_llm_kernel::{ForwardError, Model, ModelError, Session, SessionOptions};

fn tiny_model() -> Arc<Model> {
    Arc::new(Model::load(Arc::new(tiny_model_gguf(7))).expect("tiny model loads"))
}

#[test]
fn tiny_model_round_trips_and_runs() {
    let bytes = tiny_model_gguf(7);
    assert_eq!(bytes, tiny_model_gguf(7), "deterministic");
    let g = Gguf::parse(&bytes).expect("parses");
    assert_eq!(g.version(), 3);
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    let toks = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(&toks[..3], ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
    assert_eq!(toks[3 + 32], "Ġ");
    assert!(toks.contains(&"Ġthe".to_string()));
    assert_eq!(
        g.get_i32_array("tokenizer.ggml.token_type").unwrap()[..4],
        [3, 3, 3, 1]
    );
    assert_eq!(g.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 2);
    assert!(!g.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert!(g
        .get_str("tokenizer.chat_template")
        .unwrap()
        .contains("<|im_start|>"));
    // Every merge's parts are tokens, and so is its result.
    for m in g.get_str_array("tokenizer.ggml.merges").unwrap() {
        let (a, b) = m.split_once(' ').expect("merge has two parts");
        for s in [a.to_string(), b.to_string(), format!("{a}{b}")] {
            assert!(toks.contains(&s), "merge `{m}`: `{s}` is not a token");
        }
    }
    let t = g.tensor("blk.1.ffn_down.weight").expect("tensor");
    assert_eq!(t.dims, [128, 64]);
    assert_eq!(g.tensor_data(&bytes, t).len() as u64, t.size);

    let model = tiny_model();
    let c = model.config();
    assert_eq!(
        (
            c.n_layer,
            c.n_embd,
            c.n_ff,
            c.n_head,
            c.n_head_kv,
            c.head_dim
        ),
        (2, 64, 128, 4, 2, 16)
    );
    assert_eq!(c.quant, "Q4_1");
    let mut s = Session::new(
        model.clone(),
        SessionOptions {
            n_ctx: 64,
            threads: 1,
        },
    )
    .unwrap();
    let logits = s.forward_all(&[1, 72, 101, 2], &|| false).expect("forward");
    assert_eq!(logits.len(), 4 * c.n_vocab);
    assert!(logits.iter().all(|v| v.is_finite()));
    assert!(logits.iter().any(|&v| v != 0.0));
    assert_eq!(s.len(), 4);
}

/// FNV-1a over the bits of the logits: equal on every target (native AVX2, wasm simd128).
fn digest(v: &[f32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for x in v {
        for b in x.to_bits().to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

#[test]
fn tiny_model_logits_are_identical_on_every_target() {
    let model = tiny_model();
    let mut s = Session::new(
        model,
        SessionOptions {
            n_ctx: 256,
            threads: 1,
        },
    )
    .unwrap();
    let toks: Vec<u32> = (0..40).map(|i| (i * 37 % 300) as u32).collect();
    let d = digest(s.forward_all(&toks, &|| false).unwrap());
    println!("tiny logits digest {d:#018x}");
    assert_eq!(
        d, TINY_DIGEST,
        "logits differ from the recorded (native) digest"
    );
}

/// Recorded on x86-64 AVX2; the wasm32 simd128 build must reproduce it.
const TINY_DIGEST: u64 = 0x2835_3c35_7a4e_676b;

#[test]
fn session_errors_leave_the_cache_unchanged() {
    let model = tiny_model();
    let n_vocab = model.config().n_vocab;
    let mut s = Session::new(
        model,
        SessionOptions {
            n_ctx: 8,
            threads: 1,
        },
    )
    .unwrap();
    s.forward(&[1, 2, 3], &|| false).unwrap();
    assert_eq!(
        s.forward(&[], &|| false).unwrap_err(),
        ForwardError::EmptyInput
    );
    assert_eq!(
        s.forward(&[n_vocab as u32], &|| false).unwrap_err(),
        ForwardError::InvalidToken {
            id: n_vocab as u32,
            n_vocab
        }
    );
    assert_eq!(
        s.forward(&[1; 6], &|| false).unwrap_err(),
        ForwardError::ContextOverflow {
            needed: 9,
            n_ctx: 8
        }
    );
    assert_eq!(
        s.forward(&[4, 5], &|| true).unwrap_err(),
        ForwardError::Cancelled
    );
    assert_eq!(s.len(), 3);
    let a = s.forward(&[4], &|| false).unwrap().to_vec();
    s.truncate(3);
    assert_eq!(s.forward(&[4], &|| false).unwrap(), &a[..]);
}

// ---- corruption table ----

fn base_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_str("general.architecture", "llama");
    w.add_u32("general.alignment", 32);
    w.add_tensor("a", GgmlType::F32, &[8], vec![0u8; 32]);
    w.add_tensor("b", GgmlType::Q4_1, &[32, 2], vec![0u8; 40]);
    w
}

fn raw(name: &str, ty_code: u32, dims: &[u64], data: usize, offset: Option<u64>) -> RawTensor {
    RawTensor {
        name: name.into(),
        ty_code,
        dims: dims.to_vec(),
        data: vec![0; data],
        offset,
    }
}

fn with_tensor(t: RawTensor) -> Vec<u8> {
    let mut w = base_writer();
    w.add_raw_tensor(t);
    w.to_bytes()
}

fn patch(mut b: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    b[at..at + bytes.len()].copy_from_slice(bytes);
    b
}

/// Offset of the first metadata key's length field.
const FIRST_KEY: usize = 24;

#[test]
fn corrupted_files_are_rejected_with_the_right_error() {
    let good = base_writer().to_bytes();
    assert!(Gguf::parse(&good).is_ok());
    // The first key is "general.architecture" (20 bytes): its value type follows at 24+8+20.
    let value_type_at = FIRST_KEY + 8 + 20;
    let mut first_array = GgufWriter::new();
    first_array.add("x", MetadataValue::Array(MetadataArray::U32(vec![1, 2, 3])));
    let array_len_at = FIRST_KEY + 8 + 1 + 4 + 4;
    type Check = fn(&GgufError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("bad magic", patch(good.clone(), 0, b"GGUG"), |e| {
            matches!(e, GgufError::BadMagic(_))
        }),
        (
            "version 2",
            patch(good.clone(), 4, &2u32.to_le_bytes()),
            |e| *e == GgufError::UnsupportedVersion(2),
        ),
        (
            "version 4",
            patch(good.clone(), 4, &4u32.to_le_bytes()),
            |e| *e == GgufError::UnsupportedVersion(4),
        ),
        (
            "huge tensor count",
            patch(good.clone(), 8, &u64::MAX.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    GgufError::TooLarge {
                        what: "tensor count",
                        ..
                    }
                )
            },
        ),
        (
            "huge metadata count",
            patch(good.clone(), 16, &(1u64 << 40).to_le_bytes()),
            |e| {
                matches!(
                    e,
                    GgufError::TooLarge {
                        what: "metadata count",
                        ..
                    }
                )
            },
        ),
        (
            "metadata count past the end",
            patch(good.clone(), 16, &60_000u64.to_le_bytes()),
            |e| matches!(e, GgufError::Truncated { .. }),
        ),
        (
            "huge string length",
            patch(good.clone(), FIRST_KEY, &(u64::MAX - 3).to_le_bytes()),
            |e| {
                matches!(
                    e,
                    GgufError::TooLarge {
                        what: "metadata key",
                        ..
                    }
                )
            },
        ),
        (
            "string past the end",
            patch(good.clone(), FIRST_KEY, &(1u64 << 20).to_le_bytes()),
            |e| matches!(e, GgufError::Truncated { .. }),
        ),
        (
            "unknown value type",
            patch(good.clone(), value_type_at, &99u32.to_le_bytes()),
            |e| matches!(e, GgufError::UnknownValueType { ty: 99, .. }),
        ),
        (
            "huge array length",
            patch(
                first_array.to_bytes(),
                array_len_at,
                &u64::MAX.to_le_bytes(),
            ),
            |e| {
                matches!(
                    e,
                    GgufError::TooLarge {
                        what: "array length",
                        ..
                    }
                )
            },
        ),
        (
            "array past the end",
            patch(
                first_array.to_bytes(),
                array_len_at,
                &(1u64 << 22).to_le_bytes(),
            ),
            |e| matches!(e, GgufError::Truncated { .. }),
        ),
        (
            "huge dims",
            with_tensor(raw("c", 0, &[u64::MAX], 0, None)),
            |e| {
                matches!(
                    e,
                    GgufError::TooLarge {
                        what: "tensor dimension",
                        ..
                    }
                )
            },
        ),
        (
            "too many dims",
            with_tensor(raw("c", 0, &[1, 1, 1, 1, 1], 0, None)),
            |e| {
                matches!(
                    e,
                    GgufError::TooLarge {
                        what: "tensor dimension count",
                        ..
                    }
                )
            },
        ),
        (
            "dims product overflows",
            with_tensor(raw("c", 0, &[1 << 32, 1 << 32, 1 << 32], 0, None)),
            |e| matches!(e, GgufError::ShapeOverflow { .. }),
        ),
        (
            "byte size overflows",
            with_tensor(raw("c", 0, &[1 << 62, 2], 0, None)),
            |e| matches!(e, GgufError::ShapeOverflow { .. }),
        ),
        ("zero dim", with_tensor(raw("c", 0, &[0], 0, None)), |e| {
            matches!(e, GgufError::BadShape { .. })
        }),
        (
            "row not a block multiple",
            with_tensor(raw("c", 3, &[33], 0, None)),
            |e| matches!(e, GgufError::BadShape { .. }),
        ),
        (
            "offset past the end",
            with_tensor(raw("c", 0, &[8], 0, Some(1 << 40))),
            |e| matches!(e, GgufError::TensorOutOfBounds { .. }),
        ),
        (
            "offset overflows",
            with_tensor(raw("c", 0, &[8], 0, Some(u64::MAX - 31))),
            |e| matches!(e, GgufError::TensorOutOfBounds { .. }),
        ),
        (
            "misaligned offset",
            with_tensor(raw("c", 0, &[8], 32, Some(129))),
            |e| {
                matches!(
                    e,
                    GgufError::Misaligned {
                        offset: 129,
                        alignment: 32,
                        ..
                    }
                )
            },
        ),
        (
            "unknown tensor type",
            with_tensor(raw("c", 99, &[8], 32, None)),
            |e| matches!(e, GgufError::UnknownTensorType { ty: 99, .. }),
        ),
        (
            "duplicate tensor name",
            with_tensor(raw("a", 0, &[8], 32, None)),
            |e| matches!(e, GgufError::DuplicateTensor(_)),
        ),
        (
            "duplicate key",
            {
                let mut w = base_writer();
                w.add_str("general.architecture", "llama");
                w.to_bytes()
            },
            |e| matches!(e, GgufError::DuplicateKey(_)),
        ),
        (
            "bad alignment",
            {
                let mut w = GgufWriter::new();
                w.add_u32("general.alignment", 24);
                w.to_bytes()
            },
            |e| *e == GgufError::BadAlignment(24),
        ),
        (
            "invalid utf-8 key",
            patch(good.clone(), FIRST_KEY + 8, &[0xff]),
            |e| matches!(e, GgufError::InvalidUtf8 { .. }),
        ),
    ];
    for (name, bytes, check) in &cases {
        match Gguf::parse(bytes) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => assert!(check(&e), "{name}: wrong error {e:?}"),
        }
    }
}

#[test]
fn truncation_at_every_offset_is_an_error_not_a_panic() {
    let full = tiny_model_gguf(3);
    let g = Gguf::parse(&full).unwrap();
    let end_of_header = g.data_offset() as usize;
    // Every offset inside the header, then a stride through the tensor data.
    let cuts = (0..end_of_header).chain((end_of_header..full.len()).step_by(97));
    for cut in cuts {
        match Gguf::parse(&full[..cut]) {
            Ok(_) => panic!("truncated at {cut} accepted"),
            Err(GgufError::Truncated { .. } | GgufError::TensorOutOfBounds { .. }) => {}
            Err(e) => panic!("truncated at {cut}: unexpected {e:?}"),
        }
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let full = tiny_model_gguf(4);
    let mut rng = edge_llm_kernel::rng::SplitMix64::new(9);
    let header = Gguf::parse(&full).unwrap().data_offset() as usize;
    for _ in 0..2000 {
        let mut b = full[..header + 64].to_vec();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(header as u64) as usize;
            b[i] = rng.next_u64() as u8;
        }
        let _ = Gguf::parse(&b);
    }
}

#[test]
fn typed_accessors_check_types_and_ranges() {
    let mut w = GgufWriter::new();
    w.add("i", MetadataValue::I64(-1))
        .add("big", MetadataValue::U64(1 << 40))
        .add("f", MetadataValue::F64(0.5))
        .add_str("s", "x");
    let b = w.to_bytes();
    let g = Gguf::parse(&b).unwrap();
    assert!(matches!(g.get_u32("i"), Err(GgufError::OutOfRange { .. })));
    assert!(matches!(
        g.get_u32("big"),
        Err(GgufError::OutOfRange { .. })
    ));
    assert_eq!(g.get_u64("big").unwrap(), 1 << 40);
    assert_eq!(g.get_f32("f").unwrap(), 0.5);
    assert!(matches!(
        g.get_f32("s"),
        Err(GgufError::WrongType {
            expected: "f32",
            found: "string",
            ..
        })
    ));
    assert!(matches!(g.get_str("nope"), Err(GgufError::MissingKey(_))));
    assert_eq!(g.keys().collect::<Vec<_>>(), ["i", "big", "f", "s"]);
}

#[test]
fn model_load_names_missing_and_mis_typed_things() {
    let full = tiny_model_gguf(5);
    let g = Gguf::parse(&full).unwrap();
    // Rebuild the tiny model without one tensor / with a wrong metadata type.
    let rebuild = |skip: &str, key_override: Option<(&str, MetadataValue)>| -> Vec<u8> {
        let mut w = GgufWriter::new();
        for k in g.keys() {
            let v = match &key_override {
                Some((ok, v)) if *ok == k => v.clone(),
                _ => g.get(k).unwrap().clone(),
            };
            w.add(k, v);
        }
        for t in g.tensors().iter().filter(|t| t.name != skip) {
            w.add_tensor(&t.name, t.ty, &t.dims, g.tensor_data(&full, t).to_vec());
        }
        w.to_bytes()
    };
    let err = Model::load(Arc::new(rebuild("blk.1.attn_v.weight", None))).unwrap_err();
    assert!(
        matches!(err, ModelError::MissingTensor(ref n) if n == "blk.1.attn_v.weight"),
        "{err}"
    );
    let err = Model::load(Arc::new(rebuild(
        "",
        Some(("llama.block_count", MetadataValue::String("two".into()))),
    )))
    .unwrap_err();
    assert!(
        matches!(err, ModelError::Gguf(GgufError::WrongType { .. })),
        "{err}"
    );
    let err = Model::load(Arc::new(rebuild(
        "",
        Some((
            "general.architecture",
            MetadataValue::String("mamba".into()),
        )),
    )))
    .unwrap_err();
    assert!(matches!(err, ModelError::UnsupportedArch(_)), "{err}");
    let err = Model::load(Arc::new(rebuild(
        "",
        Some(("llama.feed_forward_length", MetadataValue::U32(96))),
    )))
    .unwrap_err();
    assert!(matches!(err, ModelError::TensorShape { .. }), "{err}");
}

/// Found by fuzzing: a block count far beyond the tensors present must not size anything.
#[test]
fn a_block_count_the_file_cannot_back_is_refused() {
    // The tiny model has 2 layers of 9 tensors plus 2 others: 3 layers cannot fit in 20.
    for count in [u32::MAX, 1 << 20, 3] {
        let mut w = edge_llm_kernel::tiny::tiny_model_writer(0);
        w.set("llama.block_count", MetadataValue::U32(count));
        match Model::load(Arc::new(w.to_bytes())) {
            Err(ModelError::BadConfig(m)) => assert!(m.contains("block_count"), "{m}"),
            other => panic!("{count} layers: {:?}", other.map(|_| ())),
        }
    }
}
