#!/usr/bin/env python3
"""Fixtures for the CLIP tokenizer and the CLIP text encoder of `crates/ddim-pipeline`.

Run with the venv of `tools/requirements.txt`:

    /work/venv/bin/python tools/gen_text_fixtures.py

Writes `crates/ddim-pipeline/tests/data/text/`:

* `vocab.json`/`merges.txt` material: CLIP's real BPE merges (`bpe_simple_vocab_16e6.txt.gz`, shipped
  in the `open_clip_torch` wheel; read with gzip from the installed package, open_clip is not
  imported) cut to the first `N_MERGES` merges, the vocabulary built as CLIP builds it (256 byte
  characters, the same with `</w>`, one entry per merge, `<|startoftext|>`, `<|endoftext|>`).
* `tokenizer_sd1/`: a folder as in SD 1.x repos (`vocab.json`, `merges.txt`, `tokenizer_config.json`
  and `special_tokens_map.json` in the transformers-4 format those repos hold, pad `<|endoftext|>`).
  transformers 5's `save_pretrained` writes only `tokenizer.json` + `tokenizer_config.json`, so these
  four files are written here in the repos' format and loaded back with the real `CLIPTokenizer`.
* `tokenizer_sd2/`: `CLIPTokenizer(pad_token="!").save_pretrained(...)` as transformers 5 writes it
  (`tokenizer.json` + `tokenizer_config.json`).
* `tokenizer_sd2_legacy/`: an SD 2.x repo's transformers-4 folder (no `tokenizer.json`;
  `tokenizer_config.json` says pad `<|endoftext|>`, `special_tokens_map.json` says `!`, and the
  latter wins in transformers).
* `tokenizer_sd2_v434/`: the same as transformers 4.34..4.x saved it (`added_tokens_decoder` in
  `tokenizer_config.json`, which makes transformers skip `special_tokens_map.json`; BOS/EOS
  matched on the normalised, i.e. lower-cased, text).
* `tokens.json`: for every folder and every prompt of `PROMPTS`, the ids of
  `tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)`
  and the text diffusers' `encode_prompt` names in its truncation warning (None when it warns not).
* `clip_quick/`, `clip_gelu/`: tiny random `CLIPTextModel`s (`save_pretrained(safe_serialization=True)`),
  `clip_quick_prefixed/`: the same weights as `clip_quick` under `text_model.`-prefixed keys (as older
  repos store them), and `clip_outputs.safetensors`: input ids and `last_hidden_state` of each.
"""

import gzip
import importlib.util
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

N_MERGES = 2000
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "crates", "ddim-pipeline", "tests", "data", "text")


