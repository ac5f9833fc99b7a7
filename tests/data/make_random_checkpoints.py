#!/usr/bin/env python3
"""Generate tiny random-weight HF transformers checkpoints + reference logits.

These are test data for ptq's C++ forward pass and config parser.

Usage:
    python3 make_random_checkpoints.py --out tests/data/models

For every model folder this writes:
    config.json, generation_config.json        (save_pretrained)
    model.safetensors  or  model-0000k-of-0000n.safetensors + model.safetensors.index.json
    ref_ids.ids      int32 little-endian, 96 token ids (no BOS)
    ref_logits.f32   float32 little-endian, [96, vocab] logits
The reference logits come from reloading the *saved* checkpoint with dtype=float32
(so exactly the stored fp16/bf16 values are used) and running the model in float32
on the CPU with attn_implementation="eager".

Besides the HF reference, the script carries an independent numpy forward pass
(own safetensors reader, own config interpretation) and checks it against the HF
logits; it also reruns that numpy pass with single components disabled, to show
that each component (norm weights, biases, q/k norms, llama3 rope scaling, ...)
visibly changes the logits. Results go to MANIFEST.json and README.md.

Requires torch, transformers (>= 5, which uses `rope_parameters`), numpy.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import torch
import transformers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

SEQ_LEN = 96
VOCAB = 512
WEIGHT_STD = 0.15      # linear / embedding weights
NORM_STD = 0.25        # RMSNorm weights ~ 1 + N(0, NORM_STD)
BIAS_STD = 0.2         # q/k/v biases

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    num_hidden_layers=2,
    hidden_act="silu",
    bos_token_id=1,
    eos_token_id=2,
)

LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}


def model_specs():
    """name -> dict(config_cls, model_cls, cfg kwargs, dtype, seed, shard, exercises)."""
    specs = {}
    specs["mistral"] = dict(
        cfg_cls=MistralConfig, model_cls=MistralForCausalLM, dtype=torch.float16, seed=1001,
        shard=True,
        cfg=dict(COMMON, tie_word_embeddings=False, sliding_window=None, rms_norm_eps=1e-5,
                 max_position_embeddings=512,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        exercises="MistralForCausalLM; GQA (4 q heads / 2 kv heads, head_dim 16); untied lm_head; "
                  "fp16 weights; SHARDED safetensors with model.safetensors.index.json; "
                  "sliding_window null; rms_norm_eps 1e-5; default rope, theta 1e4.",
    )
    specs["qwen2"] = dict(
        cfg_cls=Qwen2Config, model_cls=Qwen2ForCausalLM, dtype=torch.float16, seed=1002,
        shard=False,
        cfg=dict(COMMON, tie_word_embeddings=True, rms_norm_eps=1e-6,
                 max_position_embeddings=512,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        exercises="Qwen2ForCausalLM; q/k/v projection biases (random, nonzero); "
                  "tie_word_embeddings true (no lm_head.weight in the file: logits use "
                  "model.embed_tokens.weight); fp16; rms_norm_eps 1e-6; default rope, theta 1e6.",
    )
    specs["qwen3"] = dict(
        cfg_cls=Qwen3Config, model_cls=Qwen3ForCausalLM, dtype=torch.bfloat16, seed=1003,
        shard=False,
        cfg=dict(COMMON, head_dim=32, tie_word_embeddings=False, attention_bias=False,
                 rms_norm_eps=1e-6, max_position_embeddings=512,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        exercises="Qwen3ForCausalLM; explicit head_dim 32 != hidden/heads (16): q_proj is "
                  "[128,64], k/v_proj [64,64], o_proj [64,128]; per-head RMSNorm q_norm/k_norm "
                  "(weights [32], applied before rope); no attention biases; untied; bf16 weights; "
                  "default rope, theta 1e6.",
    )
    specs["llama3rope"] = dict(
        cfg_cls=LlamaConfig, model_cls=LlamaForCausalLM, dtype=torch.float16, seed=1004,
        shard=False, oldstyle=True,
        cfg=dict(COMMON, tie_word_embeddings=False, rms_norm_eps=1e-5,
                 max_position_embeddings=256, rope_parameters=dict(LLAMA3_ROPE)),
        exercises="LlamaForCausalLM; rope_type llama3 (factor 8, low_freq_factor 1, "
                  "high_freq_factor 4, original_max_position_embeddings 32, theta 5e5), "
                  "max_position_embeddings 256; fp16; config_oldstyle.json = same settings as "
                  "top-level rope_theta + rope_scaling (+ torch_dtype instead of dtype). NOTE: with "
                  "head_dim 16 the rope wavelengths are 6.3, 32.4, 167, ... so one frequency is kept "
                  "and the rest are divided by 8; none falls in the smoothed band [8, 32].",
    )
    band = dict(LLAMA3_ROPE, original_max_position_embeddings=64)
    specs["llama3rope_band"] = dict(
        cfg_cls=LlamaConfig, model_cls=LlamaForCausalLM, dtype=torch.float16, seed=1005,
        shard=False, oldstyle=True,
        cfg=dict(COMMON, tie_word_embeddings=False, rms_norm_eps=1e-5,
                 max_position_embeddings=256, rope_parameters=band),
        exercises="Extra (not in the original brief): as llama3rope but "
                  "original_max_position_embeddings 64, so the smoothed band [16, 64] holds the "
                  "wavelength-32.4 frequency: all three llama3 branches (kept / smoothed / divided) "
                  "are hit. Also has config_oldstyle.json.",
    )
    return specs


# --------------------------------------------------------------------------------------
# weight initialisation


@torch.no_grad()
def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():  # tied params appear once
        shape = p.shape
        if name.endswith("norm.weight"):  # input/post_attention_layernorm, model.norm, q_norm, k_norm
            v = 1.0 + NORM_STD * torch.randn(shape, generator=g)
        elif name.endswith(".bias"):
            v = BIAS_STD * torch.randn(shape, generator=g)
        else:
            v = WEIGHT_STD * torch.randn(shape, generator=g)
        p.copy_(v.to(p.dtype))


# --------------------------------------------------------------------------------------
# independent numpy reader + forward pass


def read_safetensors(path):
    out = {}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    for k, meta in header.items():
        if k == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        raw = data[a:b]
        dt = meta["dtype"]
        if dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        else:
            raise ValueError(f"unsupported dtype {dt} for {k}")
        out[k] = arr.reshape(meta["shape"])
    return out


def read_checkpoint(folder):
    idx = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wmap = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(wmap.values())):
            part = read_safetensors(os.path.join(folder, shard))
            for k, v in part.items():
                assert wmap[k] == shard, (k, shard)
                tensors[k] = v
        assert set(tensors) == set(wmap), "index/shard mismatch"
        return tensors
    return read_safetensors(os.path.join(folder, "model.safetensors"))


def rope_from_config(cfg):
    """Accepts new-style `rope_parameters` or old-style top-level rope_theta + rope_scaling."""
    if cfg.get("rope_parameters"):
        rp = dict(cfg["rope_parameters"])
    else:
        rp = dict(cfg.get("rope_scaling") or {})
        rp.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
    rp.setdefault("rope_type", rp.get("type", "default"))
    return rp


def inv_freq_np(rp, head_dim, disable_scaling=False):
    base = float(rp["rope_theta"])
    inv = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    if rp["rope_type"] == "default" or disable_scaling:
        return inv
    assert rp["rope_type"] == "llama3", rp
    factor = rp["factor"]
    lo, hi = rp["low_freq_factor"], rp["high_freq_factor"]
    old = rp["original_max_position_embeddings"]
    lo_wl, hi_wl = old / lo, old / hi
    out = np.empty_like(inv)
    for i, f in enumerate(inv):
        wl = 2 * math.pi / f
        if wl < hi_wl:
            out[i] = f
        elif wl > lo_wl:
            out[i] = f / factor
        else:
            s = (old / wl - lo) / (hi - lo)
            out[i] = (1 - s) * f / factor + s * f
    return out


def llama3_bands(rp, head_dim):
    inv = 1.0 / (float(rp["rope_theta"]) ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    old = rp["original_max_position_embeddings"]
    lo_wl, hi_wl = old / rp["low_freq_factor"], old / rp["high_freq_factor"]
    wl = 2 * math.pi / inv
    return {"wavelengths": [round(float(w), 3) for w in wl],
            "kept": int((wl < hi_wl).sum()), "divided": int((wl > lo_wl).sum()),
            "smoothed": int(((wl >= hi_wl) & (wl <= lo_wl)).sum())}


def rmsnorm(x, w, eps):
    return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))


def np_forward(cfg, W, ids, ablate=()):
    """Llama-family forward in float64. `ablate` names components to neutralise."""
    H = cfg["hidden_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    L = cfg["num_hidden_layers"]
    T = len(ids)
    W = {k: v.astype(np.float64) for k, v in W.items()}

    def norm_w(key):
        w = W[key]
        return np.ones_like(w) if "norm_weights" in ablate else w

    def bias(key):
        if key not in W or "biases" in ablate:
            return 0.0
        return W[key]

    rp = rope_from_config(cfg)
    inv = inv_freq_np(rp, hd, disable_scaling="rope_scaling" in ablate)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]  # [T, hd/2]
    cos = np.concatenate([np.cos(ang)] * 2, -1)
    sin = np.concatenate([np.sin(ang)] * 2, -1)
    if "rope" in ablate:
        cos, sin = np.ones_like(cos), np.zeros_like(sin)

    def rope(x):  # x [heads, T, hd], rotate-half layout
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    x = W["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(L):
        p = f"model.layers.{l}."
        h = rmsnorm(x, norm_w(p + "input_layernorm.weight"), eps)
        q = h @ W[p + "self_attn.q_proj.weight"].T + bias(p + "self_attn.q_proj.bias")
        k = h @ W[p + "self_attn.k_proj.weight"].T + bias(p + "self_attn.k_proj.bias")
        v = h @ W[p + "self_attn.v_proj.weight"].T + bias(p + "self_attn.v_proj.bias")
        q = q.reshape(T, nh, hd).transpose(1, 0, 2)
        k = k.reshape(T, nkv, hd).transpose(1, 0, 2)
        v = v.reshape(T, nkv, hd).transpose(1, 0, 2)
        if p + "self_attn.q_norm.weight" in W and "qk_norm" not in ablate:
            q = rmsnorm(q, norm_w(p + "self_attn.q_norm.weight"), eps)
            k = rmsnorm(k, norm_w(p + "self_attn.k_norm.weight"), eps)
        q, k = rope(q), rope(k)
        rep = nh // nkv
        k = np.repeat(k, rep, axis=0)  # kv head j serves q heads j*rep .. j*rep+rep-1
        v = np.repeat(v, rep, axis=0)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(T, nh * hd)
        x = x + a @ W[p + "self_attn.o_proj.weight"].T + bias(p + "self_attn.o_proj.bias")
        h = rmsnorm(x, norm_w(p + "post_attention_layernorm.weight"), eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, norm_w("model.norm.weight"), eps)
    head = W.get("lm_head.weight")
    if head is None:
        head = W["model.embed_tokens.weight"]
    return x @ head.T


# --------------------------------------------------------------------------------------


def save_sharded(model, folder, total_bytes):
    """Pick a max_shard_size giving 2-3 shards."""
    for frac in (0.40, 0.45, 0.55, 0.35, 0.6, 0.3):
        if os.path.exists(folder):
            shutil.rmtree(folder)
        model.save_pretrained(folder, max_shard_size=int(total_bytes * frac))
        shards = [f for f in os.listdir(folder) if f.endswith(".safetensors")]
        if 2 <= len(shards) <= 3 and os.path.exists(os.path.join(folder, "model.safetensors.index.json")):
            return int(total_bytes * frac), len(shards)
    raise RuntimeError("could not get 2-3 shards")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_oldstyle(folder):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    rp = dict(cfg.pop("rope_parameters"))
    old = {}
    for k, v in cfg.items():
        if k == "dtype":
            old["torch_dtype"] = v
        else:
            old[k] = v
    old["rope_theta"] = rp.pop("rope_theta")
    old["rope_scaling"] = rp  # rope_type, factor, low/high_freq_factor, original_max_position_embeddings
    with open(os.path.join(folder, "config_oldstyle.json"), "w") as f:
        json.dump(old, f, indent=2, sort_keys=True)
        f.write("\n")
    return old


def build_one(name, spec, out_root):
    folder = os.path.join(out_root, name)
    info = {"exercises": spec["exercises"], "dtype": str(spec["dtype"]).replace("torch.", "")}
    torch.manual_seed(spec["seed"])
    cfg = spec["cfg_cls"](**spec["cfg"])
    model = spec["model_cls"](cfg).eval()
    randomize(model, spec["seed"])
    model = model.to(spec["dtype"])
    if spec.get("shard"):
        total = sum(p.numel() * p.element_size() for p in model.parameters())
        info["max_shard_size"], info["num_shards"] = save_sharded(model, folder, total)
    else:
        if os.path.exists(folder):
            shutil.rmtree(folder)
        model.save_pretrained(folder)
    del model

    ids = np.random.default_rng(spec["seed"]).integers(3, VOCAB, size=SEQ_LEN).astype("<i4")
    ids.tofile(os.path.join(folder, "ref_ids.ids"))

    ref = spec["model_cls"].from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    assert all(p.dtype == torch.float32 for p in ref.parameters())
    with torch.no_grad():
        logits = ref(torch.from_numpy(ids.astype(np.int64))[None], use_cache=False).logits[0]
    logits = logits.float().numpy().astype("<f4")
    assert logits.shape == (SEQ_LEN, VOCAB)
    logits.tofile(os.path.join(folder, "ref_logits.f32"))
    info["logits_std"] = float(logits.std())
    info["logits_absmax"] = float(np.abs(logits).max())
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    info["mean_top1_prob"] = float(probs.max(-1).mean())

    if spec.get("oldstyle"):
        make_oldstyle(folder)
        oc = LlamaConfig.from_json_file(os.path.join(folder, "config_oldstyle.json"))
        info["oldstyle_rope_parameters_after_load"] = dict(oc.rope_parameters)
        info["oldstyle_matches_new"] = dict(oc.rope_parameters) == dict(ref.config.rope_parameters)
        m2 = LlamaForCausalLM.from_pretrained(folder, config=oc, dtype=torch.float32,
                                              attn_implementation="eager").eval()
        with torch.no_grad():
            l2 = m2(torch.from_numpy(ids.astype(np.int64))[None], use_cache=False).logits[0].numpy()
        info["oldstyle_logits_maxdiff"] = float(np.abs(l2 - logits).max())
    del ref

    # independent numpy check + ablations
    with open(os.path.join(folder, "config.json")) as f:
        jcfg = json.load(f)
    W = read_checkpoint(folder)
    info["tensors"] = {k: list(v.shape) for k, v in sorted(W.items())}
    npl = np_forward(jcfg, W, ids)
    info["numpy_vs_hf_maxdiff"] = float(np.abs(npl - logits).max())
    rp = rope_from_config(jcfg)
    hd = jcfg.get("head_dim") or jcfg["hidden_size"] // jcfg["num_attention_heads"]
    if rp["rope_type"] == "llama3":
        info["llama3_bands"] = llama3_bands(rp, hd)
    abl = ["norm_weights", "rope"]
    if any(k.endswith(".bias") for k in W):
        abl.append("biases")
    if any("q_norm" in k for k in W):
        abl.append("qk_norm")
    if rp["rope_type"] != "default":
        abl.append("rope_scaling")
    info["ablation_maxdiff"] = {a: float(np.abs(np_forward(jcfg, W, ids, ablate=(a,)) - npl).max())
                                for a in abl}
    if os.path.exists(os.path.join(folder, "config_oldstyle.json")):
        with open(os.path.join(folder, "config_oldstyle.json")) as f:
            ocfg = json.load(f)
        info["numpy_oldstyle_vs_hf_maxdiff"] = float(np.abs(np_forward(ocfg, W, ids) - logits).max())

    info["files"] = {f: {"bytes": os.path.getsize(os.path.join(folder, f)),
                         "sha256": sha256(os.path.join(folder, f))}
                     for f in sorted(os.listdir(folder))}
    info["folder_bytes"] = sum(v["bytes"] for v in info["files"].values())
    info["config_json"] = jcfg
    return info


README_HEAD = """# Random-weight reference checkpoints

