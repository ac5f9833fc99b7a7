#!/usr/bin/env python3
"""Markdown tables of bench/wide_model.sh's measurements (its work folder)."""
import json
import os
import re
import sys

MIB = 1048576.0
WINDOWS, SEQLEN, FULL_WINDOWS = 4, 512, 128
# Llama-2-7B, Llama-2-70B, Qwen2.5-7B: hidden, MLP, query width, key/value width, vocab.
SHAPES = {"7B": (4096, 11008, 4096, 4096, 32000), "70B": (8192, 28672, 8192, 1024, 32000),
          "qwen2.5-7B": (3584, 18944, 3584, 512, 152064)}
RUNS = [("llama2-7b-2", "7B", 2), ("llama2-7b-4", "7B", 4), ("llama2-7b-8", "7B", 8),
        ("qwen2.5-7b-1", "qwen2.5-7B", 1)]


def linears(shape):
    """(out, in) of q, k, v, o, gate, up, down."""
    h, i, q, kv, _ = shape
    return [(q, h), (kv, h), (kv, h), (h, q), (i, h), (i, h), (h, i)]


def bound_bytes(shape, tokens):
    """One block's float32 weights + its Hessians (double, one per distinct
    input) + the calibration activations (stream, context, MLP hidden state)
    + the float32 embedding and head, + 20 %."""
    h, i, q, _, vocab = shape
    block = sum(o * n for o, n in linears(shape)) * 4
    hessians = (h * h * 2 + q * q + i * i) * 8
    activations = tokens * (h + q + i) * 4
    return 1.2 * (block + hessians + activations + 2 * vocab * h * 4)


def gptq_cost(shape):  # GPTQ's work per block: Cholesky and updates, ~ out·in² + in³
    return sum(o * n * n + n ** 3 / 3 for o, n in linears(shape))


def forward_cost(shape):  # per token: the Linears' multiply-adds and causal attention
    h, _, q, _, _ = shape
    return sum(o * n for o, n in linears(shape)) + SEQLEN * q + 2 * h * h


def load(work, name):
    with open(os.path.join(work, name + ".json")) as f:
        return json.load(f)


def dry(work, name, key):
    text = open(os.path.join(work, name + ".dry")).read()
    m = re.search(key + r"\s+([0-9.]+) (MiB|s)", text)
    return float(m.group(1)) if m else float("nan")


def memory_table(work):
    print(f"Bound: one block's float32 weights + its Hessians (double, one per distinct input) "
          f"+ the activations of {WINDOWS} windows (stream, attention context, MLP hidden state) "
          f"+ the float32 embedding and head, + 20 %.\n")
    print("| model | layers | run | peak RssAnon MiB | --dry-run allocated MiB | bound MiB | "
          "within bound | VmHWM MiB (incl. mapped checkpoint) | seconds |")
    print("|---|---:|---|---:|---:|---:|---|---:|---:|")
    for run, shape, layers in RUNS:
        bound = bound_bytes(SHAPES[shape], WINDOWS * SEQLEN) / MIB
        for kind in ("gptq", "eval"):
            r = load(work, f"{kind}-{run}")
            name = "GPTQ W4 g128 → gptq folder" if kind == "gptq" else "ptq eval"
            ok = "yes" if r["peak_rss_anon_mib"] <= bound and r["exit"] == 0 else "NO"
            print(f"| {shape} | {layers} | {name} | {r['peak_rss_anon_mib']:.0f} | "
                  f"{dry(work, f'{kind}-{run}', 'allocated'):.0f} | {bound:.0f} | {ok} | "
                  f"{r['vm_hwm_mib']:.0f} | {r['seconds']:.1f} |")
    print()


def xtx_cost(shape):  # per token: XᵀX of each distinct input (upper triangle, both counted)
    h, i, q, _, _ = shape
    return 2 * h * h + q * q + i * i


def time_table(work):
    t2, t8 = load(work, "gptq-llama2-7b-2")["seconds"], load(work, "gptq-llama2-7b-8")["seconds"]
    e2, e8 = load(work, "eval-llama2-7b-2")["seconds"], load(work, "eval-llama2-7b-8")["seconds"]
    block, forward = (t8 - t2) / 6, (e8 - e2) / 6
    # The calibration side of a block: one forward of the windows and the XᵀX
    # products; what is left is GPTQ's own work on the weights, which does not
    # depend on the windows.
    seven = SHAPES["7B"]
    calib = forward * (1 + xtx_cost(seven) / forward_cost(seven))
    rounding = max(block - calib, 0.0)
    print(f"Time per block at 7B width, GPTQ with {WINDOWS} windows: **{block:.1f} s** "
          f"((t(8 layers) − t(2 layers)) / 6 = ({t8:.1f} − {t2:.1f}) / 6). A block's forward "
          f"over the same {WINDOWS} windows takes {forward:.1f} s (the eval runs, same "
          f"difference); with the XᵀX products (their FLOPs relative to the forward's) the "
          f"calibration side is {calib:.1f} s, and GPTQ's own work on the weights, which does "
          f"not grow with the windows, the remaining {rounding:.1f} s.\n")
    print(f"Projected to {FULL_WINDOWS} windows: the calibration side × "
          f"{FULL_WINDOWS // WINDOWS}, GPTQ's part as measured; for 70B each part scaled by its "
          "work at 70B's widths (GPTQ ~ Σ out·in² + in³/3, forward ~ multiply-adds per token).\n")
    print("| model | layers | projected s per block | projected total | --dry-run's time |")
    print("|---|---:|---:|---:|---:|")
    for name, layers in (("7B", 32), ("70B", 80)):
        scale_g = gptq_cost(SHAPES[name]) / gptq_cost(seven)
        scale_f = (forward_cost(SHAPES[name]) + xtx_cost(SHAPES[name])) / (
            forward_cost(seven) + xtx_cost(seven))
        per_block = rounding * scale_g + calib * scale_f * FULL_WINDOWS / WINDOWS
        shape = "llama2-7b" if name == "7B" else "llama2-70b"
        print(f"| Llama-2-{name} | {layers} | {per_block:.0f} | {per_block * layers / 3600:.1f} h | "
              f"{dry(work, f'{shape}-128', 'time') / 3600:.1f} h |")
    print()


def full_table(work):
    r = load(work, "q4km")
    size_in = int(open(os.path.join(work, "q4km.in")).read())
    size_out = int(open(os.path.join(work, "q4km.out")).read())
    print("RTN → GGUF Q4_K_M of the full 32-layer 7B shape, end to end (read, round, write):\n")
    print("| checkpoint GB | model.gguf GB | bits per weight | seconds | peak RssAnon MiB | "
          "--dry-run allocated MiB | VmHWM MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {size_in / 1e9:.2f} | {size_out / 1e9:.2f} | {16 * size_out / size_in:.2f} | "
          f"{r['seconds']:.0f} | {r['peak_rss_anon_mib']:.0f} | {dry(work, 'q4km', 'allocated'):.0f} "
          f"| {r['vm_hwm_mib']:.0f} |")
    print()


def main():
    work, full = sys.argv[1], sys.argv[2] == "1"
    memory_table(work)
    time_table(work)
    if full:
        full_table(work)


if __name__ == "__main__":
    main()
