"""Writes a random-weight `llama` model of another size with SRC's tokenizer and template:
`wide_model.py SRC DST N_EMBD N_FF N_HEAD N_HEAD_KV N_LAYER` writes DST in F16, seeded, with
SRC's metadata but for the shape (head width N_EMBD / N_HEAD).

Its text is meaningless. It exists to time the kernels on the shapes of the models people run
at the edge (`just wide-model` writes the shape of Llama 3.2 1B: 2048 wide, 8192 feed-forward,
32 heads over 8 key heads, 16 blocks) and to time batched serving where a token streams
its weights from memory (669 and 773 MB in llama.cpp's Q4_K_M and Q5_K_M of that shape).
llama.cpp's `llama_model_quantize` then writes it in any type; at 2048 columns the K-quant
files hold K-quant matrices, not the fallback types of a 576-wide model.
"""

import sys

import gguf
import numpy as np

from stretch_model import copy_field, field_value, finish


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    n_embd, n_ff, n_head, n_head_kv, n_layer = (int(a) for a in sys.argv[3:8])
    head_dim = n_embd // n_head
    # The hyper-parameters that differ from SRC's, by key without the architecture prefix.
    shape = {
        "embedding_length": n_embd,
        "feed_forward_length": n_ff,
        "attention.head_count": n_head,
        "attention.head_count_kv": n_head_kv,
        "block_count": n_layer,
        "rope.dimension_count": head_dim,
    }
    r = gguf.GGUFReader(src)
    arch = bytes(field_value(r, "general.architecture")).decode("utf-8")
    if arch != "llama":
        raise SystemExit(f"{src}: architecture {arch}, not llama")
    n_vocab = next(t.shape[1] for t in r.tensors if t.name == "token_embd.weight")
    w = gguf.GGUFWriter(dst, arch)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        key = f.name.removeprefix(f"{arch}.")
        if key in shape:
            w.add_uint32(f.name, shape[key])
        elif f.name == "general.file_type":
            w.add_uint32(f.name, int(gguf.LlamaFileType.MOSTLY_F16))
        else:
            copy_field(w, f)

    rng = np.random.default_rng(7)

    def matrix(name: str, rows: int, cols: int) -> None:
        # Rows of unit-variance outputs for unit-variance inputs, as trained layers keep them.
        x = rng.standard_normal((rows, cols), dtype=np.float32) * (cols ** -0.5)
        w.add_tensor(name, x.astype(np.float16))

    def norm(name: str, n: int) -> None:
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    kv = n_head_kv * head_dim
    matrix("token_embd.weight", n_vocab, n_embd)
    norm("output_norm.weight", n_embd)
    for l in range(n_layer):
        norm(f"blk.{l}.attn_norm.weight", n_embd)
        matrix(f"blk.{l}.attn_q.weight", n_embd, n_embd)
        matrix(f"blk.{l}.attn_k.weight", kv, n_embd)
        matrix(f"blk.{l}.attn_v.weight", kv, n_embd)
        matrix(f"blk.{l}.attn_output.weight", n_embd, n_embd)
        norm(f"blk.{l}.ffn_norm.weight", n_embd)
        matrix(f"blk.{l}.ffn_gate.weight", n_ff, n_embd)
        matrix(f"blk.{l}.ffn_up.weight", n_ff, n_embd)
        matrix(f"blk.{l}.ffn_down.weight", n_embd, n_ff)
    finish(w)


if __name__ == "__main__":
    main()
