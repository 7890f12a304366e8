#!/usr/bin/env python3
"""Generate the diffusers-parity fixtures for the `ddim` crate.

Runs the REAL `diffusers.DDIMScheduler` (torch CPU, float32) and writes

  crates/ddim/tests/data/diffusers/manifest.json       (compact JSON, sorted keys)
  crates/ddim/tests/data/diffusers/tensors.safetensors (all tensors named in the manifest)
  crates/ddim/src/config/known_schedulers.json         (introspection of diffusers' scheduler classes)

Every expected value comes from diffusers itself; this script never computes an
expected value on its own (it only builds inputs and, as a sanity check,
compares a few results with the numbers hard-coded in diffusers' own test-suite).

Deterministic: fixed seeds (`torch.manual_seed`), single torch thread, sorted
JSON output. Run from anywhere:

    tools/.venv/bin/python tools/gen_fixtures.py
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib
import inspect
import itertools
import json
import logging
import math
import platform
import sys
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy
import torch

import diffusers
import diffusers.configuration_utils as diffusers_config_utils
from diffusers import DDIMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import DummyObject
from diffusers.utils import logging as dlogging

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "crates" / "ddim" / "tests" / "data"
OUT_DIR = DATA_DIR / "diffusers"
CONFIGS_DIR = DATA_DIR / "configs"
KNOWN_SCHEDULERS = REPO / "crates" / "ddim" / "src" / "config" / "known_schedulers.json"

SEED = 20240607

torch.set_num_threads(1)
torch.manual_seed(SEED)

# --------------------------------------------------------------------------------------
# DDIM __init__ keys / defaults
# --------------------------------------------------------------------------------------
_SIG = inspect.signature(DDIMScheduler.__init__)
DDIM_INIT_KEYS = [k for k in _SIG.parameters if k != "self"]
DDIM_DEFAULTS = {k: _SIG.parameters[k].default for k in DDIM_INIT_KEYS}
assert len(DDIM_INIT_KEYS) == 15, DDIM_INIT_KEYS


def norm_cfg(cfg: dict) -> dict:
    """Keep only the kwargs that differ from DDIMScheduler's defaults (same value AND same type)."""
    out = {}
    for k, v in cfg.items():
        assert k in DDIM_DEFAULTS, k
        d = DDIM_DEFAULTS[k]
        if type(d) is type(v) and d == v:
            continue
        out[k] = v
    return out


def make(cfg: dict) -> DDIMScheduler:
    # copy so trained_betas lists etc. can never be mutated behind our back
    return DDIMScheduler(**copy.deepcopy(cfg))


# --------------------------------------------------------------------------------------
# Tensor store (dedupes identical tensors so names can be shared)
# --------------------------------------------------------------------------------------
class Store:
    def __init__(self) -> None:
        self.tensors: dict[str, np.ndarray] = {}
        self._by_key: dict[tuple, str] = {}

    def add(self, name: str, x) -> str:
        if isinstance(x, torch.Tensor):
            x = x.detach().contiguous().numpy()
        arr = np.ascontiguousarray(x).copy()
        assert arr.dtype in (np.float32, np.int32), (name, arr.dtype)
        key = (arr.dtype.str, arr.shape, hashlib.sha256(arr.tobytes()).hexdigest())
        if key in self._by_key:
            return self._by_key[key]
        assert name not in self.tensors, name
        self.tensors[name] = arr
        self._by_key[key] = name
        return name

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.tensors.values())


STORE = Store()


def f32(x: torch.Tensor) -> torch.Tensor:
    assert x.dtype == torch.float32
    return x


