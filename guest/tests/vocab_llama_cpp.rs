//! Our tokenizers against llama.cpp's own tokenizer test set: every vocabulary-only GGUF
//! (`ggml-vocab-*.gguf`) with `.inp`/`.out` pairs under `build/vocab/` (`just vocab-tests`
//! fetches them from the llama-cpp-python sdist). As llama.cpp's `test-tokenizer-0` does, each
//! input is tokenized without BOS/EOS and without parsing control tokens, and must give the ids
//! of its line in `.out`, and decode back to the input. A vocabulary without pairs (aquila, baichuan, gpt-neox) must still
//! build; one the kernel cannot read is listed in `UNREADABLE`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use edge_llm_guest::tokenizer::{Tokenizer, TokenizerError};
use edge_llm_kernel::gguf::Gguf;

/// Vocabularies we deliberately do not tokenize, with the reason. Their tokenizer must refuse
/// to build (with [`TokenizerError::Unsupported`]) rather than tokenize differently.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "ggml-vocab-bert-bge.gguf",
        "BERT WordPiece (tokenizer.ggml.model = bert): embedding models only, no generation",
    ),
    (
        "ggml-vocab-nomic-bert-moe.gguf",
        "T5 Unigram (tokenizer.ggml.model = t5, with a precompiled normalizer): embedding model",
    ),
];

/// Vocabularies the kernel's GGUF reader refuses, with the reason (none has test pairs).
const UNREADABLE: &[(&str, &str)] = &[(
    "ggml-vocab-aquila.gguf",
    "GGUF version 2; the kernel reads version 3 only",
)];

/// The marker line between inputs in an `.inp` file.
const SEPARATOR: &str = "\n__ggml_vocab_test__\n";

fn vocab_dir() -> PathBuf {
    let dir = edge_llm_refs::workspace_root().join("build/vocab");
    let complete = dir.join(".complete").exists();
    assert!(
        complete && list(&dir).next().is_some(),
        "llama.cpp's tokenizer test vocabularies are missing from {}: run `just vocab-tests`",
        dir.display()
    );
    dir
}

/// Every vocabulary, sorted.
fn list(dir: &Path) -> impl Iterator<Item = PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.starts_with("ggml-vocab-") && name.ends_with(".gguf")
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.into_iter()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The (input, expected ids) pairs of a vocabulary, read the way `test-tokenizer-0` reads them.
fn pairs(gguf_path: &Path) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(with_suffix(gguf_path, ".inp")).expect("reads .inp");
    let out = std::fs::read_to_string(with_suffix(gguf_path, ".out")).expect("reads .out");
    let mut inputs: Vec<&str> = inp.split(SEPARATOR).collect();
    // A separator at the very end leaves no input after it.
    if inp.ends_with(SEPARATOR) {
        inputs.pop();
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(|id| id.parse().expect("token id"))
                .collect()
        })
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{}: inputs and outputs differ in number",
        gguf_path.display()
    );
    inputs.into_iter().map(str::to_owned).zip(outputs).collect()
}

fn name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("?")
}

#[test]
fn llama_cpp_vocab_tests() {
    let dir = vocab_dir();
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in list(&dir) {
        let name = name(&path).to_owned();
        let bytes = std::fs::read(&path).expect("reads the vocabulary");
        let parsed = Gguf::parse(&bytes);
        if let Some((_, why)) = UNREADABLE.iter().find(|(n, _)| *n == name) {
            match parsed {
                Err(e) => eprintln!("{name}: not read, as expected ({why}): {e}"),
                Ok(_) => failures.push(format!(
                    "{name}: listed as unreadable ({why}) but parses: check it"
                )),
            }
            continue;
        }
        let gguf = parsed.unwrap_or_else(|e| panic!("{name}: GGUF parse: {e}"));
        let t0 = Instant::now();
        let built = Tokenizer::from_gguf(&gguf);
        let build_ms = t0.elapsed().as_secs_f64() * 1e3;
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| *n == name) {
            match built {
                Err(TokenizerError::Unsupported(m)) => {
                    eprintln!("{name}: unsupported as expected ({why}): {m}")
                }
                other => failures.push(format!(
                    "{name}: listed as unsupported ({why}) but building gave {:?}",
                    other.map(|_| "a tokenizer")
                )),
            }
            continue;
        }
        let tok = match built {
            Ok(tok) => tok,
            Err(e) => {
                failures.push(format!("{name}: does not build: {e}"));
                continue;
            }
        };
        if !with_suffix(&path, ".inp").exists() {
            eprintln!("{name}: built in {build_ms:.0} ms, no test pairs");
            continue;
        }
        let pairs = pairs(&path);
        let mut failed = 0;
        for (text, want) in &pairs {
            let got = tok.tokenize(text, false, false).expect("tokenizes");
            // Decoding gives the text back (SentencePiece-style: after the space prefix).
            let decoded = tok.decode(&got, false).expect("decodes");
            if decoded != *text && decoded.strip_prefix(' ') != Some(text.as_str()) {
                failures.push(format!("{name}: {text:?} decodes to {decoded:?}"));
            }
            if &got != want {
                failed += 1;
                failures.push(format!(
                    "{name}: {text:?}\n    got  {got:?}\n    want {want:?}"
                ));
            }
        }
        eprintln!(
            "{name}: built in {build_ms:.0} ms, {}/{} pairs match",
            pairs.len() - failed,
            pairs.len()
        );
        checked += 1;
    }
    assert!(
        checked > 0,
        "no vocabulary with test pairs in {}",
        dir.display()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn end_of_turn_tokens_of_the_families() {
    let dir = vocab_dir();
    for (vocab, eot) in [
        (
            "ggml-vocab-llama-bpe.gguf",
            &["<|eot_id|>", "<|end_of_text|>"][..],
        ),
        ("ggml-vocab-qwen2.gguf", &["<|im_end|>", "<|endoftext|>"]),
        ("ggml-vocab-phi-3.gguf", &["<|end|>", "<|endoftext|>"]),
        ("ggml-vocab-gemma-4.gguf", &["<turn|>", "<eos>"]),
        ("ggml-vocab-llama-spm.gguf", &["</s>"]),
    ] {
        let bytes = std::fs::read(dir.join(vocab)).expect("reads the vocabulary");
        let tok = Tokenizer::from_gguf(&Gguf::parse(&bytes).expect("parses")).expect("builds");
        for text in eot {
            let id = tok
                .token_id(text)
                .unwrap_or_else(|| panic!("{vocab}: {text}"));
            assert!(tok.is_eot(id), "{vocab}: {text} ({id}) should end a turn");
        }
        assert!(!tok.is_eot(tok.bos_id().expect("BOS")) || tok.bos_id() == tok.eos_id());
    }
}

#[test]
fn llama3_chat_prompt_with_control_tokens() {
    let bytes = std::fs::read(vocab_dir().join("ggml-vocab-llama-bpe.gguf")).expect("reads");
    let tok = Tokenizer::from_gguf(&Gguf::parse(&bytes).expect("parses")).expect("builds");
    let text = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    // Llama 3 adds BOS; the template's own BOS is not doubled on the chat path.
    let want = [128000, 128006, 882, 128007, 271, 13347, 128009];
    assert_eq!(
        tok.encode_with_plain_spans(text, &[]).expect("encodes"),
        want
    );
    // Without control tokens parsed, their texts are ordinary text.
    let plain = tok.tokenize(text, false, false).expect("encodes");
    assert!(plain.len() > want.len() && !plain.iter().any(|&id| id >= 128000));
    assert_eq!(tok.decode(&plain, false).expect("decodes"), text);
}
