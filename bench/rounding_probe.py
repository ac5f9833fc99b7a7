#!/usr/bin/env python3
"""Probe of rounding methods before they are built into ptq (issue 19): measures on the
GPU machine, with PyTorch, how much of plain GPTQ's excess perplexity over fp32 learned
rounding (sign-gradient descent on the rounding offsets and clip ranges of each block
against the float model's block output, as AutoRound does) removes on the validation texts.
Everything here is an independent re-implementation at float32: the Llama/Qwen2 forward,
GPTQ (asymmetric, lazy batches of 128 columns, groups from the updated weights, damp 0.01,
true-sequential within a block), GPTAQ (gptaq: each Linear aimed at the float model's output;
gptaq-res, gptaq-res-down: the out Linears' targets also take in the residual stream's gap)
and the learned rounding (lr-rtn from the full range, lr-clip from ptq's Hessian-weighted MSE
clip, lr-gptq from GPTQ's codes); ratios between its own methods are what it reports, beside ptq's
numbers in docs/bench/tuning.md.

  bench/rounding_probe.py --model DIR --calib calib_generic.ids[:WINDOWS] [--calib ...] \
      --val generic=validation_generic.ids --val domain=validation_domain.ids \
      [--targets w4-g128,w3-g128,w4-pc] [--methods gptq,lr-rtn,lr-clip,lr-gptq,gptaq,...] \
      [--iters 200] [--batch 8] [--out results.json]
  bench/rounding_probe.py --report results.json...   # the markdown table of docs/bench

Ids files are raw int32 (fixtures/PROTOCOL.md); calibration: [windows, 512]. Each --calib
adds the first WINDOWS windows of its file (all without), e.g. ptq's sequential 70/30 mix:
calib_generic.ids:90 and calib_domain.ids:38. --batch: windows per sign step.
"""
import argparse
import sys
import json
import math
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

TARGETS = {"w4-g128": (4, 128), "w3-g128": (3, 128), "w4-pc": (4, 0)}
LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_model(folder, device):
    cfg = json.load(open(f"{folder}/config.json"))
    tensors = {}
    index = f"{folder}/model.safetensors.index.json"
    try:
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    except FileNotFoundError:
        files = ["model.safetensors"]
    for f in files:
        tensors.update(load_file(f"{folder}/{f}"))
    w = {k: v.to(device=device, dtype=torch.float32) for k, v in tensors.items()}
    if "lm_head.weight" not in w:
        w["lm_head.weight"] = w["model.embed_tokens.weight"]
    return cfg, w


class Model:
    def __init__(self, cfg, w):
        self.cfg, self.w = cfg, w
        self.layers = cfg["num_hidden_layers"]
        self.heads, self.kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.hd = cfg.get("head_dim") or cfg["hidden_size"] // self.heads
        self.eps = cfg["rms_norm_eps"]
        theta = (cfg.get("rope_parameters") or {}).get("rope_theta") or cfg.get("rope_theta", 10000.0)
        dev = w["model.embed_tokens.weight"].device
        inv = 1.0 / theta ** (torch.arange(0, self.hd, 2, device=dev, dtype=torch.float64) / self.hd)
        pos = torch.arange(4096, device=dev, dtype=torch.float64)
        f = torch.outer(pos, inv)
        emb = torch.cat([f, f], -1)
        self.cos, self.sin = emb.cos().float(), emb.sin().float()

    def block_weights(self, i):
        p = f"model.layers.{i}."
        return {k[len(p):]: v for k, v in self.w.items() if k.startswith(p)}

    def rms(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * g

    def rope(self, x):
        t = x.shape[2]
        c, s = self.cos[:t], self.sin[:t]
        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], -1)
        return x * c + rot * s

    def block(self, bw, x, lw=None, stop=None):
        """One decoder block; lw overrides Linear weights (name -> [out, in]); stop returns
        the input of that Linear group instead of running on."""
        lw = lw or {}
        W = lambda n: lw.get(n, bw[f"{n}.weight"])
        B, T, D = x.shape
        N = lambda n: lw.get(n, bw[f"{n}.weight"])
        h = self.rms(x, N("input_layernorm"))
        if stop == "qkv":
            return h
        def proj(n):
            y = h @ W(f"self_attn.{n}").T
            b = bw.get(f"self_attn.{n}.bias")
            return y + b if b is not None else y
        q = proj("q_proj").view(B, T, self.heads, self.hd).transpose(1, 2)
        k = proj("k_proj").view(B, T, self.kv, self.hd).transpose(1, 2)
        v = proj("v_proj").view(B, T, self.kv, self.hd).transpose(1, 2)
        q, k = self.rope(q), self.rope(k)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        a = a.transpose(1, 2).reshape(B, T, self.heads * self.hd)
        if stop == "o":
            return a
        x = x + a @ W("self_attn.o_proj").T
        if stop == "mid":
            return x
        h = self.rms(x, N("post_attention_layernorm"))
        if stop == "gate_up":
            return h
        m = F.silu(h @ W("mlp.gate_proj").T) * (h @ W("mlp.up_proj").T)
        if stop == "down":
            return m
        return x + m @ W("mlp.down_proj").T

    def embed(self, ids):
        return self.w["model.embed_tokens.weight"][ids]

    def nll(self, ids, blocks, ctx=512, batch=16):
        """Sum of next-token NLL and count over the non-overlapping ctx windows of ids."""
        n = ids.numel() // ctx
        wins = ids[: n * ctx].view(n, ctx)
        total, count = 0.0, 0
        for s in range(0, n, batch):
            x = self.embed(wins[s : s + batch])
            for i in range(self.layers):
                x = self.block(self.block_weights(i), x, blocks[i])
            x = self.rms(x, self.w["model.norm.weight"])
            logits = x @ self.w["lm_head.weight"].T
            t = wins[s : s + batch]
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1),
                                   reduction="sum")
            total += loss.item()
            count += t[:, 1:].numel()
        return total, count


