"""Writes tests/refs/embeddings.json: llama.cpp's embeddings of a few texts on the default model.

Run with llama-cpp-python==0.3.36 (the same llama.cpp as the other references):
    python tests/refs/embeddings.py models/SmolLM2-135M-Instruct.Q4_1.gguf > tests/refs/embeddings.json

Each text is tokenized as llama.cpp's server tokenizes embedding inputs (add_special and
parse_special on; this model adds no BOS), evaluated with causal attention, mean-pooled over
its tokens (`pooling_type=LLAMA_POOLING_TYPE_MEAN`: the default model's GGUF has no
`llama.pooling_type`) and L2-normalized.
"""

import json
import sys

import llama_cpp

TEXTS = [
    "Hello, world!",
    "WebAssembly is a binary instruction format for a stack-based virtual machine.",
    "The capital of France is Paris.",
    "A",
]


def main(model_path):
    llm = llama_cpp.Llama(
        model_path=model_path,
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        n_ctx=512,
        n_threads=1,
        verbose=False,
    )
    cases = []
    for text in TEXTS:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        vector = llm.embed(text, normalize=True)
        cases.append({
            "text": text,
            "tokens": tokens,
            "embedding": [float(f"{v:.6g}") for v in vector],
        })
    meta = {
        "made_by": "tests/refs/embeddings.py with llama-cpp-python 0.3.36",
        "pooling": "mean",
        "normalized": "L2",
        "n_ctx": 512,
    }
    # One line per case, so a diff shows which vector changed.
    lines = ",\n".join(" " + json.dumps(c) for c in cases)
    sys.stdout.write(f'{{"meta": {json.dumps(meta)},\n"cases": [\n{lines}\n]}}\n')


if __name__ == "__main__":
    main(sys.argv[1])
