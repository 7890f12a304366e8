#!/usr/bin/env python3
"""Time torch's CPU randn the way `crates/ddim/benches/randn.rs` times ours.

Each timed call is `g = torch.Generator().manual_seed(42); torch.randn(shape, generator=g,
out=buf)` (float32; `out=` so that, like the Rust bench, no allocation is timed). torch
generates normals serially under the generator's lock, so the thread count does not change
the work; it is set with --threads (default 1) and printed.

    tools/.venv/bin/python tools/bench/bench_torch_randn.py [--threads N] [--json PATH]

Like divan (`cargo bench`), it times single calls: 100 samples of one call each after a
warm-up, and reports the median, the fastest and the mean.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

SHAPES = [(1, 4, 64, 64), (16, 4, 128, 128)]


def bench(shape, samples: int) -> dict:
    buf = torch.empty(shape, dtype=torch.float32)

    def call():
        g = torch.Generator().manual_seed(42)
        torch.randn(shape, generator=g, out=buf)

    for _ in range(5):
        call()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return {
        "shape": list(shape),
        "elements": buf.numel(),
        "us_median": statistics.median(times),
        "us_min": min(times),
        "us_mean": statistics.fmean(times),
        "samples": samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=100, help="timed calls per shape (default 100)")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench(s, args.samples) for s in SHAPES]
    out = {
        "implementation": f"torch {torch.__version__} CPU randn",
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "results": rows,
    }
    for r in rows:
        print(f"torch randn {'x'.join(map(str, r['shape'])):>14}: median {r['us_median']:10.1f} us, "
              f"fastest {r['us_min']:10.1f} us, mean {r['us_mean']:10.1f} us  ({out['threads']} thread(s), {out['cpu_capability']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
