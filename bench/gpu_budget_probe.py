#!/usr/bin/env python3
"""What the GPU itself allows for issue 18's stage 2: the dense work of one
Llama-3-8B block (or Llama-3-70B's, --shape 70b) over 128 windows of 2048
tokens, timed with PyTorch's cuBLAS and attention kernels on random data, in
each precision the issue allows. ptq's CUDA backend calls the same cuBLAS
routines, so these times are a floor for its block, not a measurement of it.

    python3 bench/gpu_budget_probe.py [--shape 8b|70b] [--windows 128] [--seqlen 2048]

Per block: the forward's GEMMs (q/k/v, o, gate/up, down), causal attention,
and X^T X of the four Linear inputs (q/k/v's, o's, gate/up's: hidden wide;
down's: MLP wide). Printed per item and summed, per block and times the
block count. GEMMs and X^T X run in float32 without TF32, with TF32, and with
bfloat16 inputs (float32 accumulation).
"""

import argparse
import time

import torch

# hidden, MLP width, heads, KV heads, head_dim, blocks (the checkpoints' config.json)
SHAPES = {"8b": (4096, 14336, 32, 8, 128, 32), "70b": (8192, 28672, 64, 8, 128, 80)}
HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM, LAYERS = SHAPES["8b"]


def timed(fn, repeats=3):
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def gemm_items(tokens, dtype):
    """(name, seconds) of the forward's GEMMs and X^T X, inputs in `dtype`."""
    x = torch.randn(tokens, HIDDEN, device="cuda", dtype=dtype)
    h = torch.randn(tokens, INTER, device="cuda", dtype=dtype)
    out = []
    for name, w_shape, inp in (("q/k/v GEMM", (HIDDEN, HIDDEN + 2 * KV_HEADS * HEAD_DIM), x),
                               ("o GEMM", (HIDDEN, HIDDEN), x),
                               ("gate/up GEMM", (HIDDEN, 2 * INTER), x),
                               ("down GEMM", (INTER, HIDDEN), h)):
        w = torch.randn(*w_shape, device="cuda", dtype=dtype)
        out.append((name, timed(lambda: inp @ w)))
        del w
    xtx_hidden = timed(lambda: torch.mm(x.t(), x).float())
    out.append((f"X^T X {HIDDEN} wide, x3", 3 * xtx_hidden))
    out.append((f"X^T X {INTER} wide", timed(lambda: torch.mm(h.t(), h).float())))
    del x, h
    torch.cuda.empty_cache()
    return out


def attention_seconds(windows, seqlen, dtype):
    q = torch.randn(windows, HEADS, seqlen, HEAD_DIM, device="cuda", dtype=dtype)
    k = torch.randn(windows, KV_HEADS, seqlen, HEAD_DIM, device="cuda", dtype=dtype)
    v = torch.randn_like(k)
    k = k.repeat_interleave(HEADS // KV_HEADS, dim=1)
    v = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
    f = torch.nn.functional.scaled_dot_product_attention
    return timed(lambda: f(q, k, v, is_causal=True))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--windows", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--shape", choices=sorted(SHAPES), default="8b")
    a = p.parse_args()
    global HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM, LAYERS
    HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM, LAYERS = SHAPES[a.shape]
    tokens = a.windows * a.seqlen
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {a.shape} shape, "
          f"{a.windows} windows x {a.seqlen} tokens = {tokens} rows per block")
    modes = (("float32", torch.float32, False), ("tf32", torch.float32, True),
             ("bf16 in, fp32 acc", torch.bfloat16, False))
    for label, dtype, tf32 in modes:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        items = gemm_items(tokens, dtype)
        items.append(("causal attention", attention_seconds(a.windows, a.seqlen, dtype)))
        total = sum(s for _, s in items)
        print(f"\n## {label}")
        for name, s in items:
            print(f"{name:24s} {s:8.3f} s")
        print(f"{'one block':24s} {total:8.3f} s   x{LAYERS} blocks: {LAYERS * total:7.1f} s")
    print(f"\npeak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
