"""The tables of BENCHMARKS.md's "The API as users call it" section, from one run's outputs.

    python tools/bench/api_tables.py DIR

DIR holds what tools/bench/run_api.sh writes: `ddim bench --json` with glibc's default malloc
(ddim_default.json), tuned (ddim_tuned.json) and on the portable kernels (ddim_portable.json);
tools/bench/bench_diffusers.py --json, default and --tune-malloc (diffusers_default.json,
diffusers_tuned.json); and the candle_bench example's output (candle_default.txt,
candle_tuned.txt). Prints Markdown; no number in the section is typed by hand.
"""

import json
import re
import sys
from pathlib import Path


def load(path):
    return json.loads(Path(path).read_text())


def key(row):
    return (tuple(row["shape"]), float(row["eta"]), bool(row["thresholding"]))


def rows_by_key(doc):
    return {key(r): r for r in doc["results"]}


def shape_name(shape):
    return "×".join(str(s) for s in shape)


def fmt(us):
    return f"{us:,.0f}" if us >= 1000 else (f"{us:.1f}" if us >= 10 else f"{us:.2f}")


def slices_table(d):
    ours = {m: rows_by_key(load(d / f"ddim_{m}.json")) for m in ("default", "tuned", "portable")}
    base = {m: rows_by_key(load(d / f"diffusers_{m}.json")) for m in ("default", "tuned")}
    path = load(d / "ddim_default.json")["kernel_path"]
    print(f"Kernels: `{path}` (the portable columns: `--portable`, SSE2).\n")
    print(
        "| shape | η | thr. | `step_into` µs (default / tuned) | % of copy (default / tuned) "
        "| in place µs (default / tuned) | `step` µs (default / tuned) | `step_into` portable µs "
        "| diffusers µs (default / tuned) | in place × diffusers (default / tuned) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for k, dflt in ours["default"].items():
        tuned, port = ours["tuned"][k], ours["portable"][k]
        bd, bt = base["default"].get(k), base["tuned"].get(k)
        in_d = dflt["in_place_with_refresh_us"] - dflt["refresh_us"]
        in_t = tuned["in_place_with_refresh_us"] - tuned["refresh_us"]
        diff = (
            f"{fmt(bd['us_per_step'])} / {fmt(bt['us_per_step'])}" if bd and bt else "–"
        )
        speed = (
            f"{bd['us_per_step'] / in_d:.0f}× / {bt['us_per_step'] / in_t:.0f}×" if bd and bt else "–"
        )
        print(
            f"| {shape_name(k[0])} | {k[1]:g} | {'yes' if k[2] else 'no'} "
            f"| {fmt(dflt['us_per_step'])} / {fmt(tuned['us_per_step'])} "
            f"| {dflt['percent_of_copy']:.0f} % / {tuned['percent_of_copy']:.0f} % "
            f"| {fmt(in_d)} / {fmt(in_t)} "
            f"| {fmt(dflt['alloc_step_us'])} / {fmt(tuned['alloc_step_us'])} "
            f"| {fmt(port['us_per_step'])} "
            f"| {diff} | {speed} |"
        )
    print()
    print("`step_into` against diffusers (thresholded rows, tuned malloc on both sides):\n")
    print("| shape | η | diffusers µs | `step_into` µs | × |")
    print("|---|---|---:|---:|---:|")
    for k, tuned in ours["tuned"].items():
        bt = base["tuned"].get(k)
        if k[2] and bt:
            print(
                f"| {shape_name(k[0])} | {k[1]:g} | {fmt(bt['us_per_step'])} "
                f"| {fmt(tuned['us_per_step'])} | {bt['us_per_step'] / tuned['us_per_step']:.1f}× |"
            )
    print()


def candle_table(d):
    print("| row | ddim µs (default / tuned) | candle µs (default / tuned) | × (default / tuned) |")
    print("|---|---:|---:|---:|")
    parsed = {}
    row = re.compile(r"^(.*?)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+x\b")
    for m in ("default", "tuned"):
        for line in (d / f"candle_{m}.txt").read_text().splitlines():
            found = row.match(line)
            if found and not line.startswith("#"):
                name, ours, theirs = found.groups()
                parsed.setdefault(name, {})[m] = (float(ours), float(theirs))
    for name, by in parsed.items():
        (od, cd), (ot, ct) = by["default"], by["tuned"]
        print(
            f"| {name} | {fmt(od)} / {fmt(ot)} | {fmt(cd)} / {fmt(ct)} "
            f"| {cd / od:.2f}× / {ct / ot:.2f}× |"
        )
    print()


def main():
    d = Path(sys.argv[1])
    slices_table(d)
    candle_table(d)


if __name__ == "__main__":
    main()
