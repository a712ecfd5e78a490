//! A deterministic tiny llama GGUF with a real byte-level GPT-2 BPE tokenizer in its metadata:
//! 2 layers, n_embd 64, n_ff 128, 4 heads / 2 kv heads (head dim 16), context 256, Q4_1
//! attention/FFN matrices, tied Q8_0 `token_embd`, F32 norms.
//!
//! [`tiny_model_typed`] makes siblings of other shapes (e.g. 256 wide, so K-quants fit) with a
//! chosen type per matrix, or every matrix as the `f32` values its type dequantizes to (the
//! reference its logits are compared with).

use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgmlType, MetadataArray, MetadataValue};
use crate::quant;
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

/// The shape of a generated model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyShape {
    /// Layers.
    pub n_layer: usize,
    /// Embedding width.
    pub n_embd: usize,
    /// FFN width.
    pub n_ff: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Head dimension.
    pub head_dim: usize,
}

impl TinyShape {
    /// The tiny model's shape ([`shape`]).
    pub const TINY: TinyShape = TinyShape {
        n_layer: shape::N_LAYER,
        n_embd: shape::N_EMBD,
        n_ff: shape::N_FF,
        n_head: shape::N_HEAD,
        n_head_kv: shape::N_HEAD_KV,
        head_dim: shape::HEAD_DIM,
    };

    /// Every matrix row a multiple of 256 (so any type fits): 2 layers, n_embd 256, n_ff 512,
    /// 4 heads / 2 kv heads of 64.
    pub const WIDE: TinyShape = TinyShape {
        n_layer: 2,
        n_embd: 256,
        n_ff: 512,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 64,
    };
}

/// The tensor types of a generated model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyTypes {
    /// `token_embd.weight`.
    pub token_embd: GgmlType,
    /// `output.weight`, or `None` for an output tied to `token_embd`.
    pub output: Option<GgmlType>,
    /// The 7 matrices of layer `l` are `layers[(7 l + i) % layers.len()]`, `i` in the order
    /// attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down.
    pub layers: &'static [GgmlType],
    /// Store every matrix as F32 holding the values its type dequantizes to.
    pub as_f32: bool,
}

impl TinyTypes {
    /// The tiny model's: Q8_0 tied embedding, Q4_1 matrices.
    pub const TINY: TinyTypes = TinyTypes {
        token_embd: GgmlType::Q8_0,
        output: None,
        layers: &[GgmlType::Q4_1],
        as_f32: false,
    };
}

/// `rows × cols` normal values of deviation `std` stored as `ty` (or, with `as_f32`, as F32
/// holding what `ty` dequantizes them to): `(type, bytes)`.
fn tensor(
    rng: &mut SplitMix64,
    ty: GgmlType,
    as_f32: bool,
    cols: usize,
    rows: usize,
    std: f32,
) -> (GgmlType, Vec<u8>) {
    let x: Vec<f32> = (0..cols * rows).map(|_| rng.normal(std)).collect();
    let mut out = Vec::new();
    let ok = quant::quantize_row(ty, &x, &mut out);
    assert!(ok, "no quantizer for {ty}");
    if !as_f32 {
        return (ty, out);
    }
    let mut y = vec![0f32; x.len()];
    quant::dequantize_row(ty, &out, &mut y);
    (
        GgmlType::F32,
        y.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

/// Generates the tiny model GGUF for `seed` (deterministic).
pub fn tiny_model_gguf(seed: u64) -> Vec<u8> {
    tiny_model_writer(seed).to_bytes()
}

/// The tiny model before it is written, for tests that change its metadata or tensors.
pub fn tiny_model_writer(seed: u64) -> GgufWriter {
    tiny_model_typed(seed, TinyShape::TINY, TinyTypes::TINY)
}

/// A model like the tiny one (the same tokenizer, values drawn in the same order) with shape
/// `sh` and tensor types `types`. The tiny model itself is
/// `tiny_model_typed(seed, TinyShape::TINY, TinyTypes::TINY)`.
pub fn tiny_model_typed(seed: u64, sh: TinyShape, types: TinyTypes) -> GgufWriter {
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
        .add_u32("llama.block_count", sh.n_layer as u32)
        .add_u32("llama.context_length", shape::N_CTX as u32)
        .add_u32("llama.embedding_length", sh.n_embd as u32)
        .add_u32("llama.feed_forward_length", sh.n_ff as u32)
        .add_u32("llama.attention.head_count", sh.n_head as u32)
        .add_u32("llama.attention.head_count_kv", sh.n_head_kv as u32)
        .add_f32("llama.rope.freq_base", 10000.0)
        .add_u32("llama.rope.dimension_count", sh.head_dim as u32)
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

    let (e, f) = (sh.n_embd, sh.n_ff);
    let (q, kv) = (sh.n_head * sh.head_dim, sh.n_head_kv * sh.head_dim);
    let (ty, t) = tensor(&mut rng, types.token_embd, types.as_f32, e, n_vocab, 0.5);
    w.add_tensor("token_embd.weight", ty, &[e as u64, n_vocab as u64], t);
    let norm = |rng: &mut SplitMix64| -> Vec<u8> {
        (0..e)
            .flat_map(|_| (1.0 + rng.normal(0.1)).to_le_bytes())
            .collect()
    };
    let mut layer_types = types.layers.iter().copied().cycle();
    for l in 0..sh.n_layer {
        let name = |s: &str| format!("blk.{l}.{s}.weight");
        let mut matrix = |w: &mut GgufWriter, rng: &mut SplitMix64, s: &str, cols, rows, std| {
            let ty = layer_types.next().unwrap_or(GgmlType::F32);
            let (ty, t) = tensor(rng, ty, types.as_f32, cols, rows, std);
            w.add_tensor(&name(s), ty, &[cols as u64, rows as u64], t);
        };
        let t = norm(&mut rng);
        w.add_tensor(&name("attn_norm"), GgmlType::F32, &[e as u64], t);
        matrix(&mut w, &mut rng, "attn_q", e, q, 0.15);
        matrix(&mut w, &mut rng, "attn_k", e, kv, 0.15);
        matrix(&mut w, &mut rng, "attn_v", e, kv, 0.15);
        matrix(&mut w, &mut rng, "attn_output", q, e, 0.1);
        let t = norm(&mut rng);
        w.add_tensor(&name("ffn_norm"), GgmlType::F32, &[e as u64], t);
        matrix(&mut w, &mut rng, "ffn_gate", e, f, 0.15);
        matrix(&mut w, &mut rng, "ffn_up", e, f, 0.15);
        matrix(&mut w, &mut rng, "ffn_down", f, e, 0.1);
    }
    let t = norm(&mut rng);
    w.add_tensor("output_norm.weight", GgmlType::F32, &[e as u64], t);
    if let Some(ty) = types.output {
        let (ty, t) = tensor(&mut rng, ty, types.as_f32, e, n_vocab, 0.1);
        w.add_tensor("output.weight", ty, &[e as u64, n_vocab as u64], t);
    }
    w
}
