#!/usr/bin/env python3
"""llama.cpp's reference on each tiny GGUF of make_models.py: one JSON per file with the file's
sha256, a fixed seeded token sequence, llama.cpp's teacher-forced logits on it (the top K per
position) and the perplexity of the sequence under them.

Run with llama-cpp-python 0.3.36 (build/peers/venv). Usage: make_refs.py MODEL_DIR OUT_DIR
"""

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
from llama_cpp import Llama

N_TOKENS = 96
N_CTX = 128
TOP_K = 8
SEED = 19


def sample(llm, n_vocab):
    """N_TOKENS tokens drawn from the model's own distribution (temperature 1, seeded), so the
    sequence is one the model finds plausible and its perplexity is moderate."""
    rng = np.random.default_rng(SEED)
    tokens = [int(rng.integers(0, n_vocab))]
    llm.reset()
    while len(tokens) < N_TOKENS:
        llm.eval(tokens[-1:])
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        p = np.exp(row - row.max())
        tokens.append(int(rng.choice(n_vocab, p=p / p.sum())))
    return tokens


def main():
    models, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(models.glob("*.gguf")):
        llm = Llama(model_path=str(path), logits_all=True, n_ctx=N_CTX, n_batch=N_CTX,
                    n_threads=2, seed=SEED, verbose=False)
        n_vocab = llm.n_vocab()
        tokens = sample(llm, n_vocab)
        llm.reset()
        llm.eval(tokens)
        logits = np.array(llm.scores[:N_TOKENS], dtype=np.float64)
        # Perplexity of tokens[1..] given the logits of the positions before them.
        nll = 0.0
        for i in range(N_TOKENS - 1):
            row = logits[i]
            m = row.max()
            lse = m + math.log(np.exp(row - m).sum())
            nll += lse - row[tokens[i + 1]]
        ppl = math.exp(nll / (N_TOKENS - 1))
        top = []
        for row in logits:
            ids = np.argsort(-row, kind="stable")[:TOP_K]
            top.append([[int(i), float(np.float32(row[i]))] for i in ids])
        gaps = [t[0][1] - t[1][1] for t in top]
        ref = {
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "n_ctx": N_CTX,
            "tokens": tokens,
            "perplexity": ppl,
            "top": top,
        }
        (out / f"{path.stem}.json").write_text(json.dumps(ref, separators=(",", ":")) + "\n")
        wide = sum(g > 0.25 for g in gaps)
        print(f"{path.name}: logit std {logits.std(axis=1).mean():.2f} ppl {ppl:.4f}, top-1/top-2 gap > 0.25 at {wide}/{len(gaps)} positions")
        del llm


if __name__ == "__main__":
    main()
