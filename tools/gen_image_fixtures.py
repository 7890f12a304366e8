#!/usr/bin/env python3
"""Generate the image fixtures of `crates/ddim-pipeline` (tests/image.rs).

Runs the REAL Pillow and diffusers (`diffusers.utils.load_image`, `VaeImageProcessor`) on
synthetic deterministic images and writes, under crates/ddim-pipeline/tests/data/images/:

  manifest.json            what each file is and which call made the expected output
  in_*.png / in_*.jpg      inputs (written by Pillow)
  load_*.rgb               np.array(load_image(path)) as raw H*W*3 bytes
  resize_*.rgb             np.array(image.resize((w, h), Image.LANCZOS)) as raw bytes
  pre_*.f32                VaeImageProcessor(vae_scale_factor=f).preprocess(load_image(path)),
                           float32 little-endian, 1x3xHxW
  post_f32_in.f32 / post_f32_out.u8   postprocess(tensor float32, output_type="pil")
  post_f16_in.f16 / post_f16_out.u8   the same for a float16 tensor (every f16 bit pattern)
  post_bf16_out.u8         the same bit patterns read as bfloat16

Every expected value comes from Pillow/diffusers; nothing is computed here on its own.
Deterministic (fixed numpy seeds). Run: /work/venv/bin/python tools/gen_image_fixtures.py
"""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zlib

import numpy as np
import PIL
import PIL.Image
import torch
import diffusers
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import load_image

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "ddim-pipeline", "tests", "data", "images")


