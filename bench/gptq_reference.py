#!/usr/bin/env python3
"""GPTQ in PyTorch on the CPU: a timing baseline and an independent cross-check for ptq.

Our own implementation of the semantics of GPTQ.fasterquant (IST-DASLab/gptq), written
from the algorithm's description (Frantar et al. 2022) and shared/fixtures/PROTOCOL.md:
  - dead columns (H_ii == 0) get H_ii = 1 and weight 0;
  - act-order: columns sorted by descending diag(H);
  - damping 0.01 x mean(diag H) added to the diagonal;
  - U = upper Cholesky factor of (H + damping I)^-1;
  - columns left to right in lazy blocks of 128: each column's scaled rounding error
    goes to the rest of its block at once and to the later blocks in one GEMM per block;
  - dynamic groups: a group's grid comes from the error-updated weights (the lazily
    updated W, without the current block's in-block updates) at its first column.

Writes, into --out (tables are tab-separated, one row per line):
  configs.tsv          name bits symmetric group_size act_order precision block_size damp
                       (group_size 0 = one grid per output channel; precision f32 or f64)
  layers.tsv           layer out in config seconds   (the torch timings)
  xcheck.tsv           config layer   (the cross-checks, results below)
  <layer>.W.f32        W [out, in], row-major, raw little-endian float32
  <layer>.H.f32        H [in, in] (2/n X^T X), same layout
  <config>.codes.u8    codes of the cross-check layer, [out, in], original column order
  <config>.deq.f32     its dequantized weights, float32

The C++ side (bench_gptq_torch) reads these files, times gptq_quantize on the same
layers and compares its result for the cross-check layer with ours.
"""
import argparse
import dataclasses
import math
import pathlib
import time

import torch

# Layer shapes [out, in]: small's attention (512x512) and down (512x1280), then
# Llama-7B's attention (4096x4096) and down (4096x11008).
SHAPES = [(512, 512), (512, 1280), (4096, 4096), (4096, 11008)]
BIG_IN = 4096  # shapes with at least this many inputs are timed once, not best of 3
TOKENS = 2048  # calibration tokens that X has
XCHECK_LAYER = "512x512"


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    bits: int = 4
    symmetric: bool = False
    group_size: int = 128  # 0 = one grid per output channel
    act_order: bool = False
    dtype: torch.dtype = torch.float32
    block_size: int = 128
    percdamp: float = 0.01


TIMED = Config("w4-g128")  # the configuration every shape is timed with
XCHECKS = [
    Config("w4-g128"),
    Config("w4-pc-actorder", group_size=0, act_order=True),
    Config("w3-g128-actorder", bits=3, act_order=True),
    Config("w4-g128-sym", symmetric=True),
    Config("w4-g128-f64", dtype=torch.float64),
]


