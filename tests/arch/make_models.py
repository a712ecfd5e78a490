#!/usr/bin/env python3
"""Writes tiny random-weight GGUFs of every supported architecture into OUT_DIR.

Each file has the tensors, metadata and tokenizer llama.cpp expects of its family (so llama.cpp
loads and runs it: its logits are the reference the kernel's tests compare against), with
weights drawn from a seeded generator and stored in a mix of types. The same package versions
(gguf==0.19.0, numpy==2.4.6) write the same bytes: the references record each file's sha256.

Usage: make_models.py OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

N_EMBD = 256
N_HEAD = 4
N_FF = 512
CTX_TRAIN = 1024

# Types a matrix may be stored in (gguf 0.19 quantizes no K-quant), cycled per tensor.
MATRIX_TYPES = [T.Q8_0, T.Q4_0, T.Q5_1, T.F16, T.Q4_1, T.Q5_0, T.BF16, T.F32]


def byte_alphabet():
    """GPT-2's byte-to-unicode map: the 256 one-byte tokens of a byte-level BPE vocabulary."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


BPE_MERGES = ["Ġ t", "h e", "i n", "Ġ a", "e r", "o n", "Ġt he", "r e", "Ġ s", "a t", "o r",
              "e n", "Ġ w", "Ġ o", "i s", "a n", "Ġ c", "e s", "Ġ b", "Ġ f", "a l", "o u",
              "Ġ m", "i t", "Ġ p", "e d", "in g", "Ġ d", "l e", "a r"]
SPM_PIECES = ["▁", "▁the", "▁a", "e", "t", "o", "n", "s", "▁to", "▁of", "in", "er", "▁and",
              "▁is", "re", "on", "at", "en", "▁in", "ll", "or", "es", "▁I", "an", "ed", "▁it"]


def bpe_tokenizer(w: gguf.GGUFWriter, pre: str):
    """A small byte-level BPE vocabulary: 256 byte tokens, 30 merges, 3 control tokens."""
    tokens = byte_alphabet() + ["".join(m.split(" ")) for m in BPE_MERGES]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [1] * len(tokens) + [3] * len(specials)
    tokens += specials
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", pre)
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_array("tokenizer.ggml.merges", BPE_MERGES)
    w.add_uint32("tokenizer.ggml.bos_token_id", len(tokens) - 3)
    w.add_uint32("tokenizer.ggml.eos_token_id", len(tokens) - 1)
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    return len(tokens)


