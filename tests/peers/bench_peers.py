#!/usr/bin/env python3
"""Side-by-side benchmark of edge-llm and its peers, in one run, on the same model and prompts.

`just bench-peers` runs this with the peers' virtualenv (build/peers/venv). Every figure is the
median of --repeat runs with min and max; each run is a process of its own, so that its peak
RSS can be read. Writes peers.json, peers.md and peers.png to --out.

Engines:
- edge-llm: `edge-llm bench --json` for the native backend at each thread count and the guest's
  kernel in wasmtime (one thread); process start -> first token is `edge-llm run --max-tokens 1`
  with a warm component cache.
- edge-llm per request under the stock `wasmtime serve` (--serve-cwasm: the bundled HTTP
  component, precompiled): every request is a fresh instance of the bundle's memory image, and
  its figures are client-side, over HTTP, instance start included: prefill = prompt tokens /
  the time of a 1-token completion, TTFT = time to the first streamed token of a 32-token
  prompt, decode = the streamed tokens after the first over their time; process start -> first
  token is the spawn of `wasmtime serve` to the end of its first 1-token answer.
- llama.cpp through llama-cpp-python (this file's `llama-worker` mode): prefill of the same
  number of tokens, one-token decode steps, TTFT of a 32-token prompt; process start -> first
  token is a new Python process that loads the model and generates one token.
- transformers + PyTorch CPU (`torch-worker` mode; the GGUF dequantized to f32 by
  transformers) and candle (tests/peers/candle, natively and compiled to wasm32-wasip2 under
  wasmtime): the same measurements on edge-llm's token ids of the same filler text.
Each round runs every configuration once; the figures are over --repeat rounds. Peers that are
not installed are listed as not measured, never guessed.
"""

import argparse
import http.client
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version

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
    """Runs cmd, returns its stdout and its peak RSS in MiB (from wait4's rusage of that child
    alone, so no wrapper process adds to a start-up time)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            tail = err.read().decode(errors="replace").strip()[-400:]
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {tail}")
        return out.read().decode(), usage.ru_maxrss / 1024.0


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


LLAMA_FEATURES = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"

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
# Peers that take token ids: transformers + PyTorch (this file's `torch-worker` mode) and
# candle (tests/peers/candle, natively and in wasmtime). Each run is one process that loads the
# model, produces the first token of FIRST_TEXT, then measures prefill, TTFT and decode on
# the same filler ids; start -> first token is from the parent's clock just before the spawn.

FIRST_TEXT = "Hi"


def torch_worker(args):
    t0 = args.t0
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    torch.set_num_threads(args.threads)
    logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(os.path.abspath(args.model)), gguf_file=os.path.basename(args.model),
        dtype=torch.float32).eval()
    ids = [int(v) for v in args.ids.split(",")]
    first = [int(v) for v in args.first_ids.split(",")]

    def step(toks, past=None):
        out = model(torch.tensor([toks]), past_key_values=past, use_cache=True)
        return int(out.logits[0, -1].argmax()), out.past_key_values

    result = {}
    with torch.inference_mode():
        step(first)
        result["start_to_first_token_ms"] = (time.time() - t0) * 1e3
        for n in args.prefill:
            t = time.perf_counter()
            step(ids[:n])
            result[f"pp{n}_tokens_per_s"] = n / (time.perf_counter() - t)
        t = time.perf_counter()
        step(ids[1:33])
        result["ttft32_ms"] = (time.perf_counter() - t) * 1e3
        tok, past = step(ids[:8])
        t = time.perf_counter()
        for _ in range(args.decode):
            tok, past = step([tok], past)
        result[f"tg{args.decode}_tokens_per_s"] = args.decode / (time.perf_counter() - t)
    print(json.dumps(result))


def ids_round(args, cmd, env=None):
    """One run of a token-id peer: {metric: value}, peak RSS."""
    ids, first = args.ids
    cmd = cmd + ["--ids", ",".join(map(str, ids)), "--first-ids", ",".join(map(str, first)),
                 "--prefill", ",".join(map(str, args.prefill)), "--decode", str(args.decode),
                 "--t0", repr(time.time())]
    out, rss = peak_rss_of(cmd, env=env)
    return json.loads(out.strip().splitlines()[-1]), rss


def torch_round(args, t):
    return ids_round(args, [sys.executable, __file__, "torch-worker", "--model", args.model,
                            "--threads", str(t)])


def candle_round(args, t, wasm):
    if wasm:
        model_dir = os.path.dirname(os.path.abspath(args.model))
        cmd = ["wasmtime", "run", "-C", "cache=y", "-W", "simd=y,relaxed-simd=y", "--dir", f"{model_dir}::/models",
               args.candle_wasm, "--model", "/models/" + os.path.basename(args.model)]
        return ids_round(args, cmd)
    env = dict(os.environ, RAYON_NUM_THREADS=str(t))
    return ids_round(args, [args.candle, "--model", args.model], env=env)


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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, body, on_token=None):
    """POSTs a /v1/completions body (new connection, as per-request clients do); returns the
    JSON answer, or for `stream` the usage of the final chunk after calling on_token() per
    chunk with text."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"wasmtime serve answered {resp.status}: {resp.read()[:300]!r}")
        if not body.get("stream"):
            return json.loads(resp.read())
        usage = None
        for line in resp:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            event = json.loads(line[6:])
            if any(c.get("text") for c in event.get("choices", [])) and on_token:
                on_token()
            usage = event.get("usage") or usage
        return {"usage": usage}
    finally:
        conn.close()


