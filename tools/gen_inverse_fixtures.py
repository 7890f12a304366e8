#!/usr/bin/env python3
"""Generate the DDIMInverseScheduler parity fixtures for the `ddim` crate.

Runs the REAL `diffusers.DDIMInverseScheduler` (diffusers 0.42.1, torch CPU, float32) and
writes crates/ddim/tests/data/inverse/inverse.json (compact JSON, sorted keys):

  timesteps  raw `set_timesteps` output (leading/trailing, offsets, n incl. trailing's n+1 case)
  errors     the messages of the refused `set_timesteps` calls (linspace, n > T, n = 0)
  steps      single `step` calls: config, timestep, sample, model output -> prev_sample, x0
  loops      diffusers' own test `full_loop` (dummy model, dummy_sample_deter), first values
             and sum/mean of |x|
  configs    `from_config` of JSON objects: resulting 12 keys, initial_alpha_cumprod, the keys
             diffusers warns about, whether the set_alpha_to_zero deprecation fired

Every expected value comes from diffusers; float32 values are written as Python floats
(exact). Deterministic: fixed seed, one torch thread. Run:

    /work/venv/ddim-tools/bin/python tools/gen_inverse_fixtures.py
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import warnings
from pathlib import Path

import torch

import diffusers
from diffusers import DDIMInverseScheduler
from diffusers.utils import logging as dlogging

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "crates" / "ddim" / "tests" / "data" / "inverse" / "inverse.json"
SEED = 20261127

torch.set_num_threads(1)
gen = torch.Generator().manual_seed(SEED)


def floats(t: torch.Tensor) -> list[float]:
    assert t.dtype == torch.float32
    return [float(v) for v in t.flatten().tolist()]


# ---------------------------------------------------------------------------------------
# timesteps and errors
# ---------------------------------------------------------------------------------------
timesteps = []
for T in (1000, 100):
    for spacing in ("leading", "trailing"):
        for offset in (0, 1):
            for n in (1, 3, 5, 7, 10, 16, 50, 61, 99, 100):
                if n > T:
                    continue
                s = DDIMInverseScheduler(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset)
                s.set_timesteps(n)
                timesteps.append(
                    {"T": T, "spacing": spacing, "offset": offset, "n": n, "timesteps": s.timesteps.tolist()}
                )

errors = []
for spacing, n in (("linspace", 10), ("leading", 1001), ("leading", 0), ("trailing", 0)):
    s = DDIMInverseScheduler(timestep_spacing=spacing)
    try:
        s.set_timesteps(n)
        msg = None
    except Exception as e:  # noqa: BLE001 - the message is the fixture
        msg = f"{type(e).__name__}: {e}"
    errors.append({"spacing": spacing, "n": n, "error": msg})

# ---------------------------------------------------------------------------------------
# single steps
# ---------------------------------------------------------------------------------------
STEP_CONFIGS = [
    {},
    {"set_alpha_to_one": False},
    {"prediction_type": "v_prediction"},
    {"prediction_type": "sample", "set_alpha_to_one": False},
    {"clip_sample": False},
    {"clip_sample_range": 0.5},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "clip_sample": False,
     "set_alpha_to_one": False, "steps_offset": 1},
    {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "trailing"},
    {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "timestep_spacing": "trailing",
     "clip_sample": False},
]
steps = []
for cfg in STEP_CONFIGS:
    for n in (10, 61):
        s = DDIMInverseScheduler(**cfg)
        s.set_timesteps(n)
        ts = s.timesteps.tolist()
        # the first valid step (from the clean end), one in the middle, the last
        picks = sorted({t for t in (ts[0] if ts[0] >= 0 else ts[1], ts[len(ts) // 2], ts[-1])})
        for t in picks:
            sample = torch.randn(8, generator=gen, dtype=torch.float32) * 0.7
            model_output = torch.randn(8, generator=gen, dtype=torch.float32)
            out = s.step(model_output, t, sample)
            steps.append(
                {
                    "config": cfg,
                    "n": n,
                    "timestep": t,
                    "sample": floats(sample),
                    "model_output": floats(model_output),
                    "prev_sample": floats(out.prev_sample),
                    "pred_original_sample": floats(out.pred_original_sample),
                }
            )

# ---------------------------------------------------------------------------------------
# diffusers' test full_loop (tests/schedulers/test_scheduler_ddim_inverse.py)
# ---------------------------------------------------------------------------------------
N = 4 * 3 * 8 * 8


def dummy_sample_deter() -> torch.Tensor:
    s = torch.arange(N).reshape(3, 8, 8, 4) / N
    return s.permute(3, 0, 1, 2)


def model(sample, t):
    return sample * t / (t + 1)


BASE = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
        "clip_sample": True}
LOOPS = [
    ("no_noise", {}),
    ("v_prediction", {"prediction_type": "v_prediction"}),
    ("set_alpha_to_one", {"set_alpha_to_one": True, "beta_start": 0.01}),
    ("no_set_alpha_to_one", {"set_alpha_to_one": False, "beta_start": 0.01}),
]
loops = []
for name, extra in LOOPS:
    cfg = {**BASE, **extra}
    s = DDIMInverseScheduler(**cfg)
    s.set_timesteps(10)
    x = dummy_sample_deter()
    for t in s.timesteps:
        x = s.step(model(x, t), t, x).prev_sample
    loops.append(
        {
            "name": name,
            "config": cfg,
            "n": 10,
            "sum_abs": float(torch.sum(torch.abs(x))),
            "mean_abs": float(torch.mean(torch.abs(x))),
            "first": floats(x.permute(1, 2, 3, 0).flatten()[:64]),
        }
    )

# ---------------------------------------------------------------------------------------
# from_config
# ---------------------------------------------------------------------------------------
class Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(record.getMessage())


capture = Capture()
dlogging.get_logger("diffusers.configuration_utils").addHandler(capture)
dlogging.set_verbosity_warning()

CONFIG_INPUTS = [
    {},
    {"set_alpha_to_zero": False},
    {"set_alpha_to_zero": True, "set_alpha_to_one": False},
    {"set_alpha_to_zero": None, "set_alpha_to_one": False},
    {"thresholding": True, "foo": 1},
    {"_class_name": "DDIMScheduler", "thresholding": True, "sample_max_value": 2.0, "skip_prk_steps": True,
     "timestep_spacing": "trailing", "_diffusers_version": "0.42.1"},
    {"_class_name": "PNDMScheduler", "skip_prk_steps": True, "set_alpha_to_one": False,
     "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1},
    {"_class_name": "DDIMInverseScheduler", "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
     "clip_sample_range": 2.5},
    {"beta_start": 0.5, "steps_offset": 3, "_use_default_values": ["beta_start"]},
]
INIT_KEYS = [k for k in inspect.signature(DDIMInverseScheduler.__init__).parameters if k not in ("self", "kwargs")]
assert len(INIT_KEYS) == 12, INIT_KEYS
configs = []
for inp in CONFIG_INPUTS:
    capture.records.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = DDIMInverseScheduler.from_config(dict(inp))
    warned: list[str] = []
    for msg in capture.records:
        if msg.startswith("The config attributes"):
            d = ast.literal_eval(msg[len("The config attributes "): msg.index(" were passed")])
            warned.extend(sorted(d))
    keys = {k: s.config[k] for k in INIT_KEYS}
    configs.append(
        {
            "input": inp,
            "config": keys,
            "initial_alpha_cumprod": float(s.initial_alpha_cumprod),
            "warned_keys": sorted(warned),
            "deprecation": any("set_alpha_to_zero" in str(w.message) for w in caught),
        }
    )

doc = {
    "generator": {"diffusers": diffusers.__version__, "torch": torch.__version__, "seed": SEED},
    "timesteps": timesteps,
    "errors": errors,
    "steps": steps,
    "loops": loops,
    "configs": configs,
}
# sanity against the numbers hard-coded in diffusers' test-suite (spec §7.3)
expect = {"no_noise": (671.6816, 0.8746), "v_prediction": (1394.2185, 1.8154),
          "set_alpha_to_one": (539.9622, 0.7031), "no_set_alpha_to_one": (542.6722, 0.7066)}
for loop in loops:
    s, m = expect[loop["name"]]
    assert abs(loop["sum_abs"] - s) < 1e-2 and abs(loop["mean_abs"] - m) < 1e-3, loop["name"]

OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
print(f"{OUT.relative_to(REPO)}: {len(timesteps)} timestep tables, {len(steps)} steps, {len(loops)} loops, "
      f"{len(configs)} configs, {OUT.stat().st_size} bytes")