def make_layer(out, inputs, seed):
    """W [out, in] and H = 2/n X^T X for correlated inputs X = Z A of TOKENS rows.

    A stacks diag(s) (per-channel scales, log-uniform over 1e-2..1e1, so a few
    channels dominate as outlier channels do in real activations) over a random
    rank-64 mixing B; X = Z1 diag(s) + Z2 B is Z A with Z = [Z1 Z2]. H is
    ill-conditioned, and singular where in > TOKENS, which damping repairs."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.exp(torch.empty(inputs).uniform_(math.log(1e-2), math.log(1e1), generator=gen))
    mixing = torch.randn(64, inputs, generator=gen) * 0.5
    x = torch.randn(TOKENS, inputs, generator=gen) * scales
    x += torch.randn(TOKENS, 64, generator=gen) @ mixing
    h = (2.0 / TOKENS) * (x.T @ x)
    w = torch.randn(out, inputs, generator=gen) / math.sqrt(inputs)
    return w.contiguous(), h.contiguous()


def grid_params(x, maxq, symmetric):
    """Scale and integer zero point per row of x (Quantizer.find_params of the reference)."""
    lo = torch.clamp(x.amin(dim=1), max=0)
    hi = torch.clamp(x.amax(dim=1), min=0)
    if symmetric:
        hi = torch.maximum(lo.abs(), hi)
        lo = torch.where(lo < 0, -hi, lo)
    empty = (lo == 0) & (hi == 0)
    lo = torch.where(empty, -1.0, lo).to(x.dtype)
    hi = torch.where(empty, 1.0, hi).to(x.dtype)
    scale = (hi - lo) / maxq
    if symmetric:
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        zero = torch.round(-lo / scale)
    return scale, zero


def inverse_upper_factor(h, percdamp):
    """U upper triangular with U^T U = (h + damping I)^-1."""
    h = h.clone()
    h.diagonal().add_(percdamp * h.diagonal().mean())
    lower = torch.linalg.cholesky(h)
    return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)


def gptq(w, h, cfg):
    """Codes (uint8) and dequantized weights of w [out, in], in w's column order."""
    w = w.to(cfg.dtype).clone()
    h = h.to(cfg.dtype).clone()
    maxq = 2**cfg.bits - 1
    scale, zero = grid_params(w, maxq, cfg.symmetric)  # per channel, before dead columns
    dead = h.diagonal() == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    columns = w.shape[1]
    if cfg.act_order:
        perm = torch.argsort(h.diagonal(), descending=True, stable=True)
    else:
        perm = torch.arange(columns)
    w = w[:, perm]
    u = inverse_upper_factor(h[perm][:, perm], cfg.percdamp)

    codes = torch.zeros(w.shape, dtype=torch.uint8)
    deq = torch.zeros_like(w)
    for i1 in range(0, columns, cfg.block_size):
        i2 = min(i1 + cfg.block_size, columns)
        w1 = w[:, i1:i2].clone()
        err = torch.zeros_like(w1)
        for i in range(i2 - i1):
            col = i1 + i
            if cfg.group_size and col % cfg.group_size == 0:
                scale, zero = grid_params(w[:, col : col + cfg.group_size], maxq, cfg.symmetric)
            q = torch.clamp(torch.round(w1[:, i] / scale) + zero, 0, maxq)
            codes[:, col] = q.to(torch.uint8)
            deq[:, col] = scale * (q - zero)
            err[:, i] = (w1[:, i] - deq[:, col]) / u[col, col]
            w1[:, i + 1 :] -= torch.outer(err[:, i], u[col, col + 1 : i2])
        w[:, i2:] -= err @ u[i1:i2, i2:]
    inverse = torch.argsort(perm)
    return codes[:, inverse], deq[:, inverse]


def best_time(fn, repeats):
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def write_raw(path, tensor):
    """Raw little-endian bytes, written under a temporary name and renamed."""
    tmp = path.with_name(path.name + ".tmp")
    tensor.contiguous().numpy().tofile(tmp)
    tmp.rename(path)


def write_table(path, rows):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join("\t".join(str(v) for v in row) + "\n" for row in rows))
    tmp.rename(path)


def config_row(c):
    precision = "f64" if c.dtype == torch.float64 else "f32"
    return (c.name, c.bits, int(c.symmetric), c.group_size, int(c.act_order), precision,
            c.block_size, c.percdamp)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shapes", type=int, default=len(SHAPES),
                        help="time only the first N shapes (a quick run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    timings = []
    for index, (out, inputs) in enumerate(SHAPES[: args.shapes]):
        name = f"{out}x{inputs}"
        w, h = make_layer(out, inputs, args.seed + index)
        write_raw(args.out / f"{name}.W.f32", w)
        write_raw(args.out / f"{name}.H.f32", h)
        seconds = best_time(lambda: gptq(w, h, TIMED), 1 if inputs >= BIG_IN else 3)
        timings.append((name, out, inputs, TIMED.name, f"{seconds:.4f}"))
        print(f"torch {name}: {seconds:.3f} s", flush=True)
        if name == XCHECK_LAYER:
            for cfg in XCHECKS:
                codes, deq = gptq(w, h, cfg)
                write_raw(args.out / f"{cfg.name}.codes.u8", codes)
                write_raw(args.out / f"{cfg.name}.deq.f32", deq.to(torch.float32))
    configs = {c.name: c for c in [TIMED, *XCHECKS]}.values()
    write_table(args.out / "configs.tsv", [config_row(c) for c in configs])
    write_table(args.out / "layers.tsv", timings)
    write_table(args.out / "xcheck.tsv", [(c.name, XCHECK_LAYER) for c in XCHECKS])


if __name__ == "__main__":
    main()