def text_of(args, n):
    """The longest whole-word prefix of the filler text with at most n tokens."""
    words = (FILLER * 8).split()
    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(token_ids(args, " ".join(words[:mid]))) <= n:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def serve_round(args):
    """One run of `wasmtime serve` on the precompiled bundled HTTP component."""
    port = free_port()
    greedy = {"temperature": 0, "max_tokens": 1}
    t0 = time.perf_counter()
    proc = subprocess.Popen(["wasmtime", "serve", "-S", "cli", "--allow-precompiled", "--addr",
                             f"127.0.0.1:{port}", args.serve_cwasm],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    row = {}
    try:
        while True:
            try:
                post(port, dict(greedy, prompt="Hi"))
                break
            except ConnectionError:  # not listening yet
                if proc.poll() is not None:
                    raise RuntimeError(f"wasmtime serve exited with {proc.returncode}")
                time.sleep(0.002)
        row["start_to_first_token_ms"] = (time.perf_counter() - t0) * 1e3
        for n in args.prefill:
            t = time.perf_counter()
            r = post(port, dict(greedy, prompt=args.serve_prompts[n]))
            row[f"pp{n}_tokens_per_s"] = r["usage"]["prompt_tokens"] / (time.perf_counter() - t)
        first = []
        t = time.perf_counter()
        post(port, dict(greedy, prompt=args.serve_prompts[32], stream=True),
             lambda: first.append(time.perf_counter()))
        row["ttft32_ms"] = (first[0] - t) * 1e3
        stamps = []
        r = post(port, {"prompt": "Story: Once upon a time", "temperature": 0, "ignore_eos": True,
                        "max_tokens": args.decode + 1, "stream": True,
                        "stream_options": {"include_usage": True}},
                 lambda: stamps.append(time.perf_counter()))
        tokens = (r["usage"] or {}).get("completion_tokens", len(stamps))
        row[f"tg{args.decode}_tokens_per_s"] = (tokens - 1) / (stamps[-1] - stamps[0])
        with open(f"/proc/{proc.pid}/status") as f:
            hwm = next(l for l in f if l.startswith("VmHWM:"))
        rss = int(hwm.split()[1]) / 1024.0
    finally:
        proc.terminate()
        proc.wait()
    return row, rss


def token_ids(args, text):
    """`text`'s token ids, from `edge-llm tokenize` (the peers that take ids get these)."""
    return json.loads(run_measured([args.edge_llm, "tokenize", "--model", args.model, "--no-control", text]))


def bench_all(args):
    """Every configuration once per round, rounds repeated: slow phases of a shared machine
    hit all engines alike instead of whichever ran then."""
    configs = [("edge-llm native", "native wasi-nn backend", t) for t in args.threads]
    configs.append(("edge-llm wasm", "guest kernel in wasmtime", 1))
    missing = []
    if args.serve_cwasm and os.path.exists(args.serve_cwasm):
        label = f"{os.path.basename(args.serve_cwasm)} under `wasmtime serve`, a fresh instance per request"
        configs.append(("edge-llm wasmtime serve", label, 1))
        args.serve_prompts = {n: text_of(args, n) for n in sorted(set(args.prefill + [32]))}
    else:
        missing.append(("edge-llm under wasmtime serve", f"{args.serve_cwasm or 'the component'} was not built"))
    # The peers' Python packages are looked up, not imported: this process stays small, as a
    # child's peak RSS (wait4) counts its parent's resident memory at the fork.
    if importlib.util.find_spec("llama_cpp"):
        features = run_measured([sys.executable, "-c", LLAMA_FEATURES]).strip()
        label = f"llama-cpp-python {version('llama-cpp-python')}; {features}"
        configs += [("llama.cpp", label, t) for t in args.threads]
    else:
        missing.append(("llama.cpp", "llama-cpp-python is not installed"))
    if importlib.util.find_spec("torch") and importlib.util.find_spec("transformers"):
        label = f"transformers {version('transformers')} + PyTorch {version('torch')} CPU, f32"
        configs += [("transformers", label, t) for t in args.threads]
    else:
        missing.append(("transformers + PyTorch CPU", "not installed in the peers' virtualenv"))
    for path, wasm, where in [(args.candle, False, "native"), (args.candle_wasm, True, "wasm")]:
        if path and os.path.exists(path):
            label = f"candle-transformers 0.11.1 quantized_llama, {where}"
            engine = "candle wasm" if wasm else "candle"
            configs += [(engine, label, t) for t in ([1] if wasm else args.threads)]
        else:
            missing.append((f"candle {where}", f"{path or 'its binary'} was not built"))
    if any(engine == "candle wasm" for engine, _, _ in configs):
        candle_round(args, 1, True)  # fills wasmtime's code cache, as edge-llm's is warm
    samples = {c: ([], []) for c in configs}
    for _ in range(args.repeat):
        for c in configs:
            engine, _, t = c
            if engine == "llama.cpp":
                row, rss = llama_round(args, t)
            elif engine == "transformers":
                row, rss = torch_round(args, t)
            elif engine.startswith("candle"):
                row, rss = candle_round(args, t, engine.endswith("wasm"))
            elif engine == "edge-llm wasmtime serve":
                row, rss = serve_round(args)
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


# (ours, peer, thread counts (None: every --threads), target): the targets of issue #7.
RATIOS = [
    ("edge-llm native", "llama.cpp", None, {"decode": 1.1, "prefill": 1.2}),
    ("edge-llm wasm", "llama.cpp", [1], {"decode": 0.6}),
    ("edge-llm native", "candle", None, {"decode": 3.0}),
    ("edge-llm wasm", "candle wasm", [1], {"decode": 5.0}),
    ("edge-llm native", "transformers", None, {"decode": 3.0}),
]


def verdict(target, ours, peer, args):
    """The target in plain words, and whether this run met it."""
    parts, missed = [], []
    for what, want in target.items():
        keys = ([f"tg{args.decode}_tokens_per_s"] if what == "decode"
                else [f"pp{n}_tokens_per_s" for n in args.prefill])
        got = min(ours[k]["median"] / peer[k]["median"] for k in keys)
        parts.append(f"{what} ≥ {want}×")
        if got < want:
            missed.append(f"{what} {got:.2f}×")
    return ", ".join(parts) + (": **missed** (" + ", ".join(missed) + ")" if missed else ": met")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return "unknown"
    name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    simd = [f for f in flags if f.startswith(("avx", "fma", "f16c")) or "vnni" in f]
    return f"{name}, {os.cpu_count()} CPUs; {' '.join(simd)}"


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
    for ours_name, peer_name, threads, target in RATIOS:
        for t in threads or args.threads:
            ours, peer = by.get((ours_name, t)), by.get((peer_name, t))
            if not (ours and peer):
                continue
            cells = [ratio(ours.get(k), peer.get(k)) for k in keys]
            ratio_lines.append(f"| {ours_name} ÷ {peer_name} | {t} | " + " | ".join(cells)
                               + f" | {ratio(ours.get('ttft32_ms'), peer.get('ttft32_ms'), False)}"
                               f" | {ratio(ours.get('start_to_first_token_ms'), peer.get('start_to_first_token_ms'), False)}"
                               f" | {verdict(target, ours, peer, args)} |")
    if ratio_lines:
        lines.append("Ratios (above 1× means edge-llm is faster; times are inverted so that holds):")
        lines.append("")
        lines.append("| ratio | threads | " + " | ".join(heads) + " | TTFT | start → first token | target (issue #7) |")
        lines.append("|---|---|" + "---|" * len(heads) + "---|---|---|")
        lines.extend(ratio_lines)
        lines.append("")
    for engine, config in sorted({(r["engine"], r["config"]) for r in rows}):
        lines.append(f"- {engine}: {config}")
    lines.append(f"- CPU: {cpu_name()}")
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
    if len(sys.argv) > 1 and sys.argv[1] == "torch-worker":
        p = argparse.ArgumentParser()
        p.add_argument("mode")
        p.add_argument("--model", required=True)
        p.add_argument("--threads", type=int, required=True)
        p.add_argument("--ids", required=True)
        p.add_argument("--first-ids", required=True)
        p.add_argument("--prefill", type=lambda v: [int(x) for x in v.split(",")], required=True)
        p.add_argument("--decode", type=int, required=True)
        p.add_argument("--t0", type=float, required=True)
        return torch_worker(p.parse_args())
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--edge-llm", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--candle", help="the native candle-bench binary")
    p.add_argument("--candle-wasm", help="candle-bench built for wasm32-wasip2")
    p.add_argument("--serve-cwasm", help="the bundled HTTP component, precompiled by `wasmtime compile`")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--decode", type=int, default=64)
    p.add_argument("--prefill", type=int, nargs="+", default=[32, 128])
    args = p.parse_args()
    if args.repeat < 5:
        p.error("--repeat must be at least 5 (medians with min and max)")
    need = max(args.prefill + [33]) + args.decode
    filler = token_ids(args, FILLER * 8)
    if len(filler) < need:
        p.error(f"the filler text has {len(filler)} tokens, fewer than {need}")
    args.ids = (filler[:need], token_ids(args, FIRST_TEXT))
    rows, missing = bench_all(args)
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