Tiny random-weight models written by HF transformers `save_pretrained` (safetensors),
with reference logits, for ptq's forward-pass and config-parser tests.

Generated by `tests/data/make_random_checkpoints.py` (run from the repo root):

    python3 tests/data/make_random_checkpoints.py --out tests/data/models

Versions: torch {torch}, transformers {tf}, numpy {np}, python {py}.

All models: vocab 512, hidden 64, 4 attention heads, 2 kv heads, intermediate 128,
2 layers, SiLU MLP. Weights ~ N(0, {ws}), RMSNorm weights (incl. q/k norms) ~ 1 + N(0, {ns}),
biases ~ N(0, {bs}); fixed seeds; cast to the storage dtype before saving.

Per folder:
- `ref_ids.ids`: int32 little-endian, {T} token ids (no BOS; drawn from [3, 512)).
- `ref_logits.f32`: float32 little-endian, row-major [{T}, 512]: logits for every position
  of the single sequence `ref_ids` (causal, positions 0..{Tm1}, no cache). Computed by
  reloading the saved checkpoint with `dtype=torch.float32`, `attn_implementation="eager"`,
  on the CPU, so exactly the stored fp16/bf16 values are used.

`MANIFEST.json` holds, per model: file sizes and sha256, the config.json as written, tensor
shapes, logits stats, the max |diff| between the HF logits and an independent numpy float64
forward pass in the script (`numpy_vs_hf_maxdiff`), and ablations (`ablation_maxdiff`: the
max |logit change| when one component is neutralised: norm weights -> 1, biases -> 0,
q/k norms removed, rope removed, llama3 scaling removed) to show each component matters.

