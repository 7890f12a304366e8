#!/usr/bin/env python3
"""Check that the real diffusers loads what `ddim config` writes back to an equal config.

For every config input (the real files in crates/ddim/tests/data/configs/ and the synthetic
inputs recorded in the fixture manifest), this script

1. runs the Rust CLI, `ddim config --config FILE`, which loads the file the way
   `DDIMScheduler.from_config` does and prints `DdimConfig::to_json_string()`;
2. loads that text with `DDIMScheduler.from_config` (the real diffusers 0.42.1);
3. compares the resulting `scheduler.config` with the config diffusers builds from the
   original input (both without `_use_default_values`), and our text with diffusers' own
   `to_json_string()` of the original.

It writes crates/ddim/tests/data/diffusers/roundtrip.json; the Rust test
`config_round_trip_was_checked_by_diffusers` asserts every entry passed and that the crate still
writes the text that was checked. Build the CLI first:

    cargo build -p ddim-cli && tools/.venv/bin/python tools/check_roundtrip.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import diffusers
from diffusers import DDIMScheduler

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "crates" / "ddim" / "tests" / "data"
OUT = DATA / "diffusers" / "roundtrip.json"
BIN = REPO / "target" / "debug" / "ddim"


def diffusers_config(cfg: dict) -> dict:
    scheduler = DDIMScheduler.from_config(cfg)
    scheduler.to_json_string()  # sets _class_name/_diffusers_version on the live config
    out = dict(scheduler.config)
    out.pop("_use_default_values", None)
    return out


def ours(path: Path) -> tuple[int, str, str]:
    run = subprocess.run([str(BIN), "config", "--config", str(path)], capture_output=True, text=True)
    return run.returncode, run.stdout, run.stderr


def main() -> None:
    if not BIN.exists():
        sys.exit(f"build the CLI first: cargo build -p ddim-cli ({BIN} is missing)")
    manifest = json.loads((DATA / "diffusers" / "manifest.json").read_text())
    inputs = []
    for path in sorted((DATA / "configs").glob("*.json")):
        inputs.append((path.name, path.read_text()))
    for i, entry in enumerate(e for e in manifest["configs"] if e["file"] is None):
        inputs.append((f"synthetic-{i}", json.dumps(entry["input"])))

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in inputs:
            try:
                original = json.loads(text)
                expected = diffusers_config(original)
                expected_text = DDIMScheduler.from_config(original).to_json_string()
            except Exception as e:  # diffusers refuses the input: ours must refuse it too
                expected, expected_text = None, f"{type(e).__name__}: {e}"
            path = Path(tmp) / "scheduler_config.json"
            path.write_text(text)
            code, our_text, stderr = ours(path)
            entry = {"name": name, "input": text, "exit_code": code, "ours": our_text}
            if expected is None:
                entry["ok"] = code != 0
                entry["diffusers_error"] = expected_text
            elif code != 0:
                entry["ok"] = False
                entry["our_error"] = stderr.strip()
            else:
                reloaded = diffusers_config(json.loads(our_text))
                entry["reloaded_equal"] = reloaded == expected
                entry["text_identical"] = our_text == expected_text
                entry["ok"] = entry["reloaded_equal"]
                if not entry["reloaded_equal"]:
                    diff = {k: (reloaded.get(k), expected.get(k)) for k in set(reloaded) | set(expected)
                            if reloaded.get(k) != expected.get(k)}
                    entry["difference"] = repr(diff)
            results.append(entry)

    doc = {"diffusers": diffusers.__version__, "cases": results}
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    bad = [r["name"] for r in results if not r["ok"]]
    identical = sum(bool(r.get("text_identical")) for r in results)
    print(f"{len(results)} configs: {len(results) - len(bad)} ok, {identical} byte-identical to diffusers' "
          f"to_json_string; failures: {bad}")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
