#!/usr/bin/env python3
"""Generate the pipeline-helper fixtures of the `ddim` crate from the REAL diffusers 0.42.1.

Writes

  crates/ddim/tests/data/guidance/manifest.json        classifier-free guidance + rescale_noise_cfg cases
  crates/ddim/tests/data/guidance/tensors.safetensors  their tensors (float32 and float64)
  crates/ddim/tests/data/img2img/cases.json            StableDiffusionImg2ImgPipeline.get_timesteps cases
  crates/ddim/tests/data/hub/cases.json                huggingface_hub's cache folder and local lookups

How diffusers' own code is run
------------------------------
`diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion` (where the canonical
`rescale_noise_cfg` lives) and `...pipeline_stable_diffusion_img2img` (where `get_timesteps`
lives) import `transformers` at module level, which the tools venv does not have and the
functions do not use. So this script reads those two source files of the installed diffusers,
takes the function definitions out of them with `ast` (the exact code, byte for byte), and
executes them in a namespace holding `torch`. `rescale_noise_cfg` is also imported from
`diffusers.guiders.guider_utils` (importable without transformers) and both copies must agree
bit for bit on every case.

`get_timesteps` is a method; it is called unbound with a minimal stand-in for the pipeline,
`SimpleNamespace(scheduler=<a real DDIMScheduler after set_timesteps(n)>)`: it reads only
`self.scheduler.timesteps`, `self.scheduler.order` and `hasattr(self.scheduler,
"set_begin_index")`. The classifier-free guidance combination is an expression inside the
pipelines' `__call__`; it is evaluated here as written there
(`noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)`).

Deterministic: fixed seed, one torch thread, sorted compact JSON. Run from anywhere:

    /work/venv/ddim-tools/bin/python tools/gen_guidance_fixtures.py
"""

from __future__ import annotations

import ast
import json
import math
import platform
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import safetensors.numpy
import torch

import diffusers
from diffusers import DDIMScheduler
from diffusers.guiders.guider_utils import rescale_noise_cfg as guider_rescale_noise_cfg

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "crates" / "ddim" / "tests" / "data"
SEED = 20261127

torch.set_num_threads(1)
assert diffusers.__version__ == "0.42.1", diffusers.__version__


def function_from_source(module_path: str, qualname: str, namespace: dict):
    """Executes one function definition of an installed diffusers file without importing it."""
    path = Path(diffusers.__file__).parent / module_path
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = qualname.split(".")
    body = tree.body
    node = None
    for part in parts:
        node = next(n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part)
        body = node.body
    assert isinstance(node, ast.FunctionDef), qualname
    module = ast.Module(body=[node], type_ignores=[])
    exec(compile(module, str(path), "exec"), namespace)
    return namespace[node.name]


rescale_noise_cfg = function_from_source(
    "pipelines/stable_diffusion/pipeline_stable_diffusion.py", "rescale_noise_cfg", {"torch": torch}
)
get_timesteps = function_from_source(
    "pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py",
    "StableDiffusionImg2ImgPipeline.get_timesteps",
    {"torch": torch},
)


def f32(x: float) -> float:
    """A Python float that is exactly representable in float32 (the Rust API takes f32)."""
    return float(np.float32(x))


# --------------------------------------------------------------------------------------
# guidance
# --------------------------------------------------------------------------------------
TENSORS: dict[str, np.ndarray] = {}


def put(name: str, t: torch.Tensor) -> str:
    assert name not in TENSORS, name
    TENSORS[name] = t.detach().contiguous().numpy().copy()
    return name


