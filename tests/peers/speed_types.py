"""Decode and prefill speed of edge-llm's native backend beside llama.cpp's `llama-bench`, in one
run, on the default model requantized by llama.cpp into each type people download.

For each type, the file comes from `llama_model_quantize` (llama-cpp-python 0.3.36, as
`just bench-fidelity` makes them, in OUT_DIR, never committed). Then, for 1 and 2 threads,
alternating the two programs REPEAT times: `llama-bench -p 128 -n 64` (prompt processing of 128
tokens, and generation of 64) and `edge-llm bench --backends native --prefill 128 --decode 64`;
at 1 thread also the guest's own kernel in wasmtime (`--backends wasm`). Medians of the runs;
one JSON line per type and thread count, then a Markdown table of the ratios edge-llm /
llama.cpp (the guest's against llama.cpp's native 1-thread figures).

LLAMA_BENCH may name several builds, comma-separated: each test runs on the first that runs it.

Usage: speed_types.py MODEL OUT_DIR EDGE_LLM LLAMA_BENCH[,LLAMA_BENCH...] TYPE[,TYPE...] [REPEAT]
"""

import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from fidelity import FTYPES, quantize  # noqa: E402


def quantize_quietly(model: str, path: str, ftype: int) -> None:
    """`quantize`, without llama.cpp's per-tensor log on stderr."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            quantize(model, path, ftype)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def llama_bench_one(binaries: list[str], path: str, threads: int, test: list[str]) -> float:
    """Tokens/s of one llama-bench test, from the first of `binaries` that runs it: a build
    with AMX where the CPU has it, else the plain native build (tests/peers/ggml_native_flags.sh
    says why AMX can fail). Which build ran is printed on stderr."""
    for binary in binaries:
        run = subprocess.run(
            [binary, "-m", path, *test, "-t", str(threads), "-r", "1", "-o", "json"],
            capture_output=True, text=True,
        )
        if run.returncode == 0:
            print(f"llama-bench {' '.join(test)} -t {threads}: {binary}", file=sys.stderr)
            return json.loads(run.stdout)[0]["avg_ts"]
    raise SystemExit(f"llama-bench {' '.join(test)} failed on {path} with every build: {binaries}")


def llama_bench(binaries: list[str], path: str, threads: int) -> tuple[float, float]:
    pp = llama_bench_one(binaries, path, threads, ["-p", "128", "-n", "0"])
    tg = llama_bench_one(binaries, path, threads, ["-p", "0", "-n", "64"])
    return pp, tg


def edge_llm_bench(binary: str, path: str, threads: int, backend: str = "native") -> tuple[float, float]:
    out = subprocess.run(
        [binary, "bench", "--model", path, "--backends", backend, "--thread-counts", str(threads),
         "--prefill", "128", "--decode", "64", "--repeat", "1", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    row = json.loads(out)["rows"][0]
    return row["pp128_tokens_per_s"], row["tg64_tokens_per_s"]


def main() -> None:
    model, out_dir, edge_llm = sys.argv[1:4]
    bench = sys.argv[4].split(",")
    types = sys.argv[5].split(",")
    repeat = int(sys.argv[6]) if len(sys.argv) > 6 else 3
    table = []
    for name in types:
        path = os.path.join(out_dir, f"llamacpp-{name}.gguf")
        if not os.path.exists(path):
            quantize_quietly(model, path, FTYPES[name])
        for threads in (1, 2):
            runs = {"llama.cpp": [], "edge-llm": []} | ({"guest": []} if threads == 1 else {})
            for _ in range(repeat):
                runs["llama.cpp"].append(llama_bench(bench, path, threads))
                runs["edge-llm"].append(edge_llm_bench(edge_llm, path, threads))
                if "guest" in runs:
                    runs["guest"].append(edge_llm_bench(edge_llm, path, threads, "wasm"))
            med = {k: (statistics.median(p for p, _ in v), statistics.median(t for _, t in v))
                   for k, v in runs.items()}
            row = {
                "type": name, "threads": threads, "runs": repeat,
                "llama_cpp_pp128": round(med["llama.cpp"][0], 1), "llama_cpp_tg64": round(med["llama.cpp"][1], 1),
                "edge_llm_pp128": round(med["edge-llm"][0], 1), "edge_llm_tg64": round(med["edge-llm"][1], 1),
            }
            row["pp128_ratio"] = round(row["edge_llm_pp128"] / row["llama_cpp_pp128"], 2)
            row["tg64_ratio"] = round(row["edge_llm_tg64"] / row["llama_cpp_tg64"], 2)
            if "guest" in med:
                row["guest_pp128"], row["guest_tg64"] = (round(x, 1) for x in med["guest"])
                row["guest_tg64_ratio"] = round(row["guest_tg64"] / row["llama_cpp_tg64"], 2)
            print(json.dumps(row), flush=True)
            table.append(row)
    print()
    print("| type | threads | prefill pp128 tok/s: edge-llm / llama.cpp | ratio | decode tg64 tok/s: edge-llm / llama.cpp | ratio "
          "| guest kernel decode tg64 tok/s | guest ÷ llama.cpp |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in table:
        guest = f"{r['guest_tg64']} | {r['guest_tg64_ratio']}x" if "guest_tg64" in r else "| "
        print(f"| {r['type']} | {r['threads']} | {r['edge_llm_pp128']} / {r['llama_cpp_pp128']} | {r['pp128_ratio']}x "
              f"| {r['edge_llm_tg64']} / {r['llama_cpp_tg64']} | {r['tg64_ratio']}x | {guest} |")


if __name__ == "__main__":
    main()
