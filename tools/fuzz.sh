#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a set time, one after another, at low priority,
# and prints the executions of each. Not part of CI (cargo-fuzz needs nightly compiler
# flags; here they are unlocked on the stable toolchain with RUSTC_BOOTSTRAP=1).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Needs `cargo install cargo-fuzz`. Corpora grow in fuzz/corpus/<target> (git-ignored);
# crashes land in fuzz/artifacts/<target>/ and make the script exit 1. Seeds: the real configs
# in crates/ddim/tests/data/configs/ for config_json. Targets are built without a sanitizer
# (`-s none`: the crates forbid unsafe code) but with debug assertions, so integer overflow
# is a crash. Adding a target: see fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1 CARGO_TERM_COLOR=never

seconds="${1:-60}"
shift || true
mkdir -p logs
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

for target in "${targets[@]}"; do
    nice -n 19 cargo fuzz build -s none "$target" 2>"logs/build-$target.log" ||
        { cat "logs/build-$target.log" >&2; exit 2; }
done
total=0
failed=()
printf '%-16s %14s %10s %8s  %s\n' target executions exec/s seconds result
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    seeds=()
    [ -d "seeds/$target" ] && seeds+=("seeds/$target")
    [ "$target" = config_json ] && seeds+=("../crates/ddim/tests/data/configs")
    log="logs/$target.log"
    start=$(date +%s)
    if nice -n 19 cargo fuzz run -s none "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
        >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see fuzz/$log, fuzz/artifacts/$target/)"
        failed+=("$target")
    fi
    elapsed=$(($(date +%s) - start))
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    runs="${runs:-0}"
    total=$((total + runs))
    printf '%-16s %14d %10d %8d  %s\n' "$target" "$runs" "$((runs / (elapsed > 0 ? elapsed : 1)))" \
        "$elapsed" "$result"
done
printf '%-16s %14d\n' total "$total"
[ "${#failed[@]}" -eq 0 ] || { echo "crashed: ${failed[*]}" >&2; exit 1; }