def guidance_cases() -> list[dict]:
    gen = torch.Generator().manual_seed(SEED)
    cases = []
    # (shape, dtype, uncond (scale, offset), text (scale, offset), guidance scales, rescales)
    specs = [
        ((1, 4, 8, 8), torch.float32, (1.0, 0.0), (1.0, 0.05), [7.5], [0.0, 0.7, 1.0]),
        ((2, 4, 8, 8), torch.float32, (1.0, 0.0), (1.1, 0.0), [1.0, 5.0, 7.5], [0.7]),
        ((3, 3, 5, 7), torch.float32, (0.5, 0.1), (0.6, -0.2), [7.5, 12.0], [0.0, 0.5, 0.7, 1.0]),
        ((4, 16), torch.float32, (2.0, 0.0), (1.5, 0.3), [3.0], [0.7, 1.0]),
        ((2, 2, 3), torch.float32, (1.0, 0.0), (1.0, 0.0), [7.5], [0.7]),
        ((1, 4, 32, 32), torch.float32, (1.0, 0.0), (0.9, 0.0), [7.5], [0.7]),
        ((2, 4, 32, 32), torch.float32, (1.0, 0.0), (0.9, 0.0), [7.5], [0.7]),
        # a mean far above the spread: torch's batch-of-one std takes a float32 mean
        ((1, 4, 8, 8), torch.float32, (0.01, 100.0), (0.01, 100.0), [2.0], [0.7]),
        ((2, 4, 8, 8), torch.float32, (0.01, 100.0), (0.01, 100.0), [2.0], [0.7]),
        ((1, 4, 8, 8), torch.float32, (1.0, 300.0), (1.0, 300.0), [2.0], [0.7]),
        # float64 tensors (Element = f64)
        ((2, 4, 8, 8), torch.float64, (1.0, 0.0), (1.1, 0.1), [7.5], [0.0, 0.7, 1.0]),
        ((1, 3, 5, 7), torch.float64, (1.0, 0.0), (1.1, 0.1), [7.5], [0.7]),
        # more batch-of-one samples whose mean dominates: torch's cascade sum (several levels
        # from 512 elements on, a scalar tail, fewer elements than a vector)
        ((1, 4, 32, 32), torch.float32, (0.01, 100.0), (0.01, 100.0), [2.0], [0.7]),
        ((1, 3, 37, 29), torch.float32, (0.01, -50.0), (0.02, -50.0), [3.0], [1.0]),
        ((1, 1, 61, 67), torch.float32, (0.01, 1000.0), (0.01, 1000.0), [7.5], [0.7]),
        ((1, 5), torch.float32, (0.01, 100.0), (0.01, 100.0), [2.0], [0.7]),
        ((1, 2, 7), torch.float64, (0.01, 100.0), (0.01, 100.0), [2.0], [0.7]),
        ((1, 1, 61, 67), torch.float64, (1e-6, 1000.0), (1e-6, 1000.0), [7.5], [0.7]),
    ]
    for i, (shape, dtype, (su, ou), (st, ot), scales, rescales) in enumerate(specs):
        uncond = (torch.randn(shape, generator=gen, dtype=torch.float64) * su + ou).to(dtype)
        text = (uncond.to(torch.float64) * 0.8 + torch.randn(shape, generator=gen, dtype=torch.float64) * st + ot).to(dtype)
        dt = "f32" if dtype == torch.float32 else "f64"
        u_name = put(f"c{i}/uncond", uncond)
        t_name = put(f"c{i}/text", text)
        for scale in scales:
            w = f32(scale)
            cfg = uncond + w * (text - uncond)
            cfg_name = put(f"c{i}/w{scale}/cfg", cfg)
            for rescale in rescales:
                phi = f32(rescale)
                out = rescale_noise_cfg(cfg, text, guidance_rescale=phi)
                other = guider_rescale_noise_cfg(cfg, text, guidance_rescale=phi)
                assert torch.equal(out, other), "the two copies of rescale_noise_cfg disagree"
                assert bool(torch.isfinite(out).all())
                cases.append({
                    "dtype": dt,
                    # |mean| far above the spread: see the crate's guidance docs
                    "mean_dominates": abs(ou) >= 100 * su,
                    "shape": list(shape),
                    "batch_size": shape[0],
                    "guidance_scale": w,
                    "guidance_rescale": phi,
                    "uncond": u_name,
                    "text": t_name,
                    "cfg": cfg_name,
                    "out": put(f"c{i}/w{scale}/phi{rescale}/out", out),
                })
    return cases


def zero_std_cases() -> list[dict]:
    """What diffusers returns for a constant sample of noise_cfg: recorded, not matched."""
    out = []
    gen = torch.Generator().manual_seed(SEED + 1)
    text = torch.randn((2, 4, 3), generator=gen)
    for value in [0.0, 0.25]:
        cfg = torch.randn((2, 4, 3), generator=gen)
        cfg[1] = value  # sample 1 is constant
        res = rescale_noise_cfg(cfg, text, guidance_rescale=f32(0.7))
        out.append({
            "shape": [2, 4, 3],
            "constant_sample": 1,
            "constant_value": value,
            "cfg": put(f"zero_std/{value}/cfg", cfg),
            "text": put(f"zero_std/{value}/text", text),
            "diffusers_sample0_finite": bool(torch.isfinite(res[0]).all()),
            "diffusers_sample1_finite": bool(torch.isfinite(res[1]).all()),
        })
    return out


