//! The tokenizer against llama.cpp's reference token ids on the default model.

mod common;

use std::time::Instant;

use common::{ids, load_ref, model_gguf};
use edge_llm_guest::tokenizer::Tokenizer;

fn tokenizer() -> Tokenizer {
    let gguf = model_gguf();
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer builds");
    eprintln!(
        "Tokenizer::from_gguf (49,152 tokens, 48,900 merges): {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    tok
}

#[test]
fn reference_tokens_and_prompts() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.eot_ids(), &[0, 2]);
    assert!(!tok.adds_bos());
    assert!(tok.is_control(0) && tok.is_control(16) && !tok.is_control(17));

    let mut failures = Vec::new();
    let tokens = load_ref("tokens.json");
    let items = tokens["items"].as_array().expect("items");
    assert_eq!(items.len(), 16);
    for item in items {
        let text = item["text"].as_str().expect("text");
        let want = ids(&item["ids"]);
        let got = tok.encode(text, true).expect("encodes");
        if got != want {
            failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
        let back = tok.decode(&got, false).expect("decodes");
        assert_eq!(back, text, "decode(encode(x)) == x");
    }

    let greedy = load_ref("greedy.json");
    let items = greedy["items"].as_array().expect("items");
    assert_eq!(items.len(), 5);
    for item in items {
        let prompt = item["prompt"].as_str().expect("prompt");
        let want = ids(&item["prompt_ids"]);
        let got = tok.encode(prompt, true).expect("encodes");
        if got != want {
            failures.push(format!("prompt {prompt:?}: got {got:?}, want {want:?}"));
        }
        let gen = ids(&item["generated_ids"]);
        let text = tok.decode(&gen, true).expect("decodes");
        let want_text = item["text"].as_str().expect("text");
        if text != want_text {
            failures.push(format!("decode {gen:?}: got {text:?}, want {want_text:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn control_tokens_only_when_asked() {
    let tok = tokenizer();
    assert_eq!(tok.encode("<|im_end|>", true).expect("encodes"), vec![2]);
    let plain = tok.encode("<|im_end|>", false).expect("encodes");
    assert!(plain.len() > 1, "{plain:?}");
    assert!(plain.iter().all(|&id| !tok.is_control(id)));
    assert_eq!(tok.decode(&plain, false).expect("decodes"), "<|im_end|>");
    assert_eq!(tok.decode(&[1, 9690, 2], true).expect("decodes"), "system");
    assert_eq!(
        tok.decode(&[1, 9690, 2], false).expect("decodes"),
        "<|im_start|>system<|im_end|>"
    );
    assert!(tok.decode(&[49152], false).is_err());
}
