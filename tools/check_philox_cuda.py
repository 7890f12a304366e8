#!/usr/bin/env python3
"""Compare the CUDA Philox model with the real `torch.randn` on a CUDA GPU.

UNTESTED ON A GPU: no GPU was available when this was written (see docs/torch-rng.md). It
needs torch with CUDA, numpy and safetensors, and `torch_randn_ref.py` (the numpy reference
model beside torch-randn.md, which `ddim::rng::TorchCudaGenerator` reproduces bit for bit on
the committed fixtures: `cargo test -p ddim --test torch_rng cuda_generator_matches`).

For each seed and each size n in 8 ... 4M it draws `torch.randn(n, generator=g)` on the GPU
(float32, plus float64 for a few sizes; two successive calls per generator, so the offset
bookkeeping is covered), runs the model with the GPU's own `multi_processor_count` and
`max_threads_per_multi_processor`, and prints per call: the largest absolute difference, the
share of bit-identical values, and the generator offset after the call (GPU vs model).
It also runs the model's `exact_sincos=False` variant (FMUL.RZ pre-scaling), to see which is
closer to the hardware. One short run (under a minute on an H100):

    python tools/check_philox_cuda.py --reference /path/to/dir/with/torch_randn_ref.py \\
        [--out gpu_randn.safetensors]

`--out` keeps the GPU's values (and the device properties in the metadata) for later use as a
fixture. Exit status 1 if a call's offsets disagree or a difference exceeds --max-abs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

SIZES = [8, 100, 4096, 16_384, 65_536, 262_144, 1_000_003, 4_194_304]
SEEDS = [0, 42, 2**32 + 5]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", default="/work/shared/reference",
                    help="directory holding torch_randn_ref.py")
    ap.add_argument("--out", help="save the GPU values to this safetensors file")
    ap.add_argument("--max-abs", type=float, default=2e-5,
                    help="fail above this absolute difference (default 2e-5)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.reference)))
    import torch_randn_ref as ref  # noqa: E402

    if not torch.cuda.is_available():
        print("check_philox_cuda: no CUDA device", file=sys.stderr)
        return 2
    prop = torch.cuda.get_device_properties(0)
    sms, tpsm = prop.multi_processor_count, prop.max_threads_per_multi_processor
    print(f"device: {prop.name}, {sms} SMs x {tpsm} threads/SM, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")
    saved = {}
    ok = True
    t0 = time.time()
    print(f"{'seed':>12} {'n':>9} {'call':>4} {'dtype':>5} {'max |diff|':>11} {'identical':>9} "
          f"{'max |diff| RZ':>13} {'identical RZ':>12} {'offset gpu/model':>16}")
    for seed in SEEDS:
        for n in SIZES:
            g = torch.Generator("cuda").manual_seed(seed)
            offset = 0
            for call in range(2):
                gpu = torch.randn(n, generator=g, device="cuda", dtype=torch.float32).cpu().numpy()
                gpu_offset = g.get_offset()
                model, model_offset = ref.randn_cuda_model((n,), seed, philox_offset=offset,
                                                           sm_count=sms, max_threads_per_sm=tpsm)
                rz, _ = ref.randn_cuda_model((n,), seed, philox_offset=offset, sm_count=sms,
                                             max_threads_per_sm=tpsm, exact_sincos=False)
                diff = np.abs(gpu.astype(np.float64) - model.astype(np.float64))
                diff_rz = np.abs(gpu.astype(np.float64) - rz.astype(np.float64))
                same = np.mean(gpu.view(np.uint32) == model.view(np.uint32))
                same_rz = np.mean(gpu.view(np.uint32) == rz.view(np.uint32))
                print(f"{seed:>12} {n:>9} {call:>4} {'f32':>5} {diff.max():>11.3e} {same:>9.2%} "
                      f"{diff_rz.max():>13.3e} {same_rz:>12.2%} {gpu_offset:>7}/{model_offset:<8}")
                ok &= gpu_offset == model_offset and diff.max() <= args.max_abs
                if args.out:
                    saved[f"seed{seed}/n{n}/call{call}"] = torch.from_numpy(gpu.copy())
                offset = model_offset
        # float64: the curand_normal2_double path (the model of the Rust crate; numpy has none).
        for n in [8, 65_536, 1_000_003]:
            g = torch.Generator("cuda").manual_seed(seed)
            gpu = torch.randn(n, generator=g, device="cuda", dtype=torch.float64).cpu()
            if args.out:
                saved[f"seed{seed}/n{n}/f64"] = gpu
            print(f"{seed:>12} {n:>9} {0:>4} {'f64':>5} (saved for the Rust model; offset {g.get_offset()})")
    if args.out:
        from safetensors.torch import save_file
        save_file(saved, args.out, metadata={
            "device": prop.name, "multi_processor_count": str(sms),
            "max_threads_per_multi_processor": str(tpsm), "torch": torch.__version__,
        })
        print(f"saved {len(saved)} tensors to {args.out}")
    print(f"{'OK' if ok else 'FAILED'} in {time.time() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
