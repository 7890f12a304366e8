#!/usr/bin/env python3
"""Generate the torch random-number fixtures of the `ddim` crate (`ddim::rng`).

Runs the REAL torch (2.15.0, CPU, x86-64 wheel) and diffusers (0.42.1) and writes

  crates/ddim/tests/data/torch_rng/manifest.json       (compact JSON, sorted keys)
  crates/ddim/tests/data/torch_rng/tensors.safetensors (every tensor named in the manifest)

What is recorded:

* `cpu`: sequences of calls on one `torch.Generator('cpu').manual_seed(seed)`:
  `torch.randn(n, generator=g, dtype=...)` and `torch.rand(...)`, for many seeds (0, 1, 42,
  negative, > 2^32, 2^64 - 1, torch's default seed), sizes 1, 5, 15, 16, 17, 100 and
  1x4x64x64, every dtype (float32, float64, float16, bfloat16), and successive calls of mixed
  sizes on one generator (the cached Box-Muller value, the 16-block tail rule).
  Calls marked `"kernel": "avx2"` come from torch's default dispatch on this machine (the AVX2
  kernel on any x86-64 CPU with AVX2); `"kernel": "scalar"` ones from a child process run with
  `ATEN_CPU_CAPABILITY=default` (torch's scalar `NormalFill16`, glibc logf/cosf/sinf).
* `cpu_large`: float32 calls of 65,536 to 1,048,576 values (incl. 1000003, with its tail):
  the first and last 64 values and the CRC-32 of all of them.
* `ddim_loops`: full diffusers `DDIMScheduler` loops with eta > 0: latents from
  `randn_tensor(shape, generator=g)` (one generator or a list, one per batch item), a
  deterministic synthetic model `model_output = sample * 0.1 + c_t`, and
  `scheduler.step(..., eta=eta, generator=g)`; the initial latents, the constants c_t and the
  final sample are stored.
* `cuda_model`: values of the CUDA Philox model of `torch_randn_ref.py` (the numpy reference
  beside `torch-randn.md`; NOT a real GPU: no GPU was used), for small fake launch geometries
  so that several loop iterations per thread and successive calls are covered.

Every expected value comes from torch/diffusers (or, for `cuda_model`, from the reference
model); the script computes none itself. Deterministic; one torch thread. Run:

    tools/.venv/bin/python tools/gen_rng_fixtures.py [--reference /path/to/dir/with/torch_randn_ref.py]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "crates" / "ddim" / "tests" / "data" / "torch_rng"

torch.set_num_threads(1)

DTYPES = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16}
SEEDS = [0, 1, 3, 42, 1234, -1, -12345, 2**32 + 5, 2**40 + 7, 2**63 + 11, 2**64 - 1, 67280421310721]
SIZES = [1, 5, 15, 16, 17, 100]


class Store:
    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}

    def add(self, name: str, t: torch.Tensor) -> str:
        assert name not in self.tensors, name
        self.tensors[name] = t.detach().contiguous().clone()
        return name


def run_calls(seed: int, calls: list[tuple[str, str, tuple[int, ...]]]) -> list[torch.Tensor]:
    """calls: (op 'randn'|'rand', dtype key, shape) on one generator seeded with `seed`."""
    g = torch.Generator("cpu").manual_seed(seed)
    out = []
    for op, dt, shape in calls:
        f = torch.randn if op == "randn" else torch.rand
        out.append(f(shape, generator=g, dtype=DTYPES[dt]).reshape(-1))
    return out


def cpu_cases() -> list[tuple[str, int, list[tuple[str, str, tuple[int, ...]]]]]:
    """(kernel, seed, calls). Kernel 'avx2' cases run here, 'scalar' ones in the child."""
    cases = []
    # Fresh generator, one randn per size, float32, every seed.
    for seed in SEEDS:
        for n in SIZES:
            cases.append(("avx2", seed, [("randn", "f32", (n,))]))
    for seed in [0, 42]:
        cases.append(("avx2", seed, [("randn", "f32", (1, 4, 64, 64))]))
    # Other dtypes, fresh generator.
    for dt in ["f64", "f16", "bf16"]:
        for seed in [0, 42, -1, 2**32 + 5]:
            for n in [1, 5, 15, 16, 17, 20, 33, 100]:
                cases.append(("avx2", seed, [("randn", dt, (n,))]))
    # Successive calls on one generator: the cache of the small path, the tail rule.
    seq = [5, 17, 3, 1, 16, 2, 40, 7, 33, 3]
    for dt in DTYPES:
        for seed in [3, 0, -7]:
            cases.append(("avx2", seed, [("randn", dt, (n,)) for n in seq]))
    # rand (uniform) alone and interleaved with randn.
    for dt in DTYPES:
        for seed in [0, 42, 2**64 - 1]:
            cases.append(("avx2", seed, [("rand", dt, (n,)) for n in [1, 5, 17, 100]]))
        cases.append(("avx2", 5, [("randn", dt, (3,)), ("rand", dt, (5,)), ("randn", dt, (3,)),
                                  ("rand", dt, (20,)), ("randn", dt, (1,)), ("randn", dt, (17,)),
                                  ("rand", dt, (2,)), ("randn", dt, (5,))]))
    # Long half-precision rand calls: values that round up to 1 become 0 (p = 2^-12 for f16,
    # 2^-9 for bf16).
    for dt in ["f16", "bf16"]:
        cases.append(("avx2", 11, [("rand", dt, (20000,))]))
    # The scalar (non-AVX2) kernel: only the float32/f16/bf16 block path differs.
    for seed in [0, 42, -1]:
        cases.append(("scalar", seed, [("randn", "f32", (n,)) for n in [16, 17, 20, 100, 5, 33]]))
    cases.append(("scalar", 0, [("randn", "f32", (1, 4, 64, 64))]))
    for dt in ["f16", "bf16", "f64"]:
        cases.append(("scalar", 0, [("randn", dt, (n,)) for n in [16, 17, 33, 100]]))
    return cases


def scalar_child(out_path: str) -> None:
    """Runs the 'scalar' cases (this process was started with ATEN_CPU_CAPABILITY=default)."""
    cap = torch.backends.cpu.get_cpu_capability()
    assert cap == "DEFAULT", f"child runs with capability {cap}, expected DEFAULT"
    tensors = {}
    for i, (kernel, seed, calls) in enumerate(cpu_cases()):
        if kernel != "scalar":
            continue
        for j, t in enumerate(run_calls(seed, calls)):
            tensors[f"{i}/{j}"] = t.contiguous()
    save_file(tensors, out_path)


def record_cpu(store: Store) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "scalar.safetensors")
        env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
        subprocess.run([sys.executable, __file__, "--scalar-child", path], env=env, check=True)
        scalar = load_file(path)
    cases = []
    for i, (kernel, seed, calls) in enumerate(cpu_cases()):
        if kernel == "avx2":
            outs = run_calls(seed, calls)
        else:
            outs = [scalar[f"{i}/{j}"] for j in range(len(calls))]
        names = [store.add(f"cpu/{i}/{j}", t) for j, t in enumerate(outs)]
        cases.append({
            "kernel": kernel,
            "seed": str(seed),  # as Python int text: may be negative or above 2^63
            "calls": [{"op": op, "dtype": dt, "shape": list(shape), "tensor": name}
                      for (op, dt, shape), name in zip(calls, names)],
        })
    return cases


def record_large(store: Store) -> list[dict]:
    """Large float32 calls, too big to store: first and last 64 values and the CRC-32 of all
    the little-endian float32 bytes (zlib.crc32)."""
    import zlib

    cases = []
    for seed, shape in [(0, (1000003,)), (42, (1, 4, 128, 128)), (7, (1, 16, 128, 128)),
                        (0, (16, 4, 128, 128))]:
        g = torch.Generator("cpu").manual_seed(seed)
        t = torch.randn(shape, generator=g, dtype=torch.float32).reshape(-1)
        i = len(cases)
        cases.append({
            "seed": str(seed), "shape": list(shape),
            "crc32": zlib.crc32(t.numpy().astype("<f4").tobytes()),
            "head": store.add(f"large/{i}/head", t[:64]),
            "tail": store.add(f"large/{i}/tail", t[-64:]),
        })
    return cases


def record_ddim_loops(store: Store) -> list[dict]:
    import diffusers
    from diffusers import DDIMScheduler
    from diffusers.utils.torch_utils import randn_tensor

    config = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    loops = [
        # (name, shape, seeds (one int: one generator; a list: one per batch item), eta, steps)
        ("single_1x4x16x16", (1, 4, 16, 16), 1234, 1.0, 10),
        ("list_2x4x8x8", (2, 4, 8, 8), [7, 8], 1.0, 10),
        ("single_2x4x8x8", (2, 4, 8, 8), 2**32 + 9, 1.0, 10),
        ("list_2x5_small", (2, 5), [0, -1], 0.5, 10),
        ("single_3x7_small", (3, 7), 42, 1.0, 10),
    ]
    out = []
    for name, shape, seeds, eta, steps in loops:
        sched = DDIMScheduler(**config)
        sched.set_timesteps(steps)
        if isinstance(seeds, list):
            gen = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        else:
            gen = torch.Generator("cpu").manual_seed(seeds)
        latents = randn_tensor(shape, generator=gen, dtype=torch.float32) * sched.init_noise_sigma
        lat0 = store.add(f"ddim/{name}/latents", latents)
        sample = latents
        scale = torch.tensor(0.1, dtype=torch.float32)
        consts = []
        for t in sched.timesteps:
            c = torch.tensor(0.05 * np.cos(float(t)), dtype=torch.float32)
            consts.append(float(c))
            model_output = sample * scale + c
            sample = sched.step(model_output, t, sample, eta=eta, generator=gen).prev_sample
        out.append({
            "name": name,
            "shape": list(shape),
            "seeds": [str(s) for s in seeds] if isinstance(seeds, list) else str(seeds),
            "eta": eta,
            "steps": steps,
            "config": config,
            "model_scale": float(scale),
            "model_constants": consts,
            "timesteps": [int(t) for t in sched.timesteps],
            "latents": lat0,
            "final_sample": store.add(f"ddim/{name}/final", sample),
        })
    return out, diffusers.__version__


def record_cuda_model(store: Store, reference: Path) -> list[dict]:
    sys.path.insert(0, str(reference))
    import torch_randn_ref as ref  # noqa: E402

    cases = []
    # (seed, sm_count, max_threads_per_sm, sizes of successive calls)
    plans = [
        (0, 1, 256, [8, 4, 100]),          # T = 256 at most: one iteration
        (42, 1, 256, [1000, 3000, 17]),     # several iterations per thread, 4 components
        (2**32 + 5, 2, 512, [5000, 1]),
        (2**64 - 1, 1, 256, [2049]),
        (1234, 132, 2048, [64]),            # H100 preset, small call
    ]
    for i, (seed, sms, tpsm, sizes) in enumerate(plans):
        offset = 0
        calls = []
        for j, n in enumerate(sizes):
            vals, new_offset = ref.randn_cuda_model((n,), seed, philox_offset=offset, sm_count=sms,
                                                   max_threads_per_sm=tpsm)
            calls.append({"n": n, "offset_before": offset, "offset_after": int(new_offset),
                          "tensor": store.add(f"cuda/{i}/{j}", torch.from_numpy(np.asarray(vals, np.float32)))})
            offset = int(new_offset)
        cases.append({"seed": str(seed), "sm_count": sms, "max_threads_per_sm": tpsm, "calls": calls})
    return cases


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", default="/work/shared/reference",
                    help="directory holding torch_randn_ref.py (for the CUDA model cases)")
    ap.add_argument("--scalar-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scalar_child:
        scalar_child(args.scalar_child)
        return
    store = Store()
    cpu = record_cpu(store)
    large = record_large(store)
    loops, diffusers_version = record_ddim_loops(store)
    cuda = record_cuda_model(store, Path(args.reference))
    manifest = {
        "generator": {
            "script": "tools/gen_rng_fixtures.py",
            "torch": torch.__version__,
            "diffusers": diffusers_version,
            "numpy": np.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(),
            "libc": "-".join(platform.libc_ver()),
        },
        "cpu": cpu,
        "cpu_large": large,
        "ddim_loops": loops,
        "cuda_model": cuda,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(manifest, sort_keys=True, allow_nan=False, separators=(",", ":"))
    (OUT_DIR / "manifest.json").write_text(text + "\n", encoding="utf-8")
    save_file(dict(sorted(store.tensors.items())), str(OUT_DIR / "tensors.safetensors"),
              metadata={"generator": "tools/gen_rng_fixtures.py"})
    size = (OUT_DIR / "tensors.safetensors").stat().st_size
    print(f"{len(cpu)} cpu cases, {len(loops)} ddim loops, {len(cuda)} cuda-model cases, "
          f"{len(store.tensors)} tensors, {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
