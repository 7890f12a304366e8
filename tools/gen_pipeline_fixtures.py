"""Tiny Stable Diffusion pipelines and what the real diffusers makes with them.

Builds two diffusers pipeline folders with random weights, small enough to commit, and records
what diffusers' pipelines return for a few prompts and seeds:

* ``sd1``: the SD 1.x layout (CLIP ``quick_gelu`` text encoder, ``<|endoftext|>`` padding,
  no ``tokenizer.json``, ``attention_head_dim`` an int, conv projections, epsilon prediction,
  ``leading`` spacing with ``steps_offset`` 1);
* ``sd2``: the SD 2.x 768-v layout (``gelu`` text encoder, ``!`` padding, ``tokenizer.json``,
  per-block ``attention_head_dim``, ``use_linear_projection``, ``upcast_attention``,
  ``v_prediction``, 16 norm groups) with ``fp16`` variant weights beside the f32 ones.

Cases: text-to-image (CFG with and without ``guidance_rescale``, no CFG, negative prompts,
several images per prompt, non-default sizes, eta 0, 0.5 and 1, the seed document's
zero-SNR + trailing recipe), img2img (strengths, an init image that needs resizing) and DDIM
inversion of an image (``DDIMInverseScheduler`` driven by the UNet, then regeneration with
eta 0). For each: the final latents, the image as diffusers' PIL output, and the prompt
embeddings, under ``crates/ddim-pipeline/tests/data/pipelines/``.

Run from the repository root with the venv of ``tools/requirements.txt``:

    python tools/gen_pipeline_fixtures.py
"""

from __future__ import annotations

import gzip
import json
import math
import pathlib
import shutil
import sys

