#!/usr/bin/env python3
"""docs/bench/tuning.md from bench/tune_recipes.sh's results (see its header).

For each model and target (w4-g128, w3-g128, w4-pc): each variant's perplexity on
each text, the share of plain GPTQ's excess over fp32 it removes ("cut"), their mean
(the score recipes are chosen by), and its quantization seconds.
"""

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import subprocess


def read(path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def cut(ppl, plain, fp32):
    return 1 - (ppl - fp32) / (plain - fp32) if plain > fp32 else math.nan


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=pathlib.Path, required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--candidates", required=True)
    ap.add_argument("--sets", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--threads", required=True)
    a = ap.parse_args()
    sets, candidates = a.sets.split(), a.candidates.split()
    kind = "test" if sets[0].startswith("eval_") else "validation"
    print(f"# Recipe tuning on {kind} text\n")
    print(f"Command: `{a.command}` ({datetime.date.today()}), {a.threads} threads, "
          f"{cpu_name()}, {os.cpu_count()} cores. Protocol: docs/tuning.md.")
    print("Every run calibrates on the model's 128 `calib_generic.ids` windows; perplexity at "
          "ctx 512 over all windows of each text. cut = share of plain GPTQ's excess over "
          "fp32 that the variant removes (higher is better; negative: worse than plain); "
          "mean = the mean of the cuts, the score a variant is chosen by.\n")
    for m in a.models.split():
        fp = {s: read(a.work / m / "fp32" / f"{s}.json") for s in sets}
        if not all(fp.values()):
            continue
        print(f"## {m}\n")
        print("fp32: " + ", ".join(f"{s} {fp[s]['ppl']:.4f}" for s in sets) + "\n")
        targets = sorted({c.split(".")[0] for c in candidates}, key=lambda t: candidates.index(
            next(c for c in candidates if c.startswith(t + "."))))
        for t in targets:
            plain = {s: read(a.work / m / f"{t}.plain" / f"{s}.json") for s in sets}
            head = " | ".join(f"{s} ppl | cut" for s in sets)
            print(f"| {t} | {head} | mean cut | quantize s |")
            print("|---|" + "---:|---:|" * len(sets) + "---:|---:|")
            for c in (c for c in candidates if c.startswith(t + ".")):
                res = {s: read(a.work / m / c / f"{s}.json") for s in sets}
                run = read(a.work / m / c / "run.json")
                if not all(res.values()) or not run:
                    continue
                cells, cuts = [], []
                for s in sets:
                    k = cut(res[s]["ppl"], plain[s]["ppl"], fp[s]["ppl"]) if plain[s] else math.nan
                    cuts.append(k)
                    cells.append(f"{res[s]['ppl']:.4f} | {100 * k:+.1f} %")
                print(f"| {c.split('.', 1)[1]} | " + " | ".join(cells) +
                      f" | {100 * sum(cuts) / len(cuts):+.1f} % | {run['seconds']:.1f} |")
            print()


if __name__ == "__main__":
    main()
