#!/usr/bin/env python3
"""Side-by-side benchmark of edge-llm and its peers, in one run, on the same model and prompts.

`just bench-peers` runs this with the peers' virtualenv (build/peers/venv). Every figure is the
median of --repeat runs with min and max; each run is a process of its own, so that its peak
RSS can be read. Writes peers.json, peers.md and peers.png to --out.

Engines:
- edge-llm: `edge-llm bench --json` for the native backend at each thread count and the guest's
  kernel in wasmtime (one thread); process start -> first token is `edge-llm run --max-tokens 1`
  with a warm component cache.
Each round runs every configuration once; the figures are over --repeat rounds.
- llama.cpp through llama-cpp-python (this file's `llama-worker` mode): prefill of the same
  number of tokens, one-token decode steps, TTFT of a 32-token prompt; process start -> first
  token is a new Python process that loads the model and generates one token.
Peers that are not installed are listed as not measured, never guessed.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FILLER = (
    "WebAssembly is a binary instruction format for a stack-based virtual machine, designed as a "
    "portable compilation target for programming languages, enabling deployment on the web for "
    "client and server applications. "
)


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def run_measured(cmd, env=None):
    """Runs cmd, returns its stdout; a failure raises with the end of its stderr."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode().strip()[-400:]}")
    return out.decode()


def peak_rss_of(cmd, env=None):
    """Runs cmd in a fresh wrapper process so RUSAGE_CHILDREN holds only its peak RSS."""
    wrapper = (
        "import resource,subprocess,sys,json;"
        "p=subprocess.run(sys.argv[1:],capture_output=True);"
        "sys.stderr.buffer.write(p.stderr);sys.stdout.buffer.write(p.stdout);"
        "print('\\n@@RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
        "sys.exit(p.returncode)"
    )
    out = run_measured([sys.executable, "-c", wrapper, *cmd], env=env)
    body, _, tail = out.rpartition("@@RSS_KIB")
    return body, int(tail.strip()) / 1024.0


def wall_ms(cmd, repeat, env=None):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        times.append((time.perf_counter() - t) * 1e3)
    return stats(times)


# ---------------------------------------------------------------------------------------------
# llama.cpp (llama-cpp-python)


def llama_worker(args):
    from llama_cpp import Llama

    llm = Llama(model_path=args.model, n_ctx=512, n_batch=512, n_threads=args.threads,
                n_threads_batch=args.threads, verbose=False)
    filler = llm.tokenize((FILLER * 8).encode(), add_bos=False, special=True)
    result = {}
    # Warm-up: first touch of the weights.
    llm.reset()
    llm.eval(filler[:8])
    for n in args.prefill:
        speeds = []
        for rep in range(args.repeat):
            toks = [filler[rep]] + filler[:n - 1]  # a different first token each time
            llm.reset()
            t = time.perf_counter()
            llm.eval(toks)
            speeds.append(n / (time.perf_counter() - t))
        result[f"pp{n}_tokens_per_s"] = stats(speeds)
    ttfts = []
    for rep in range(args.repeat):
        toks = [filler[rep]] + filler[:31]
        llm.reset()
        t = time.perf_counter()
        llm.eval(toks)
        llm.sample(temp=0.0)
        ttfts.append((time.perf_counter() - t) * 1e3)
    result["ttft32_ms"] = stats(ttfts)
    speeds = []
    story = llm.tokenize(b"Story: Once upon a time", add_bos=False, special=True)
    for rep in range(args.repeat):
        llm.reset()
        llm.eval(story)
        tok = filler[rep]
        t = time.perf_counter()
        for _ in range(args.decode):
            llm.eval([tok])
        speeds.append(args.decode / (time.perf_counter() - t))
    result[f"tg{args.decode}_tokens_per_s"] = stats(speeds)
    print(json.dumps(result))


LLAMA_FIRST_TOKEN = (
    "import sys\n"
    "from llama_cpp import Llama\n"
    "llm = Llama(model_path=sys.argv[1], n_ctx=512, n_threads=int(sys.argv[2]), verbose=False)\n"
    "llm.create_completion('Hi', max_tokens=1, temperature=0.0)\n"
)


