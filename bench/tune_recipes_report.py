#!/usr/bin/env python3
"""docs/bench/tuning.md from bench/tune_recipes.sh's results (see its header).

For each model and target (w4-g128, w3-g128, w4-pc): each variant's perplexity on
each text (the mean over the rounds), the share of plain GPTQ's excess over fp32 it
removes ("cut", against plain GPTQ's mean over the same rounds), their mean (the score
recipes are chosen by), the range of that mean over single rounds, and its quantization
seconds (the mean over the rounds).
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


def mean(xs):
    return sum(xs) / len(xs)


def mean_cut(cuts):
    """The mean of the cuts that are defined (a text where plain GPTQ has no excess has none)."""
    defined = [k for k in cuts if not math.isnan(k)]
    return mean(defined) if defined else math.nan


def percent(k):
    return "n/a" if math.isnan(k) else f"{100 * k:+.1f} %"


def runs(model_dir, candidate, rounds, sets, folders):
    """Per round (folders[(candidate, round)], as bench/tune_recipes.sh names them):
    each set's ppl and the quantize seconds; None unless every round has them all."""
    out = []
    for r in rounds:
        d = model_dir / folders[(candidate, r)]
        res = {s: read(d / f"{s}.json") for s in sets}
        run = read(d / "run.json")
        if not all(res.values()) or not run:
            return None
        out.append({**{s: res[s]["ppl"] for s in sets}, "seconds": run["seconds"]})
    return out


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
    ap.add_argument("--rounds", default="16")
    ap.add_argument("--folders", required=True,
                    help="each run's folder: CANDIDATE=ROUND=FOLDER, space-separated")
    ap.add_argument("--sets", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--threads", required=True)
    ap.add_argument("--domain-share", type=int, default=0)
    a = ap.parse_args()
    sets, candidates, rounds = a.sets.split(), a.candidates.split(), a.rounds.split()
    folders = {tuple(f.split("=")[:2]): f.split("=")[2] for f in a.folders.split()}
    kind = "test" if sets[0].startswith("eval_") else "validation"
    print(f"# Recipe tuning on {kind} text\n")
    print(f"Command: `{a.command}` ({datetime.date.today()}), {a.threads} threads, "
          f"{cpu_name()}, {os.cpu_count()} cores. Protocol: docs/tuning.md.")
    calibration = ("the model's 128 `calib_generic.ids` windows" if a.domain_share == 0 else
                   f"128 windows, {100 - a.domain_share} % from the model's `calib_generic.ids` "
                   f"and {a.domain_share} % from its `calib_domain.ids`")
    print(f"Every run calibrates on {calibration}; perplexity at "
          "ctx 512 over all windows of each text. cut = share of plain GPTQ's excess over "
          "fp32 that the variant removes (higher is better; negative: worse than plain); "
          "mean = the mean of the cuts, the score a variant is chosen by. "
          f"Rounds (--batch-windows, float rounding only): {' '.join(rounds)}; ppl is the mean "
          "over them, and range the lowest and highest mean cut of a single round's run "
          "against plain GPTQ's mean. n/a: plain GPTQ is not above fp32 on that text, so there "
          "is no excess to cut; the mean then takes the other text.\n")
    for m in a.models.split():
        fp = {s: read(a.work / m / "fp32" / f"{s}.json") for s in sets}
        if not all(fp.values()):
            continue
        print(f"## {m}\n")
        print("fp32: " + ", ".join(f"{s} {fp[s]['ppl']:.4f}" for s in sets) + "\n")
        targets = sorted({c.split(".")[0] for c in candidates}, key=lambda t: candidates.index(
            next(c for c in candidates if c.startswith(t + "."))))
        for t in targets:
            plain = runs(a.work / m, f"{t}.plain", rounds, sets, folders)
            head = " | ".join(f"{s} ppl | cut" for s in sets)
            print(f"| {t} | {head} | mean cut | range | quantize s |")
            print("|---|" + "---:|---:|" * len(sets) + "---:|---:|---:|")
            for c in (c for c in candidates if c.startswith(t + ".")):
                res = runs(a.work / m, c, rounds, sets, folders)
                if res is None or plain is None:
                    continue
                ppl = {s: mean([r[s] for r in res]) for s in sets}
                base = {s: mean([r[s] for r in plain]) for s in sets}
                cuts = lambda p: [cut(p[s], base[s], fp[s]["ppl"]) for s in sets]
                cells = [f"{ppl[s]:.4f} | {percent(k)}" for s, k in zip(sets, cuts(ppl))]
                single = [mean_cut(cuts(r)) for r in res]
                spread = (f"{100 * min(single):+.1f} … {100 * max(single):+.1f} %"
                          if len(single) > 1 else "—")
                print(f"| {c.split('.', 1)[1]} | " + " | ".join(cells) +
                      f" | {percent(mean_cut(cuts(ppl)))} | {spread} | "
                      f"{mean([r['seconds'] for r in res]):.1f} |")
            print()


if __name__ == "__main__":
    main()
