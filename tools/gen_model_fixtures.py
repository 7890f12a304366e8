#!/usr/bin/env python3
"""Fixtures for crates/ddim-pipeline/tests/models.rs: tiny random diffusers UNets and VAEs.

For each case this builds a `UNet2DConditionModel` or `AutoencoderKL` with the real diffusers
(versions pinned in tools/requirements.txt), perturbs every parameter (so that norm weights,
biases and zero-initialised layers all matter), saves it as a diffusers component folder
(`config.json` + `diffusion_pytorch_model.safetensors`, `save_pretrained(safe_serialization=True)`)
under crates/ddim-pipeline/tests/data/models/<case>/, and writes the fixed inputs and diffusers'
outputs (torch CPU, float32) to <case>/expected.safetensors.

Some cases are stored in float16: their parameters are rounded to float16 first and the reference
is computed in float32 with the rounded parameters, so the Rust side checks the f16 -> f32
conversion of weights files as well as the network.

Run: /work/venv/bin/python tools/gen_model_fixtures.py
"""

import copy
import json
import math
import os
import shutil

import torch
from safetensors.torch import save_file
from diffusers import AutoencoderKL, UNet2DConditionModel

ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "ddim-pipeline", "tests", "data", "models")

# Every UNet key the Rust side reads is varied by at least one case.
UNET_CASES = {
    # SD 1.x shape: int attention_head_dim (= heads), conv projections, 32 groups.
    "unet_sd1": dict(
        config=dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 32),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1,
            attention_head_dim=8,
            cross_attention_dim=16,
            norm_num_groups=32,
        ),
        batch=2, size=(8, 8), seq=7, timestep=999, fp16=True,
    ),
    # SD 2.x shape: per-block head list, linear projections, upcast_attention, groups != 32,
    # transformer_layers_per_block as a list, flip_sin_to_cos false, freq_shift 1, odd sizes.
    "unet_sd2": dict(
        config=dict(
            sample_size=9,
            in_channels=4,
            out_channels=4,
            block_out_channels=(8, 16, 24),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1,
            attention_head_dim=[2, 4, 4],
            cross_attention_dim=16,
            norm_num_groups=8,
            use_linear_projection=True,
            upcast_attention=True,
            transformer_layers_per_block=[1, 2, 1],
            flip_sin_to_cos=False,
            freq_shift=1,
        ),
        batch=2, size=(9, 7), seq=5, timestep=517, fp16=False,
    ),
    # Block order reversed (plain first), only_cross_attention, downsample_padding 0, mid block
    # scale, centred input, norm_eps, transformer_layers_per_block int 2, layers_per_block list,
    # gelu act_fn, time embedding width and activations, 1x1 conv_in and 5x5 conv_out.
    "unet_mixed": dict(
        config=dict(
            sample_size=11,
            in_channels=3,
            out_channels=5,
            block_out_channels=(12, 12, 24),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            layers_per_block=[1, 2, 1],
            attention_head_dim=(3, 3, 6),
            cross_attention_dim=20,
            norm_num_groups=4,
            norm_eps=1e-6,
            only_cross_attention=[False, True, False],
            downsample_padding=0,
            mid_block_scale_factor=1.414,
            center_input_sample=True,
            transformer_layers_per_block=2,
            act_fn="gelu",
            time_embedding_dim=20,
            time_embedding_act_fn="mish",
            timestep_post_act="silu",
            conv_in_kernel=1,
            conv_out_kernel=5,
        ),
        batch=2, size=(11, 6), seq=4, timestep=1, fp16=True,
    ),
    # No mid block, a single-valued cross_attention_dim list, only_cross_attention bool true,
    # relu, layers_per_block int 2, 4 blocks of 8/16 channels with 2 groups, odd sizes through
    # three downsampling levels; stored in float16.
    "unet_nomid": dict(
        config=dict(
            sample_size=5,
            in_channels=4,
            out_channels=4,
            block_out_channels=(8, 16, 16, 16),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"),
            mid_block_type=None,
            layers_per_block=2,
            attention_head_dim=[1, 2, 4, 2],
            cross_attention_dim=[12, 12, 12, 12],
            only_cross_attention=True,
            norm_num_groups=2,
            act_fn="relu",
        ),
        batch=1, size=(13, 10), seq=3, timestep=0, fp16=True,
    ),
}

VAE_CASES = {
    # Two levels, one ResNet per level, 4 groups.
    "vae_small": dict(
        config=dict(
            in_channels=3,
            out_channels=3,
            block_out_channels=(8, 16),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=16,
            scaling_factor=0.18215,
        ),
        batch=2, size=(16, 12), fp16=False,
    ),
    # Four levels (scale factor 8), two ResNets per level, no quant_conv, 3 latent channels,
    # shift factor; stored in float16.
    "vae_deep": dict(
        config=dict(
            in_channels=3,
            out_channels=3,
            block_out_channels=(8, 8, 16, 16),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=3,
            norm_num_groups=8,
            sample_size=24,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            use_quant_conv=False,
            force_upcast=False,
        ),
        batch=1, size=(24, 16), fp16=True,
    ),
    # No mid-block attention, no post_quant_conv, 16 groups, 6 latent channels, other in/out
    # channels, gelu in the ResNets.
    "vae_noattn": dict(
        config=dict(
            in_channels=4,
            out_channels=2,
            block_out_channels=(16, 16),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1,
            latent_channels=6,
            norm_num_groups=16,
            sample_size=8,
            mid_block_add_attention=False,
            use_post_quant_conv=False,
            act_fn="gelu",
        ),
        batch=2, size=(8, 10), fp16=False,
    ),
}


# diffusers run with `torch_dtype` in these dtypes too (torch CPU kernels).
LOW_DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16}


