#!/usr/bin/env bash
# The CMake arguments that build llama.cpp's ggml for this machine's CPU (GGML_NATIVE), on one
# line, each quoted for a shell (and for Python's shlex, which reads llama-cpp-python's
# CMAKE_ARGS): `eval "args=($(ggml_native_flags.sh))"` in `just llama-cpp-tools`.
#
# Without AMX where the CPU lists it, unless `--amx` is given: llama.cpp 0.3.36 built with
# `-march=native` on an Intel Xeon with AMX (2 vCPU under Firecracker) died in every prompt of
# a Q4_0 or Q8_0 file (SIGSEGV at `ldtilecfg` in `ggml_backend_amx_mul_mat`, on a tile
# configuration with 32 rows), while its single-token steps ran, 1.7-2× as fast as without AMX
# (ggml's AMX buffer type also brings its own AVX-512 VNNI kernels). So llama-server,
# llama-perplexity and llama-cpp-python are built without AMX, and `just llama-cpp-tools` adds
# a llama-bench built with it, which tests/peers/speed_types.py tries first.
set -euo pipefail
args=(-DGGML_NATIVE=ON)
if [ "${1:-}" != --amx ] && grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
    off="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    args+=("-DCMAKE_C_FLAGS=$off" "-DCMAKE_CXX_FLAGS=$off")
fi
printf '%q ' "${args[@]}"
echo