def err_str(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------
SD15 = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
COSINE = {"beta_schedule": "squaredcos_cap_v2"}
ZSNR = {"rescale_betas_zero_snr": True}

# 1000 float64 values from np.linspace (full 17-digit reprs in JSON)
TRAINED_LINSPACE = np.linspace(0.0001, 0.02, 1000, dtype=np.float64).tolist()
# a non-monotone list
TRAINED_NONMONO = [
    0.001 + 0.015 * (0.5 + 0.5 * math.sin(i * 0.731)) * (0.2 + 0.8 * i / 999.0) for i in range(1000)
]
# a quadratic list with short decimal reprs: used in step cases / loops, where the
# config (and therefore the list) is repeated in every manifest entry
TRAINED_SHORT = [round(0.0002 + 0.0298 * (i / 999.0) ** 2, 6) for i in range(1000)]

SCHEDULES = [
    ("default_linear", {}),
    ("default_linear_no_alpha_one", {"set_alpha_to_one": False}),
    ("linear_beta_start_0.01", {"beta_start": 0.01}),
    ("linear_beta_start_0.01_no_alpha_one", {"beta_start": 0.01, "set_alpha_to_one": False}),
    ("linear_betas_0.1_2", {"beta_start": 0.1, "beta_end": 2.0}),
    ("sd15_scaled_linear", dict(SD15)),
    ("sd15_scaled_linear_no_alpha_one", {**SD15, "set_alpha_to_one": False}),
    ("scaled_linear_0.0015_0.0195", {"beta_start": 0.0015, "beta_end": 0.0195, "beta_schedule": "scaled_linear"}),
    ("squaredcos_cap_v2", dict(COSINE)),
    ("squaredcos_cap_v2_no_alpha_one", {**COSINE, "set_alpha_to_one": False}),
    ("linear_zero_snr", dict(ZSNR)),
    ("linear_zero_snr_no_alpha_one", {**ZSNR, "set_alpha_to_one": False}),
    ("sd15_zero_snr", {**SD15, **ZSNR}),
    ("sd15_zero_snr_no_alpha_one", {**SD15, **ZSNR, "set_alpha_to_one": False}),
    ("squaredcos_zero_snr", {**COSINE, **ZSNR}),
    ("trained_betas_linspace_f64", {"trained_betas": TRAINED_LINSPACE}),
    ("trained_betas_nonmonotone", {"trained_betas": TRAINED_NONMONO}),
    ("trained_betas_nonmonotone_no_alpha_one", {"trained_betas": TRAINED_NONMONO, "set_alpha_to_one": False}),
    ("trained_betas_quadratic_short", {"trained_betas": TRAINED_SHORT}),
    ("linear_T100", {"num_train_timesteps": 100}),
    ("linear_T100_no_alpha_one", {"num_train_timesteps": 100, "set_alpha_to_one": False}),
    ("squaredcos_T100", {"num_train_timesteps": 100, **COSINE}),
    ("scaled_linear_T37", {"num_train_timesteps": 37, **SD15}),
    ("scaled_linear_T37_no_alpha_one", {"num_train_timesteps": 37, **SD15, "set_alpha_to_one": False}),
    ("scaled_linear_T37_zero_snr", {"num_train_timesteps": 37, **SD15, **ZSNR}),
    ("linear_T1", {"num_train_timesteps": 1}),
]


def gen_schedules() -> list:
    out = []
    for name, cfg in SCHEDULES:
        cfg = norm_cfg(cfg)
        s = make(cfg)
        out.append(
            {
                "name": name,
                "config": cfg,
                "betas": STORE.add(f"schedule/{name}/betas", f32(s.betas)),
                "alphas_cumprod": STORE.add(f"schedule/{name}/alphas_cumprod", f32(s.alphas_cumprod)),
                "final_alpha_cumprod": float(s.final_alpha_cumprod),
            }
        )
    return out


# --------------------------------------------------------------------------------------
# Timesteps
# --------------------------------------------------------------------------------------
SPACINGS = ["leading", "linspace", "trailing"]
N_LIST = [1, 2, 3, 4, 5, 7, 10, 13, 16, 20, 25, 30, 50, 61, 97, 100, 103, 250, 500, 999, 1000]


def ts_cfg(T, spacing, off):
    return norm_cfg({"num_train_timesteps": T, "timestep_spacing": spacing, "steps_offset": off})


def gen_timesteps():
    ok, errs = [], []
    for T, spacing, off in itertools.product([1000, 100, 37], SPACINGS, [0, 1]):
        ns = sorted({n for n in N_LIST if n <= T} | {T})
        for n in [0] + ns + [T + 1]:
            s = make(ts_cfg(T, spacing, off))
            base = {"num_train_timesteps": T, "spacing": spacing, "steps_offset": off, "n": n}
            try:
                s.set_timesteps(n)
            except Exception as e:  # noqa: BLE001 - recording diffusers' behaviour
                assert n in (0, T + 1), (T, spacing, off, n, e)
                errs.append({**base, "error": err_str(e)})
                continue
            assert s.timesteps.dtype == torch.int64
            ok.append({**base, "timesteps": [int(t) for t in s.timesteps]})
    return ok, errs


def gen_timesteps_all():
    out = []
    for T, spacing, off in itertools.product([1000, 100], SPACINGS, [0, 1]):
        s = make(ts_cfg(T, spacing, off))
        values, lengths = [], []
        for n in range(1, T + 1):
            try:
                s.set_timesteps(n)
            except Exception:  # noqa: BLE001
                lengths.append(0)
                continue
            v = s.timesteps.numpy()
            assert v.min() >= np.iinfo(np.int32).min and v.max() <= np.iinfo(np.int32).max
            values.append(v.astype(np.int32))
            lengths.append(len(v))
        tag = f"timesteps_all/T{T}/{spacing}/offset{off}"
        out.append(
            {
                "num_train_timesteps": T,
                "spacing": spacing,
                "steps_offset": off,
                "values": STORE.add(tag + "/values", np.concatenate(values).astype(np.int32)),
                "lengths": STORE.add(tag + "/lengths", np.asarray(lengths, dtype=np.int32)),
            }
        )
    return out


# --------------------------------------------------------------------------------------
# _get_variance
# --------------------------------------------------------------------------------------
def gen_variance():
    groups = [
        ({}, [(0, 0), (420, 400), (980, 960), (487, 486), (999, 998)]),
        (SD15, [(981, 961), (501, 481), (21, 1), (1, -19), (0, -20), (999, 979)]),
        ({**SD15, "set_alpha_to_one": False}, [(981, 961), (21, 1), (1, -19), (0, -20), (19, -1)]),
        ({**SD15, **ZSNR}, [(999, 979), (999, 998), (979, 959), (19, -1), (0, -100)]),
        ({**SD15, **ZSNR, "set_alpha_to_one": False}, [(999, 899), (99, -1), (0, -1)]),
        ({**ZSNR}, [(999, 899), (998, 997), (0, -1)]),
        ({**ZSNR, "set_alpha_to_one": False}, [(999, 949), (49, -1)]),
        ({**COSINE}, [(999, 998), (500, 400)]),
    ]
    out = []
    for cfg, pairs in groups:
        cfg = norm_cfg(cfg)
        s = make(cfg)
        s.set_timesteps(50)
        for t, p in pairs:
            v = float(s._get_variance(t, p))
            assert math.isfinite(v), (cfg, t, p, v)
            out.append({"config": cfg, "n": 50, "timestep": t, "prev_timestep": p, "value": v})
    return out


# --------------------------------------------------------------------------------------
# step()
# --------------------------------------------------------------------------------------
def randn(*shape) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float32)


POOL_N = 6
SHAPE = (2, 4, 4, 4)
POOL = {
    "sample": [randn(*SHAPE) for _ in range(POOL_N)],
    "eps": [randn(*SHAPE) for _ in range(POOL_N)],
    "x0": [randn(*SHAPE) * 0.8 for _ in range(POOL_N)],
    "noise": [randn(*SHAPE) for _ in range(POOL_N)],
}
POOL_NAMES = {
    k: [STORE.add(f"input/{k}/{i}", v) for i, v in enumerate(vs)] for k, vs in POOL.items()
}

STEP_SCHEDULES = [
    ("linear", {}),
    ("sd15", dict(SD15)),
    ("cosine", dict(COSINE)),
    ("trained", {"trained_betas": TRAINED_SHORT}),
    ("sd15_zsnr", {**SD15, **ZSNR}),
]
PREDS = ["epsilon", "sample", "v_prediction"]
POSTS = ["none", "clip", "threshold"]
ETAS = [0.0, 0.5, 1.0]
UCMOS = [False, True]
STEP_NS = [1, 3, 7, 10, 30, 50, 61, 999, 1000]

