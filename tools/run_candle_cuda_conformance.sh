#!/usr/bin/env bash
# Runs the conformance suite's candle backends on a CUDA GPU (device 0): the candle op path
# (what CUDA runs) against the slice path and the diffusers fixtures, for F16, BF16, F32, F64.
#
# CI never runs this (it has no GPU). Needs: a CUDA toolkit with nvcc on PATH (candle-kernels
# compiles its PTX at build time), an NVIDIA driver, and the crates of candle's `cuda` feature
# (candle-kernels, cudarc, bindgen_cuda) in the cargo cache or reachable on crates.io.
#
# candle's `cuda` feature is switched on from the command line (`candle-core/cuda`), not by a
# ddim feature: a `cuda` feature in ddim's Cargo.toml would be part of `--all-features`, which
# CI builds on machines without a CUDA toolkit.
#
# On a device other than the CPU the suite asserts agreement with the slice path within 8 unit
# roundoffs of the dtype times the case's sensitivity (bit-identity is asserted on the CPU
# only), and prints the largest differences it saw per backend.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
command -v nvcc >/dev/null || { echo "nvcc not found: candle's cuda feature needs the CUDA toolkit" >&2; exit 2; }
nvcc --version | tail -1

export DDIM_TEST_DEVICE=cuda
timeout "${DDIM_CUDA_TIMEOUT:-540}" cargo test -p ddim --release \
  --features candle,candle-core/cuda --test conformance -- --nocapture --test-threads 1
