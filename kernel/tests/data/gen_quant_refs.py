#!/usr/bin/env python3
"""Writes quant/<TYPE>.json: a few random but valid blocks of each GGUF weight type and their
values as dequantized by the `gguf` package (ggml's Python reference), for the kernel's
`quant_refs` test. Deterministic: a fixed seed per type.

Usage (from the repository root):
    python3 -m pip install gguf==0.19.0
    python3 kernel/tests/data/gen_quant_refs.py
"""

import importlib.metadata
import json
import pathlib

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

OUT = pathlib.Path(__file__).resolve().parent / "quant"

# Byte offsets of each block's half-float fields (set to finite values; the rest is random).
HALVES = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.IQ4_NL: [0],
}
# Blocks per type: 8 of the 32-element types, 2 of the 256-element ones, 256 values of floats.
N_BLOCKS = {T.F32: 256, T.F16: 256, T.BF16: 256}


def random_halves(rng, n):
    """Finite halves: mostly ordinary magnitudes, some subnormal, zero and negative."""
    v = rng.uniform(-2.0, 2.0, n).astype(np.float16)
    bits = v.view(np.uint16).copy()
    pick = rng.integers(0, 8, n)
    bits[pick == 0] = rng.integers(1, 0x400, int((pick == 0).sum()), dtype=np.uint16)
    bits[pick == 1] = 0
    bits[pick == 2] = rng.integers(0, 0x7C00, int((pick == 2).sum()), dtype=np.uint16)
    return bits


def blocks(ty, rng):
    block, size = GGML_QUANT_SIZES[ty]
    n = N_BLOCKS.get(ty, 8 if block == 32 else 2)
    if ty == T.F32:
        return rng.uniform(-1e3, 1e3, n).astype(np.float32).view(np.uint8)
    if ty == T.F16:
        return random_halves(rng, n).view(np.uint8)
    if ty == T.BF16:
        # Any sign and mantissa, exponents below all-ones (finite).
        bits = rng.integers(0, 0x10000, n, dtype=np.uint32)
        bits = (bits & 0x807F) | (rng.integers(0, 0xFF, n, dtype=np.uint32) << 7)
        return bits.astype(np.uint16).view(np.uint8)
    data = rng.integers(0, 256, (n, size), dtype=np.uint8)
    for off in HALVES[ty]:
        data[:, off : off + 2] = random_halves(rng, n).view(np.uint8).reshape(n, 2)
    return data.reshape(-1)


def main():
    OUT.mkdir(exist_ok=True)
    types = [T.F32, T.F16, T.BF16, *HALVES]
    for seed, ty in enumerate(types):
        rng = np.random.default_rng(1000 + seed)
        data = blocks(ty, rng)
        values = gguf.quants.dequantize(data, ty).astype(np.float32).reshape(-1)
        doc = {
            "type": ty.name,
            "generator": f"kernel/tests/data/gen_quant_refs.py, gguf {importlib.metadata.version('gguf')}, numpy {np.__version__}, seed {1000 + seed}",
            "blocks_hex": data.tobytes().hex(),
            "values_f32le_hex": values.astype("<f4").tobytes().hex(),
        }
        (OUT / f"{ty.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(ty.name, len(data), "bytes,", values.size, "values")


if __name__ == "__main__":
    main()
