//! A deterministic tiny llama GGUF with a real byte-level GPT-2 BPE tokenizer in its metadata:
//! 2 layers, n_embd 64, n_ff 128, 4 heads / 2 kv heads (head dim 16), context 256, Q4_1
//! attention/FFN matrices, tied Q8_0 `token_embd`, F32 norms.

use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgmlType, MetadataArray, MetadataValue};
use crate::quant::{q4_1, q8_0};
use crate::rng::SplitMix64;

/// The chat template of SmolLM2-135M-Instruct (ChatML with a default system message).
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Control tokens at ids 0, 1, 2.
pub const CONTROL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// BPE merges of the tiny tokenizer, in priority order (GPT-2 alphabet, `Ġ` = space).
pub const MERGES: &[&str] = &[
    "Ġ t", "h e", "i n", "Ġ a", "e r", "o n", "r e", "Ġt he", "a t", "e n", "o r", "Ġ s", "e s",
    "i s", "Ġ w", "Ġ c", "i t", "a n", "Ġ o", "Ġ b", "a r", "e d", "Ġ f", "in g", "Ġ p", "o u",
    "Ġ m", "l e", "a l", "Ġ h", "i c", "Ġ d", "Ġ i", "Ġ l", "Ġ n", "l l", "Ġ T", "Ġ H", "Ġ W",
    "Ġ y", "Ġt o", "Ġa n", "Ġan d", "Ġ is", "H e", "He ll", "Hell o",
];

/// GPT-2's byte-to-unicode map: the character standing for each byte.
pub fn byte_to_unicode() -> [char; 256] {
    let mut printable = [false; 256];
    for b in (b'!'..=b'~').chain(0xA1..=0xAC).chain(0xAE..=0xFF) {
        printable[b as usize] = true;
    }
    let mut map = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256usize {
        map[b] = if printable[b] {
            char::from_u32(b as u32).unwrap_or('?')
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('?')
        };
    }
    map
}

/// The tiny model's vocabulary: control tokens, 256 byte tokens, then merge results.
pub fn vocab() -> Vec<String> {
    let mut v: Vec<String> = CONTROL_TOKENS.iter().map(|s| s.to_string()).collect();
    v.extend(byte_to_unicode().iter().map(|c| c.to_string()));
    v.extend(MERGES.iter().map(|m| m.replace(' ', "")));
    v
}

/// Hyperparameters of the tiny model.
pub mod shape {
    /// Layers.
    pub const N_LAYER: usize = 2;
    /// Embedding width.
    pub const N_EMBD: usize = 64;
    /// FFN width.
    pub const N_FF: usize = 128;
    /// Query heads.
    pub const N_HEAD: usize = 4;
    /// Key/value heads.
    pub const N_HEAD_KV: usize = 2;
    /// Head dimension.
    pub const HEAD_DIM: usize = 16;
    /// Training context.
    pub const N_CTX: usize = 256;
}

fn q4_1_tensor(rng: &mut SplitMix64, cols: usize, rows: usize, std: f32) -> Vec<u8> {
    let x: Vec<f32> = (0..cols * rows).map(|_| rng.normal(std)).collect();
    let mut out = Vec::new();
    q4_1::quantize_row(&x, &mut out);
    out
}

/// Generates the tiny model GGUF for `seed` (deterministic).
pub fn tiny_model_gguf(seed: u64) -> Vec<u8> {
    tiny_model_writer(seed).to_bytes()
}

