#!/usr/bin/env python3
"""Generate the parity fixtures of `DdimScheduler::batch_step_no_noise`.

Runs the REAL `diffusers.DDIMParallelScheduler.batch_step_no_noise` (torch CPU, float32) on a
batch whose items each have their own timestep, and, for the same inputs, the REAL
`DDIMScheduler.step` (η = 0) item by item. Writes

  crates/ddim/tests/data/parallel/cases.json

Every float is stored as its f32 bit pattern (u32), so nothing is lost. The expected values
are diffusers' outputs; this script computes none itself. Deterministic (fixed seed, one
torch thread, sorted JSON). Run:

    /work/venv/ddim-tools/bin/python tools/gen_parallel_fixtures.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import diffusers
from diffusers import DDIMParallelScheduler, DDIMScheduler

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "crates" / "ddim" / "tests" / "data" / "parallel" / "cases.json"

torch.set_num_threads(1)
torch.manual_seed(20261127)

SHAPE = (2, 3, 4)  # per item

CONFIGS = {
    "default": {},
    "no_alpha_to_one": {"set_alpha_to_one": False},
    "sd": {
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "clip_sample": False,
    },
    "linspace_v": {"timestep_spacing": "linspace", "prediction_type": "v_prediction", "set_alpha_to_one": False},
    "trailing_sample_clip": {
        "timestep_spacing": "trailing",
        "prediction_type": "sample",
        "clip_sample": True,
        "clip_sample_range": 0.5,
        "set_alpha_to_one": False,
    },
    "threshold": {
        "thresholding": True,
        "dynamic_thresholding_ratio": 0.9,
        "sample_max_value": 1.5,
        "clip_sample": False,
        "set_alpha_to_one": False,
    },
    "cosine_clip": {"beta_schedule": "squaredcos_cap_v2", "clip_sample": True},
}


def bits(t: torch.Tensor) -> list[int]:
    return t.detach().to(torch.float32).contiguous().numpy().view(np.uint32).reshape(-1).tolist()


def main() -> None:
    cases = []
    for name, cfg in CONFIGS.items():
        for n in (7, 10, 50):
            for ucmo in (False, True):
                par = DDIMParallelScheduler(**cfg)
                par.set_timesteps(n)
                one = DDIMScheduler(**cfg)
                one.set_timesteps(n)
                ts = [int(t) for t in par.timesteps]
                assert ts == [int(t) for t in one.timesteps]
                # The first, a middle one, the last two (the last steps past the end), and
                # the first again: items each with their own timestep.
                chosen = [ts[0], ts[len(ts) // 2], ts[-2] if len(ts) > 1 else ts[0], ts[-1], ts[0]]
                b = len(chosen)
                sample = torch.randn(b, *SHAPE) * 1.2
                model_output = torch.randn(b, *SHAPE)
                timesteps = torch.tensor(chosen, dtype=torch.long)
                got = par.batch_step_no_noise(
                    model_output, timesteps, sample, eta=0.0, use_clipped_model_output=ucmo
                )
                per_item = torch.cat(
                    [
                        one.step(
                            model_output[i : i + 1],
                            chosen[i],
                            sample[i : i + 1],
                            eta=0.0,
                            use_clipped_model_output=ucmo,
                        ).prev_sample
                        for i in range(b)
                    ]
                )
                cases.append(
                    {
                        "id": f"{name}/n{n}/ucmo{int(ucmo)}",
                        "config": cfg,
                        "n": n,
                        "timesteps": chosen,
                        "use_clipped_model_output": ucmo,
                        "sample": bits(sample),
                        "model_output": bits(model_output),
                        "batch_step_no_noise": bits(got),
                        "step_per_item": bits(per_item),
                    }
                )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "generator": {
            "diffusers": diffusers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "script": "tools/gen_parallel_fixtures.py",
        },
        "cases": cases,
    }
    OUT.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {len(cases)} cases to {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