# --------------------------------------------------------------------------------------
# img2img strength
# --------------------------------------------------------------------------------------
SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
          clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def img2img_cases() -> list[dict]:
    """One entry per scheduler schedule (spacing, steps_offset, n), with get_timesteps' output
    for every strength."""
    cases = []
    strengths = [0.0, 0.01, 0.05, 0.1, 0.123, 0.2, 0.25, 0.3, 0.33, 0.5, 0.6, 0.7, 0.75, 0.8,
                 0.9, 0.95, 0.99, 0.999, 1.0]
    gen = torch.Generator().manual_seed(SEED + 2)
    for spacing, offset in [("leading", 1), ("leading", 0), ("trailing", 1), ("linspace", 1)]:
        for n in [1, 2, 3, 7, 10, 20, 25, 30, 50, 100]:
            sched = DDIMScheduler(**{**SD, "steps_offset": offset}, timestep_spacing=spacing)
            sched.set_timesteps(n)
            full = [int(t) for t in sched.timesteps]
            if len(full) != n or min(full) < 0:
                continue  # diffusers' trailing anomaly: the crate's timesteps differ there
            results = []
            for s in strengths:
                pipe = SimpleNamespace(scheduler=sched)
                timesteps, steps = get_timesteps(pipe, n, s, "cpu")
                ts = [int(t) for t in timesteps]
                result = {
                    "strength": s,
                    "timesteps": ts,
                    "returned_num_inference_steps": int(steps),
                }
                # What the pipeline does next: latent_timestep = timesteps[:1].repeat(batch),
                # then scheduler.add_noise(init_latents, noise, latent_timestep).
                latent_timestep = timesteps[:1].repeat(1)
                init = torch.randn((1, 4, 2, 2), generator=gen)
                try:
                    sched.add_noise(init, torch.zeros_like(init), latent_timestep)
                    result["latent_timestep"] = int(latent_timestep[0])
                except Exception as e:  # noqa: BLE001 - the failure is what is recorded
                    result["add_noise_error"] = type(e).__name__
                results.append(result)
            cases.append({
                "spacing": spacing,
                "steps_offset": offset,
                "num_inference_steps": n,
                "full_timesteps": full,
                "has_set_begin_index": hasattr(sched, "set_begin_index"),
                "order": sched.order,
                "results": results,
            })
    return cases


# --------------------------------------------------------------------------------------
# Hugging Face cache
# --------------------------------------------------------------------------------------
# (HOME is always set: without it Python asks the password database, which this crate does not.)
HUB_ENVS = [
    {"HOME": "/home/u"},
    {"HOME": "/home/u", "XDG_CACHE_HOME": "/xdg"},
    {"HOME": "/home/u", "XDG_CACHE_HOME": "/xdg", "HF_HOME": "/hf"},
    {"HOME": "/home/u", "HF_HOME": "~/hf"},
    {"HOME": "/home/u", "HF_HOME": "$HOME/hf2"},
    {"HOME": "/home/u", "HF_HOME": "${HOME}/hf3/$NOT_SET"},
    {"HOME": "/home/u", "HF_HOME": "/hf", "HUGGINGFACE_HUB_CACHE": "/legacy"},
    {"HOME": "/home/u", "HF_HOME": "/hf", "HUGGINGFACE_HUB_CACHE": "/legacy", "HF_HUB_CACHE": "/hubcache"},
    {"HOME": "/home/u", "HF_HUB_CACHE": "~/hc"},
    {"HOME": "/home/u", "HF_HUB_CACHE": "~"},
    {"HOME": "/home/u", "HF_HUB_CACHE": "~other/x"},
    {"HOME": "/home/u", "XDG_CACHE_HOME": "$HOME/xdg"},
]