# Asymmetric grid of GPTQ's quantizer: the range always holds 0.
def grid(w, bits):
    maxq = 2**bits - 1
    lo = torch.clamp(w.min(-1, keepdim=True).values, max=0)
    hi = torch.clamp(w.max(-1, keepdim=True).values, min=0)
    both0 = (lo == 0) & (hi == 0)
    lo, hi = torch.where(both0, -1.0, lo), torch.where(both0, 1.0, hi)
    scale = (hi - lo) / maxq
    zero = torch.round(-lo / scale)
    return scale, zero


def qdq(w, scale, zero, bits):
    q = torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1)
    return scale * (q - zero), q


def rtn(w, bits, group):
    g = group or w.shape[1]
    wg = w.view(w.shape[0], -1, g)
    s, z = grid(wg, bits)
    return qdq(wg, s, z, bits)[0].view_as(w)


def gptq(w, H, bits, group, damp=0.01, blocksize=128):
    """GPTQ of w [out, in] under H = sum x x^T; returns the dequantized weight and the
    per-group (scale, zero, integer code) it chose."""
    w = w.clone()
    n = w.shape[1]
    g = group or n
    assert g % blocksize == 0
    H = H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    w[:, dead] = 0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(n, device=w.device)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(w)
    codes = torch.zeros_like(w)
    scales = torch.zeros(w.shape[0], n // g, device=w.device)
    zeros = torch.zeros_like(scales)
    for i1 in range(0, n, blocksize):
        i2 = min(i1 + blocksize, n)
        W1 = w[:, i1:i2].clone()
        Err = torch.zeros_like(W1)
        Hi = Hinv[i1:i2, i1:i2]
        for j in range(i2 - i1):
            col = i1 + j
            if col % g == 0:  # groups start at a lazy batch's first column (g % 128 == 0)
                s, z = grid(w[:, col : col + g], bits)
                scales[:, col // g], zeros[:, col // g] = s[:, 0], z[:, 0]
            s, z = scales[:, col // g : col // g + 1], zeros[:, col // g : col // g + 1]
            dq, q = qdq(W1[:, j : j + 1], s, z, bits)
            Q[:, col], codes[:, col] = dq[:, 0], q[:, 0]
            e = (W1[:, j] - dq[:, 0]) / Hi[j, j]
            W1[:, j:] -= e.unsqueeze(1) * Hi[j, j:].unsqueeze(0)
            Err[:, j] = e
        w[:, i2:] -= Err @ Hinv[i1:i2, i2:]
        w[:, i1:i2] = W1
    return Q, (scales, zeros, codes)


def hessian(x):
    x = x.reshape(-1, x.shape[-1]).double()
    return (x.T @ x).float()


GROUPS = [("qkv", ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]),
          ("o", ["self_attn.o_proj"]), ("gate_up", ["mlp.gate_proj", "mlp.up_proj"]),
          ("down", ["mlp.down_proj"])]


# The residual stream each out Linear adds to: o_proj the block's input, down_proj the
# stream after the attention's add.
RESIDUAL = {"o": None, "down": "mid"}


def gptq_block(model, bw, xq, bits, group, xf=None, residual=(), target_damp=1.0):
    """GPTQ of a block's Linears, true-sequential. With the float model's block input xf,
    GPTAQ: each Linear rounds W + W M^T, M = (H + target_damp mean(diag H) I)^-1 X~^T (X - X~),
    the least-squares weight that maps the quantized input X~ to the float output. With an
    out Linear's group in `residual`, its target also absorbs the gap between the float and
    quantized residual streams it is added to (the float block's output is then its target)."""
    lw, grids = {}, {}
    for stop, names in GROUPS:
        H = torch.zeros(1, device=xq.device)
        D = torch.zeros(1, device=xq.device)
        R = torch.zeros(1, device=xq.device)
        for s in range(0, xq.shape[0], 16):
            xt = model.block(bw, xq[s : s + 16], lw, stop)
            H = H + hessian(xt)
            if xf is None:
                continue
            x2 = xt.reshape(-1, xt.shape[-1]).double()
            gap = model.block(bw, xf[s : s + 16], None, stop) - xt
            D = D + (x2.T @ gap.reshape(x2.shape).double()).float()
            if stop in residual:
                at = RESIDUAL[stop]
                rf = xf[s : s + 16] if at is None else model.block(bw, xf[s : s + 16], None, at)
                rq = xq[s : s + 16] if at is None else model.block(bw, xq[s : s + 16], lw, at)
                R = R + (x2.T @ (rf - rq).reshape(x2.shape[0], -1).double()).float()
        if xf is not None:
            damped = H + target_damp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0], device=H.device)
            M = torch.linalg.solve(damped.double(), D.double()).float()
            MR = torch.linalg.solve(damped.double(), R.double()).float() if stop in residual else None
        for n in names:
            w = bw[f"{n}.weight"]
            if xf is not None:
                w = w + w @ M.T + (MR.T if MR is not None else 0)
            lw[n], grids[n] = gptq(w, H, bits, group)
    return lw, grids


