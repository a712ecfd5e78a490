"""Perplexity of edge-llm against llama.cpp on the default model requantized by llama.cpp itself.

For each llama.cpp file type named on the command line, `llama_model_quantize` (llama-cpp-python
0.3.36, `allow_requantize`) writes the default model in that type; llama.cpp then scores
tests/refs/ppl_text.txt the way `llama-perplexity` does (chunks of CTX tokens, the second half of
each scored, flash attention off), and so does `edge-llm perplexity` on the same file. One JSON
line per type. Run through `just bench-fidelity`; the files stay in OUT_DIR (never committed).

Usage: fidelity.py MODEL OUT_DIR EDGE_LLM TEXT TYPE[,TYPE...] [CTX]
"""

import ctypes
import json
import math
import subprocess
import sys

import llama_cpp
import numpy as np

# llama.cpp's `llama_ftype` values for the file types.
FTYPES = {
    "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
    "Q3_K_M": 12, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "IQ4_NL": 25, "BF16": 32,
}


def quantize(src: str, dst: str, ftype: int) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize {dst}: {rc}")


def llama_cpp_perplexity(path: str, text: bytes, ctx: int) -> tuple[float, int]:
    llm = llama_cpp.Llama(model_path=path, n_ctx=ctx, n_batch=ctx, logits_all=True,
                          verbose=False, n_threads=2, flash_attn=False)
    tokens = llm.tokenize(text, add_bos=False, special=False)
    nll, scored = 0.0, 0
    for c in range(len(tokens) // ctx):
        chunk = tokens[c * ctx:(c + 1) * ctx]
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:ctx], dtype=np.float64)
        for i in range(ctx // 2, ctx - 1):
            row = logits[i]
            top = row.max()
            nll += top + math.log(np.exp(row - top).sum()) - row[chunk[i + 1]]
            scored += 1
    return math.exp(nll / scored), scored


def main() -> None:
    model, out_dir, edge_llm, text_path, wanted = sys.argv[1:6]
    ctx = int(sys.argv[6]) if len(sys.argv) > 6 else 128
    text = open(text_path, "rb").read()
    for name in wanted.split(","):
        path = f"{out_dir}/llamacpp-{name}.gguf"
        quantize(model, path, FTYPES[name])
        reference, scored = llama_cpp_perplexity(path, text, ctx)
        ours = json.loads(subprocess.run(
            [edge_llm, "perplexity", "--model", path, "--ctx", str(ctx), text_path],
            capture_output=True, text=True, check=True).stdout)
        print(json.dumps({
            "type": name, "ctx": ctx, "llama_cpp": round(reference, 4),
            "edge_llm": round(ours["perplexity"], 4),
            "diff_pct": round((ours["perplexity"] / reference - 1) * 100, 3),
            "scored": scored, "edge_llm_scored": ours["scored_tokens"],
        }), flush=True)


if __name__ == "__main__":
    main()