import diffusers
import numpy as np
import PIL.Image
import safetensors.torch
import torch
import transformers
from diffusers import (
    AutoencoderKL,
    DDIMInverseScheduler,
    DDIMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "ddim-pipeline" / "tests" / "data" / "pipelines"

# CLIP's own BPE merges (open_clip ships them); the tiny tokenizers keep the first MERGES.
MERGES = 3000


def clip_merges() -> list[str]:
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("open_clip_torch is needed for CLIP's merges: pip install --no-deps open_clip_torch")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    return lines[1 : MERGES + 1]


def bytes_to_unicode() -> list[str]:
    """CLIP's byte alphabet, in CLIP's order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def clip_vocab(merges: list[str]) -> dict[str, int]:
    alphabet = bytes_to_unicode()
    tokens = alphabet + [a + "</w>" for a in alphabet]
    tokens += ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


def tokenizer(pad_token: str) -> CLIPTokenizer:
    merges = clip_merges()
    vocab = clip_vocab(merges)
    return CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(m.split()) for m in merges],
        pad_token=pad_token,
        model_max_length=77,
    )


def text_encoder(tok: CLIPTokenizer, hidden_act: str, layers: int, heads: int) -> CLIPTextModel:
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        hidden_act=hidden_act,
        layer_norm_eps=1e-5,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        projection_dim=32,
    )
    return CLIPTextModel(config).eval()


def pipeline(tok, te, unet: dict, vae: dict, seeds: tuple[int, int], **scheduler) -> StableDiffusionPipeline:
    """A pipeline around `tok` and `te` with a tiny random UNet and VAE (4 blocks: scale
    factor 8, 8x8 latents for 64x64 images) and an SD-style DDIM scheduler."""
    torch.manual_seed(seeds[0])
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, cross_attention_dim=32, **unet
    ).eval()
    torch.manual_seed(seeds[1])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=1,
        latent_channels=4,
        sample_size=64,
        **vae,
    ).eval()
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        **scheduler,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sd1() -> StableDiffusionPipeline:
    tok = tokenizer("<|endoftext|>")
    return pipeline(
        tok,
        text_encoder(tok, "quick_gelu", layers=2, heads=4),
        unet=dict(
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=8,
            norm_num_groups=32,
        ),
        vae=dict(block_out_channels=[32, 32, 32, 32], norm_num_groups=32),
        seeds=(1, 2),
    )


def sd2() -> StableDiffusionPipeline:
    tok = tokenizer("!")
    return pipeline(
        tok,
        text_encoder(tok, "gelu", layers=3, heads=2),
        unet=dict(
            block_out_channels=(16, 32),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=[2, 4],
            use_linear_projection=True,
            upcast_attention=True,
            norm_num_groups=8,
        ),
        vae=dict(block_out_channels=[16, 32, 32, 32], norm_num_groups=16),
        seeds=(3, 4),
        prediction_type="v_prediction",
    )


def save_folder(pipe: StableDiffusionPipeline, name: str, fp16_variant: bool, tokenizer_json: bool):
    folder = OUT / name
    if folder.exists():
        shutil.rmtree(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    if fp16_variant:
        pipe.to(torch.float16)
        pipe.save_pretrained(folder, safe_serialization=True, variant="fp16")
        pipe.to(torch.float32)
    if not tokenizer_json:
        write_slow_tokenizer_files(folder / "tokenizer", pipe.tokenizer)
    return folder


def write_slow_tokenizer_files(folder: pathlib.Path, tok: CLIPTokenizer):
    """The tokenizer folder as SD 1.5's repository has it: vocab.json + merges.txt, no
    tokenizer.json (transformers 5 writes only tokenizer.json)."""
    (folder / "tokenizer.json").unlink()
    merges = clip_merges()
    vocab = clip_vocab(merges)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": tok.pad_token,
        "unk_token": "<|endoftext|>",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = dict(
        add_prefix_space=False,
        do_lower_case=True,
        errors="replace",
        model_max_length=77,
        tokenizer_class="CLIPTokenizer",
        **special,
    )
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


# The seed document's zero-terminal-SNR recipe, as scheduler config overrides.
RECIPE = {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}

LION = (
    "A lion in galaxies, spirals, nebulae, stars, smoke, iridescent, intricate detail, "
    "octane render, 8k"
)
ASTRONAUT = "a photograph of an astronaut riding a horse"

TEXT2IMG = [
    dict(name="sd1_cfg", folder="sd1", prompt=ASTRONAUT, steps=10, guidance_scale=7.5, seed=0),
    dict(
        name="sd1_eta1_negative_two_images",
        folder="sd1",
        prompt="A painting of a squirrel eating a burger",
        negative_prompt="blurry, low quality",
        steps=8,
        guidance_scale=5.0,
        eta=1.0,
        seed=42,
        num_images_per_prompt=2,
    ),
    dict(
        name="sd1_no_cfg_48x80",
        folder="sd1",
        prompt="Portrait of a cat, oil on canvas",
        steps=6,
        guidance_scale=1.0,
        seed=7,
        height=48,
        width=80,
    ),
    dict(
        name="sd1_cfg_rescale_eta_half",
        folder="sd1",
        prompt=ASTRONAUT,
        steps=12,
        guidance_scale=9.0,
        guidance_rescale=0.5,
        eta=0.5,
        seed=2024,
    ),
    dict(
        name="sd2_recipe",
        folder="sd2",
        prompt=LION,
        steps=10,
        guidance_scale=7.5,
        guidance_rescale=0.7,
        seed=1,
        overrides=RECIPE,
    ),
    dict(
        name="sd2_recipe_eta1",
        folder="sd2",
        prompt=LION,
        steps=10,
        guidance_scale=7.5,
        guidance_rescale=0.7,
        eta=1.0,
        seed=3,
        overrides=RECIPE,
    ),
    dict(
        name="sd2_plain_eta_half_64x48",
        folder="sd2",
        prompt="a red bicycle leaning on a wall",
        negative_prompt="ugly",
        steps=7,
        guidance_scale=3.0,
        eta=0.5,
        seed=5,
        height=64,
        width=48,
    ),
]

IMG2IMG = [
    dict(
        name="sd1_img2img",
        folder="sd1",
        prompt=ASTRONAUT,
        image="init_64x64.png",
        strength=0.6,
        steps=10,
        guidance_scale=7.5,
        seed=11,
    ),
    dict(
        name="sd1_img2img_resize_eta1",
        folder="sd1",
        prompt="a watercolor of a lighthouse",
        image="init_70x61.png",
        strength=0.8,
        steps=10,
        guidance_scale=6.0,
        eta=1.0,
        seed=13,
    ),
    dict(
        name="sd1_img2img_two_images",
        folder="sd1",
        prompt="a watercolor of a lighthouse",
        negative_prompt="dark",
        image="init_64x64.png",
        strength=0.5,
        steps=6,
        guidance_scale=4.0,
        eta=0.5,
        seed=21,
        num_images_per_prompt=2,
    ),
    dict(
        name="sd2_img2img_recipe",
        folder="sd2",
        prompt=LION,
        image="init_64x64.png",
        strength=0.75,
        steps=8,
        guidance_scale=7.5,
        # No guidance_rescale: diffusers 0.42.1's StableDiffusionImg2ImgPipeline has no such
        # argument and drops it silently (**kwargs); ddim-pipeline applies it and says so.
        eta=1.0,
        seed=12,
        overrides=RECIPE,
    ),
]

INVERT = [
    dict(name="sd1_invert", folder="sd1", prompt=ASTRONAUT, image="init_64x64.png", steps=10),
    dict(
        name="sd2_invert_recipe",
        folder="sd2",
        prompt=LION,
        image="init_64x64.png",
        steps=10,
        overrides=RECIPE,
    ),
]


def init_image(width: int, height: int, seed: int) -> PIL.Image.Image:
    """A smooth synthetic picture (gradients, a disc, mild noise): something a VAE can encode."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = np.sqrt((x - width * 0.4) ** 2 + (y - height * 0.55) ** 2)
    disc = (r < min(width, height) * 0.3).astype(np.float64)
    rng = np.random.default_rng(seed)
    rgb = np.stack(
        [
            0.2 + 0.6 * x / max(width - 1, 1) + 0.2 * disc,
            0.3 + 0.5 * y / max(height - 1, 1) - 0.2 * disc,
            0.5 + 0.3 * np.sin(x / 5.0) * np.cos(y / 7.0),
        ],
        axis=-1,
    )
    rgb += rng.normal(0.0, 0.03, rgb.shape)
    return PIL.Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255.0).round().astype(np.uint8))


