#!/usr/bin/env python3
"""Time torch's CPU randn the way `crates/ddim/benches/randn.rs` times ours.

Each timed call is `g = torch.Generator().manual_seed(42); torch.randn(shape, generator=g,
out=buf)` (float32; `out=` so that, like the Rust bench, no allocation is timed). torch
generates normals serially under the generator's lock, so the thread count does not change
the work; it is set with --threads (default 1) and printed.

    tools/.venv/bin/python tools/bench/bench_torch_randn.py [--threads N] [--json PATH]

Reports per shape the median and the minimum over repeats of (batch time / K).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

SHAPES = [(1, 4, 64, 64), (16, 4, 128, 128)]


def bench(shape, target_s: float) -> dict:
    buf = torch.empty(shape, dtype=torch.float32)

    def call():
        g = torch.Generator().manual_seed(42)
        torch.randn(shape, generator=g, out=buf)

    for _ in range(3):
        call()
    t0 = time.perf_counter()
    call()
    one = max(time.perf_counter() - t0, 1e-7)
    k = max(1, int(target_s / 15 / one))
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        for _ in range(k):
            call()
        times.append((time.perf_counter() - t0) / k)
    return {
        "shape": list(shape),
        "elements": buf.numel(),
        "us_median": statistics.median(times) * 1e6,
        "us_min": min(times) * 1e6,
        "calls_per_repeat": k,
        "repeats": len(times),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--target", type=float, default=2.0, help="seconds of timing per shape")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench(s, args.target) for s in SHAPES]
    out = {
        "implementation": f"torch {torch.__version__} CPU randn",
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "results": rows,
    }
    for r in rows:
        print(f"torch randn {'x'.join(map(str, r['shape'])):>14}: median {r['us_median']:10.1f} us, "
              f"min {r['us_min']:10.1f} us  ({out['threads']} thread(s), {out['cpu_capability']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