def input_diag(model, bw, xq, stop):
    """diag(X^T X) of a Linear group's input on the quantized stream (the block's float
    weights before it): the clip's weights."""
    d = 0
    for s in range(0, xq.shape[0], 16):
        x = model.block(bw, xq[s : s + 16], None, stop)
        d = d + x.reshape(-1, x.shape[-1]).double().pow(2).sum(0)
    return d.float()


def mse_clip(w, d, bits, group, steps=100, max_shrink=0.8, norm=2.4):
    """ptq's Hessian-weighted MSE clip (recipes/*-best.yaml: one factor p of both ends of
    the group's range, p = 1 - k/steps for k < max_shrink * steps, the one of least
    sum d |w - q(w)|^norm); returns p per group, [out, groups, 1]."""
    g = group or w.shape[1]
    wg, dg = w.view(w.shape[0], -1, g), d.view(1, -1, g)
    lo0 = torch.clamp(wg.min(-1, keepdim=True).values, max=0)
    hi0 = torch.clamp(wg.max(-1, keepdim=True).values, min=0)
    maxq = 2**bits - 1
    best = torch.full_like(lo0, math.inf)
    chosen = torch.ones_like(lo0)
    for k in range(int(max_shrink * steps)):
        p = 1 - k / steps
        scale = torch.clamp((hi0 - lo0) * p / maxq, min=1e-9)
        zero = torch.round(-lo0 * p / scale)
        q = torch.clamp(torch.round(wg / scale) + zero, 0, maxq)
        err = ((scale * (q - zero) - wg).abs().pow(norm) * dg).sum(-1, keepdim=True)
        chosen = torch.where(err < best, p, chosen)
        best = torch.minimum(err, best)
    return chosen


def round_ste(x):
    return (torch.round(x) - x).detach() + x