def llama_round(args, t):
    """One run of llama.cpp at t threads: {metric: value}, peak RSS."""
    out, rss = peak_rss_of([sys.executable, __file__, "llama-worker", "--model", args.model,
                            "--threads", str(t), "--repeat", "1", "--decode", str(args.decode),
                            "--prefill", *map(str, args.prefill)])
    row = {k: v["median"] for k, v in json.loads(out.strip().splitlines()[-1]).items()}
    row["start_to_first_token_ms"] = wall_ms(
        [sys.executable, "-c", LLAMA_FIRST_TOKEN, args.model, str(t)], 1)["median"]
    return row, rss


# ---------------------------------------------------------------------------------------------
# edge-llm


def edge_round(args, backend, t):
    """One run of `edge-llm bench` for one backend: {metric: value}, peak RSS."""
    cmd = [args.edge_llm, "bench", "--json", "--model", args.model, "--backends", backend,
           "--repeat", "1", "--decode", str(args.decode),
           "--prefill", ",".join(map(str, args.prefill))]
    run = [args.edge_llm, "run", "--model", args.model, "--backend", backend, "--max-tokens", "1"]
    if backend == "native":
        cmd += ["--thread-counts", str(t)]
        run += ["--threads", str(t)]
    out, rss = peak_rss_of(cmd)
    (r,) = json.loads(out)["rows"]
    row = {k: r[k] for k in [f"pp{n}_tokens_per_s" for n in args.prefill] + [f"tg{args.decode}_tokens_per_s"]}
    row["ttft32_ms"] = r.get("pp32_ttft_ms")
    subprocess.run(run + ["Hi"], check=True, capture_output=True)  # the component cache is warm
    row["start_to_first_token_ms"] = wall_ms(run + ["Hi"], 1)["median"]
    return row, rss


def bench_all(args):
    """Every configuration once per round, rounds repeated: slow phases of a shared machine
    hit all engines alike instead of whichever ran then."""
    configs = [("edge-llm native", "native wasi-nn backend", t) for t in args.threads]
    configs.append(("edge-llm wasm", "guest kernel in wasmtime", 1))
    missing = []
    try:
        import llama_cpp
        features = llama_cpp.llama_print_system_info().decode().strip()
        label = f"llama-cpp-python {llama_cpp.__version__}; {features}"
        configs += [("llama.cpp", label, t) for t in args.threads]
    except ImportError:
        missing.append(("llama.cpp", "llama-cpp-python is not installed"))
    samples = {c: ([], []) for c in configs}
    for _ in range(args.repeat):
        for c in configs:
            engine, _, t = c
            if engine == "llama.cpp":
                row, rss = llama_round(args, t)
            else:
                row, rss = edge_round(args, engine.split()[-1], t)
            samples[c][0].append(row)
            samples[c][1].append(rss)
    rows = []
    for (engine, label, t), (runs, rss) in samples.items():
        row = {k: stats([r[k] for r in runs]) for k in runs[0] if runs[0][k] is not None}
        row.update(engine=engine, config=label, threads=t, peak_rss_mib=max(rss))
        rows.append(row)
    return rows, missing


# ---------------------------------------------------------------------------------------------
# Report


def fmt(s, digits=0):
    if s is None:
        return "—"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"


def ratio(ours, theirs, higher_is_better=True):
    if ours is None or theirs is None:
        return "—"
    r = ours["median"] / theirs["median"] if higher_is_better else theirs["median"] / ours["median"]
    return f"{r:.2f}×"


