#!/usr/bin/env python3
"""Merge the benchmark JSONs of one run into one markdown table (for BENCHMARKS.md).

Inputs (any may be missing; its columns then show "—"):
  --ddim PATH        written by `ddim bench --json PATH`
  --diffusers PATH   written by tools/bench/bench_diffusers.py --json PATH
  --candle PATH      written by candle-ddim-bench --json PATH (candle's default threads)
  --candle-1t PATH   written by CANDLE_NUM_THREADS=1 candle-ddim-bench --json PATH
  --diffusers-tuned PATH, --candle-tuned PATH, --candle-1t-tuned PATH
                     optional: the same benchmarks run with --tune-malloc; they give a second
                     table (same ddim column) "Baselines with glibc malloc tuned"

Rows: shape x eta x thresholding (the union of all inputs). Speed-ups are baseline µs / ddim µs.
A cell is "—" where an implementation has no such row (candle's DDIM has no thresholding).
Each table is followed by the targets of issue #4, checked against its measured ratios.

Plain python3, standard library only. Prints the markdown; --out FILE also writes it.
"""

import argparse
import datetime
import json
import os
import platform
import sys

DASH = "—"


def load(path, expect):
    if not path:
        return None
    if not os.path.exists(path):
        print(f"compare.py: {path} does not exist; its columns will be {DASH}", file=sys.stderr)
        return None
    with open(path) as f:
        data = json.load(f)
    impl = data.get("implementation")
    if impl != expect:
        sys.exit(f"compare.py: {path}: implementation is {impl!r}, expected {expect!r}")
    return data


def key(row):
    return (tuple(int(d) for d in row["shape"]), float(row["eta"]), bool(row["thresholding"]))


def index(data):
    if data is None:
        return {}
    out = {}
    for r in data.get("results", []):
        k = key(r)
        if k in out:
            sys.exit(f"compare.py: duplicate row {k} in {data.get('implementation')} results")
        out[k] = r
    return out


def fmt_us(v):
    if v is None:
        return DASH
    if v < 10:
        return f"{v:.2f}"
    if v < 1000:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def fmt_num(v, digits=1, suffix=""):
    return DASH if v is None else f"{v:.{digits}f}{suffix}"


def ratio(base, ours):
    if base is None or ours is None or ours <= 0:
        return None
    return base / ours


def fmt_ratio(r):
    if r is None:
        return DASH
    return f"{r:.1f}×" if r < 100 else f"{r:.0f}×"


def fmt_ratio2(r):
    return f"{r:.2f}×"


def us(rows, k):
    r = rows.get(k)
    return None if r is None else float(r["us_per_step"])


def cell_us(rows, k):
    """µs cell; "*" marks a row its benchmark flagged as disturbed by other processes."""
    r = rows.get(k)
    return fmt_us(us(rows, k)) + ("*" if r is not None and r.get("contended") else "")


def machine():
    model, ncpu = None, 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model is None:
                    model = line.split(":", 1)[1].strip()
                if line.startswith("processor"):
                    ncpu += 1
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) / (1024 * 1024)
                    break
    except OSError:
        pass
    caches = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for d in sorted(os.listdir(base)):
            if not d.startswith("index"):
                continue
            p = os.path.join(base, d)
            with open(os.path.join(p, "level")) as f:
                level = f.read().strip()
            with open(os.path.join(p, "type")) as f:
                typ = f.read().strip()
            with open(os.path.join(p, "size")) as f:
                size = f.read().strip()
            if typ in ("Unified", "Data"):
                caches.append(f"L{level} {size}")
    except OSError:
        pass
    return {
        "cpu": model or platform.processor() or "unknown",
        "logical_cpus": ncpu or os.cpu_count(),
        "mem_gib": mem,
        "caches": caches,
        "kernel": platform.release(),
    }


def shape_str(shape):
    return "×".join(str(d) for d in shape)


