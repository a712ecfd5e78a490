//! Every architecture against llama.cpp, on tiny random-weight models (`just arch-models`;
//! references by `just arch-refs`, see tests/refs/README.md): teacher-forced on a fixed token
//! sequence, perplexity within 1 % of llama.cpp's and top-1 agreement of at least 97 % at the
//! positions where llama.cpp's top-1 leads its top-2 by more than 0.25. Also per architecture:
//! a batch gives the logits of token-by-token decoding, two threads those of one, a prompt
//! longer than a prefill chunk those of one pass, and the logits are the recorded ones bit for
//! bit (native and wasm32 alike).
#![allow(clippy::unwrap_used, clippy::cast_lossless)]

mod common;

use std::sync::Arc;

use common::argmax;
use edge_llm_kernel::model::PREFILL_CHUNK;
use edge_llm_kernel::{Model, Session, SessionOptions};
use edge_llm_refs::arch::{reference, Reference, MODELS};

/// Positions whose reference top-1/top-2 gap exceeds this must agree on the top-1.
const CLEAR_GAP: f32 = 0.25;

/// Bound of `|logit - reference|` over the reference's top logits at every position (the
/// implementations differ by up to ~0.15: llama.cpp rounds activations to f16/bf16 for such
/// weights; a wrong activation function moved Gemma 3's by 0.4 without changing its top-1).
const MAX_LOGIT_DIFF: f32 = 0.3;

fn load(r: &Reference) -> Arc<Model> {
    Arc::new(Model::load(Arc::new(r.model.clone())).expect("the tiny model loads"))
}

fn session(model: &Arc<Model>, n_ctx: usize, threads: usize) -> Session {
    Session::new(model.clone(), SessionOptions { n_ctx, threads }).expect("session")
}

/// Perplexity of `tokens[1..]` under `logits` (one row per token), softmax in `f64`.
fn perplexity(logits: &[f32], tokens: &[u32], n_vocab: usize) -> f64 {
    let mut nll = 0f64;
    for (i, &next) in tokens[1..].iter().enumerate() {
        let row = &logits[i * n_vocab..(i + 1) * n_vocab];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        nll += max + sum.ln() - row[next as usize] as f64;
    }
    (nll / (tokens.len() - 1) as f64).exp()
}

/// One architecture against its reference; a description of every failure.
fn compare(name: &str) -> Vec<String> {
    let r = reference(name);
    let model = load(&r);
    let n_vocab = model.config().n_vocab;
    let mut s = session(&model, r.n_ctx, 1);
    let logits = s
        .forward_all(&r.tokens, &|| false)
        .expect("forward")
        .to_vec();
    let ppl = perplexity(&logits, &r.tokens, n_vocab);
    let (mut clear, mut agree, mut max_diff) = (0usize, 0usize, 0f32);
    for (i, top) in r.top.iter().enumerate() {
        let row = &logits[i * n_vocab..(i + 1) * n_vocab];
        for &(id, v) in top {
            max_diff = max_diff.max((row[id as usize] - v).abs());
        }
        if top[0].1 - top[1].1 > CLEAR_GAP {
            clear += 1;
            agree += usize::from(argmax(row) as u32 == top[0].0);
        }
    }
    let rel = (ppl / r.perplexity - 1.0).abs();
    let rate = agree as f64 / clear as f64;
    println!(
        "{name}: perplexity {ppl:.4} vs llama.cpp {:.4} ({:+.3} %), top-1 agreement {agree}/{clear}, \
         max |logit - ref| over the top {} {max_diff:.4}",
        r.perplexity,
        (ppl / r.perplexity - 1.0) * 100.0,
        r.top[0].len()
    );
    let mut failures = Vec::new();
    if rel > 0.01 {
        failures.push(format!(
            "{name}: perplexity {ppl:.4} is {:.2} % from llama.cpp's {:.4}",
            rel * 100.0,
            r.perplexity
        ));
    }
    if max_diff > MAX_LOGIT_DIFF {
        failures.push(format!(
            "{name}: logits differ from llama.cpp's by up to {max_diff:.4}"
        ));
    }
    if clear < r.tokens.len() / 2 || rate < 0.97 {
        failures.push(format!(
            "{name}: top-1 agreement {agree}/{clear} at clear positions (needs >= 97 %)"
        ));
    }
    failures
}