def pattern(w: int, h: int, seed: int, kind: str) -> np.ndarray:
    """A deterministic H x W x 3 uint8 test image."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "noise":
        return rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
    if kind == "gradient":
        r = 255 * x / max(w - 1, 1)
        g = 255 * y / max(h - 1, 1)
        b = 127.5 + 127.5 * np.sin(x / 3.0 + y / 5.0)
        return np.stack([r, g, b], -1).round().astype(np.uint8)
    if kind == "edges":
        # a checkerboard and hard black/white bars: Lanczos' negative lobes overshoot here
        img = (((x // 3 + y // 2) % 2) * 255)[..., None].repeat(3, -1)
        img[:, : w // 3, 0] = 255
        img[: h // 2, :, 2] = 0
        return img.astype(np.uint8)
    # mixed: gradient + noise
    base = pattern(w, h, seed, "gradient").astype(np.int32)
    return np.clip(base + rng.randint(-40, 41, size=base.shape), 0, 255).astype(np.uint8)


def raw_png(w, h, color_type, bit_depth, rows, extra=b""):
    """A PNG written by hand (for 16-bit and low-bit layouts Pillow cannot save directly)."""

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    manifest = {
        "versions": {"pillow": PIL.__version__, "diffusers": diffusers.__version__, "numpy": np.__version__, "torch": torch.__version__},
        "load": [],
        "resize": [],
        "preprocess": [],
        "postprocess": [],
    }

    def save(name, data: bytes):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)

    # ---- load_image: modes, bit depths, formats, EXIF orientation --------------------------
    def add_load(name):
        arr = np.array(load_image(os.path.join(OUT, name)))
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
        exp = name.replace(".", "_") + ".rgb"
        save("load_" + exp, arr.tobytes())
        manifest["load"].append({"input": name, "expected": "load_" + exp, "width": arr.shape[1], "height": arr.shape[0]})

    rgb = pattern(13, 9, 1, "mixed")
    alpha = pattern(13, 9, 2, "noise")[..., 0]
    PIL.Image.fromarray(rgb).save(os.path.join(OUT, "in_rgb.png"))
    PIL.Image.fromarray(np.dstack([rgb, alpha])).save(os.path.join(OUT, "in_rgba.png"))
    PIL.Image.fromarray(rgb[..., 1]).save(os.path.join(OUT, "in_grey.png"))
    PIL.Image.fromarray(np.dstack([rgb[..., 1], alpha]), mode="LA").save(os.path.join(OUT, "in_la.png"))
    PIL.Image.fromarray(rgb).convert("P", palette=PIL.Image.ADAPTIVE, colors=16).save(os.path.join(OUT, "in_palette.png"))
    pal = PIL.Image.fromarray(rgb).convert("P", palette=PIL.Image.ADAPTIVE, colors=8)
    pal.save(os.path.join(OUT, "in_palette_trns.png"), transparency=3)
    rng = np.random.RandomState(7)
    w16, h16 = 11, 5
    v16 = rng.randint(0, 65536, size=(h16, w16, 4)).astype(">u2")
    v16[0, :4, :] = np.array([0, 255, 256, 65535])[:, None]  # edge values on the first row
    save("in_rgb16.png", raw_png(w16, h16, 2, 16, [v16[r, :, :3].tobytes() for r in range(h16)]))
    save("in_rgba16.png", raw_png(w16, h16, 6, 16, [v16[r].tobytes() for r in range(h16)]))
    save("in_la16.png", raw_png(w16, h16, 4, 16, [v16[r, :, :2].tobytes() for r in range(h16)]))
    g16 = v16[..., 0].copy()
    g16[1, :6] = [0, 1, 128, 254, 255, 256]
    save("in_grey16.png", raw_png(w16, h16, 0, 16, [g16[r].tobytes() for r in range(h16)]))
    bits = rng.randint(0, 256, size=(3, 2)).astype(np.uint8)
    save("in_grey1.png", raw_png(16, 3, 0, 1, [bits[r].tobytes() for r in range(3)]))
    save("in_grey2.png", raw_png(8, 3, 0, 2, [bits[r].tobytes() for r in range(3)]))
    save("in_grey4.png", raw_png(4, 3, 0, 4, [bits[r].tobytes() for r in range(3)]))
    big = pattern(48, 32, 3, "gradient")
    PIL.Image.fromarray(big).save(os.path.join(OUT, "in_q444.jpg"), quality=90, subsampling=0)
    PIL.Image.fromarray(big).save(os.path.join(OUT, "in_q420.jpg"), quality=90, subsampling=2)
    PIL.Image.fromarray(big[..., 0]).save(os.path.join(OUT, "in_grey.jpg"), quality=90)
    for name in ["in_rgb.png", "in_rgba.png", "in_grey.png", "in_la.png", "in_palette.png", "in_palette_trns.png",
                 "in_rgb16.png", "in_rgba16.png", "in_la16.png", "in_grey16.png", "in_grey1.png", "in_grey2.png",
                 "in_grey4.png", "in_q444.jpg", "in_q420.jpg", "in_grey.jpg"]:
        add_load(name)
    small = pattern(5, 3, 4, "noise")
    for o in range(1, 9):
        exif = PIL.Image.Exif()
        exif[0x0112] = o
        name = f"in_orient{o}.png"
        PIL.Image.fromarray(small).save(os.path.join(OUT, name), exif=exif.tobytes())
        add_load(name)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    PIL.Image.fromarray(big).save(os.path.join(OUT, "in_orient6.jpg"), quality=90, subsampling=0, exif=exif.tobytes())
    add_load("in_orient6.jpg")

    # ---- resize: PIL Lanczos on many sizes ---------------------------------------------------
    cases = [
        (37, 29, 32, 24, "mixed"), (100, 63, 96, 56, "gradient"), (64, 64, 17, 9, "noise"),
        (50, 40, 7, 3, "edges"), (9, 9, 8, 8, "noise"), (5, 7, 23, 31, "mixed"), (3, 2, 16, 16, "edges"),
        (1, 1, 4, 3, "noise"), (1, 10, 8, 3, "mixed"), (10, 1, 3, 8, "mixed"), (40, 30, 40, 17, "edges"),
        (40, 30, 13, 30, "edges"), (255, 3, 1, 1, "noise"), (31, 17, 95, 5, "edges"), (33, 33, 32, 32, "edges"),
        (8, 15, 8, 8, "noise"), (259, 131, 256, 128, "mixed"), (70, 11, 69, 12, "noise"), (2, 2, 1, 1, "edges"),
        (16, 16, 15, 17, "edges"), (123, 7, 41, 7, "noise"), (10, 10, 20, 5, "noise"),
        (20, 20, 30, 10, "mixed"), (20, 20, 10, 30, "mixed"),
        # preprocess-like shrinks where Pillow 13 runs the vertical pass first
        (50, 125, 48, 120, "mixed"), (17, 247, 16, 240, "noise"), (93, 268, 42, 124, "edges"),
        # at the boundary of Pillow 13's order rule (height loss vs twice the width loss)
        (40, 40, 38, 36, "noise"), (40, 40, 38, 35, "noise"), (40, 40, 41, 39, "noise"),
    ]
    # random size pairs (both orders, up and down, 1-pixel sides)
    rs = np.random.RandomState(2024)
    kinds = ["noise", "edges", "mixed", "gradient"]
    for j in range(30):
        sw, sh, dw, dh = (int(v) for v in rs.randint(1, 33, 4))
        if (sw, sh) == (dw, dh):
            continue
        cases.append((sw, sh, dw, dh, kinds[j % 4]))
    for i, (sw, sh, dw, dh, kind) in enumerate(cases):
        src = pattern(sw, sh, 100 + i, kind)
        name = f"resize{i}_{sw}x{sh}.png"
        PIL.Image.fromarray(src).save(os.path.join(OUT, name))
        im = PIL.Image.open(os.path.join(OUT, name)).convert("RGB")
        out = np.array(im.resize((dw, dh), resample=PIL.Image.LANCZOS))
        # Which pass Pillow ran first, found by composing its own one-axis resizes.
        h_first = np.array(im.resize((dw, sh), resample=PIL.Image.LANCZOS).resize((dw, dh), resample=PIL.Image.LANCZOS))
        v_first = np.array(im.resize((sw, dh), resample=PIL.Image.LANCZOS).resize((dw, dh), resample=PIL.Image.LANCZOS))
        order = "either" if (out == h_first).all() and (out == v_first).all() else (
            "horizontal" if (out == h_first).all() else "vertical" if (out == v_first).all() else "neither")
        exp = f"resize{i}_{dw}x{dh}.rgb"
        save(exp, out.tobytes())
        manifest["resize"].append({"input": name, "expected": exp, "width": dw, "height": dh, "pil_first_pass": order})

    # ---- preprocess: diffusers' VaeImageProcessor, as the img2img pipeline calls it -----------
    for name, f in [("resize0_37x29.png", 8), ("resize1_100x63.png", 8), ("resize16_259x131.png", 8),
                    ("in_rgba.png", 4), ("in_q420.jpg", 8), ("in_orient6.jpg", 8), ("resize2_64x64.png", 8),
                    ("resize4_9x9.png", 8), ("resize5_5x7.png", 2),
                    ("resize24_50x125.png", 8), ("resize25_17x247.png", 8)]:
        proc = VaeImageProcessor(vae_scale_factor=f)
        t = proc.preprocess(load_image(os.path.join(OUT, name)))
        assert t.dtype == torch.float32 and t.shape[0] == 1 and t.shape[1] == 3
        exp = "pre_" + name.replace(".", "_") + f"_f{f}.f32"
        save(exp, t.numpy().astype("<f4").tobytes())
        manifest["preprocess"].append({"input": name, "vae_scale_factor": f, "expected": exp,
                                       "height": int(t.shape[2]), "width": int(t.shape[3])})

    # ---- postprocess: float32 around every k/255 +- 1/2 and special values; float16: all -------
    proc = VaeImageProcessor(vae_scale_factor=8)
    vals = []
    for k in range(256):
        x = np.float32(2.0 * (k + 0.5) / 255.0 - 1.0)
        for d in range(-3, 4):
            vals.append(x)
            x = np.nextafter(x, np.float32(np.inf)) if d >= 0 else x
        y = np.float32(2.0 * (k + 0.5) / 255.0 - 1.0)
        for _ in range(3):
            y = np.nextafter(y, np.float32(-np.inf))
            vals.append(y)
    vals += [np.float32(v) for v in [-1, 1, 0, -0.0, -2, 2, 1e-8, -1e-8, 1e30, -1e30, np.inf, -np.inf, np.nan]]
    vals += list(np.random.RandomState(11).uniform(-1.2, 1.2, size=20000).astype(np.float32))
    vals = np.array(vals, dtype=np.float32)
    n = -(-len(vals) // 96) * 96
    vals = np.concatenate([vals, np.zeros(n - len(vals), np.float32)])
    h = 16
    w = n // (2 * 3 * h)
    x = torch.from_numpy(vals.reshape(2, 3, h, w).copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN -> uint8 cast
        images = proc.postprocess(x, output_type="pil")
    out = np.stack([np.array(im) for im in images])
    save("post_f32_in.f32", vals.astype("<f4").tobytes())
    save("post_f32_out.u8", out.tobytes())
    manifest["postprocess"].append({"dtype": "f32", "input": "post_f32_in.f32", "expected": "post_f32_out.u8",
                                    "batch": 2, "height": h, "width": w})
    bits16 = np.arange(65536, dtype=np.uint16)
    n = -(-65536 // 6) * 6
    bits16 = np.concatenate([bits16, np.zeros(n - 65536, np.uint16)])
    h, w = 1, n // 6
    x = torch.from_numpy(bits16.view(np.float16).reshape(2, 3, h, w).copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = proc.postprocess(x, output_type="pil")
    out = np.stack([np.array(im) for im in images])
    save("post_f16_in.f16", bits16.astype("<u2").tobytes())
    save("post_f16_out.u8", out.tobytes())
    manifest["postprocess"].append({"dtype": "f16", "input": "post_f16_in.f16", "expected": "post_f16_out.u8",
                                    "batch": 2, "height": h, "width": w})
    x = torch.from_numpy(bits16.astype(np.int16).reshape(2, 3, h, w).copy()).view(torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = proc.postprocess(x, output_type="pil")
    out = np.stack([np.array(im) for im in images])
    save("post_bf16_out.u8", out.tobytes())
    manifest["postprocess"].append({"dtype": "bf16", "input": "post_f16_in.f16", "expected": "post_bf16_out.u8",
                                    "batch": 2, "height": h, "width": w})
    # what numpy does with NaN here (documented in image/process.rs)
    manifest["nan_to_uint8"] = int(np.array([np.nan], np.float32).round().astype("uint8")[0])

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
