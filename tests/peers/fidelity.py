"""Fidelity of edge-llm against llama.cpp on the default model requantized by llama.cpp itself.

For each llama.cpp file type named on the command line, `llama_model_quantize` (llama-cpp-python
0.3.36, `allow_requantize`) writes the default model in that type. On the same file:
- Perplexity: llama.cpp scores tests/refs/ppl_text.txt the way `llama-perplexity` does (chunks of
  CTX tokens, the second half of each scored, flash attention off), and so does
  `edge-llm perplexity`.
- Teacher-forced steps: llama.cpp (flash attention off) continues PROMPTS windows of the text
  greedily for STEPS tokens. Along those sequences, at every step: whether edge-llm's argmax is
  llama.cpp's token, edge-llm's largest |logit difference| over llama.cpp's top-20 ids
  (`kernel/examples/logits.rs`, the native kernel), and the same figure for llama.cpp with flash
  attention on against off, llama.cpp's own spread (and its argmax agreement).
One JSON line per type. Run through `just bench-fidelity`; the files stay in OUT_DIR (never
committed).

Usage: fidelity.py MODEL OUT_DIR EDGE_LLM LOGITS TEXT TYPE[,TYPE...] [CTX] [--steps-only]
"""

import argparse
import ctypes
import json
import math
import subprocess
import sys
from statistics import median

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


PROMPTS, PROMPT_TOKENS, STEPS, TOP = 4, 24, 40, 20


def llama_cpp_steps(path: str, text: bytes) -> list[dict]:
    """llama.cpp's greedy continuations of PROMPTS windows of `text` (flash attention off), and
    along each: the top-TOP ids and their logits with flash attention off and on."""
    n_ctx = PROMPT_TOKENS + STEPS
    off, on = (llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, logits_all=True,
                               verbose=False, n_threads=2, flash_attn=fa) for fa in (False, True))
    tokens = off.tokenize(text, add_bos=False, special=False)
    stride = (len(tokens) - PROMPT_TOKENS) // PROMPTS
    sequences = []
    for p in range(PROMPTS):
        seq = tokens[p * stride:p * stride + PROMPT_TOKENS]
        off.reset()
        off.eval(seq)
        for _ in range(STEPS):
            seq.append(int(np.argmax(off.scores[len(seq) - 1])))
            off.eval(seq[-1:])
        rows = {}
        for name, llm in (("off", off), ("on", on)):
            llm.reset()
            llm.eval(seq[:-1])
            rows[name] = np.array(llm.scores[PROMPT_TOKENS - 1:len(seq) - 1], dtype=np.float64)
        top = [list(np.argsort(-r, kind="stable")[:TOP]) for r in rows["off"]]
        sequences.append({
            "tokens": seq[:-1], "next": seq[PROMPT_TOKENS:],
            "top": [[int(t) for t in ids] for ids in top],
            "off": [r[ids] for r, ids in zip(rows["off"], top)],
            "on": [r[ids] for r, ids in zip(rows["on"], top)],
            "on_argmax": [int(np.argmax(r)) for r in rows["on"]],
        })
    return sequences


def steps_row(path: str, logits_bin: str, text: bytes) -> dict:
    """The teacher-forced figures of one file (see the module's doc)."""
    sequences = llama_cpp_steps(path, text)
    requests = "".join(json.dumps({"tokens": s["tokens"], "from": PROMPT_TOKENS - 1,
                                   "ids": s["top"]}) + "\n" for s in sequences)
    out = subprocess.run([logits_bin, path, "2"], input=requests, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    ours = iter(json.loads(line) for line in out)
    agree, fa_agree, errors, spreads, within = 0, 0, [], [], 0
    for s in sequences:
        for nxt, ref, fa, fa_top in zip(s["next"], s["off"], s["on"], s["on_argmax"]):
            o = next(ours)
            agree += o["argmax"] == nxt
            fa_agree += fa_top == nxt
            err = float(np.max(np.abs(np.array(o["logits"]) - ref)))
            spread = float(np.max(np.abs(fa - ref)))
            errors.append(err)
            spreads.append(spread)
            within += err <= spread
    n = len(errors)
    return {
        "steps": n, "argmax_agree_pct": round(100 * agree / n, 1),
        "fa_argmax_agree_pct": round(100 * fa_agree / n, 1),
        "logit_err_median": round(median(errors), 4), "logit_err_max": round(max(errors), 4),
        "fa_spread_median": round(median(spreads), 4), "fa_spread_max": round(max(spreads), 4),
        "steps_within_fa_spread_pct": round(100 * within / n, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for arg in ("model", "out_dir", "edge_llm", "logits", "text", "types"):
        ap.add_argument(arg)
    ap.add_argument("ctx", nargs="?", type=int, default=128)
    ap.add_argument("--steps-only", action="store_true", help="skip the perplexities")
    args = ap.parse_args()
    text = open(args.text, "rb").read()
    for name in args.types.split(","):
        path = f"{args.out_dir}/llamacpp-{name}.gguf"
        quantize(args.model, path, FTYPES[name])
        row = {"type": name}
        if not args.steps_only:
            reference, scored = llama_cpp_perplexity(path, text, args.ctx)
            ours = json.loads(subprocess.run(
                [args.edge_llm, "perplexity", "--model", path, "--ctx", str(args.ctx), args.text],
                capture_output=True, text=True, check=True).stdout)
            row |= {
                "ctx": args.ctx, "llama_cpp": round(reference, 4),
                "edge_llm": round(ours["perplexity"], 4),
                "diff_pct": round((ours["perplexity"] / reference - 1) * 100, 3),
                "scored": scored, "edge_llm_scored": ours["scored_tokens"],
            }
        print(json.dumps(row | steps_row(path, args.logits, text)), flush=True)


if __name__ == "__main__":
    main()