Reproducibility: rerunning the script reproduces the safetensors files, configs and
`ref_ids.ids` bit for bit (checked: a 2-core CPU box and the 16-core GPU machine, same
torch/transformers); `ref_logits.f32` then differs only in the last bits (max |diff| 4e-6
between those two runs, logits |max| about 6). The committed files come from the GPU machine
(the model itself ran on its CPU). An fp32 C++ forward pass should match to about 1e-4 absolute.

Note: transformers >= 5 writes rope settings as a `rope_parameters` object in config.json
(`{{"rope_type": ..., "rope_theta": ..., ...}}`), not as top-level `rope_theta` + `rope_scaling`,
and writes `dtype` instead of `torch_dtype`. `config_oldstyle.json` (llama3 folders) is the same
config in the old form: top-level `rope_theta`, `rope_scaling` = {{rope_type, factor,
low_freq_factor, high_freq_factor, original_max_position_embeddings}}, and `torch_dtype`.

## Models
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    os.makedirs(args.out, exist_ok=True)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "numpy": np.__version__, "python": sys.version.split()[0]}
    print("versions:", versions, flush=True)
    manifest = {"versions": versions, "models": {}, "errors": {}}
    for name, spec in model_specs().items():
        if args.only and name not in args.only:
            continue
        try:
            info = build_one(name, spec, args.out)
            manifest["models"][name] = info
            print(f"== {name}: folder {info['folder_bytes']} B, numpy-vs-hf "
                  f"{info['numpy_vs_hf_maxdiff']:.2e}, logits std {info['logits_std']:.3f}, "
                  f"top1 {info['mean_top1_prob']:.3f}, ablations {info['ablation_maxdiff']}", flush=True)
            for k in ("num_shards", "max_shard_size", "oldstyle_matches_new", "oldstyle_logits_maxdiff",
                      "numpy_oldstyle_vs_hf_maxdiff", "llama3_bands"):
                if k in info:
                    print(f"   {k}: {info[k]}")
            print("   config.json rope:", {k: info["config_json"].get(k) for k in
                                           ("rope_parameters", "rope_theta", "rope_scaling", "dtype",
                                            "torch_dtype") if k in info["config_json"]})
        except Exception as e:  # keep going so one run yields as much as possible
            import traceback
            traceback.print_exc()
            manifest["errors"][name] = repr(e)
    with open(os.path.join(args.out, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(README_HEAD.format(torch=versions["torch"], tf=versions["transformers"],
                                   np=versions["numpy"], py=versions["python"], ws=WEIGHT_STD,
                                   ns=NORM_STD, bs=BIAS_STD, T=SEQ_LEN, Tm1=SEQ_LEN - 1))
        for name, info in manifest["models"].items():
            f.write(f"\n### {name}\n\n{info['exercises']}\n\n")
            f.write(f"- storage dtype {info['dtype']}; folder {info['folder_bytes']} bytes; "
                    f"files: {', '.join(info['files'])}\n")
            f.write(f"- numpy-vs-HF max |diff| {info['numpy_vs_hf_maxdiff']:.2e}; logits std "
                    f"{info['logits_std']:.3f}; ablation max |diff|: "
                    + ", ".join(f"{k} {v:.3f}" for k, v in info["ablation_maxdiff"].items()) + "\n")
    if manifest["errors"]:
        print("ERRORS:", manifest["errors"])
        sys.exit(1)


if __name__ == "__main__":
    main()