def bytes_to_unicode():
    """CLIP's (= GPT-2's) byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_vocab_and_merges(n_merges):
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("open_clip_torch is not installed (pip install --no-deps open_clip_torch==3.3.0)")
    path = os.path.join(spec.submodule_search_locations[0], "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 1 + n_merges]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def added(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def write_v434_folder(path, vocab, merges):
    """An SD 2.x folder as transformers 4.34..4.x saved it: `added_tokens_decoder` in the config
    (so `special_tokens_map.json` is not read), `!` matched on raw text, BOS/EOS on normalised text."""
    write_legacy_folder(path, vocab, merges, "!", "!")
    decoder = {
        str(vocab["!"]): {**added("!"), "normalized": False, "special": True},
        str(vocab["<|startoftext|>"]): {**added("<|startoftext|>"), "special": True},
        str(vocab["<|endoftext|>"]): {**added("<|endoftext|>"), "special": True},
    }
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "bos_token": "<|startoftext|>",
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": "!",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": "<|endoftext|>",
    }
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def write_legacy_folder(path, vocab, merges, pad_in_config, pad_in_map):
    """A tokenizer folder in the transformers-4 format of the SD 1.x / 2.x repos."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    config = {
        "add_prefix_space": False,
        "bos_token": {"__type": "AddedToken", **added("<|startoftext|>")},
        "do_lower_case": True,
        "eos_token": {"__type": "AddedToken", **added("<|endoftext|>")},
        "errors": "replace",
        "model_max_length": 77,
        "name_or_path": "openai/clip-vit-large-patch14",
        "pad_token": pad_in_config,
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": {"__type": "AddedToken", **added("<|endoftext|>")},
    }
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    special = {
        "bos_token": added("<|startoftext|>"),
        "eos_token": added("<|endoftext|>"),
        "pad_token": pad_in_map,
        "unk_token": added("<|endoftext|>"),
    }
    with open(os.path.join(path, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)


LONG = (
    "A lion in galaxies, spirals, nebulae, stars, smoke, iridescent, intricate detail, octane render, 8k, "
    "a majestic castle on a hill at sunset with dragons flying over the mountains, highly detailed, "
    "trending on artstation, by greg rutkowski and alphonse mucha, volumetric lighting, cinematic, "
    "ultra realistic, photograph, 35mm, bokeh, the end of the prompt is here and it goes on and on"
)

PROMPTS = [
    "",
    " ",
    "   \t\n  ",
    "a photograph of an astronaut riding a horse",
    "A Photograph Of An ASTRONAUT Riding A Horse",
    "A lion in galaxies, spirals, nebulae, stars, smoke, iridescent, intricate detail, octane render, 8k",
    "café crème brûlée",
    "cafe\u0301 cre\u0300me bru\u0302le\u0301e",  # NFD forms of the previous
    "Über straße GROSS ß",
    "İstanbul ǅ Σίσυφος ΣΊΣΥΦΟΣ",
    "一只可爱的猫 in 東京",
    "emoji 🦁🌌✨ and 👩‍🚀 astronaut",
    "flags 🇫🇷 skin 👍🏽",
    "zalgo t̷̢e̶x̵t̸",
    "wow!!! what?! ... --- ***",
    "hello,world;foo:bar/baz\\qux|(x)[y]{z}",
    "it's don't they're we've i'm you'll he'd",
    "IT'S DON'T THEY'RE WE'VE I'M YOU'LL HE'D",
    "'s 't 're 've 'm 'll 'd ''s '''",
    "rock'n'roll o'clock",
    "‘curly’ “quotes” «guillemets»",
    "1234567890 3.14159 1,000,000",
    "８ｋ ｆｕｌｌｗｉｄｔｈ ①②③ ½ ²",
    "tabs\tand\nnewlines\r\nand   multiple    spaces",
    "\u00a0non\u00a0breaking\u3000ideographic\u2003em\u2028line\u0085nel",
    "zero\u200bwidth\u200cjoiner\u200d\ufeffbom\u180emongolian",
    "&amp; &lt;b&gt; &quot;html&quot; &#39; &nbsp;",
    "<b>bold</b> <i>italic</i> <br/>",
    "supercalifragilisticexpialidocious pneumonoultramicroscopic",
    "xqzjv qwxkpz zzyzx",
    "a <|endoftext|> b",
    "a<|endoftext|>b<|startoftext|>c",
    "A <|ENDOFTEXT|> B <|STARTOFTEXT|> c",
    "<|endoftext|>",
    "!",
    "!!!!!",
    "hello! world!",
    "end of word</w> marker",
    "a" * 100,
    "cat " * 80,
    LONG,
    LONG + " " + LONG,
    "8k " * 40,
    "🦁" * 60,
    "masterpiece, best quality, (ultra-detailed:1.2), [lowres], {cute}",
    "C++ and C# and .NET and node.js",
    "email@example.com http://example.com/path?q=1&r=2",
    "\x00control\x07chars\x1b[0m",
    "mixed 123abc abc123 a1b2c3",
    "  leading and trailing spaces  ",
]


def diffusers_encode(tok, prompt):
    """The tokenizer calls of diffusers' `StableDiffusionPipeline.encode_prompt` (0.42.1), verbatim."""
    text_inputs = tok(
        prompt,
        padding="max_length",
        max_length=tok.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    text_input_ids = text_inputs.input_ids
    untruncated_ids = tok(prompt, padding="longest", return_tensors="pt").input_ids
    removed = None
    if untruncated_ids.shape[-1] >= text_input_ids.shape[-1] and not torch.equal(text_input_ids, untruncated_ids):
        removed = tok.batch_decode(untruncated_ids[:, tok.model_max_length - 1 : -1])[0]
    return text_input_ids[0].tolist(), removed


def random_prompts(count, seed):
    """Prompts drawn from pieces that stress each stage (normaliser, regex, BPE, added tokens)."""
    import random

    rng = random.Random(seed)
    pieces = [
        "a", "the", "lion", "galaxies", "Astronaut", "RIDING", "photorealistic", "octane", "render",
        "unbelievable", "x", "zq", "8k", "4K", "1080p", "3.5", "42", "2024", "1st",
        ",", ".", "!", "!!", "?!", "...", "--", "(", ")", "[", "]", "{", "}", ":", ";", "/", "\\", "|", "&", "#",
        "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'", "\"", "`", "´", "’",
        " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\u200b", "\u0085", "\x0b", "\x0c",
        "é", "e\u0301", "Ü", "ß", "ø", "Å", "ç", "ñ", "İ", "ı", "Σ", "ς", "ǅ", "ﬁ", "Ⅻ", "²", "½", "٣", "߀",
        "東京", "猫", "한국어", "日本語", "русский", "Ελληνικά", "עברית", "العربية", "हिन्दी", "ไทย",
        "🦁", "🌌", "👩‍🚀", "🇯🇵", "👍🏽", "❤️", "©", "™", "°", "€", "$", "%",
        "<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "<|", "|>", "</w>", "<b>", "&amp;", "&#39;",
        "\x00", "\x1c", "\x7f", "\ufeff", "\U0001f600",
    ]
    out = []
    for _ in range(count):
        n = rng.randint(1, 40)
        out.append("".join(rng.choice(pieces) + rng.choice(["", "", " ", " ", "\t"]) for _ in range(n)))
    return out


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--full",
        metavar="DIR",
        help="write tokenizer folders with CLIP's full vocabulary (49408 tokens) and ids for the "
        "fixed prompts plus 2000 random ones to DIR instead (too big to commit; read by the ignored "
        "test `token_ids_equal_transformers_full_vocab` through DDIM_CLIP_FULL_VOCAB=DIR)",
    )
    args = parser.parse_args()
    if args.full:
        build_tokenizers(args.full, 49152 - 256 - 2, PROMPTS + random_prompts(2000, 7))
        return
    vocab, sd1, sd2 = build_tokenizers(OUT, N_MERGES, PROMPTS + random_prompts(150, 3))
    build_encoders(vocab, sd1, sd2)


def build_tokenizers(out, n_merges, prompts):
    """The three tokenizer folders and `tokens.json` under `out`."""
    os.makedirs(out, exist_ok=True)
    vocab, merges = clip_vocab_and_merges(n_merges)
    folders = {}

    sd1 = os.path.join(out, "tokenizer_sd1")
    shutil.rmtree(sd1, ignore_errors=True)
    write_legacy_folder(sd1, vocab, merges, "<|endoftext|>", "<|endoftext|>")
    folders["tokenizer_sd1"] = sd1

    legacy2 = os.path.join(out, "tokenizer_sd2_legacy")
    shutil.rmtree(legacy2, ignore_errors=True)
    write_legacy_folder(legacy2, vocab, merges, "<|endoftext|>", "!")
    folders["tokenizer_sd2_legacy"] = legacy2

    v434 = os.path.join(out, "tokenizer_sd2_v434")
    shutil.rmtree(v434, ignore_errors=True)
    write_v434_folder(v434, vocab, merges)
    folders["tokenizer_sd2_v434"] = v434

    sd2 = os.path.join(out, "tokenizer_sd2")
    shutil.rmtree(sd2, ignore_errors=True)
    tok2 = CLIPTokenizer.from_pretrained(sd1, pad_token="!")
    tok2.save_pretrained(sd2)
    for name in os.listdir(sd2):
        if name not in ("tokenizer.json", "tokenizer_config.json"):
            os.remove(os.path.join(sd2, name))
    # Keep the committed config free of this machine's paths.
    cfg_path = os.path.join(sd2, "tokenizer_config.json")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg.pop("name_or_path", None)
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    folders["tokenizer_sd2"] = sd2

    records = {"transformers": __import__("transformers").__version__, "folders": {}}
    for name, path in folders.items():
        tok = CLIPTokenizer.from_pretrained(path)
        assert "tokenizer.json" in os.listdir(path) or name != "tokenizer_sd2"
        cases = []
        for prompt in prompts:
            ids, removed = diffusers_encode(tok, prompt)
            assert len(ids) == tok.model_max_length
            cases.append({"prompt": prompt, "ids": ids, "truncated": removed})
        records["folders"][name] = {
            "model_max_length": tok.model_max_length,
            "pad_token": str(tok.pad_token),
            "pad_id": tok.pad_token_id,
            "cases": cases,
        }
        print(name, "pad", repr(tok.pad_token), tok.pad_token_id, "truncated:", sum(c["truncated"] is not None for c in cases))
    with open(os.path.join(out, "tokens.json"), "w", encoding="utf-8") as f:
        # One case per line: small, and diffs stay readable.
        text = json.dumps(records, ensure_ascii=True, separators=(",", ":"))
        f.write(text.replace('{"prompt"', '\n{"prompt"') + "\n")
    return vocab, sd1, sd2


def build_encoders(vocab, sd1, sd2):
    """Tiny random text encoders and their outputs."""
    torch.manual_seed(0)
    vocab_size = len(vocab)
    configs = {
        "clip_quick": CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
            layer_norm_eps=1e-5, projection_dim=16, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
            pad_token_id=1,
        ),
        "clip_gelu": CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=48, intermediate_size=80, num_hidden_layers=3,
            num_attention_heads=3, max_position_embeddings=80, hidden_act="gelu",
            layer_norm_eps=3e-5, projection_dim=24, bos_token_id=vocab_size - 2, eos_token_id=2,
            pad_token_id=1,
        ),
    }
    sd1_tok = CLIPTokenizer.from_pretrained(sd1)
    sd2_tok = CLIPTokenizer.from_pretrained(sd2)
    batch77 = torch.tensor(
        [diffusers_encode(sd1_tok, PROMPTS[5])[0], diffusers_encode(sd2_tok, PROMPTS[16])[0], diffusers_encode(sd1_tok, "")[0]],
        dtype=torch.int64,
    )
    short = torch.randint(0, vocab_size, (2, 9), generator=torch.Generator().manual_seed(1), dtype=torch.int64)
    tensors = {}
    for name, config in configs.items():
        model = CLIPTextModel(config).eval()
        # Random weights with some spread (the default init leaves LayerNorms at 1/0 and biases at 0).
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * (0.5 if p.dim() == 1 else 0.2))
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d, safe_serialization=True)
        with torch.no_grad():
            for tag, ids in (("ids77", batch77), ("ids9", short)):
                out = model(input_ids=ids).last_hidden_state
                tensors[f"{name}.{tag}.input_ids"] = ids.clone()
                tensors[f"{name}.{tag}.last_hidden_state"] = out.contiguous()
        print(name, "keys", sorted(load_file(os.path.join(d, "model.safetensors")).keys())[:3])
    # The same quick_gelu model with transformers-4 style `text_model.` keys.
    src = os.path.join(OUT, "clip_quick")
    dst = os.path.join(OUT, "clip_quick_prefixed")
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    shutil.copy(os.path.join(src, "config.json"), os.path.join(dst, "config.json"))
    weights = load_file(os.path.join(src, "model.safetensors"))
    save_file({"text_model." + k: v for k, v in weights.items()}, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    save_file(tensors, os.path.join(OUT, "clip_outputs.safetensors"))


if __name__ == "__main__":
    main()