# Full-size published architectures, built on the meta device (no memory, no weights): their
# config.json as diffusers writes it and the name and shape of every tensor of their state dict,
# so the Rust side checks that it asks for exactly these tensors with these shapes.
SD_DOWN = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
SD_UP = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
FULL_CASES = {
    # runwayml/stable-diffusion-v1-5 unet/config.json
    "sd15_unet": (UNet2DConditionModel, dict(
        sample_size=64, cross_attention_dim=768, attention_head_dim=8,
        down_block_types=SD_DOWN, up_block_types=SD_UP,
    )),
    # stabilityai/stable-diffusion-2-1 unet/config.json (768-v)
    "sd21_unet": (UNet2DConditionModel, dict(
        sample_size=96, cross_attention_dim=1024, attention_head_dim=[5, 10, 20, 20],
        use_linear_projection=True, upcast_attention=True,
        down_block_types=SD_DOWN, up_block_types=SD_UP,
    )),
    # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (refused: addition embeddings)
    "sdxl_unet": (UNet2DConditionModel, dict(
        sample_size=128, cross_attention_dim=2048, attention_head_dim=[5, 10, 20],
        block_out_channels=(320, 640, 1280), use_linear_projection=True,
        transformer_layers_per_block=[1, 2, 10], addition_embed_type="text_time",
        addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    )),
    # the Stable Diffusion 1.x/2.x VAE (vae/config.json)
    "sd_vae": (AutoencoderKL, dict(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=768, scaling_factor=0.18215,
    )),
}


def save_full_configs():
    folder = os.path.join(ROOT, "full")
    os.makedirs(folder, exist_ok=True)
    for name, (cls, config) in FULL_CASES.items():
        with torch.device("meta"):
            model = cls(**config)
        with open(os.path.join(folder, f"{name}.json"), "w") as fh:
            fh.write(model.to_json_string())
        if name == "sdxl_unet":
            continue
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        with open(os.path.join(folder, f"{name}.shapes.json"), "w") as fh:
            json.dump(shapes, fh, separators=(",", ":"), sort_keys=True)
            fh.write("\n")
        print(f"{name}: {len(shapes)} tensors, {sum(math.prod(s) for s in shapes.values()) / 1e6:.1f}M parameters")


def perturb(model, fp16):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
            if fp16:
                p.copy_(p.half().float())


def save_folder(model, name, fp16):
    folder = os.path.join(ROOT, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    if fp16:
        model.half().save_pretrained(folder, safe_serialization=True)
        model.float()
    else:
        model.save_pretrained(folder, safe_serialization=True)
    return folder


def main():
    os.makedirs(ROOT, exist_ok=True)
    save_full_configs()
    for index, (name, case) in enumerate(UNET_CASES.items()):
        torch.manual_seed(1000 + index)
        model = UNet2DConditionModel(**case["config"]).eval()
        perturb(model, case["fp16"])
        folder = save_folder(model, name, case["fp16"])
        c = model.config
        cross = c.cross_attention_dim if isinstance(c.cross_attention_dim, int) else c.cross_attention_dim[0]
        sample = torch.randn(case["batch"], c.in_channels, *case["size"])
        context = torch.randn(case["batch"], case["seq"], cross)
        with torch.no_grad():
            out = model(sample, case["timestep"], encoder_hidden_states=context).sample
        tensors = {
            "sample": sample.contiguous(),
            "encoder_hidden_states": context.contiguous(),
            "timestep": torch.tensor([case["timestep"]], dtype=torch.int64),
            "output": out.contiguous(),
        }
        # diffusers in half precision (torch_dtype), same inputs cast to it.
        for suffix, dtype in LOW_DTYPES.items():
            low = copy.deepcopy(model).to(dtype)
            with torch.no_grad():
                tensors[f"output_{suffix}"] = low(
                    sample.to(dtype), case["timestep"], encoder_hidden_states=context.to(dtype)
                ).sample.contiguous()
        save_file(
            tensors,
            os.path.join(folder, "expected.safetensors"),
        )
        print(f"{name}: output {tuple(out.shape)} |out|max {out.abs().max():.3f}")

    for index, (name, case) in enumerate(VAE_CASES.items()):
        torch.manual_seed(2000 + index)
        model = AutoencoderKL(**case["config"]).eval()
        perturb(model, case["fp16"])
        folder = save_folder(model, name, case["fp16"])
        c = model.config
        image = torch.rand(case["batch"], c.in_channels, *case["size"]) * 2 - 1
        f = 2 ** (len(c.block_out_channels) - 1)
        latents = torch.randn(case["batch"], c.latent_channels, case["size"][0] // f, case["size"][1] // f)
        with torch.no_grad():
            dist = model.encode(image).latent_dist
            decoded = model.decode(latents).sample
        tensors = {
            "image": image.contiguous(),
            "mean": dist.mean.contiguous(),
            "logvar": dist.logvar.contiguous(),
            "std": dist.std.contiguous(),
            "latents": latents.contiguous(),
            "decoded": decoded.contiguous(),
        }
        for suffix, dtype in LOW_DTYPES.items():
            low = copy.deepcopy(model).to(dtype)
            with torch.no_grad():
                tensors[f"mean_{suffix}"] = low.encode(image.to(dtype)).latent_dist.mean.contiguous()
                tensors[f"decoded_{suffix}"] = low.decode(latents.to(dtype)).sample.contiguous()
        save_file(
            tensors,
            os.path.join(folder, "expected.safetensors"),
        )
        print(f"{name}: latent {tuple(dist.mean.shape)} decoded {tuple(decoded.shape)}")

    with open(os.path.join(ROOT, "VERSIONS.json"), "w") as fh:
        import diffusers

        json.dump({"torch": torch.__version__, "diffusers": diffusers.__version__}, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