def table(lines, title, D, P, C, C1, cand_threads, note=None):
    """One side-by-side table (rows = shape × eta × thresholding) plus the targets of issue #4."""
    keys = sorted(set(D) | set(P) | set(C) | set(C1),
                  key=lambda k: (k[0][0] * k[0][1] * k[0][2] * k[0][3], k[0], k[2], k[1]))
    lines.append(f"### {title}")
    lines.append("")
    if note:
        lines.append(note)
        lines.append("")
    cname = f"candle µs ({cand_threads} thr)" if cand_threads else "candle µs (default thr)"
    header = ["shape", "eta", "thresholding", "ddim µs/step", "ddim GB/s", "ddim % of copy",
              "diffusers µs", cname, "candle µs (1 thr)",
              "× vs diffusers", "× vs candle", "× vs candle (1 thr)"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|")
    for k in keys:
        shape, eta, thr = k
        d = D.get(k)
        ours = us(D, k)
        row = [
            shape_str(shape),
            f"{eta:g}",
            "yes" if thr else "no",
            cell_us(D, k),
            fmt_num(None if d is None else d.get("gb_per_s"), 1),
            fmt_num(None if d is None else d.get("percent_of_copy"), 0, " %"),
            cell_us(P, k),
            cell_us(C, k),
            cell_us(C1, k),
            fmt_ratio(ratio(us(P, k), ours)),
            fmt_ratio(ratio(us(C, k), ours)),
            fmt_ratio(ratio(us(C1, k), ours)),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    flagged = [k for idx in (D, P, C, C1) for k, r in idx.items() if r.get("contended")]
    if flagged:
        lines.append(f"\\* {len(flagged)} row(s) ran while other processes used the CPUs even after retries "
                     "(`foreign_cpu_percent` in the JSON): those times are inflated; rerun on an idle machine.")
        lines.append("")

    lines.append("| target (issue #4) | worst measured | where | result |")
    lines.append("|---|---:|---|---|")

    def target(name, pairs, need, fmt):
        # pairs: list of (label, value or None)
        vals = [(lbl, v) for lbl, v in pairs if v is not None]
        if not vals:
            lines.append(f"| {name} | {DASH} | no data | not measured |")
            return
        lbl, worst = min(vals, key=lambda p: p[1])
        missing = len(pairs) - len(vals)
        res = "met" if worst >= need else "**missed**"
        extra = f" ({missing} rows without data)" if missing else ""
        lines.append(f"| {name} | {fmt(worst)} | {lbl}{extra} | {res} |")

    def label(k):
        return f"{shape_str(k[0])}, eta {k[1]:g}" + (", thresholding" if k[2] else "")

    small = {(1, 4, 64, 64), (1, 4, 128, 128)}
    target("≥ 15× faster than diffusers at 1×4×64×64 and 1×4×128×128 (no thresholding)",
           [(label(k), ratio(us(P, k), us(D, k))) for k in keys if k[0] in small and not k[2]],
           15, fmt_ratio2)
    for idx, nm in ((C, "default threads"), (C1, "1 thread")):
        target(f"≥ 3× faster than candle at every shape ({nm})",
               [(label(k), ratio(us(idx, k), us(D, k))) for k in keys if not k[2]],
               3, fmt_ratio2)
    copy_shapes = {(16, 4, 128, 128)} | {k[0] for k in keys
                                          if k[0][0] * k[0][1] * k[0][2] * k[0][3] >= 64 * 1024 * 1024}
    target("≥ 80 % of the copy bound at 16×4×128×128 and the ≥ 64M-element shape (no thresholding)",
           [(label(k), None if D.get(k) is None else D[k].get("percent_of_copy"))
            for k in keys if k[0] in copy_shapes and not k[2]],
           80, lambda v: f"{v:.0f} %")
    target("thresholding steps ≥ 20× faster than diffusers",
           [(label(k), ratio(us(P, k), us(D, k))) for k in keys if k[2]],
           20, fmt_ratio2)
    lines.append("")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ddim")
    ap.add_argument("--diffusers")
    ap.add_argument("--candle")
    ap.add_argument("--candle-1t", dest="candle1")
    ap.add_argument("--diffusers-tuned", dest="diffusers_tuned")
    ap.add_argument("--candle-tuned", dest="candle_tuned")
    ap.add_argument("--candle-1t-tuned", dest="candle1_tuned")
    ap.add_argument("--command", default="tools/bench/run.sh",
                    help="the command that reproduces this table (printed in the header)")
    ap.add_argument("--date", help="date of the run (default: now, UTC)")
    ap.add_argument("--out", help="also write the markdown to this file")
    args = ap.parse_args()

    ddim = load(args.ddim, "ddim")
    diff = load(args.diffusers, "diffusers")
    cand = load(args.candle, "candle")
    cand1 = load(args.candle1, "candle")
    difft = load(args.diffusers_tuned, "diffusers")
    candt = load(args.candle_tuned, "candle")
    cand1t = load(args.candle1_tuned, "candle")
    for nm, d, want in (("--diffusers", diff, False), ("--candle", cand, False), ("--candle-1t", cand1, False),
                        ("--diffusers-tuned", difft, True), ("--candle-tuned", candt, True),
                        ("--candle-1t-tuned", cand1t, True)):
        if d is not None and bool(d.get("tuned_malloc")) != want:
            print(f"compare.py: warning: {nm} file was run {'without' if want else 'with'} --tune-malloc",
                  file=sys.stderr)
    for nm, d in (("--candle-1t", cand1), ("--candle-1t-tuned", cand1t)):
        if d is not None and d.get("threads") != 1:
            print(f"compare.py: warning: {nm} file reports threads={d.get('threads')}, not 1", file=sys.stderr)

    m = machine()
    date = args.date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = []
    lines.append("## DDIM step: ddim vs diffusers vs candle (one run)")
    lines.append("")
    mem = f"{m['mem_gib']:.1f} GiB RAM" if m["mem_gib"] else "RAM unknown"
    cache = (", " + ", ".join(m["caches"])) if m["caches"] else ""
    lines.append(f"- Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {mem}{cache}; Linux {m['kernel']}")
    lines.append(f"- Date: {date}")
    lines.append(f"- Command: `{args.command}`")
    impls = []
    if ddim is not None:
        impls.append(f"ddim ({ddim.get('threads', '?')} threads)")
    if diff is not None:
        v = diff.get("versions", {})
        impls.append(f"diffusers {v.get('diffusers', '?')} on torch {v.get('torch', '?')} CPU "
                     f"({diff.get('threads', '?')} torch threads)")
    for c, lbl in ((cand, "default"), (cand1, "CANDLE_NUM_THREADS=1")):
        if c is not None:
            v = c.get("versions", {})
            impls.append(f"candle-transformers {v.get('candle-transformers', '?')} `DDIMScheduler::step` "
                         f"({lbl}: {c.get('threads', '?')} thread{'' if c.get('threads') == 1 else 's'})")
    if impls:
        lines.append("- Implementations: " + "; ".join(impls))
    lines.append("- Time per step: float32, step at t=780 of a 50-step schedule (diffusers defaults, "
                 "linear betas), median over repeats after warm-up. eta=1: diffusers gets an explicit "
                 "`variance_noise` (not timed); candle draws its noise with `Tensor::randn` inside its step "
                 "(timed, as candle does it); see tools/bench/README.md.")
    lines.append("")

    D = index(ddim)
    table(lines, "Baselines as they run by default (glibc malloc, default settings)",
          D, index(diff), index(cand), index(cand1), cand.get("threads") if cand else None)
    if difft is not None or candt is not None or cand1t is not None:
        tuned = next(d for d in (difft, candt, cand1t) if d is not None)
        table(lines, "Baselines with glibc malloc tuned (no heap trimming between steps)",
              D, index(difft), index(candt), index(cand1t), candt.get("threads") if candt else None,
              note="Both baselines allocate every temporary of every step. With glibc's default dynamic "
                   "thresholds the freed heap is trimmed and re-faulted between steps, which dominates their "
                   "time at many shapes; here they ran with " + str(tuned.get("malloc", "tuned malloc")) +
                   ", as a long-running pipeline's allocation history would give. ddim's column is the same "
                   "run as above (its step does not allocate).")

    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
