#!/usr/bin/env bash
# One SD 1.5 UNet step at 512x512 (CFG batch of 2), ours (candle, this crate's UNet) against
# diffusers on torch CPU, in the same run, plus the scheduler + guidance + RNG share of a step.
# Random weights from SD 1.5's published unet/config.json: nothing is downloaded.
#
#   tools/bench/run_unet.sh [PYTHON] [REPEATS]     (PYTHON: the venv of tools/requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:-tools/.venv/bin/python}
repeats=${2:-3}
folder=${UNET_FOLDER:-/tmp/ddim-bench-sd15-unet}
cargo build --release -p ddim-pipeline --example unet_step --quiet
torch_json=$("$python" tools/bench/bench_unet.py --save "$folder" --repeats "$repeats")
ours_json=$(target/release/examples/unet_step "$folder" "$repeats")
echo "diffusers: $torch_json"
echo "ours:      $ours_json"
field() { sed -E "s/.*\"$2\": ([0-9.e+-]+).*/\1/" <<<"$1"; }
awk -v t="$(field "$torch_json" unet_s)" -v o="$(field "$ours_json" unet_s)" \
    -v tr="$(field "$torch_json" rest_ms)" -v or="$(field "$ours_json" rest_ms)" 'BEGIN {
  printf "| | diffusers (torch CPU) | ours (candle) | ours / diffusers |\n|---|---:|---:|---:|\n"
  printf "| UNet, 2x4x64x64 | %.2f s | %.2f s | %.2f |\n", t, o, o / t
  printf "| guidance + rescale + step (eta 1, randn) | %.3f ms | %.3f ms | %.3f |\n", tr, or, or / tr
  printf "| share of the step outside the UNet | %.4f %% | %.4f %% | |\n", 100 * tr / (1000 * t + tr), 100 * or / (1000 * o + or)
}'