# Each folder's own scheduler config, as saved: overrides apply to it, never to the previous
# case's scheduler.
BASE_SCHEDULER_CONFIGS: dict[int, dict] = {}


def with_scheduler(pipe, overrides: dict | None):
    base = BASE_SCHEDULER_CONFIGS.setdefault(id(pipe), dict(pipe.scheduler.config))
    pipe.scheduler = DDIMScheduler.from_config(base, **(overrides or {}))
    return pipe


def run_case(pipe, case: dict, kind: str, images: dict) -> dict:
    with_scheduler(pipe, case.get("overrides"))
    generator = torch.Generator("cpu").manual_seed(case["seed"])
    kwargs = dict(
        prompt=case["prompt"],
        negative_prompt=case.get("negative_prompt"),
        num_inference_steps=case["steps"],
        guidance_scale=case["guidance_scale"],
        guidance_rescale=case.get("guidance_rescale", 0.0),
        eta=case.get("eta", 0.0),
        num_images_per_prompt=case.get("num_images_per_prompt", 1),
        generator=generator,
        output_type="latent",
    )
    if kind == "text2img":
        kwargs.update(height=case.get("height"), width=case.get("width"))
        out = pipe(**kwargs)
    else:
        img2img = StableDiffusionImg2ImgPipeline(**pipe.components, requires_safety_checker=False)
        kwargs.update(image=images[case["image"]], strength=case["strength"])
        out = img2img(**kwargs)
    latents = out.images
    # The same call again with diffusers' own decoding and post-processing.
    generator = torch.Generator("cpu").manual_seed(case["seed"])
    kwargs.update(generator=generator, output_type="pil")
    if kind == "text2img":
        pils = pipe(**kwargs).images
    else:
        pils = img2img(**kwargs).images
    prompt_embeds, negative_embeds = pipe.encode_prompt(
        case["prompt"],
        torch.device("cpu"),
        1,
        case["guidance_scale"] > 1.0,
        case.get("negative_prompt"),
    )
    tensors = {"latents": latents.contiguous(), "prompt_embeds": prompt_embeds.contiguous()}
    if negative_embeds is not None:
        tensors["negative_prompt_embeds"] = negative_embeds.contiguous()
    return finish(case, kind, tensors, pils)


