#!/usr/bin/env bash
# One benchmark run for BENCHMARKS.md: build everything, then time ddim, diffusers and candle
# one after the other on this machine, and merge the results into one markdown table
# (tools/bench/last-run.md).
#
# Usage: tools/bench/run.sh [--quick] [--skip-ddim] [--no-tuned-malloc]
#   --quick            only the two smallest shapes, short rows (a smoke test, not for BENCHMARKS.md)
#   --skip-ddim        do not build or run `ddim bench` (baselines only)
#   --no-tuned-malloc  skip the second pass of the baselines with glibc malloc tuned (see README.md)
# Environment:
#   PYTHON     the Python with torch + diffusers (default tools/.venv/bin/python; see tools/README.md)
#   BENCH_OUT  where the JSON files go (default: a new directory under /tmp)
# Keep the machine otherwise idle while it runs: every number is a wall-clock time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

QUICK=()
SKIP_DDIM=0
TUNED=1
for a in "$@"; do
    case "$a" in
        --quick) QUICK=(--quick) ;;
        --skip-ddim) SKIP_DDIM=1 ;;
        --no-tuned-malloc) TUNED=0 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument: $a" >&2; exit 2 ;;
    esac
done
CMD="tools/bench/run.sh${QUICK:+ --quick}"
[ "$SKIP_DDIM" = 1 ] && CMD="$CMD --skip-ddim"
[ "$TUNED" = 0 ] && CMD="$CMD --no-tuned-malloc"

PYTHON="${PYTHON:-tools/.venv/bin/python}"
if ! "$PYTHON" -c 'import torch, diffusers' 2>/dev/null; then
    echo "run.sh: $PYTHON cannot import torch and diffusers." >&2
    echo "        Create tools/.venv as tools/README.md says, or set PYTHON=/path/to/python." >&2
    exit 1
fi

OUT="${BENCH_OUT:-$(mktemp -d /tmp/ddim-bench.XXXXXX)}"
mkdir -p "$OUT"
CANDLE_DIR=tools/bench/candle-ddim
CANDLE_BIN="$CANDLE_DIR/target/release/candle-ddim-bench"

stamp() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(stamp)" 'BEGIN { printf "%.1f s", b - a }'; }

# ---- builds (all before any timing) -------------------------------------------------------
HAVE_DDIM=0
if [ "$SKIP_DDIM" = 0 ]; then
    echo "== cargo build --release -p ddim-cli"
    cargo build --release -p ddim-cli
    if target/release/ddim bench --help >/dev/null 2>&1; then
        HAVE_DDIM=1
    else
        echo "run.sh: target/release/ddim has no 'bench' subcommand yet: skipping ddim (its columns will be —)." >&2
    fi
fi
echo "== cargo build --release ($CANDLE_DIR, standalone crate)"
cargo build --release --locked --manifest-path "$CANDLE_DIR/Cargo.toml"

# ---- timing, one after the other ----------------------------------------------------------
sleep 3   # let the builds' threads go away
echo "== load average before timing: $(cat /proc/loadavg)"

DDIM_JSON=()
if [ "$HAVE_DDIM" = 1 ]; then
    echo "== ddim bench"
    t=$(stamp)
    target/release/ddim bench "${QUICK[@]}" --json "$OUT/ddim.json"
    echo "   ddim bench took $(took "$t")"
    DDIM_JSON=(--ddim "$OUT/ddim.json")
fi

echo "== diffusers ($PYTHON tools/bench/bench_diffusers.py)"
t=$(stamp)
"$PYTHON" tools/bench/bench_diffusers.py "${QUICK[@]}" --json "$OUT/diffusers.json"
echo "   diffusers took $(took "$t")"

echo "== candle, default threads"
t=$(stamp)
env -u CANDLE_NUM_THREADS -u RAYON_NUM_THREADS "$CANDLE_BIN" "${QUICK[@]}" --json "$OUT/candle.json"
echo "   candle (default threads) took $(took "$t")"

echo "== candle, CANDLE_NUM_THREADS=1"
t=$(stamp)
env -u RAYON_NUM_THREADS CANDLE_NUM_THREADS=1 "$CANDLE_BIN" "${QUICK[@]}" --json "$OUT/candle-1t.json"
echo "   candle (1 thread) took $(took "$t")"

TUNED_JSON=()
if [ "$TUNED" = 1 ]; then
    echo "== diffusers, glibc malloc tuned (--tune-malloc)"
    t=$(stamp)
    "$PYTHON" tools/bench/bench_diffusers.py "${QUICK[@]}" --tune-malloc --json "$OUT/diffusers-tuned.json"
    echo "   diffusers (tuned malloc) took $(took "$t")"

    echo "== candle, default threads, glibc malloc tuned"
    t=$(stamp)
    env -u CANDLE_NUM_THREADS -u RAYON_NUM_THREADS "$CANDLE_BIN" "${QUICK[@]}" --tune-malloc \
        --json "$OUT/candle-tuned.json"
    echo "   candle (default threads, tuned malloc) took $(took "$t")"

    echo "== candle, CANDLE_NUM_THREADS=1, glibc malloc tuned"
    t=$(stamp)
    env -u RAYON_NUM_THREADS CANDLE_NUM_THREADS=1 "$CANDLE_BIN" "${QUICK[@]}" --tune-malloc \
        --json "$OUT/candle-1t-tuned.json"
    echo "   candle (1 thread, tuned malloc) took $(took "$t")"
    TUNED_JSON=(--diffusers-tuned "$OUT/diffusers-tuned.json" --candle-tuned "$OUT/candle-tuned.json"
                --candle-1t-tuned "$OUT/candle-1t-tuned.json")
fi

echo "== load average after timing: $(cat /proc/loadavg)"
echo
python3 tools/bench/compare.py "${DDIM_JSON[@]}" \
    --diffusers "$OUT/diffusers.json" "${TUNED_JSON[@]}" \
    --candle "$OUT/candle.json" \
    --candle-1t "$OUT/candle-1t.json" \
    --command "$CMD" \
    --out tools/bench/last-run.md
echo
echo "wrote tools/bench/last-run.md; raw JSON in $OUT"