HASH = {k: (k * 40)[:40] for k in "abcdef"}
# (path relative to the cache, content)
HUB_LAYOUT = [
    ("models--org--model/refs/main", HASH["a"]),
    ("models--org--model/snapshots/" + HASH["a"] + "/scheduler/scheduler_config.json", '{"steps_offset": 1}'),
    ("models--org--model/refs/v1", HASH["b"]),
    ("models--org--model/snapshots/" + HASH["b"] + "/scheduler/scheduler_config.json", '{"steps_offset": 2}'),
    ("models--org--model/refs/refs/pr/1", HASH["c"]),
    ("models--org--model/snapshots/" + HASH["c"] + "/scheduler/scheduler_config.json", '{"steps_offset": 3}'),
    ("models--org--model/snapshots/" + HASH["d"] + "/scheduler/scheduler_config.json", '{"steps_offset": 4}'),
    ("models--org--model/refs/broken", HASH["e"]),
    ("models--org--model/refs/nosched", HASH["f"]),
    ("models--org--model/snapshots/" + HASH["f"] + "/unet/config.json", "{}"),
    ("models--solo/refs/main", HASH["a"]),
    ("models--solo/snapshots/" + HASH["a"] + "/scheduler/scheduler_config.json", '{"steps_offset": 5}'),
]
HUB_QUERIES = [
    ("org/model", None), ("org/model", "main"), ("org/model", "v1"), ("org/model", "refs/pr/1"),
    ("org/model", HASH["d"]), ("org/model", HASH["a"]), ("org/model", "broken"),
    ("org/model", "nosched"), ("org/model", "no-such-branch"), ("org/model", HASH["e"]),
    ("org/other", None), ("solo", None), ("other/solo", None),
]


MODEL_IDS = [
    "org/model", "solo", "stabilityai/stable-diffusion-2-1", "CompVis/stable-diffusion-v1-4",
    "a/b", "_x/y_", "123", "Foo-BAR_foo.bar123", "org/model.v2", "x" * 96, "x" * 97,
    "o" * 96 + "/" + "m" * 96, "", "/", "org/", "/model", "a/b/c", "../etc", "org/..",
    "org/./m", ".org/model", "org/model.", "-org/model", "org/model-", "org--x/model",
    "org/mo--del", "org/mo..del", "org/model.git", "org/mo del", "org/mödel", "org\\model",
    "~/model", "org/model/", "datasets/foo/bar",
]


def hub_cases() -> dict:
    import os
    import subprocess
    import sys
    import tempfile

    envs = []
    for env in HUB_ENVS:
        probe = "import huggingface_hub.constants as c; print(c.HF_HUB_CACHE)"
        full = {"PATH": os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1", **env}
        out = subprocess.run([sys.executable, "-c", probe], env=full, capture_output=True, text=True,
                             check=True).stdout.strip()
        envs.append({"env": env, "hf_hub_cache": out})

    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    ids = []
    for model_id in MODEL_IDS:
        try:
            validate_repo_id(model_id)
            ids.append({"model_id": model_id, "valid": True})
        except HFValidationError:
            ids.append({"model_id": model_id, "valid": False})

    queries = []
    with tempfile.TemporaryDirectory() as tmp:
        for rel, content in HUB_LAYOUT:
            path = Path(tmp, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        for model_id, revision in HUB_QUERIES:
            entry = {"model_id": model_id, "revision": revision}
            try:
                # what DDIMScheduler.from_pretrained(model_id, subfolder="scheduler",
                # revision=revision, local_files_only=True) asks huggingface_hub for
                found = hf_hub_download(model_id, "scheduler_config.json", subfolder="scheduler",
                                        revision=revision, cache_dir=tmp, local_files_only=True)
                entry["found"] = Path(found).relative_to(tmp).as_posix()
            except Exception as e:  # noqa: BLE001 - the failure is what is recorded
                entry["error"] = type(e).__name__
            queries.append(entry)
    return {"envs": envs, "layout": HUB_LAYOUT, "queries": queries, "model_ids": ids}


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=None, sort_keys=True, allow_nan=False, separators=(",", ":"))
    path.write_text(text + "\n", encoding="utf-8")


def main() -> None:
    generator = {
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "script": "tools/gen_guidance_fixtures.py",
    }
    cases = guidance_cases()
    zero = zero_std_cases()
    gdir = DATA / "guidance"
    dump(gdir / "manifest.json", {"generator": generator, "cases": cases, "zero_std": zero})
    gdir.mkdir(parents=True, exist_ok=True)
    safetensors.numpy.save_file(dict(sorted(TENSORS.items())), str(gdir / "tensors.safetensors"),
                                metadata={"generator": "tools/gen_guidance_fixtures.py"})
    img = img2img_cases()
    dump(DATA / "img2img" / "cases.json", {"generator": generator, "cases": img})
    hub = hub_cases()
    dump(DATA / "hub" / "cases.json", {"generator": generator, **hub})
    size = (gdir / "tensors.safetensors").stat().st_size
    print(f"guidance: {len(cases)} cases, {len(zero)} zero-std cases, {len(TENSORS)} tensors, "
          f"{size / 1024:.0f} KiB; img2img: {len(img)} cases; hub: {len(hub['envs'])} environments, "
          f"{len(hub['queries'])} lookups")


if __name__ == "__main__":
    main()