/// The tiny model before it is written, for tests that change its metadata or tensors.
pub fn tiny_model_writer(seed: u64) -> GgufWriter {
    use shape::*;
    let mut rng = SplitMix64::new(seed);
    let tokens = vocab();
    let n_vocab = tokens.len();
    let mut token_type = vec![1i32; n_vocab];
    token_type[..3].fill(3);

    let mut w = GgufWriter::new();
    w.add_str("general.architecture", "llama")
        .add_str("general.name", "edge-llm tiny test model")
        .add_u32("general.alignment", 32)
        .add_u32("general.file_type", 3)
        .add_u32("llama.block_count", N_LAYER as u32)
        .add_u32("llama.context_length", N_CTX as u32)
        .add_u32("llama.embedding_length", N_EMBD as u32)
        .add_u32("llama.feed_forward_length", N_FF as u32)
        .add_u32("llama.attention.head_count", N_HEAD as u32)
        .add_u32("llama.attention.head_count_kv", N_HEAD_KV as u32)
        .add_f32("llama.rope.freq_base", 10000.0)
        .add_u32("llama.rope.dimension_count", HEAD_DIM as u32)
        .add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .add_u32("llama.vocab_size", n_vocab as u32)
        .add(
            "tokenizer.ggml.add_space_prefix",
            MetadataValue::Bool(false),
        )
        .add("tokenizer.ggml.add_bos_token", MetadataValue::Bool(false))
        .add_str("tokenizer.ggml.model", "gpt2")
        .add_str("tokenizer.ggml.pre", "smollm")
        .add(
            "tokenizer.ggml.tokens",
            MetadataValue::Array(MetadataArray::String(tokens)),
        )
        .add(
            "tokenizer.ggml.token_type",
            MetadataValue::Array(MetadataArray::I32(token_type)),
        )
        .add(
            "tokenizer.ggml.merges",
            MetadataValue::Array(MetadataArray::String(
                MERGES.iter().map(|s| s.to_string()).collect(),
            )),
        )
        .add_u32("tokenizer.ggml.bos_token_id", 1)
        .add_u32("tokenizer.ggml.eos_token_id", 2)
        .add_u32("tokenizer.ggml.unknown_token_id", 0)
        .add_u32("tokenizer.ggml.padding_token_id", 2)
        .add_str("tokenizer.chat_template", CHAT_TEMPLATE)
        .add_u32("general.quantization_version", 2);

    let emb: Vec<f32> = (0..N_EMBD * n_vocab).map(|_| rng.normal(0.5)).collect();
    let mut emb_q = Vec::new();
    q8_0::quantize_row(&emb, &mut emb_q);
    w.add_tensor(
        "token_embd.weight",
        GgmlType::Q8_0,
        &[N_EMBD as u64, n_vocab as u64],
        emb_q,
    );
    let norm = |rng: &mut SplitMix64| -> Vec<u8> {
        (0..N_EMBD)
            .flat_map(|_| (1.0 + rng.normal(0.1)).to_le_bytes())
            .collect()
    };
    let kv = (N_HEAD_KV * HEAD_DIM) as u64;
    let (e, f) = (N_EMBD as u64, N_FF as u64);
    for l in 0..N_LAYER {
        let name = |s: &str| format!("blk.{l}.{s}.weight");
        let t = norm(&mut rng);
        w.add_tensor(&name("attn_norm"), GgmlType::F32, &[e], t);
        let t = q4_1_tensor(&mut rng, N_EMBD, N_EMBD, 0.15);
        w.add_tensor(&name("attn_q"), GgmlType::Q4_1, &[e, e], t);
        let t = q4_1_tensor(&mut rng, N_EMBD, kv as usize, 0.15);
        w.add_tensor(&name("attn_k"), GgmlType::Q4_1, &[e, kv], t);
        let t = q4_1_tensor(&mut rng, N_EMBD, kv as usize, 0.15);
        w.add_tensor(&name("attn_v"), GgmlType::Q4_1, &[e, kv], t);
        let t = q4_1_tensor(&mut rng, N_EMBD, N_EMBD, 0.1);
        w.add_tensor(&name("attn_output"), GgmlType::Q4_1, &[e, e], t);
        let t = norm(&mut rng);
        w.add_tensor(&name("ffn_norm"), GgmlType::F32, &[e], t);
        let t = q4_1_tensor(&mut rng, N_EMBD, N_FF, 0.15);
        w.add_tensor(&name("ffn_gate"), GgmlType::Q4_1, &[e, f], t);
        let t = q4_1_tensor(&mut rng, N_EMBD, N_FF, 0.15);
        w.add_tensor(&name("ffn_up"), GgmlType::Q4_1, &[e, f], t);
        let t = q4_1_tensor(&mut rng, N_FF, N_EMBD, 0.1);
        w.add_tensor(&name("ffn_down"), GgmlType::Q4_1, &[f, e], t);
    }
    let t = norm(&mut rng);
    w.add_tensor("output_norm.weight", GgmlType::F32, &[e], t);
    w
}
