//! The tokenizer builder over hostile vocabularies: the tiny model's vocabulary with tokens and
//! merges replaced or added from the input (`tokens \0 merges \0 text`, one per line), then
//! encoding and decoding the text.
#![no_main]

use std::sync::OnceLock;

use edge_llm_guest::tokenizer::{Tokenizer, VocabSpec};
use edge_llm_kernel::gguf::Gguf;
use edge_llm_kernel::tiny::tiny_model_gguf;
use libfuzzer_sys::fuzz_target;

fn base() -> &'static VocabSpec {
    static BASE: OnceLock<VocabSpec> = OnceLock::new();
    BASE.get_or_init(|| {
        let bytes = tiny_model_gguf(0);
        let gguf = Gguf::parse(&bytes).expect("the tiny model parses");
        VocabSpec::from_gguf(&gguf).expect("the tiny model has a vocabulary")
    })
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let mut parts = input.split('\0');
    let mut spec = base().clone();
    if let Some(tokens) = parts.next() {
        for (i, token) in tokens.split('\n').enumerate().take(256) {
            match spec.tokens.get_mut(i) {
                Some(slot) => *slot = token.to_string(),
                None => {
                    spec.tokens.push(token.to_string());
                    spec.token_types.push(1);
                }
            }
        }
    }
    if let Some(merges) = parts.next() {
        spec.merges
            .extend(merges.split('\n').take(256).map(str::to_string));
    }
    let text = parts.next().unwrap_or("hello world");
    if let Ok(tokenizer) = Tokenizer::from_spec(spec) {
        for parse_control in [false, true] {
            if let Ok(ids) = tokenizer.encode(text, parse_control) {
                let _ = tokenizer.decode(&ids, false);
                let _ = tokenizer.decode_bytes(&ids, true);
            }
        }
    }
});
