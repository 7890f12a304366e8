#!/usr/bin/env bash
# One run for BENCHMARKS.md's "The API as users call it" section: `ddim bench` (every shape;
# glibc's default malloc, tuned, and the portable kernels), diffusers' step (default and tuned
# malloc) and the candle_bench example (both malloc settings), one after the other, then the
# section's tables (tools/bench/api_tables.py).
#
# Usage: tools/bench/run_api.sh [OUT_DIR]   (default: a new directory under /tmp)
# Environment: PYTHON, the Python with torch + diffusers (default tools/.venv/bin/python).
# Keep the machine otherwise idle while it runs (about 10 minutes after the builds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${1:-$(mktemp -d /tmp/ddim-api-bench.XXXXXX)}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-tools/.venv/bin/python}"
TUNE=(env MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432)

cargo build --release -q -p ddim-cli
cargo build --release -q -p ddim --example candle_bench --features ddim/candle-transformers

date -u '+%Y-%m-%d %H:%M UTC' > "$OUT/started"
target/release/ddim bench --json "$OUT/ddim_default.json" > "$OUT/ddim_default.txt"
"${TUNE[@]}" target/release/ddim bench --json "$OUT/ddim_tuned.json" > "$OUT/ddim_tuned.txt"
target/release/ddim bench --portable --json "$OUT/ddim_portable.json" > "$OUT/ddim_portable.txt"
"$PYTHON" tools/bench/bench_diffusers.py --json "$OUT/diffusers_default.json" > "$OUT/diffusers_default.txt"
"$PYTHON" tools/bench/bench_diffusers.py --tune-malloc --json "$OUT/diffusers_tuned.json" > "$OUT/diffusers_tuned.txt"
target/release/examples/candle_bench > "$OUT/candle_default.txt"
"${TUNE[@]}" target/release/examples/candle_bench > "$OUT/candle_tuned.txt"
date -u '+%Y-%m-%d %H:%M UTC' > "$OUT/finished"
uptime > "$OUT/uptime"

python3 tools/bench/api_tables.py "$OUT" > "$OUT/tables.md"
echo "results in $OUT (tables: $OUT/tables.md)"
