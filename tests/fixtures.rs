//! Hostile model files, written from the tiny test model: every way a GGUF can be broken that
//! the reader, the model loader or the chat template must refuse.

use std::path::{Path, PathBuf};

use edge_llm_kernel::gguf::writer::RawTensor;
use edge_llm_kernel::gguf::{GgmlType, MetadataValue};
use edge_llm_kernel::tiny::{tiny_model_gguf, tiny_model_writer};

/// A broken model file and a word its error must contain (lower case).
pub struct Hostile {
    /// What is wrong.
    pub name: &'static str,
    /// The file (named `<name>.gguf`).
    pub path: PathBuf,
    /// Words one of which the one-line error must contain (lower case).
    pub needles: &'static [&'static str],
    /// Whether the breakage only shows when the chat template is rendered.
    pub template: bool,
}

/// Writes the tiny model, intact, to `dir/tiny.gguf`.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, tiny_model_gguf(0)).expect("writing the tiny model");
    path
}

/// What a malformed file's error says: it names the format or the part that is out of bounds.
const GGUF: &[&str] = &["gguf", "outside the file", "truncated", "overflows"];

/// Writes every hostile file into `dir`.
pub fn hostile_models(dir: &Path) -> Vec<Hostile> {
    let tiny = tiny_model_gguf(0);
    let with = |edit: &dyn Fn(&mut edge_llm_kernel::gguf::writer::GgufWriter)| {
        let mut w = tiny_model_writer(0);
        edit(&mut w);
        w.to_bytes()
    };
    let template = |t: &str| {
        with(&|w| {
            w.set("tokenizer.chat_template", MetadataValue::String(t.into()));
        })
    };
    // A header claiming one metadata key of 2^60 bytes.
    let mut huge_string = b"GGUF".to_vec();
    huge_string.extend(3u32.to_le_bytes());
    huge_string.extend(0u64.to_le_bytes());
    huge_string.extend(1u64.to_le_bytes());
    huge_string.extend((1u64 << 60).to_le_bytes());
    let cases: Vec<(&'static str, Vec<u8>, &'static [&'static str], bool)> = vec![
        ("zero-length", Vec::new(), GGUF, false),
        (
            "garbage",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
            GGUF,
            false,
        ),
        ("truncated", tiny[..tiny.len() / 2].to_vec(), GGUF, false),
        ("truncated-header", tiny[..40].to_vec(), GGUF, false),
        ("huge-string-length", huge_string, GGUF, false),
        (
            "huge-dimensions",
            with(&|w| {
                w.add_raw_tensor(RawTensor {
                    name: "huge.weight".into(),
                    ty_code: GgmlType::F32.code(),
                    dims: vec![1 << 40, 1 << 40],
                    data: Vec::new(),
                    offset: Some(0),
                });
            }),
            GGUF,
            false,
        ),
        (
            "offset-past-end",
            with(&|w| {
                w.add_raw_tensor(RawTensor {
                    name: "far.weight".into(),
                    ty_code: GgmlType::F32.code(),
                    dims: vec![32],
                    data: Vec::new(),
                    offset: Some(1 << 40),
                });
            }),
            GGUF,
            false,
        ),
        (
            "unknown-architecture",
            with(&|w| {
                w.set(
                    "general.architecture",
                    MetadataValue::String("mamba".into()),
                );
            }),
            &["mamba"],
            false,
        ),
        (
            "template-endless-loop",
            template("{% for i in range(1000000000) %}{% endfor %}"),
            &["chat", "template"],
            true,
        ),
        (
            "template-huge-output",
            template("{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}"),
            &["chat", "template"],
            true,
        ),
        (
            "template-recursion",
            template("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
            &["chat", "template"],
            true,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, bytes, needles, template)| {
            let path = dir.join(format!("{name}.gguf"));
            std::fs::write(&path, bytes).expect("writing a hostile model");
            Hostile {
                name,
                path,
                needles,
                template,
            }
        })
        .collect()
}