def report(args, rows, missing):
    keys = [f"pp{n}_tokens_per_s" for n in args.prefill] + [f"tg{args.decode}_tokens_per_s"]
    heads = [f"pp{n} tok/s" for n in args.prefill] + [f"tg{args.decode} tok/s"]
    lines = [
        "| engine | threads | " + " | ".join(heads) + " | TTFT 32 tok, ms | start → first token, ms | peak RSS MiB |",
        "|---|---|" + "---|" * len(heads) + "---|---|---|",
    ]
    for r in rows:
        cells = [fmt(r.get(k), 1 if k.startswith("tg") else 0) for k in keys]
        lines.append(f"| {r['engine']} | {r['threads']} | " + " | ".join(cells)
                     + f" | {fmt(r.get('ttft32_ms'), 1)} | {fmt(r.get('start_to_first_token_ms'))}"
                     f" | {r['peak_rss_mib']:.0f} |")
    lines.append("")
    lines.append("Medians of each figure's runs, [min–max] beside them.")
    lines.append("")
    by = {(r["engine"], r["threads"]): r for r in rows}
    ratio_lines = []
    for t in args.threads:
        ours = by.get(("edge-llm native", t))
        peer = by.get(("llama.cpp", t))
        if ours and peer:
            cells = [ratio(ours.get(k), peer.get(k)) for k in keys]
            ratio_lines.append(f"| edge-llm native ÷ llama.cpp | {t} | " + " | ".join(cells)
                               + f" | {ratio(ours.get('ttft32_ms'), peer.get('ttft32_ms'), False)}"
                               f" | {ratio(ours.get('start_to_first_token_ms'), peer.get('start_to_first_token_ms'), False)} |")
    wasm = by.get(("edge-llm wasm", 1))
    peer1 = by.get(("llama.cpp", 1))
    if wasm and peer1:
        cells = [ratio(wasm.get(k), peer1.get(k)) for k in keys]
        ratio_lines.append("| edge-llm guest kernel (wasm) ÷ llama.cpp | 1 | " + " | ".join(cells)
                           + f" | {ratio(wasm.get('ttft32_ms'), peer1.get('ttft32_ms'), False)}"
                           f" | {ratio(wasm.get('start_to_first_token_ms'), peer1.get('start_to_first_token_ms'), False)} |")
    if ratio_lines:
        lines.append("Ratios (above 1× means edge-llm is faster; times are inverted so that holds):")
        lines.append("")
        lines.append("| ratio | threads | " + " | ".join(heads) + " | TTFT | start → first token |")
        lines.append("|---|---|" + "---|" * len(heads) + "---|---|")
        lines.extend(ratio_lines)
        lines.append("")
    configs = sorted({r["config"] for r in rows if r["engine"] == "llama.cpp"})
    for c in configs:
        lines.append(f"- llama.cpp build: {c}")
    for name, why in missing:
        lines.append(f"- {name}: not measured in this run ({why}).")
    return "\n".join(lines) + "\n"


def chart(args, rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = [f"pp{n}_tokens_per_s" for n in args.prefill] + [f"tg{args.decode}_tokens_per_s"]
    labels = [f"{r['engine']} ({r['threads']}t)" for r in rows]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 4.2))
    for ax, key in zip(axes, keys):
        med = [r[key]["median"] if r.get(key) else 0 for r in rows]
        lo = [m - r[key]["min"] if r.get(key) else 0 for m, r in zip(med, rows)]
        hi = [r[key]["max"] - m if r.get(key) else 0 for m, r in zip(med, rows)]
        colors = ["#2b6cb0" if r["engine"].startswith("edge-llm") else "#c05621" for r in rows]
        ax.barh(labels, med, xerr=[lo, hi], color=colors)
        ax.set_title(key.replace("_tokens_per_s", " tokens/s"))
        ax.invert_yaxis()
        if ax is not axes[0]:
            ax.set_yticklabels([])
    fig.suptitle("SmolLM2-135M-Instruct Q4_1, same machine, same run (median, min–max)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "llama-worker":
        p = argparse.ArgumentParser()
        p.add_argument("mode")
        p.add_argument("--model", required=True)
        p.add_argument("--threads", type=int, required=True)
        p.add_argument("--repeat", type=int, default=5)
        p.add_argument("--decode", type=int, default=64)
        p.add_argument("--prefill", type=int, nargs="+", default=[32, 128])
        return llama_worker(p.parse_args())
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--edge-llm", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--decode", type=int, default=64)
    p.add_argument("--prefill", type=int, nargs="+", default=[32, 128])
    args = p.parse_args()
    if args.repeat < 5:
        p.error("--repeat must be at least 5 (medians with min and max)")
    rows, missing = bench_all(args)
    missing.append(("candle", "its bench crate is not written yet"))
    missing.append(("transformers + PyTorch CPU", "not installed by the recipe yet"))
    os.makedirs(args.out, exist_ok=True)
    meta = {"model": os.path.basename(args.model), "repeat": args.repeat, "rows": rows,
            "missing": missing, "cpu": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    with open(os.path.join(args.out, "peers.json"), "w") as f:
        json.dump(meta, f, indent=1)
    md = report(args, rows, missing)
    with open(os.path.join(args.out, "peers.md"), "w") as f:
        f.write(md)
    chart(args, rows, os.path.join(args.out, "peers.png"))
    print(md)


if __name__ == "__main__":
    main()
