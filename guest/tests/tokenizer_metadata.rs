//! Building the tokenizer from hand-made GGUF metadata: supported and refused configurations.

mod common;

use edge_llm_guest::tokenizer::{Tokenizer, TokenizerError, VocabSpec};
use edge_llm_kernel::gguf::writer::GgufWriter;
use edge_llm_kernel::gguf::{Gguf, MetadataArray, MetadataValue};
use edge_llm_kernel::tiny;

/// Tokenizer metadata like the tiny model's, with `edit` applied to the key/value list.
fn gguf_with(edit: impl FnOnce(&mut Vec<(&'static str, MetadataValue)>)) -> Gguf {
    let tokens = tiny::vocab();
    let mut types = vec![1i32; tokens.len()];
    types[..3].fill(3);
    let merges: Vec<String> = tiny::MERGES.iter().map(|s| s.to_string()).collect();
    let mut kv: Vec<(&'static str, MetadataValue)> = vec![
        ("tokenizer.ggml.model", MetadataValue::String("gpt2".into())),
        ("tokenizer.ggml.pre", MetadataValue::String("smollm".into())),
        (
            "tokenizer.ggml.tokens",
            MetadataValue::Array(MetadataArray::String(tokens)),
        ),
        (
            "tokenizer.ggml.token_type",
            MetadataValue::Array(MetadataArray::I32(types)),
        ),
        (
            "tokenizer.ggml.merges",
            MetadataValue::Array(MetadataArray::String(merges)),
        ),
        ("tokenizer.ggml.bos_token_id", MetadataValue::U32(1)),
        ("tokenizer.ggml.eos_token_id", MetadataValue::U32(2)),
        ("tokenizer.ggml.add_bos_token", MetadataValue::Bool(false)),
    ];
    edit(&mut kv);
    let mut w = GgufWriter::new();
    for (k, v) in kv {
        w.add(k, v);
    }
    Gguf::parse(&w.to_bytes()).expect("parses")
}

fn set(kv: &mut [(&'static str, MetadataValue)], key: &str, value: MetadataValue) {
    kv.iter_mut()
        .find(|(k, _)| *k == key)
        .expect("key present")
        .1 = value;
}

#[test]
fn tiny_vocab_encodes_and_decodes() {
    let tok = Tokenizer::from_gguf(&gguf_with(|_| {})).expect("builds");
    assert_eq!(tok.vocab_size(), tiny::vocab().len());
    for text in [
        "Hello the world",
        "and is it",
        "🦀 naïve 123",
        "  two\n\nlines\t",
        "",
    ] {
        let ids = tok.encode(text, true).expect("encodes");
        assert_eq!(tok.decode(&ids, false).expect("decodes"), text);
    }
    // Merges apply: "Hello" and " the" are single tokens.
    let ids = tok.encode("Hello the", false).expect("encodes");
    assert_eq!(
        ids,
        vec![
            tok.token_id("Hello").expect("Hello"),
            tok.token_id("Ġthe").expect("Ġthe")
        ]
    );
    // Digits are split one by one ("smollm").
    assert_eq!(tok.encode("123", false).expect("encodes").len(), 3);
}

#[test]
fn control_tokens_parse_only_when_asked() {
    let tok = Tokenizer::from_gguf(&gguf_with(|_| {})).expect("builds");
    assert_eq!(
        tok.encode("<|im_start|>x<|im_end|>", true)
            .expect("encodes"),
        vec![1, 3 + u32::from(b'x'), 2]
    );
    let plain = tok.encode("<|im_start|>", false).expect("encodes");
    assert!(
        plain.len() > 1 && plain.iter().all(|&id| !tok.is_control(id)),
        "{plain:?}"
    );
    assert_eq!(tok.token_bytes(2), b"<|im_end|>");
    assert_eq!(tok.token_bytes(3 + 0xF0), &[0xF0]);
    assert_eq!(tok.token_bytes(100_000), b"");
}

#[test]
fn gpt2_pre_tokenizer_keeps_digit_runs() {
    let tok = Tokenizer::from_gguf(&gguf_with(|kv| {
        set(
            kv,
            "tokenizer.ggml.pre",
            MetadataValue::String("gpt2".into()),
        );
    }))
    .expect("builds");
    let ids = tok.encode("a 123", false).expect("encodes");
    assert_eq!(tok.decode(&ids, false).expect("decodes"), "a 123");
}

#[test]
fn add_bos_prepends_bos() {
    let tok = Tokenizer::from_gguf(&gguf_with(|kv| {
        set(
            kv,
            "tokenizer.ggml.add_bos_token",
            MetadataValue::Bool(true),
        );
    }))
    .expect("builds");
    assert!(tok.adds_bos());
    assert_eq!(
        tok.encode("x", false).expect("encodes"),
        vec![1, 3 + u32::from(b'x')]
    );
}

#[test]
fn a_template_bos_is_not_doubled() {
    let tok = Tokenizer::from_gguf(&gguf_with(|kv| {
        set(
            kv,
            "tokenizer.ggml.add_bos_token",
            MetadataValue::Bool(true),
        );
    }))
    .expect("builds");
    let text = format!("{}x", tok.token_text(1));
    let x = 3 + u32::from(b'x');
    // The chat path keeps one BOS; raw tokenizing does as llama.cpp's llama_tokenize.
    assert_eq!(
        tok.encode_with_plain_spans(&text, &[]).expect("encodes"),
        vec![1, x]
    );
    assert_eq!(tok.encode(&text, true).expect("encodes"), vec![1, 1, x]);
}

#[test]
fn unsupported_pre_tokenizer_is_named() {
    let err = Tokenizer::from_gguf(&gguf_with(|kv| {
        set(
            kv,
            "tokenizer.ggml.pre",
            MetadataValue::String("kimi-k2".into()),
        );
    }))
    .expect_err("unsupported");
    match err {
        TokenizerError::Unsupported(m) => assert_eq!(m, "tokenizer.ggml.pre = kimi-k2"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unsupported_model_is_named() {
    let err = Tokenizer::from_gguf(&gguf_with(|kv| {
        set(
            kv,
            "tokenizer.ggml.model",
            MetadataValue::String("bert".into()),
        );
    }))
    .expect_err("unsupported");
    assert!(
        matches!(&err, TokenizerError::Unsupported(m) if m.contains("bert")),
        "{err:?}"
    );
}

#[test]
fn missing_or_mistyped_keys_are_named() {
    let err = Tokenizer::from_gguf(&gguf_with(|kv| {
        kv.retain(|(k, _)| *k != "tokenizer.ggml.tokens")
    }))
    .expect_err("missing tokens");
    assert!(
        matches!(
            err,
            TokenizerError::Metadata {
                key: "tokenizer.ggml.tokens",
                ..
            }
        ),
        "{err:?}"
    );
    let err = Tokenizer::from_gguf(&gguf_with(|kv| {
        set(
            kv,
            "tokenizer.ggml.eos_token_id",
            MetadataValue::String("2".into()),
        );
    }))
    .expect_err("mistyped eos");
    assert!(
        err.to_string().contains("tokenizer.ggml.eos_token_id"),
        "{err}"
    );
}

#[test]
fn inconsistent_vocab_is_refused() {
    let err = Tokenizer::from_gguf(&gguf_with(|kv| {
        set(
            kv,
            "tokenizer.ggml.token_type",
            MetadataValue::Array(MetadataArray::I32(vec![1; 3])),
        );
    }))
    .expect_err("short token types");
    assert!(matches!(err, TokenizerError::InvalidVocab(_)), "{err:?}");
    let err = Tokenizer::from_gguf(&gguf_with(|kv| {
        set(
            kv,
            "tokenizer.ggml.eos_token_id",
            MetadataValue::U32(1_000_000),
        );
    }))
    .expect_err("eos out of range");
    assert!(matches!(err, TokenizerError::InvalidVocab(_)), "{err:?}");
    let err = Tokenizer::from_gguf(&gguf_with(|kv| {
        set(
            kv,
            "tokenizer.ggml.merges",
            MetadataValue::Array(MetadataArray::String(vec!["Ġ zz".into()])),
        );
    }))
    .expect_err("merge outside the vocab");
    assert!(matches!(err, TokenizerError::InvalidVocab(_)), "{err:?}");
}

#[test]
fn spec_round_trip() {
    let spec = VocabSpec::from_gguf(&gguf_with(|_| {})).expect("spec");
    assert_eq!(spec.eos_id, Some(2));
    assert!(!spec.add_bos);
    let tok = Tokenizer::from_spec(spec).expect("builds");
    assert_eq!(tok.eot_ids(), &[0, 2]);
    assert!(format!("{tok:?}").contains("vocab_size"));
}

#[test]
fn missing_pre_tokenizer_means_default_and_named_ones_build() {
    let tok = Tokenizer::from_gguf(&gguf_with(|kv| {
        kv.retain(|(k, _)| *k != "tokenizer.ggml.pre")
    }))
    .expect("builds with llama.cpp's default pre-tokenizer");
    let ids = tok
        .encode("Hello the world, 12345!", false)
        .expect("encodes");
    assert_eq!(
        tok.decode(&ids, false).expect("decodes"),
        "Hello the world, 12345!"
    );
    for pre in [
        "llama-bpe",
        "qwen2",
        "qwen35",
        "deepseek-llm",
        "deepseek-coder",
        "falcon",
        "starcoder",
        "refact",
        "command-r",
        "mpt",
        "default",
        "gpt-4o",
        "bloom",
        "viking",
        "chatglm-bpe",
        "dbrx",
        "deepseek-v3",
        "tekken",
        "seed-coder",
        "grok-2",
    ] {
        let tok = Tokenizer::from_gguf(&gguf_with(|kv| {
            set(kv, "tokenizer.ggml.pre", MetadataValue::String(pre.into()));
        }))
        .unwrap_or_else(|e| panic!("{pre}: {e}"));
        let text = "Hello, y'all! 1234 🦀\n\n  x";
        let ids = tok.encode(text, false).expect("encodes");
        assert_eq!(tok.decode(&ids, false).expect("decodes"), text, "{pre}");
    }
}

/// A SentencePiece-style vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then pieces
/// with scores, plus `extra` key/values.
fn spm_gguf(extra: Vec<(&'static str, MetadataValue)>) -> Gguf {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (i, piece) in [
        "▁", "h", "e", "l", "o", "he", "ll", "hell", "▁hell", "▁hello", "<u>",
    ]
    .iter()
    .enumerate()
    {
        tokens.push(piece.to_string());
        types.push(if *piece == "<u>" { 4 } else { 1 });
        scores.push(-(i as f32));
    }
    let mut w = GgufWriter::new();
    w.add(
        "tokenizer.ggml.model",
        MetadataValue::String("llama".into()),
    );
    w.add(
        "tokenizer.ggml.tokens",
        MetadataValue::Array(MetadataArray::String(tokens)),
    );
    w.add(
        "tokenizer.ggml.token_type",
        MetadataValue::Array(MetadataArray::I32(types)),
    );
    w.add(
        "tokenizer.ggml.scores",
        MetadataValue::Array(MetadataArray::F32(scores)),
    );
    w.add("tokenizer.ggml.bos_token_id", MetadataValue::U32(1));
    w.add("tokenizer.ggml.eos_token_id", MetadataValue::U32(2));
    w.add("tokenizer.ggml.unknown_token_id", MetadataValue::U32(0));
    for (k, v) in extra {
        w.set(k, v);
    }
    Gguf::parse(&w.to_bytes()).expect("parses")
}

#[test]
fn sentencepiece_vocab_merges_by_score_with_byte_fallback() {
    let tok = Tokenizer::from_gguf(&spm_gguf(vec![])).expect("builds");
    // llama.cpp's defaults for `llama` vocabularies: BOS, no EOS, a space prefix.
    assert!(tok.adds_bos() && !tok.adds_eos());
    let id = |s: &str| tok.token_id(s).expect("token");
    assert_eq!(
        tok.encode("hello", false).expect("encodes"),
        vec![1, id("▁hello")]
    );
    // Without special tokens; "x" is no piece: its byte token.
    assert_eq!(
        tok.tokenize("hello x", false, false).expect("encodes"),
        vec![id("▁hello"), id("▁"), 3 + u32::from(b'x')]
    );
    // A user-defined token is always split out, and the text after it gets the prefix again.
    assert_eq!(
        tok.tokenize("he<u>hell", false, false).expect("encodes"),
        vec![id("▁"), id("he"), id("<u>"), id("▁hell")]
    );
    let ids = tok.tokenize("hello x é", false, false).expect("encodes");
    assert_eq!(tok.decode(&ids, false).expect("decodes"), " hello x é");
    // Control tokens only when asked.
    assert_eq!(tok.tokenize("</s>", false, true).expect("encodes"), vec![2]);
}

#[test]
fn an_unknown_id_outside_the_vocab_is_refused() {
    let err = Tokenizer::from_gguf(&spm_gguf(vec![(
        "tokenizer.ggml.unknown_token_id",
        MetadataValue::U32(1_000_000),
    )]))
    .expect_err("unknown id out of range");
    assert!(matches!(err, TokenizerError::InvalidVocab(_)), "{err:?}");
}

#[test]
fn sentencepiece_metadata_rules() {
    let tok = Tokenizer::from_gguf(&spm_gguf(vec![
        (
            "tokenizer.ggml.add_space_prefix",
            MetadataValue::Bool(false),
        ),
        ("tokenizer.ggml.add_bos_token", MetadataValue::Bool(false)),
        ("tokenizer.ggml.add_eos_token", MetadataValue::Bool(true)),
    ]))
    .expect("builds");
    let id = |s: &str| tok.token_id(s).expect("token");
    assert_eq!(
        tok.encode("hell", false).expect("encodes"),
        vec![id("hell"), 2]
    );
}