def run_inversion(pipe, case: dict, images: dict) -> dict:
    """DDIM inversion: VAE encode (the distribution's mean), DDIMInverseScheduler steps driven
    by the UNet with the prompt (no CFG), then text-to-image from x_T with eta 0."""
    with_scheduler(pipe, case.get("overrides"))
    inverse = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    processor = pipe.image_processor
    image = processor.preprocess(images[case["image"]])
    with torch.no_grad():
        posterior = pipe.vae.encode(image).latent_dist
        latents = posterior.mean * pipe.vae.config.scaling_factor
        x0 = latents.clone()
        prompt_embeds, _ = pipe.encode_prompt(case["prompt"], torch.device("cpu"), 1, False)
        inverse.set_timesteps(case["steps"])
        for t in inverse.timesteps:
            noise_pred = pipe.unet(latents, t, encoder_hidden_states=prompt_embeds).sample
            latents = inverse.step(noise_pred, t, latents).prev_sample
    x_t = latents
    out = pipe(
        prompt=case["prompt"],
        num_inference_steps=case["steps"],
        guidance_scale=1.0,
        eta=0.0,
        latents=x_t.clone(),
        output_type="latent",
    ).images
    pils = pipe(
        prompt=case["prompt"],
        num_inference_steps=case["steps"],
        guidance_scale=1.0,
        eta=0.0,
        latents=x_t.clone(),
        output_type="pil",
    ).images
    with torch.no_grad():
        vae_only = pipe.vae.decode(x0 / pipe.vae.config.scaling_factor).sample
    vae_only = processor.postprocess(vae_only, output_type="pil")[0]
    original = np.asarray(images[case["image"]], dtype=np.float64)
    restored = np.asarray(pils[0], dtype=np.float64)
    tensors = {
        "encoded_latents": x0.contiguous(),
        "inverted_latents": x_t.contiguous(),
        "latents": out.contiguous(),
        "prompt_embeds": prompt_embeds.contiguous(),
    }
    record = finish(case, "invert", tensors, pils)
    # The round trip's PSNR against the input, and against the VAE's own reconstruction
    # (decode(encode(x))): the second isolates what DDIM inversion loses from what the (here
    # random) VAE loses.
    record["psnr_db"] = psnr(original, restored)
    record["psnr_vs_vae_db"] = psnr(np.asarray(vae_only, dtype=np.float64), restored)
    return record


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 10.0 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")


def finish(case: dict, kind: str, tensors: dict, pils: list) -> dict:
    name = case["name"]
    safetensors.torch.save_file(tensors, str(OUT / f"{name}.safetensors"))
    files = []
    for i, pil in enumerate(pils):
        file = f"{name}_{i}.png"
        pil.save(OUT / file)
        files.append(file)
    pixels = np.stack([np.asarray(p) for p in pils])
    print(
        f"{name}: latents {tuple(tensors['latents'].shape)}, pixel mean {pixels.mean():.1f} "
        f"std {pixels.std():.1f}, saturated {np.mean((pixels == 0) | (pixels == 255)):.3f}"
    )
    record = {k: v for k, v in case.items()}
    record.update(kind=kind, tensors=f"{name}.safetensors", images=files)
    return record


def main():
    torch.set_grad_enabled(False)
    OUT.mkdir(parents=True, exist_ok=True)
    pipes = {
        "sd1": sd1(),
        "sd2": sd2(),
    }
    save_folder(pipes["sd1"], "sd1", fp16_variant=False, tokenizer_json=False)
    save_folder(pipes["sd2"], "sd2", fp16_variant=True, tokenizer_json=True)
    # Reload what was saved, so the runs use exactly the committed weights and configs.
    pipes = {
        name: StableDiffusionPipeline.from_pretrained(
            OUT / name, safety_checker=None, torch_dtype=torch.float32
        )
        for name in pipes
    }
    images = {"init_64x64.png": init_image(64, 64, 0), "init_70x61.png": init_image(70, 61, 1)}
    for file, image in images.items():
        image.save(OUT / file)
    images = {file: PIL.Image.open(OUT / file).convert("RGB") for file in images}
    records = []
    for case in TEXT2IMG:
        records.append(run_case(pipes[case["folder"]], case, "text2img", images))
    for case in IMG2IMG:
        records.append(run_case(pipes[case["folder"]], case, "img2img", images))
    for case in INVERT:
        records.append(run_inversion(pipes[case["folder"]], case, images))
    meta = {
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "cases": records,
    }
    (OUT / "cases.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