class Learned:
    """A Linear's learned rounding: offsets V on the integer grid and per-group multipliers
    of the range (AutoRound: min and max scaled by b and a in [0.5, 1]). With a GPTQ start,
    V starts at GPTQ's codes and the grid at GPTQ's; a multiplies that grid's scale."""

    def __init__(self, w, bits, group, start=None, tune_v=True, tune_scale=True, clip=None):
        self.bits, self.g = bits, group or w.shape[1]
        self.w = w.view(w.shape[0], -1, self.g)
        self.start = start
        if start is None:
            self.v = torch.zeros_like(self.w)
            self.v0 = torch.zeros_like(self.w)
            ng = self.w.shape[:2] + (1,)
            # lr-clip: both multipliers start at the MSE clip's factor (their floor is
            # AutoRound's 0.5, or that factor where it is lower).
            self.a = torch.ones(ng, device=w.device) if clip is None else clip.clone()
            self.b = self.a.clone()
            self.floor = torch.clamp(self.a, max=0.5)
            self.params = [self.v, self.a, self.b]
        else:
            s, z, q = start
            s, z = s.unsqueeze(-1), z.unsqueeze(-1)
            self.s0, self.z0 = s, z
            self.v0 = (q.view_as(self.w) - z) - self.w / s
            self.v = self.v0.clone()
            self.a = torch.ones_like(s)
            self.params = ([self.v] if tune_v else []) + ([self.a] if tune_scale else [])
        for p in self.params:
            p.requires_grad_(True)

    def weight(self):
        maxq = 2**self.bits - 1
        if self.start is None:
            lo = torch.clamp(self.w.min(-1, keepdim=True).values, max=0) * self.b
            hi = torch.clamp(self.w.max(-1, keepdim=True).values, min=0) * self.a
            scale = torch.clamp((hi - lo) / maxq, min=1e-9)
            zero = round_ste(-lo / scale)
        else:
            scale, zero = self.s0 * self.a, self.z0
        q = torch.clamp(round_ste(self.w / scale + self.v) + zero, 0, maxq)
        return (scale * (q - zero)).view(self.w.shape[0], -1)

    def clamp_(self):
        with torch.no_grad():
            self.v.copy_(torch.clamp(self.v, self.v0 - 0.5, self.v0 + 0.5))
            if self.start is None:
                self.a.copy_(torch.clamp(self.a, min=self.floor).clamp(max=1.0))
                self.b.copy_(torch.clamp(self.b, min=self.floor).clamp(max=1.0))
            else:
                self.a.clamp_(0.8, 1.2)


NORMS = ["input_layernorm", "post_attention_layernorm"]


def learn_block(model, bw, xq, yf, bits, group, starts, iters, batch, lr=None, tune_v=True,
                tune_scale=True, tune_norm=False, clips=None):
    """Sign-gradient descent on the block's output error against the float block's output
    (AutoRound); tune_v=False keeps the start's codes (only the scales move); tune_norm also
    moves the RMSNorm gains (kept in float by every format)."""
    names = [n for _, ns in GROUPS for n in ns]
    learned = {n: Learned(bw[f"{n}.weight"], bits, group, starts.get(n) if starts else None, tune_v,
                           tune_scale, clips.get(n) if clips else None)
               for n in names}
    params = [p for l in learned.values() for p in l.params]
    gains = {n: torch.zeros_like(bw[f"{n}.weight"]).requires_grad_(True) for n in NORMS}
    if tune_norm:
        params += list(gains.values())
    current = lambda: {**{n: l.weight() for n, l in learned.items()},
                       **{n: bw[f"{n}.weight"] * (1 + d) for n, d in gains.items()}}
    lr = lr or 1.0 / iters
    gen = torch.Generator(device="cpu").manual_seed(0)
    best, best_state = math.inf, None
    for it in range(iters):
        idx = torch.randperm(xq.shape[0], generator=gen)[:batch].to(xq.device)
        loss = F.mse_loss(model.block(bw, xq[idx], current()), yf[idx])
        if loss.item() < best:
            best = loss.item()
            best_state = [p.detach().clone() for p in params]
        loss.backward()
        step = lr * (1 - it / iters)
        with torch.no_grad():
            for p in params:
                p -= step * p.grad.sign()
                p.grad = None
        for l in learned.values():
            l.clamp_()
        with torch.no_grad():
            for d in gains.values():
                d.clamp_(-0.2, 0.2)
    with torch.no_grad():
        for p, b in zip(params, best_state):
            p.copy_(b)
        return {n: t.detach() for n, t in current().items()}


def run_blocks(model, bw, x, lw, batch=16):
    return torch.cat([model.block(bw, x[s : s + batch], lw) for s in range(0, x.shape[0], batch)])


def quantize(model, calib, method, bits, group, iters, lr, batch):
    xf = model.embed(calib)
    xq = xf.clone()
    blocks = []
    for i in range(model.layers):
        bw = model.block_weights(i)
        with torch.no_grad():
            yf = run_blocks(model, bw, xf, None)
            if method == "rtn":
                lw = {n: rtn(bw[f"{n}.weight"], bits, group) for _, ns in GROUPS for n in ns}
            elif method.startswith("gptaq"):
                residual = {"gptaq": (), "gptaq-res": ("o", "down"), "gptaq-res-down": ("down",)}
                lw, grids = gptq_block(model, bw, xq, bits, group, xf, residual[method])
            elif "gptq" in method:
                lw, grids = gptq_block(model, bw, xq, bits, group)
            clips = None
            if method == "lr-clip":
                clips = {}
                for stop, names in GROUPS:
                    d = input_diag(model, bw, xq, stop)
                    clips.update({n: mse_clip(bw[f"{n}.weight"], d, bits, group) for n in names})
        if method not in ("gptq", "rtn") and not method.startswith("gptaq"):
            starts = grids if "gptq" in method else None
            lw = learn_block(model, bw, xq, yf, bits, group, starts, iters, batch, lr=lr,
                             tune_v=not method.startswith("gptq-"), tune_scale=method != "gptq-norm",
                             tune_norm=method.endswith("-norm"), clips=clips)
        with torch.no_grad():
            xq = run_blocks(model, bw, xq, lw)
        xf = yf
        blocks.append(lw)
    return blocks


