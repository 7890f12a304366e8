#!/usr/bin/env python3
"""One Stable Diffusion 1.5 UNet step at 512x512 on torch CPU, and the scheduler's share.

Builds `UNet2DConditionModel` from SD 1.5's published `unet/config.json`
(`tools/bench/sd15_unet_config.json`, nothing downloaded) with random weights (seed 0),
saves it as a diffusers component folder for the Rust side (`--save DIR`), and times what a
guided pipeline step does, as `StableDiffusionPipeline.__call__` does it:

    noise_pred = unet(cat([latents] * 2), t, encoder_hidden_states=embeds).sample   # 2x4x64x64
    uncond, text = noise_pred.chunk(2)
    noise_pred = uncond + 7.5 * (text - uncond)
    noise_pred = rescale_noise_cfg(noise_pred, text, guidance_rescale=0.7)
    latents = scheduler.step(noise_pred, t, latents, eta=1.0, generator=g).prev_sample

`unet_s`: median seconds of the UNet call over --repeats (after one warm-up);
`rest_ms`: median milliseconds of the guidance + rescale + step (with its randn draw).
Prints one JSON object.

Usage: python tools/bench/bench_unet.py --save /tmp/sd15-unet [--repeats 3]
"""

import argparse
import json
import pathlib
import statistics
import time

import diffusers
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

HERE = pathlib.Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--save", type=pathlib.Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    config = json.loads((HERE / "sd15_unet_config.json").read_text())
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config).eval()
    if not (args.save / "diffusion_pytorch_model.safetensors").exists():
        unet.save_pretrained(args.save, safe_serialization=True)

    g = torch.Generator("cpu").manual_seed(0)
    latents = torch.randn((1, 4, 64, 64), generator=g)
    embeds = torch.randn((2, 77, 768), generator=g)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        clip_sample=False, set_alpha_to_one=False,
    )
    scheduler.set_timesteps(50)
    t = scheduler.timesteps[10]

    unet(torch.cat([latents] * 2), t, encoder_hidden_states=embeds)  # warm-up
    unet_times, rest_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        noise_pred = unet(torch.cat([latents] * 2), t, encoder_hidden_states=embeds).sample
        unet_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        uncond, text = noise_pred.chunk(2)
        guided = uncond + 7.5 * (text - uncond)
        guided = rescale_noise_cfg(guided, text, guidance_rescale=0.7)
        scheduler.step(guided, t, latents, eta=1.0, generator=g).prev_sample
        rest_times.append(time.perf_counter() - start)
    print(json.dumps({
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "unet_s": statistics.median(unet_times),
        "unet_s_all": unet_times,
        "rest_ms": 1e3 * statistics.median(rest_times),
    }))


if __name__ == "__main__":
    main()
