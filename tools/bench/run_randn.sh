#!/usr/bin/env bash
# One same-run comparison of torch.randn (CPU) and ddim::rng::TorchCpuGenerator, float32, for
# BENCHMARKS.md: torch, ours (portable x86-64 build: runtime AVX2 + FMA dispatch, and the
# forced portable path), ours (-C target-cpu=x86-64-v3), torch again, one after the other.
# All single-threaded (torch generates under the generator's lock; torch.set_num_threads(1)
# all the same).
#
# Usage: tools/bench/run_randn.sh        (PYTHON=/path/to/python to choose the torch Python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-tools/.venv/bin/python}"

echo "== builds"
cargo bench -q -p ddim --bench randn --no-run
RUSTFLAGS="-C target-cpu=x86-64-v3" cargo bench -q -p ddim --bench randn --target-dir target/x86-64-v3 --no-run
sleep 2
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== torch (1)"
"$PYTHON" tools/bench/bench_torch_randn.py --threads 1
echo "== ddim, portable x86-64 build (randn_f32: runtime dispatch; randn_f32_portable_path: forced portable code)"
cargo bench -q -p ddim --bench randn -- randn_f32 rand_f32
echo "== ddim, -C target-cpu=x86-64-v3"
RUSTFLAGS="-C target-cpu=x86-64-v3" cargo bench -q -p ddim --bench randn --target-dir target/x86-64-v3 -- randn_f32 rand_f32
echo "== torch (2)"
"$PYTHON" tools/bench/bench_torch_randn.py --threads 1
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