def spm_tokenizer(w: gguf.GGUFWriter, controls):
    """A small SentencePiece vocabulary: unk, bos, eos, 256 byte-fallback tokens, 26 pieces and
    the family's own control tokens."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES + controls
    types = [2, 3, 3] + [6] * 256 + [1] * len(SPM_PIECES) + [3] * len(controls)
    scores = [0.0] * 259 + [-float(i) for i in range(len(SPM_PIECES))] + [0.0] * len(controls)
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_string("tokenizer.ggml.pre", "default")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.scores", scores)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_uint32("tokenizer.ggml.unknown_token_id", 0)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_bool("tokenizer.ggml.add_space_prefix", False)
    return len(tokens)


class Builder:
    """Draws tensors in a fixed order from one seeded generator and adds them to the writer."""

    def __init__(self, w: gguf.GGUFWriter, seed: int):
        self.w = w
        self.rng = np.random.default_rng(seed)
        self.n_matrix = 0

    def matrix(self, name, rows, cols, gain=1.0, ty=None):
        """A `rows x cols` matrix (ggml ne = [cols, rows]) of N(0, gain^2 / cols) values."""
        x = (self.rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)).astype(np.float32)
        if ty is None:
            ty = MATRIX_TYPES[self.n_matrix % len(MATRIX_TYPES)]
            self.n_matrix += 1
        self.add(name, x, ty)

    def add(self, name, x, ty):
        if ty == T.F32:
            self.w.add_tensor(name, x)
        elif ty == T.F16:
            self.w.add_tensor(name, x.astype(np.float16))
        else:
            q = gguf.quants.quantize(x, ty)
            self.w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=ty)

    def vector(self, name, n, mean=1.0, spread=0.1):
        x = (mean + spread * self.rng.standard_normal(n)).astype(np.float32)
        self.w.add_tensor(name, x)

    def values(self, name, x):
        self.w.add_tensor(name, np.asarray(x, dtype=np.float32))


def common(w, arch, n_layer, n_head_kv, head_dim=None, eps_key="layer_norm_rms_epsilon"):
    w.add_string("general.name", f"tiny-random-{arch}")
    w.add_uint32(f"{arch}.context_length", CTX_TRAIN)
    w.add_uint32(f"{arch}.embedding_length", N_EMBD)
    w.add_uint32(f"{arch}.feed_forward_length", N_FF)
    w.add_uint32(f"{arch}.block_count", n_layer)
    w.add_uint32(f"{arch}.attention.head_count", N_HEAD)
    w.add_uint32(f"{arch}.attention.head_count_kv", n_head_kv)
    w.add_float32(f"{arch}.attention.{eps_key}", 1e-5)
    if head_dim is not None:
        w.add_uint32(f"{arch}.attention.key_length", head_dim)
        w.add_uint32(f"{arch}.attention.value_length", head_dim)


def attention(b, l, head_dim, n_head_kv, biases=False, fused=False, qk_gain=1.0):
    nq, nkv = N_HEAD * head_dim, n_head_kv * head_dim
    if fused:
        b.matrix(f"blk.{l}.attn_qkv.weight", nq + 2 * nkv, N_EMBD)
        if biases:
            b.vector(f"blk.{l}.attn_qkv.bias", nq + 2 * nkv, mean=0.0, spread=0.5)
    else:
        b.matrix(f"blk.{l}.attn_q.weight", nq, N_EMBD, gain=qk_gain)
        b.matrix(f"blk.{l}.attn_k.weight", nkv, N_EMBD, gain=qk_gain)
        b.matrix(f"blk.{l}.attn_v.weight", nkv, N_EMBD)
        if biases:
            for p, n in (("q", nq), ("k", nkv), ("v", nkv)):
                b.vector(f"blk.{l}.attn_{p}.bias", n, mean=0.0, spread=0.5)
    b.matrix(f"blk.{l}.attn_output.weight", N_EMBD, nq)


def gated_ffn(b, l, gate_gain=1.5):
    b.matrix(f"blk.{l}.ffn_gate.weight", N_FF, N_EMBD, gain=gate_gain)
    b.matrix(f"blk.{l}.ffn_up.weight", N_FF, N_EMBD)
    b.matrix(f"blk.{l}.ffn_down.weight", N_EMBD, N_FF)


def llama3(w, b):
    """Llama 3.1-style: per-dimension rope frequency factors (`rope_freqs`), linear scaling."""
    arch, n_layer, kv, hd = "llama", 3, 2, N_EMBD // N_HEAD
    common(w, arch, n_layer, kv)
    w.add_uint32(f"{arch}.rope.dimension_count", hd)
    w.add_float32(f"{arch}.rope.freq_base", 10000.0)
    w.add_string(f"{arch}.rope.scaling.type", "linear")
    w.add_float32(f"{arch}.rope.scaling.factor", 2.0)
    n_vocab = bpe_tokenizer(w, "llama-bpe")
    b.matrix("token_embd.weight", n_vocab, N_EMBD, gain=np.sqrt(N_EMBD), ty=T.Q8_0)
    # Llama 3's shape of factors: 1 for high frequencies, 8 for low ones, a ramp between (over
    # more dimensions than Llama 3's, so that they matter within a short sequence).
    b.values("rope_freqs.weight", np.concatenate([np.ones(4), np.linspace(1, 8, 12), np.full(16, 8.0)]))
    for l in range(n_layer):
        b.vector(f"blk.{l}.attn_norm.weight", N_EMBD)
        attention(b, l, hd, kv)
        b.vector(f"blk.{l}.ffn_norm.weight", N_EMBD)
        gated_ffn(b, l)
    b.vector("output_norm.weight", N_EMBD)
    b.matrix("output.weight", n_vocab, N_EMBD, gain=2.5, ty=T.Q8_0)


def qwen2(w, b):
    """Qwen2: Q/K/V biases, NEOX rope, tied output."""
    arch, n_layer, kv, hd = "qwen2", 3, 2, N_EMBD // N_HEAD
    common(w, arch, n_layer, kv)
    w.add_float32(f"{arch}.rope.freq_base", 1000000.0)
    n_vocab = bpe_tokenizer(w, "qwen2")
    b.matrix("token_embd.weight", n_vocab, N_EMBD, gain=1.0, ty=T.Q8_0)
    for l in range(n_layer):
        b.vector(f"blk.{l}.attn_norm.weight", N_EMBD)
        attention(b, l, hd, kv, biases=True)
        b.vector(f"blk.{l}.ffn_norm.weight", N_EMBD)
        gated_ffn(b, l)
    b.vector("output_norm.weight", N_EMBD, mean=2.5, spread=0.3)


def qwen3(w, b):
    """Qwen3: per-head RMSNorm of q and k, head width 96 (not n_embd / n_head)."""
    arch, n_layer, kv, hd = "qwen3", 3, 2, 96
    common(w, arch, n_layer, kv, head_dim=hd)
    w.add_float32(f"{arch}.rope.freq_base", 1000000.0)
    n_vocab = bpe_tokenizer(w, "qwen2")
    b.matrix("token_embd.weight", n_vocab, N_EMBD, gain=np.sqrt(N_EMBD), ty=T.F16)
    for l in range(n_layer):
        b.vector(f"blk.{l}.attn_norm.weight", N_EMBD)
        attention(b, l, hd, kv, qk_gain=4.0)
        b.vector(f"blk.{l}.attn_q_norm.weight", hd, spread=0.3)
        b.vector(f"blk.{l}.attn_k_norm.weight", hd, spread=0.3)
        b.vector(f"blk.{l}.ffn_norm.weight", N_EMBD)
        gated_ffn(b, l)
    b.vector("output_norm.weight", N_EMBD)
    b.matrix("output.weight", n_vocab, N_EMBD, gain=2.5, ty=T.Q4_0)


def gemma3(w, b):
    """Gemma 3: scaled embedding, GELU-gated FFN, post-norms, sliding-window layers with their
    own rope base, linear rope scaling on the global layers, final logit soft-capping."""
    arch, n_layer, kv, hd = "gemma3", 4, 1, N_EMBD // N_HEAD
    common(w, arch, n_layer, kv, head_dim=hd)
    w.add_float32(f"{arch}.rope.freq_base", 1000000.0)
    w.add_float32(f"{arch}.rope.freq_base_swa", 10000.0)
    w.add_string(f"{arch}.rope.scaling.type", "linear")
    w.add_float32(f"{arch}.rope.scaling.factor", 4.0)
    w.add_uint32(f"{arch}.attention.sliding_window", 12)
    w.add_uint32(f"{arch}.attention.sliding_window_pattern", 2)
    w.add_float32(f"{arch}.final_logit_softcapping", 15.0)
    n_vocab = spm_tokenizer(w, ["<start_of_turn>", "<end_of_turn>"])
    # The embedding is scaled by sqrt(n_embd) in the graph: rows of RMS ~1 after it.
    b.matrix("token_embd.weight", n_vocab, N_EMBD, gain=1.0, ty=T.Q8_0)
    for l in range(n_layer):
        b.vector(f"blk.{l}.attn_norm.weight", N_EMBD)
        attention(b, l, hd, kv, qk_gain=4.0)
        b.vector(f"blk.{l}.attn_q_norm.weight", hd, spread=0.3)
        b.vector(f"blk.{l}.attn_k_norm.weight", hd, spread=0.3)
        b.vector(f"blk.{l}.post_attention_norm.weight", N_EMBD, mean=0.7)
        b.vector(f"blk.{l}.ffn_norm.weight", N_EMBD)
        gated_ffn(b, l, gate_gain=3.0)
        b.vector(f"blk.{l}.post_ffw_norm.weight", N_EMBD, mean=0.7)
    b.vector("output_norm.weight", N_EMBD)
    # Untied (Gemma ties them): with the tied embedding each position would mostly predict
    # its own token (qwen2 covers the tied output).
    b.matrix("output.weight", n_vocab, N_EMBD, gain=3.0, ty=T.Q8_0)


def phi3(w, b):
    """Phi-3: fused QKV, fused gate-up, partial rotary (48 of 64 dims), LongRoPE factors."""
    arch, n_layer, kv, hd = "phi3", 3, 4, N_EMBD // N_HEAD
    common(w, arch, n_layer, kv)
    w.add_uint32(f"{arch}.rope.dimension_count", 48)
    w.add_float32(f"{arch}.rope.freq_base", 10000.0)
    w.add_string(f"{arch}.rope.scaling.type", "longrope")
    w.add_float32(f"{arch}.rope.scaling.attn_factor", 1.3)
    w.add_uint32(f"{arch}.rope.scaling.original_context_length", 32)
    n_vocab = spm_tokenizer(w, ["<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>"])
    b.matrix("token_embd.weight", n_vocab, N_EMBD, gain=np.sqrt(N_EMBD), ty=T.Q4_1)
    b.values("rope_factors_long.weight", np.linspace(1.0, 6.0, 24))
    b.values("rope_factors_short.weight", np.linspace(1.0, 1.5, 24))
    for l in range(n_layer):
        b.vector(f"blk.{l}.attn_norm.weight", N_EMBD)
        attention(b, l, hd, kv, fused=True)
        b.vector(f"blk.{l}.ffn_norm.weight", N_EMBD)
        b.matrix(f"blk.{l}.ffn_up.weight", 2 * N_FF, N_EMBD, gain=1.5)
        b.matrix(f"blk.{l}.ffn_down.weight", N_EMBD, N_FF)
    b.vector("output_norm.weight", N_EMBD)
    b.matrix("output.weight", n_vocab, N_EMBD, gain=2.5, ty=T.Q5_0)


def gpt2(w, b):
    """GPT-2: learned positions, LayerNorm with bias, biased fused QKV and matmuls, GELU."""
    arch, n_layer, kv = "gpt2", 3, N_HEAD
    common(w, arch, n_layer, kv, eps_key="layer_norm_epsilon")
    n_vocab = bpe_tokenizer(w, "gpt-2")
    b.matrix("token_embd.weight", n_vocab, N_EMBD, gain=np.sqrt(N_EMBD), ty=T.Q8_0)
    b.matrix("position_embd.weight", CTX_TRAIN, N_EMBD, gain=0.5 * np.sqrt(N_EMBD), ty=T.F32)
    for l in range(n_layer):
        b.vector(f"blk.{l}.attn_norm.weight", N_EMBD)
        b.vector(f"blk.{l}.attn_norm.bias", N_EMBD, mean=0.0)
        attention(b, l, N_EMBD // N_HEAD, kv, biases=True, fused=True)
        b.vector(f"blk.{l}.attn_output.bias", N_EMBD, mean=0.0)
        b.vector(f"blk.{l}.ffn_norm.weight", N_EMBD)
        b.vector(f"blk.{l}.ffn_norm.bias", N_EMBD, mean=0.0)
        b.matrix(f"blk.{l}.ffn_up.weight", N_FF, N_EMBD, gain=1.5)
        b.vector(f"blk.{l}.ffn_up.bias", N_FF, mean=0.0, spread=0.5)
        b.matrix(f"blk.{l}.ffn_down.weight", N_EMBD, N_FF)
        b.vector(f"blk.{l}.ffn_down.bias", N_EMBD, mean=0.0)
    b.vector("output_norm.weight", N_EMBD)
    b.vector("output_norm.bias", N_EMBD, mean=0.0)
    # Untied: with the tied embedding each position would mostly predict its own token.
    b.matrix("output.weight", n_vocab, N_EMBD, gain=2.5, ty=T.Q8_0)


# File name -> (general.architecture, builder, seed).
MODELS = {
    "llama3": ("llama", llama3, 1),
    "qwen2": ("qwen2", qwen2, 2),
    "qwen3": ("qwen3", qwen3, 3),
    "gemma3": ("gemma3", gemma3, 4),
    "phi3": ("phi3", phi3, 5),
    "gpt2": ("gpt2", gpt2, 6),
}


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, (arch, build, seed) in MODELS.items():
        path = out / f"{name}.gguf"
        w = gguf.GGUFWriter(str(path), arch)
        build(w, Builder(w, seed))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        print(path)


if __name__ == "__main__":
    main()