#[test]
fn every_architecture_matches_llama_cpp() {
    let failures: Vec<String> = MODELS.iter().flat_map(|name| compare(name)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn batch_threads_and_chunks_give_the_same_logits() {
    for name in MODELS {
        let r = reference(name);
        let model = load(&r);
        let n_vocab = model.config().n_vocab;
        let toks = &r.tokens[..24];
        let batch = session(&model, 64, 1)
            .forward_all(toks, &|| false)
            .unwrap()
            .to_vec();
        let mut one = session(&model, 64, 1);
        for (i, &t) in toks.iter().enumerate() {
            let row = one.forward(&[t], &|| false).unwrap();
            assert!(
                row == &batch[i * n_vocab..(i + 1) * n_vocab],
                "{name}: token {i} decoded alone differs from the batch"
            );
        }
        let mut two = session(&model, 64, 2);
        let threaded = two.forward_all(toks, &|| false).unwrap().to_vec();
        assert!(threaded == batch, "{name}: two threads differ from one");

        // A prompt longer than a prefill chunk runs in chunks; its last logits are those of
        // one pass over every token.
        let long: Vec<u32> = (0..PREFILL_CHUNK + 40)
            .map(|i| r.tokens[i % r.tokens.len()])
            .collect();
        let n = long.len();
        let chunked = session(&model, n, 1)
            .forward(&long, &|| false)
            .unwrap()
            .to_vec();
        let mut whole = session(&model, n, 1);
        let all = whole.forward_all(&long, &|| false).unwrap();
        assert!(
            chunked == all[(n - 1) * n_vocab..],
            "{name}: the chunked prompt's logits differ from one pass"
        );
    }
}

/// FNV-1a over the bits of the logits.
fn digest(v: &[f32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for x in v {
        for b in x.to_bits().to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// Per architecture, the digest of its logits on the reference sequence, recorded on x86-64
/// AVX2: the wasm32 simd128 build must give the same bits.
const DIGESTS: [(&str, u64); 6] = [
    ("llama3", 0xba97_ba75_d988_6a1e),
    ("qwen2", 0xdd8c_75a1_c3bb_0d24),
    ("qwen3", 0x62e5_681f_1e9b_b6c8),
    ("gemma3", 0xaddf_ac88_f2ae_8561),
    ("phi3", 0xa56e_5ed5_7578_ef37),
    ("gpt2", 0x4071_8908_449e_0539),
];

#[test]
fn logits_are_bit_identical_across_targets() {
    let mut wrong = Vec::new();
    for (name, want) in DIGESTS {
        let r = reference(name);
        let model = load(&r);
        let h = digest(
            session(&model, r.n_ctx, 1)
                .forward_all(&r.tokens, &|| false)
                .unwrap(),
        );
        println!("{name}: logits digest {h:#018x}");
        if h != want {
            wrong.push(format!("{name}: digest {h:#018x}, recorded {want:#018x}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_unsupported_architecture_is_one_line() {
    let r = reference("qwen2");
    let g = edge_llm_kernel::Gguf::parse(&r.model).unwrap();
    let needle = b"qwen2";
    let key = g.get_str("general.architecture").unwrap();
    assert_eq!(key, "qwen2");
    // Rename the architecture in place (same length), so every key is of an unknown family.
    let mut bytes = r.model.clone();
    let at = bytes
        .windows(needle.len() + 8)
        .position(|w| &w[8..] == needle && w[..8] == (needle.len() as u64).to_le_bytes())
        .unwrap();
    bytes[at + 8..at + 8 + needle.len()].copy_from_slice(b"qwen9");
    let err = Model::load(Arc::new(bytes)).unwrap_err().to_string();
    assert!(
        err.starts_with("unsupported architecture `qwen9`") && !err.contains('\n'),
        "{err}"
    );
}