def report(files):
    """Markdown rows (model, iterations, method) x target: generic / domain cut and their mean,
    against the GPTQ of the same run."""
    rows = {}
    for f in files:
        r = json.load(open(f))
        fp = r["ppl"]["fp32"]
        for key, ppl in r["ppl"].items():
            if key == "fp32" or key.endswith(".gptq"):
                continue
            t, m = key.split(".", 1)
            base = r["ppl"][f"{t}.gptq"]
            cuts = [100 * (base[k] - ppl[k]) / (base[k] - fp[k]) for k in ppl]
            cell = " / ".join(f"{c:+.1f}" for c in cuts) + f" (**{sum(cuts) / len(cuts):+.1f}**)"
            steps = f'{r["iters"]} × {r.get("batch", 8)}'
            name = r["model"].rstrip("/").rsplit("/", 1)[-1]
            rows.setdefault((name, r.get("calib", "generic"), steps, m), {})[t] = cell
    print("| model | calibration | steps × windows | method | " + " | ".join(TARGETS) + " |")
    print("|---|---|---:|---|" + "---|" * len(TARGETS))
    for (model, calib, steps, m), cells in sorted(rows.items()):
        print(f"| {model} | {calib} | {steps} | {m} | " + " | ".join(cells.get(t, "") for t in TARGETS) + " |")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--report":
        return report(sys.argv[2:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", action="append", required=True)
    ap.add_argument("--val", action="append", required=True)
    ap.add_argument("--targets", default="w4-g128,w3-g128,w4-pc")
    ap.add_argument("--methods", default="gptq,lr-rtn,lr-gptq")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8, help="calibration windows per sign step")
    ap.add_argument("--lr", type=float, help="sign-SGD step (default 1 / iters)")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg, w = load_model(a.model, dev)
    model = Model(cfg, w)
    read = lambda p: torch.from_numpy(__import__("numpy").fromfile(p, dtype="int32")).long().to(dev)
    def windows(spec):
        path, _, count = spec.partition(":")
        w = read(path).view(-1, 512)
        return w[: int(count)] if count else w
    calib = torch.cat([windows(c) for c in a.calib])
    vals = {v.split("=")[0]: read(v.split("=")[1]) for v in a.val}
    label = "+".join(c.rsplit("/", 1)[-1].replace(".ids", "") for c in a.calib)
    res = {"model": a.model, "iters": a.iters, "batch": a.batch, "calib": label, "ppl": {}}
    with torch.no_grad():
        fp = {k: model.nll(ids, [None] * model.layers) for k, ids in vals.items()}
    res["ppl"]["fp32"] = {k: math.exp(t / c) for k, (t, c) in fp.items()}
    print("fp32", res["ppl"]["fp32"], flush=True)
    for t in a.targets.split(","):
        bits, group = TARGETS[t]
        for m in a.methods.split(","):
            t0 = time.time()
            blocks = quantize(model, calib, m, bits, group, a.iters, a.lr, a.batch)
            torch.cuda.synchronize()
            secs = time.time() - t0
            ppl = {}
            with torch.no_grad():
                for k, ids in vals.items():
                    total, count = model.nll(ids, blocks)
                    ppl[k] = math.exp(total / count)
            res["ppl"][f"{t}.{m}"] = ppl
            res.setdefault("seconds", {})[f"{t}.{m}"] = secs
            base = res["ppl"].get(f"{t}.gptq")
            cut = ""
            if base:
                cuts = [(base[k] - ppl[k]) / (base[k] - res["ppl"]["fp32"][k]) for k in ppl]
                cut = " cuts " + " ".join(f"{100 * c:+.1f}%" for c in cuts) + f" mean {100 * sum(cuts) / len(cuts):+.1f}%"
            print(f"{t}.{m} {secs:.1f}s", {k: round(v, 4) for k, v in ppl.items()}, cut, flush=True)
    if a.out:
        json.dump(res, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