# cycling counters (checked below to give full pairwise coverage)
ETA_IDX = lambda c: (c + c // 3 + c // 54) % 3  # noqa: E731
UCMO_IDX = lambda c: (c + c // 2 + c // 27) % 2  # noqa: E731
N_IDX = lambda c: (c + c // 9 + c // 81) % 9  # noqa: E731

THRESH_STATS = {"cases": 0, "quantile_gt_1": 0, "smv_lt_1": 0}


class StepCases:
    def __init__(self) -> None:
        self.cases: list = []

    def add(self, cid, cfg, n, t, eta, ucmo, sample, model_output, noise, names, sched=None):
        """sample/model_output/noise are tensors; names = (sample_name, mo_name, noise_name|None)."""
        cfg = norm_cfg(cfg)
        if sched is None:
            sched = make(cfg)
            sched.set_timesteps(n)
        T = sched.config.num_train_timesteps
        assert 0 <= t < T, (cid, t)
        kwargs = {"eta": eta, "use_clipped_model_output": ucmo}
        if eta > 0:
            assert noise is not None
            kwargs["variance_noise"] = noise
        out = sched.step(model_output, int(t), sample, **kwargs)
        idx = len(self.cases)
        if sched.config.thresholding:
            self._thresh_stat(cfg, n, t, sample, model_output)
        self.cases.append(
            {
                "id": cid,
                "config": cfg,
                "n": n,
                "timestep": int(t),
                "eta": float(eta),
                "use_clipped_model_output": bool(ucmo),
                "batch_size": int(sample.shape[0]),
                "sample": names[0],
                "model_output": names[1],
                "variance_noise": names[2] if eta > 0 else None,
                "prev_sample": STORE.add(f"step/{idx:05d}/prev_sample", f32(out.prev_sample)),
                "pred_original_sample": STORE.add(
                    f"step/{idx:05d}/pred_original_sample", f32(out.pred_original_sample)
                ),
            }
        )

    @staticmethod
    def _thresh_stat(cfg, n, t, sample, model_output):
        # statistics only (for the summary): did the dynamic threshold actually bite?
        raw = make({**cfg, "thresholding": False, "clip_sample": False})
        raw.set_timesteps(n)
        x0 = raw.step(model_output, int(t), sample).pred_original_sample
        q = torch.quantile(x0.reshape(x0.shape[0], -1).abs(), cfg.get("dynamic_thresholding_ratio", 0.995), dim=1)
        THRESH_STATS["cases"] += 1
        if bool((q > 1).any()):
            THRESH_STATS["quantile_gt_1"] += 1
        if cfg.get("sample_max_value", 1.0) < 1:
            THRESH_STATS["smv_lt_1"] += 1


def pick_positions(ts, T):
    valid = [int(t) for t in ts if 0 <= int(t) < T]
    if not valid:
        return []
    picks = [valid[0], valid[len(valid) // 2], valid[-1]]
    seen, out = set(), []
    for p in picks:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def gen_step_cases():
    sc = StepCases()
    rows = []  # for the pairwise-coverage check
    c = 0
    n_clip = n_thr = 0
    pool_i = 0
    for (sname, scfg), spacing, off, a1, pred, post in itertools.product(
        STEP_SCHEDULES, SPACINGS, [0, 1], [True, False], PREDS, POSTS
    ):
        eta, ucmo, n = ETAS[ETA_IDX(c)], UCMOS[UCMO_IDX(c)], STEP_NS[N_IDX(c)]
        cfg = {
            **scfg,
            "timestep_spacing": spacing,
            "steps_offset": off,
            "set_alpha_to_one": a1,
            "prediction_type": pred,
        }
        if post == "none":
            cfg["clip_sample"] = False
            ptag = "none"
        elif post == "clip":
            r = [1.0, 0.5, 2.0][n_clip % 3]
            n_clip += 1
            cfg["clip_sample"] = True
            cfg["clip_sample_range"] = r
            ptag = f"clip{r}"
        else:
            ratio = [0.995, 0.9][(n_thr // 4) % 2]
            smv = [0.5, 1.0, 2.0, 3.0][n_thr % 4]
            cfg["thresholding"] = True
            cfg["dynamic_thresholding_ratio"] = ratio
            cfg["sample_max_value"] = smv
            cfg["clip_sample"] = bool((n_thr // 8) % 2)  # thresholding wins either way
            n_thr += 1
            ptag = f"thr{ratio}_{smv}"
        rows.append((sname, spacing, off, a1, pred, post, eta, ucmo, n))
        sched = make(norm_cfg(cfg))
        sched.set_timesteps(n)
        T = sched.config.num_train_timesteps
        positions = pick_positions(sched.timesteps, T)
        if sname == "trained":
            # the trained-betas config carries a 1000-float list in every manifest entry,
            # so only one timestep (cycling first / middle / last) per config
            positions = [positions[c % len(positions)]]
        for t in positions:
            k = pool_i % POOL_N
            pool_i += 1
            mo_kind = "x0" if pred == "sample" else "eps"
            sample, mo, noise = POOL["sample"][k], POOL[mo_kind][k], POOL["noise"][k]
            names = (POOL_NAMES["sample"][k], POOL_NAMES[mo_kind][k], POOL_NAMES["noise"][k])
            cid = (
                f"grid{c:03d}_{sname}_{spacing}_o{off}_a{int(a1)}_{pred}_{ptag}"
                f"_eta{eta}_u{int(ucmo)}_n{n}_t{t}"
            )
            sc.add(cid, cfg, n, t, eta, ucmo, sample, mo, noise, names, sched=sched)
        c += 1
    check_pairwise(rows)

    # ---- odd shapes / batch sizes ---------------------------------------------------
    gen = torch.Generator().manual_seed(SEED + 1)

    def rn(shape, scale=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * scale

    odd = [
        # (shape, cfg, n, which-timestep, eta, ucmo)
        ((1, 4, 8, 8), {}, 50, 0, 0.0, False),
        ((1, 4, 8, 8), {**SD15, "clip_sample": False, "steps_offset": 1}, 50, -1, 1.0, False),
        ((3, 2, 5, 3), {}, 10, 0, 0.0, False),
        ((3, 2, 5, 3), {"prediction_type": "v_prediction", "clip_sample": False}, 10, 5, 0.5, True),
        ((3, 2, 5, 3), {"thresholding": True, "sample_max_value": 2.0}, 10, 0, 0.0, True),
        ((3, 2, 5, 3), {**SD15, "thresholding": True, "dynamic_thresholding_ratio": 0.9}, 25, 3, 1.0, False),
        ((1, 3, 7, 5), {**COSINE, "prediction_type": "sample"}, 7, 2, 0.5, True),
        ((1, 3, 7, 5), {**SD15, **ZSNR, "timestep_spacing": "trailing", "prediction_type": "v_prediction",
                        "clip_sample": False}, 10, 0, 0.0, False),
        ((3, 1, 1, 1), {"thresholding": True}, 10, 0, 0.0, False),
        ((3, 1, 1, 1), {"clip_sample_range": 0.25}, 10, 9, 1.0, True),
        ((3, 4, 2, 2), {"timestep_spacing": "linspace", "clip_sample": False}, 7, 1, 0.0, False),
        ((3, 4, 2, 2), {"timestep_spacing": "trailing", "set_alpha_to_one": False}, 13, -1, 0.5, False),
        ((1, 1, 1, 1), {}, 1, 0, 1.0, False),
        ((1, 16, 3, 3), {**SD15, "thresholding": True, "sample_max_value": 0.5, "prediction_type": "v_prediction"},
         50, 10, 0.0, True),
        ((3, 3, 4, 6), {**COSINE, "set_alpha_to_one": False, "clip_sample": False}, 20, -1, 0.0, False),
        ((3, 3, 4, 6), {"trained_betas": TRAINED_SHORT, "prediction_type": "sample", "clip_sample_range": 2.0},
         20, 4, 1.0, True),
        ((1, 2, 9, 1), {"num_train_timesteps": 100}, 10, 3, 0.5, False),
        ((3, 2, 2, 2), {"num_train_timesteps": 100, "timestep_spacing": "trailing", "thresholding": True,
                        "dynamic_thresholding_ratio": 0.9, "sample_max_value": 3.0}, 30, 0, 0.0, False),
        ((1, 4, 4, 4), {"num_train_timesteps": 37, **SD15, "timestep_spacing": "linspace"}, 37, -1, 1.0, True),
        ((3, 5, 1, 7), {**SD15, **ZSNR, "prediction_type": "sample", "timestep_spacing": "trailing"},
         25, 0, 0.5, True),
        ((3, 4, 4, 4), {}, 1000, 500, 1.0, False),
        ((1, 4, 4, 4), {"timestep_spacing": "trailing", "clip_sample": False}, 999, 998, 0.5, False),
    ]
    for i, (shape, cfg, n, pos, eta, ucmo) in enumerate(odd):
        cfg = norm_cfg(cfg)
        s = make(cfg)
        s.set_timesteps(n)
        valid = [int(t) for t in s.timesteps if 0 <= int(t) < s.config.num_train_timesteps]
        t = valid[pos] if pos < len(valid) else valid[-1]
        pred = cfg.get("prediction_type", "epsilon")
        sample = rn(shape)
        mo = rn(shape, 0.8 if pred == "sample" else 1.0)
        noise = rn(shape) if eta > 0 else None
        names = (
            STORE.add(f"input/odd/{i:02d}/sample", sample),
            STORE.add(f"input/odd/{i:02d}/model_output", mo),
            STORE.add(f"input/odd/{i:02d}/noise", noise) if noise is not None else None,
        )
        cid = f"odd{i:02d}_B{shape[0]}_{'x'.join(map(str, shape))}_n{n}_t{t}_eta{eta}_u{int(ucmo)}"
        sc.add(cid, cfg, n, t, eta, ucmo, sample, mo, noise, names, sched=s)

    # ---- thresholding with large x0 (inputs scaled up so the quantile exceeds 1) -----
    thr = [
        ({"thresholding": True}, 50, 0, 0.0, False, 4.0),
        ({"thresholding": True, "dynamic_thresholding_ratio": 0.9}, 50, 25, 0.0, True, 4.0),
        ({"thresholding": True, "sample_max_value": 2.0}, 10, 9, 0.0, False, 5.0),
        ({"thresholding": True, "sample_max_value": 3.0, "prediction_type": "sample"}, 10, 3, 1.0, False, 4.0),
        ({"thresholding": True, "sample_max_value": 3.0, "prediction_type": "sample"}, 10, 3, 0.0, True, 4.0),
        ({**SD15, "thresholding": True, "sample_max_value": 2.0, "prediction_type": "v_prediction"},
         50, 0, 0.0, False, 6.0),
        ({**SD15, "thresholding": True, "sample_max_value": 1.5, "dynamic_thresholding_ratio": 0.9,
          "prediction_type": "v_prediction"}, 50, 49, 0.5, True, 3.0),
        ({**COSINE, "thresholding": True, "sample_max_value": 0.5}, 20, 10, 0.0, False, 3.0),
        ({**COSINE, "thresholding": True, "sample_max_value": 10.0, "dynamic_thresholding_ratio": 0.5,
          "prediction_type": "sample"}, 20, 0, 1.0, True, 8.0),
        ({**SD15, **ZSNR, "thresholding": True, "sample_max_value": 2.5, "timestep_spacing": "trailing",
          "prediction_type": "v_prediction"}, 10, 0, 0.0, False, 4.0),
        ({"thresholding": True, "dynamic_thresholding_ratio": 1.0, "sample_max_value": 2.0}, 10, 0, 0.0, False, 3.0),
        ({"thresholding": True, "dynamic_thresholding_ratio": 0.0, "sample_max_value": 2.0}, 10, 0, 0.0, False, 3.0),
    ]
    for i, (cfg, n, pos, eta, ucmo, scale) in enumerate(thr):
        cfg = norm_cfg(cfg)
        s = make(cfg)
        s.set_timesteps(n)
        valid = [int(t) for t in s.timesteps if 0 <= int(t) < s.config.num_train_timesteps]
        t = valid[pos]
        shape = (2, 3, 4, 4) if i % 2 else (3, 4, 4, 4)
        sample = rn(shape, scale)
        mo = rn(shape, scale)
        noise = rn(shape) if eta > 0 else None
        names = (
            STORE.add(f"input/thr/{i:02d}/sample", sample),
            STORE.add(f"input/thr/{i:02d}/model_output", mo),
            STORE.add(f"input/thr/{i:02d}/noise", noise) if noise is not None else None,
        )
        cid = f"thr_big{i:02d}_scale{scale}_n{n}_t{t}_eta{eta}_u{int(ucmo)}"
        sc.add(cid, cfg, n, t, eta, ucmo, sample, mo, noise, names, sched=s)

    # ---- zero-SNR degeneracies at t=999 (issues #3851, #5969); inf/nan stored as-is --
    zs = [
        ("zsnr_eps_noclip_t999", {**SD15, **ZSNR, "timestep_spacing": "trailing", "clip_sample": False}, 10, 0.0),
        ("zsnr_eps_clip_t999", {**SD15, **ZSNR, "timestep_spacing": "trailing", "clip_sample": True}, 10, 0.0),
        ("zsnr_linear_eps_noclip_t999", {**ZSNR, "timestep_spacing": "trailing", "clip_sample": False}, 50, 0.0),
        ("zsnr_eps_eta1_t999", {**SD15, **ZSNR, "timestep_spacing": "trailing", "clip_sample": False}, 10, 1.0),
        ("zsnr_vpred_eta1_t999_n10", {**SD15, **ZSNR, "timestep_spacing": "trailing", "clip_sample": False,
                                      "prediction_type": "v_prediction"}, 10, 1.0),
        ("zsnr_vpred_eta1_t999_n50", {**SD15, **ZSNR, "timestep_spacing": "trailing", "clip_sample": False,
                                      "prediction_type": "v_prediction"}, 50, 1.0),
        ("zsnr_vpred_eta1_t999_n25", {**SD15, **ZSNR, "timestep_spacing": "trailing", "clip_sample": False,
                                      "prediction_type": "v_prediction"}, 25, 1.0),
        ("zsnr_linear_vpred_eta1_t999_n20", {**ZSNR, "timestep_spacing": "trailing", "clip_sample": False,
                                             "prediction_type": "v_prediction"}, 20, 1.0),
        ("zsnr_sample_eta1_t999_n10", {**SD15, **ZSNR, "timestep_spacing": "trailing",
                                       "prediction_type": "sample"}, 10, 1.0),
        ("zsnr_vpred_eta0.5_ucmo_t999_n10", {**SD15, **ZSNR, "timestep_spacing": "linspace",
                                             "prediction_type": "v_prediction"}, 10, 0.5),
    ]
    for i, (name, cfg, n, eta) in enumerate(zs):
        cfg = norm_cfg(cfg)
        s = make(cfg)
        s.set_timesteps(n)
        assert int(s.timesteps[0]) == 999
        k = i % POOL_N
        pred = cfg.get("prediction_type", "epsilon")
        mo_kind = "x0" if pred == "sample" else "eps"
        names = (POOL_NAMES["sample"][k], POOL_NAMES[mo_kind][k], POOL_NAMES["noise"][k])
        ucmo = "ucmo" in name
        sc.add(name, cfg, n, 999, eta, ucmo, POOL["sample"][k], POOL[mo_kind][k], POOL["noise"][k], names, sched=s)

    # ---- eta > 1 (direction coefficient sqrt of a negative number -> NaN) ------------
    for i, (cfg, n, eta) in enumerate([({}, 10, 1.5), ({**SD15, "clip_sample": False}, 50, 2.0)]):
        cfg = norm_cfg(cfg)
        s = make(cfg)
        s.set_timesteps(n)
        t = int(s.timesteps[len(s.timesteps) // 2])
        k = i % POOL_N
        names = (POOL_NAMES["sample"][k], POOL_NAMES["eps"][k], POOL_NAMES["noise"][k])
        sc.add(f"eta_gt_1_{i}_eta{eta}_n{n}_t{t}", cfg, n, t, eta, False, POOL["sample"][k], POOL["eps"][k],
               POOL["noise"][k], names, sched=s)
    return sc.cases


def check_pairwise(rows):
    sizes = [len({r[i] for r in rows}) for i in range(len(rows[0]))]
    expect = [len(STEP_SCHEDULES), 3, 2, 2, 3, 3, 3, 2, len(STEP_NS)]
    assert sizes == expect, (sizes, expect)
    for i, j in itertools.combinations(range(len(expect)), 2):
        seen = {(r[i], r[j]) for r in rows}
        assert len(seen) == expect[i] * expect[j], ("pairwise coverage hole", i, j)


# --------------------------------------------------------------------------------------
# add_noise / get_velocity
# --------------------------------------------------------------------------------------
AN_CASES = [
    ({}, [0, 500, 999]),
    (SD15, [981, 1, 500]),
    (COSINE, [999, 0, 250]),
    (ZSNR, [999, 998, 0]),
    ({**SD15, **ZSNR}, [999, 500, 1]),
    ({"trained_betas": TRAINED_SHORT}, [10, 990, 333]),
    ({"num_train_timesteps": 100}, [99, 0, 50]),
    ({"num_train_timesteps": 37, **SD15}, [36, 18, 0]),
    ({"beta_start": 0.1, "beta_end": 2.0}, [0, 1, 2]),
    ({**COSINE, **ZSNR}, [998, 999, 100]),
]


def gen_add_noise_velocity():
    gen = torch.Generator().manual_seed(SEED + 2)

    def rn(shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float32)

    an, vel = [], []
    cases = [((3, 4, 4, 4), c, ts) for c, ts in AN_CASES] + [
        ((1, 4, 8, 8), SD15, [777]),  # single timestep, B=1
        ((3, 2, 5, 3), {}, [123]),  # single timestep broadcast over B=3
    ]
    for i, (shape, cfg, ts) in enumerate(cases):
        cfg = norm_cfg(cfg)
        s = make(cfg)
        a, b = rn(shape), rn(shape)
        na = STORE.add(f"add_noise/{i:02d}/original_samples", a)
        nb = STORE.add(f"add_noise/{i:02d}/noise", b)
        y = s.add_noise(a, b, torch.tensor(ts))
        an.append({"config": cfg, "timesteps": ts, "original_samples": na, "noise": nb,
                   "expected": STORE.add(f"add_noise/{i:02d}/expected", f32(y))})
        s2 = make(cfg)
        c_, d_ = rn(shape), rn(shape)
        nc = STORE.add(f"velocity/{i:02d}/sample", c_)
        nd = STORE.add(f"velocity/{i:02d}/noise", d_)
        v = s2.get_velocity(c_, d_, torch.tensor(ts))
        vel.append({"config": cfg, "timesteps": ts, "sample": nc, "noise": nd,
                    "expected": STORE.add(f"velocity/{i:02d}/expected", f32(v))})
    # the exact add_noise of diffusers' test_full_loop_with_noise (deterministic fixtures)
    s = make({})
    y = s.add_noise(dummy_sample_deter(), dummy_noise_deter(), torch.tensor([100]))
    an.append({"config": {}, "timesteps": [100],
               "original_samples": STORE.add("fixture/dummy_sample_deter", dummy_sample_deter()),
               "noise": STORE.add("fixture/dummy_noise_deter", dummy_noise_deter()),
               "expected": STORE.add("add_noise/deter_t100/expected", f32(y))})
    return an, vel


# --------------------------------------------------------------------------------------
# Full loops with diffusers' dummy model (spec section 7.1 / 7.2)
# --------------------------------------------------------------------------------------
def dummy_sample_deter() -> torch.Tensor:
    batch_size, num_channels, height, width = 4, 3, 8, 8
    num_elems = batch_size * num_channels * height * width
    sample = torch.arange(num_elems)
    sample = sample.reshape(num_channels, height, width, batch_size)
    sample = sample / num_elems
    return sample.permute(3, 0, 1, 2)


def dummy_noise_deter() -> torch.Tensor:
    batch_size, num_channels, height, width = 4, 3, 8, 8
    num_elems = batch_size * num_channels * height * width
    sample = torch.arange(num_elems).flip(-1)
    sample = sample.reshape(num_channels, height, width, batch_size)
    sample = sample / num_elems
    return sample.permute(3, 0, 1, 2)


def dummy_model(sample: torch.Tensor, t) -> torch.Tensor:
    # verbatim logic of SchedulerCommonTest.dummy_model
    if isinstance(t, torch.Tensor):
        num_dims = len(sample.shape)
        t = t.reshape(-1, *(1,) * (num_dims - 1)).to(sample.device, dtype=sample.dtype)
    return sample * t / (t + 1)


# diffusers' own test-suite expectations (tests/schedulers/test_scheduler_ddim.py)
SUITE_EXPECT = {
    "suite_full_loop_no_noise": (172.0067, 0.223967),
    "suite_full_loop_v_prediction": (52.5302, 0.0684),
    "suite_full_loop_set_alpha_to_one": (149.8295, 0.1951),
    "suite_full_loop_no_set_alpha_to_one": (149.0784, 0.1941),
    "suite_full_loop_with_noise": (354.5418, 0.4616),
}


def run_loop(lid, cfg, n, eta=0.0, ucmo=False, noise_seed=None, start_index=0, add_noise_first=False):
    cfg = norm_cfg(cfg)
    s = make(cfg)
    s.set_timesteps(n)
    timesteps = s.timesteps[start_index:]
    x = dummy_sample_deter()
    entry = {"id": lid, "model": "dummy", "config": cfg, "n": n, "eta": float(eta),
             "use_clipped_model_output": bool(ucmo), "batch_size": int(x.shape[0])}
    if add_noise_first:
        x = s.add_noise(x, dummy_noise_deter(), timesteps[:1])
        entry["add_noise_timestep"] = int(timesteps[0])
    entry["initial_sample"] = STORE.add(f"loop/{lid}/initial_sample", f32(x))
    noise = None
    if eta > 0:
        g = torch.Generator().manual_seed(noise_seed)
        noise = torch.randn(len(timesteps), *x.shape, generator=g, dtype=torch.float32)
        entry["noise_per_step"] = STORE.add(f"loop/{lid}/noise_per_step", noise)
    else:
        entry["noise_per_step"] = None
    for i, t in enumerate(timesteps):
        T = s.config.num_train_timesteps
        assert 0 <= int(t) < T, (lid, int(t))
        residual = dummy_model(x, t)  # the model sees the 0-dim int64 tensor
        kw = {"eta": eta, "use_clipped_model_output": ucmo}
        if eta > 0:
            kw["variance_noise"] = noise[i]
        x = s.step(residual, int(t), x, **kw).prev_sample
    entry["timesteps"] = [int(t) for t in timesteps]
    entry["final_sample"] = STORE.add(f"loop/{lid}/final_sample", f32(x))
    return entry, x


def gen_loops():
    loops = []
    suite = [
        ("suite_full_loop_no_noise", {}, {}),
        ("suite_full_loop_v_prediction", {"prediction_type": "v_prediction"}, {}),
        ("suite_full_loop_set_alpha_to_one", {"set_alpha_to_one": True, "beta_start": 0.01}, {}),
        ("suite_full_loop_no_set_alpha_to_one", {"set_alpha_to_one": False, "beta_start": 0.01}, {}),
        ("suite_full_loop_with_noise", {}, {"start_index": 8, "add_noise_first": True}),
    ]
    for lid, cfg, kw in suite:
        e, x = run_loop(lid, cfg, 10, **kw)
        ssum, smean = float(x.abs().sum()), float(x.abs().mean())
        es, em = SUITE_EXPECT[lid]
        assert abs(ssum - es) < 1e-2 and abs(smean - em) < 1e-3, (lid, ssum, smean)
        loops.append(e)
    wn = loops[-1]
    assert wn["timesteps"] == [100, 0] and wn["add_noise_timestep"] == 100, wn
    # step(int t) and step(tensor t) must agree bitwise (we always store int timesteps)
    s = make({})
    s.set_timesteps(10)
    x = dummy_sample_deter()
    for t in s.timesteps:
        r = dummy_model(x, t)
        a = s.step(r, int(t), x).prev_sample
        b = s.step(r, t, x).prev_sample
        assert torch.equal(a, b)
        x = a

    extra = [
        ("trailing_zsnr_vpred_n10", {**SD15, **ZSNR, "timestep_spacing": "trailing",
                                     "prediction_type": "v_prediction", "clip_sample": False}, 10, {}),
        ("zsnr_eps_clip_trailing_n10", {**SD15, **ZSNR, "timestep_spacing": "trailing"}, 10, {}),
        ("linspace_n10", {"timestep_spacing": "linspace"}, 10, {}),
        ("linspace_cosine_n7_no_alpha_one", {**COSINE, "timestep_spacing": "linspace",
                                             "set_alpha_to_one": False, "clip_sample": False}, 7, {}),
        ("sd15_leading_offset1_n50", {**SD15, "steps_offset": 1, "clip_sample": False,
                                      "set_alpha_to_one": False}, 50, {}),
        ("thresholding_smv0.5_n10", {"thresholding": True, "sample_max_value": 0.5}, 10, {}),
        ("thresholding_cosine_trailing_smv2_n10", {**COSINE, "thresholding": True, "sample_max_value": 2.0,
                                                   "timestep_spacing": "trailing"}, 10, {}),
        ("eta0.5_n10", {}, 10, {"eta": 0.5, "noise_seed": SEED + 10}),
        ("eta1.0_sd15_trailing_ucmo_n20", {**SD15, "timestep_spacing": "trailing", "clip_sample": False},
         20, {"eta": 1.0, "ucmo": True, "noise_seed": SEED + 11}),
        # sample prediction: the dummy model returns 0 at t=0, so with set_alpha_to_one=True the final
        # sample would be exactly 0; use set_alpha_to_one=False to keep the loops informative
        ("eta1.0_sample_pred_clip_ucmo_n10", {"prediction_type": "sample", "clip_sample_range": 0.5,
                                              "set_alpha_to_one": False},
         10, {"eta": 1.0, "ucmo": True, "noise_seed": SEED + 12}),
        ("n1", {}, 1, {}),
        ("n1_trailing_sd15", {**SD15, "timestep_spacing": "trailing", "clip_sample": False}, 1, {}),
        ("trailing_n1000", {"timestep_spacing": "trailing", "clip_sample": False}, 1000, {}),
        ("leading_n999", {"clip_sample": False}, 999, {}),
        ("T100_linspace_n10", {"num_train_timesteps": 100, "timestep_spacing": "linspace"}, 10, {}),
        ("T100_trailing_n30_eta0.5", {"num_train_timesteps": 100, "timestep_spacing": "trailing"},
         30, {"eta": 0.5, "noise_seed": SEED + 13}),
        ("T37_sd15_leading_offset1_n5", {"num_train_timesteps": 37, **SD15, "steps_offset": 1}, 5, {}),
        ("cosine_sample_pred_ucmo_n25", {**COSINE, "prediction_type": "sample", "set_alpha_to_one": False},
         25, {"ucmo": True}),
        ("trained_short_no_alpha_one_n20", {"trained_betas": TRAINED_SHORT, "set_alpha_to_one": False}, 20, {}),
    ]
    for lid, cfg, n, kw in extra:
        e, _ = run_loop(lid, cfg, n, **kw)
        loops.append(e)
    return loops


# --------------------------------------------------------------------------------------
# Config loading (section C)
# --------------------------------------------------------------------------------------
class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_CAPTURE = _Capture()
dlogging.set_verbosity_info()
dlogging.disable_default_handler()
logging.getLogger("diffusers").addHandler(_CAPTURE)

_NOT_FOUND = " was not found in config. Values will be initialized to default values."


def load_entry(cfg_input: dict) -> dict:
    _CAPTURE.records.clear()
    try:
        sched, unused = DDIMScheduler.from_config(copy.deepcopy(cfg_input), return_unused_kwargs=True)
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": str(e), "error_type": type(e).__name__}
    records = list(_CAPTURE.records)
    _CAPTURE.records.clear()
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    defaulted = []
    for r in records:
        msg = r.getMessage()
        if r.levelno == logging.INFO and msg.endswith(_NOT_FOUND):
            defaulted = sorted(ast.literal_eval(msg[: -len(_NOT_FOUND)]))
    conf = dict(sched.config)
    init = {k: conf[k] for k in DDIM_INIT_KEYS}
    extra = {k: v for k, v in conf.items() if k not in DDIM_INIT_KEYS and k != "_use_default_values"}
    entry = {
        "ok": True,
        "init": jsonable(init),
        "extra": jsonable(extra),
        "warnings": warnings,
        "defaulted": defaulted,
        "unused_kwargs": jsonable(unused),
        # NB: to_json_string() mutates the live config (adds _class_name/_diffusers_version),
        # so it is called only after "extra" was taken.
        "to_json_string": sched.to_json_string(),
    }
    return entry


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"not JSON-native: {type(x)}")


SYNTHETIC_CONFIGS = [
    {},
    {"foo_unknown": 3, "_private_thing": 1},
    {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.30.0", "num_train_timesteps": 1000,
     "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
     "max_image_seq_len": 4096, "invert_sigmas": False, "shift_terminal": None, "time_shift_type": "exponential",
     "stochastic_sampling": False},
    {"_class_name": "CosineDPMSolverMultistepScheduler", "sigma_min": 0.3, "sigma_max": 500, "sigma_data": 1.0,
     "sigma_schedule": "exponential", "num_train_timesteps": 1000, "solver_order": 2,
     "prediction_type": "v_prediction", "rho": 7.0, "solver_type": "midpoint", "lower_order_final": True,
     "euler_at_final": False, "final_sigmas_type": "zero"},
    {"_class_name": "EDMEulerScheduler", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5,
     "sigma_schedule": "karras", "num_train_timesteps": 1000, "prediction_type": "epsilon", "rho": 7.0,
     "final_sigmas_type": "zero"},
    {"use_karras_sigmas": True, "solver_order": 2, "skip_prk_steps": True, "clip_sample": False},
    {"trained_betas": [0.1, 0.3]},
    {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 0.5, "clip_sample_range": 3,
     "prediction_type": "sample"},
    {"beta_start": 1e-05, "beta_end": 2, "steps_offset": 1, "clip_sample_range": 1},
    {"_use_default_values": ["beta_start"], "beta_start": 0.5, "beta_end": 0.03, "timestep_spacing": "trailing"},
    {"_class_name": 5, "beta_start": 0.001},
    {"_class_name": ["DDIMScheduler"], "beta_start": 0.001},
    {"_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 4, "clip_sample": False},
    {"_class_name": "NotARealDiffusersClass", "foo": 1, "steps_offset": 1},
    {"_class_name": "DDIMInverseScheduler", "set_alpha_to_zero": False, "timestep_spacing": "trailing"},
    {"predict_epsilon": False, "tensor_format": "pt", "quantization_config": {"bits": 4}},
    {"args": 1, "kwargs": 2, "noise_sampler_seed": 3, "variance_type": "fixed_small"},
]


def gen_configs():
    out = []
    for p in sorted(CONFIGS_DIR.glob("*.json")):
        try:
            with open(p, encoding="utf-8") as fh:
                cfg = json.load(fh)
        except Exception as e:  # noqa: BLE001
            out.append({"file": p.name, "ok": False, "error": str(e), "error_type": type(e).__name__})
            continue
        out.append({"file": p.name, **load_entry(cfg)})
    for cfg in SYNTHETIC_CONFIGS:
        out.append({"file": None, "input": copy.deepcopy(cfg), **load_entry(cfg)})
    return out


# --------------------------------------------------------------------------------------
# known_schedulers.json (section D)
# --------------------------------------------------------------------------------------
SPEC_COMPATIBLE_ONLY_KEYS = sorted(
    "algorithm_type, args, disable_corrector, euler_at_final, final_sigmas_type, flow_shift, interpolation_type, "
    "kwargs, lambda_min_clipped, lower_order_final, predict_x0, rho, shift_terminal, sigma_data, sigma_max, "
    "sigma_min, sigma_schedule, skip_prk_steps, solver_order, solver_p, solver_type, time_shift_type, "
    "timestep_type, use_beta_sigmas, use_dynamic_shifting, use_exponential_sigmas, use_flow_sigmas, "
    "use_karras_sigmas, use_lu_lambdas, variance_type".split(", ")
)


def _init_keys_from_signature(cls):
    return [
        n
        for n, p in inspect.signature(cls.__init__).parameters.items()
        if n not in ("self", "args", "kwargs") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _ast_class_info(class_name: str):
    """Init keys etc. of a scheduler whose backend is missing here (a DummyObject), read from its source."""
    sched_dir = Path(diffusers.schedulers.__file__).parent
    for f in sorted(sched_dir.rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == class_name:
                info = {"init_keys": [], "ignore_for_config": [], "compatibles": [], "source": str(
                    f.relative_to(sched_dir.parent))}
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        a = item.args
                        info["init_keys"] = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg != "self"]
                    if isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
                        tgt = item.targets[0].id
                        if tgt == "ignore_for_config":
                            info["ignore_for_config"] = ast.literal_eval(item.value)
                        if tgt == "_compatibles":
                            v = item.value
                            if (isinstance(v, ast.ListComp) and isinstance(v.generators[0].iter, ast.Name)
                                    and v.generators[0].iter.id == "KarrasDiffusionSchedulers"):
                                from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers
                                info["compatibles"] = [e.name for e in KarrasDiffusionSchedulers]
                            else:
                                info["compatibles"] = ast.literal_eval(v)
                return info
    return None


def gen_known_schedulers() -> dict:
    import diffusers.schedulers as S

    names = sorted(set(dir(S)) | set(dir(diffusers)))
    classes, dummies = {}, {}
    for n in names:
        obj = None
        for mod in (diffusers, S):
            try:
                if hasattr(mod, n):
                    obj = getattr(mod, n)
                    break
            except Exception:  # noqa: BLE001 - lazy import failures
                continue
        if obj is None:
            continue
        if isinstance(obj, type) and issubclass(obj, SchedulerMixin) and obj is not SchedulerMixin:
            keys = _init_keys_from_signature(obj)
            classes[n] = {
                "init_keys": keys,
                "ignore_for_config": list(getattr(obj, "ignore_for_config", [])),
                "compatibles": list(getattr(obj, "_compatibles", [])),
                "has_beta_schedule": "beta_schedule" in keys,
            }
        elif isinstance(obj, DummyObject) and n.endswith("Scheduler"):
            info = _ast_class_info(n)
            if info is not None:
                # a real SchedulerMixin subclass of diffusers 0.42.1 whose optional backend is not
                # installed in the generator's venv: listed from its source, flagged
                dummies[n] = {
                    "init_keys": info["init_keys"],
                    "ignore_for_config": info["ignore_for_config"],
                    "compatibles": info["compatibles"],
                    "has_beta_schedule": "beta_schedule" in info["init_keys"],
                    "dummy_in_generator_env": True,
                    "missing_backends": list(getattr(obj, "_backends", [])),
                }
    assert "DDIMScheduler" in classes

    # ---- compatible_only_keys: exactly ConfigMixin.extract_init_dict's logic for cls=DDIMScheduler ----
    cls = DDIMScheduler
    if cls.has_compatibles:
        compatible_classes = [c for c in cls._get_compatibles() if not isinstance(c, DummyObject)]
    else:
        compatible_classes = []
    expected_keys_comp_cls = set()
    for c in compatible_classes:
        expected_keys_comp_cls |= cls._get_init_keys(c)
    expected_keys_comp_cls -= cls._get_init_keys(cls)
    compatible_only_keys = sorted(expected_keys_comp_cls)
    dummy_compat = sorted(c.__name__ for c in cls._get_compatibles() if isinstance(c, DummyObject))

    # empirical check: none of them is warned about, all of them are dropped from init
    _CAPTURE.records.clear()
    init_dict, unused, _hidden = cls.extract_init_dict({k: 1 for k in compatible_only_keys})
    assert init_dict == {} and unused == {}, (init_dict, unused)
    assert not [r for r in _CAPTURE.records if r.levelno >= logging.WARNING]
    _CAPTURE.records.clear()

    # what the set would be with every optional backend installed (real signatures, from source)
    all_backends = set(expected_keys_comp_cls)
    for name in dummy_compat:
        info = _ast_class_info(name)
        all_backends |= set(info["init_keys"]) - set(DDIM_INIT_KEYS)
    # what the set would be if DummyObject placeholders were NOT filtered out
    with_dummy_sigs = set()
    for c in cls._get_compatibles():
        with_dummy_sigs |= cls._get_init_keys(c)
    with_dummy_sigs -= cls._get_init_keys(cls)

    # ---- class_name_lookup probe (step 5 of extract_init_dict) ----------------------------
    probe = {}
    for cn in ["UNet2DConditionModel", "StableDiffusionPipeline", "LMSDiscreteScheduler", "is_torch_available",
               "FlaxPNDMScheduler", "KarrasDiffusionSchedulers"]:
        _CAPTURE.records.clear()
        d, u, _ = cls.extract_init_dict(
            {"_class_name": cn, "sample_size": 1, "in_channels": 1, "args": 1, "kwargs": 1, "self": 1}
        )
        probe[cn] = {"hasattr_diffusers": hasattr(diffusers, cn), "kept_as_unexpected": sorted(u)}
    _CAPTURE.records.clear()

    return {
        "diffusers_version": diffusers.__version__,
        "ddim_init_keys": DDIM_INIT_KEYS,
        "ddim_defaults": jsonable(DDIM_DEFAULTS),
        "compatible_only_keys": compatible_only_keys,
        "compatible_only_keys_note": (
            "Computed exactly like ConfigMixin.extract_init_dict for cls=DDIMScheduler in the generator's "
            "environment: union of inspect.signature(__init__) parameter names of the classes in "
            "DDIMScheduler._get_compatibles() that are NOT DummyObject placeholders, minus DDIMScheduler's own "
            "__init__ names (incl. 'self'). The set depends on which optional backends are installed: "
            f"{dummy_compat} are DummyObject placeholders here (missing backends) and therefore skipped."
        ),
        "compatible_classes_used": sorted(c.__name__ for c in compatible_classes),
        "compatible_classes_dummy_here": dummy_compat,
        "compatible_only_keys_if_all_backends_installed": sorted(all_backends),
        "compatible_only_keys_if_dummies_not_filtered": sorted(with_dummy_sigs),
        "spec_5_1_compatible_only_keys": SPEC_COMPATIBLE_ONLY_KEYS,
        "class_name_lookup": (
            "extract_init_dict step 5 uses hasattr(diffusers, name)/getattr(diffusers, name) on the lazy top-level "
            "`diffusers` module and drops inspect.signature(obj.__init__) parameter names that DDIMScheduler does "
            "not expect, so ANY top-level diffusers attribute counts (schedulers, models such as "
            "UNet2DConditionModel, pipelines, DummyObject placeholders whose __init__ is (self, *args, **kwargs), "
            "even functions), not only SchedulerMixin subclasses; names absent from the top level (e.g. the removed "
            "Flax classes) drop nothing, and a non-str non-list/tuple _class_name raises ValueError."
        ),
        "class_name_lookup_probe": probe,
        "classes": {**classes, **dummies},
        "classes_note": (
            "Every SchedulerMixin subclass exported by diffusers.schedulers / diffusers. Entries with "
            "dummy_in_generator_env=true are DummyObject placeholders in the generator's venv (optional backend "
            "missing); their init_keys/compatibles are read from the diffusers source with ast. In that venv, "
            "extract_init_dict's _class_name lookup on such a placeholder drops only the keys 'args'/'kwargs'."
        ),
    }


# --------------------------------------------------------------------------------------
def main() -> None:
    generator = {
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
    }
    schedules = gen_schedules()
    timesteps, ts_errors = gen_timesteps()
    timesteps_all = gen_timesteps_all()
    variance = gen_variance()
    step_cases = gen_step_cases()
    add_noise_cases, velocity_cases = gen_add_noise_velocity()
    loops = gen_loops()
    configs = gen_configs()
    known = gen_known_schedulers()

    # sanity checks against diffusers' test-suite numbers
    tv = {(v["timestep"], v["prev_timestep"]): v["value"] for v in variance if v["config"] == {}}
    for (t, p), e in {(0, 0): 0.0, (420, 400): 0.14771, (980, 960): 0.32460, (487, 486): 0.00979,
                      (999, 998): 0.02}.items():
        assert abs(tv[(t, p)] - e) < 1e-5, (t, p, tv[(t, p)])
    ids = [c["id"] for c in step_cases]
    assert len(ids) == len(set(ids))
    ids = [c["id"] for c in loops]
    assert len(ids) == len(set(ids))

    manifest = {
        "generator": generator,
        "schedules": schedules,
        "timesteps": timesteps,
        "timesteps_all": timesteps_all,
        "set_timesteps_errors": ts_errors,
        "variance": variance,
        "step_cases": step_cases,
        "add_noise_cases": add_noise_cases,
        "velocity_cases": velocity_cases,
        "loops": loops,
        "configs": configs,
    }
    # every tensor named in the manifest must exist (and nothing else is written)
    named = set()

    def collect(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if isinstance(v, str) and v in STORE.tensors:
                    named.add(v)
                else:
                    collect(v)
        elif isinstance(x, list):
            for v in x:
                collect(v)

    collect({k: v for k, v in manifest.items() if k != "configs"})
    unused_tensors = set(STORE.tensors) - named
    assert not unused_tensors, sorted(unused_tensors)[:10]

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    manifest_path = OUT_DIR / "manifest.json"
    tensors_path = OUT_DIR / "tensors.safetensors"
    text = json.dumps(manifest, indent=None, sort_keys=True, allow_nan=False, separators=(",", ":"))
    manifest_path.write_text(text + "\n", encoding="utf-8")
    safetensors.numpy.save_file(dict(sorted(STORE.tensors.items())), str(tensors_path),
                                metadata={"generator": "tools/gen_fixtures.py"})
    KNOWN_SCHEDULERS.parent.mkdir(parents=True, exist_ok=True)
    KNOWN_SCHEDULERS.write_text(
        json.dumps(known, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8"
    )

    sizes = {p.name: p.stat().st_size for p in (manifest_path, tensors_path, KNOWN_SCHEDULERS)}
    total = sum(sizes.values())
    assert total < 20 * 1024 * 1024, sizes
    counts = {k: len(v) for k, v in manifest.items() if isinstance(v, list)}
    print(
        "gen_fixtures: "
        + " ".join(f"{k}={v}" for k, v in counts.items())
        + f" tensors={len(STORE.tensors)} classes={len(known['classes'])}"
        + f" thresholding(bites={THRESH_STATS['quantile_gt_1']}/{THRESH_STATS['cases']},"
        + f" smv<1={THRESH_STATS['smv_lt_1']})"
        + " | "
        + " ".join(f"{k}={v / 1e6:.2f}MB" for k, v in sizes.items())
        + f" total={total / 1e6:.2f}MB"
    )


if __name__ == "__main__":
    main()
