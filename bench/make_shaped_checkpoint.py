#!/usr/bin/env python3
"""A random-weight checkpoint of a real model's shapes, for the GPU path's speed
runs (docs/bench/cuda.md), and random calibration ids for it.

    python3 bench/make_shaped_checkpoint.py --out DIR [--layers 32] [--shape llama3-8b]
        [--ids FILE --windows 128 --seqlen 2048] [--seed 0]

Writes DIR/config.json (LlamaForCausalLM) and DIR/model.safetensors in bfloat16:
Linear weights N(0, 0.02^2), embeddings and LM head N(0, 0.02^2), norm weights 1.
--layers keeps the first N blocks (per-block timings extrapolate to the whole
model). --ids writes windows x seqlen int32 ids, uniform over the vocabulary.
Runs with torch and safetensors (the GPU machine has both); uses the GPU when
there is one, only to draw the numbers faster.
"""
import argparse
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

SHAPES = {
    # hidden, intermediate, heads, kv heads, vocab, rope theta
    "llama3-8b": (4096, 14336, 32, 8, 128256, 500000.0),
    "llama3-70b": (8192, 28672, 64, 8, 128256, 500000.0),
}


def tensors(shape, layers, generator, device):
    hidden, inter, heads, kv, vocab, _ = shape
    head_dim = hidden // heads

    def normal(*size):
        t = torch.randn(*size, generator=generator, device=device, dtype=torch.float32)
        return (t * 0.02).to(torch.bfloat16).cpu()

    out = {"model.embed_tokens.weight": normal(vocab, hidden),
           "lm_head.weight": normal(vocab, hidden),
           "model.norm.weight": torch.ones(hidden, dtype=torch.bfloat16)}
    for i in range(layers):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
        out[p + "post_attention_layernorm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
        out[p + "self_attn.q_proj.weight"] = normal(heads * head_dim, hidden)
        out[p + "self_attn.k_proj.weight"] = normal(kv * head_dim, hidden)
        out[p + "self_attn.v_proj.weight"] = normal(kv * head_dim, hidden)
        out[p + "self_attn.o_proj.weight"] = normal(hidden, heads * head_dim)
        out[p + "mlp.gate_proj.weight"] = normal(inter, hidden)
        out[p + "mlp.up_proj.weight"] = normal(inter, hidden)
        out[p + "mlp.down_proj.weight"] = normal(hidden, inter)
    return out


def config(shape, layers):
    hidden, inter, heads, kv, vocab, theta = shape
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "hidden_size": hidden, "intermediate_size": inter, "num_attention_heads": heads,
            "num_key_value_heads": kv, "head_dim": hidden // heads, "num_hidden_layers": layers,
            "vocab_size": vocab, "rms_norm_eps": 1e-5, "max_position_embeddings": 8192,
            "rope_parameters": {"rope_theta": theta, "rope_type": "default"},
            "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
            "dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": 128001}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b")
    ap.add_argument("--layers", type=int, default=None, help="blocks to keep (default: all)")
    ap.add_argument("--ids")
    ap.add_argument("--windows", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    shape = SHAPES[a.shape]
    layers = a.layers if a.layers is not None else {"llama3-8b": 32, "llama3-70b": 80}[a.shape]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device=device).manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config(shape, layers), f, indent=2)
    save_file(tensors(shape, layers, generator, device), os.path.join(a.out, "model.safetensors"),
              metadata={"format": "pt"})
    if a.ids:
        rng = np.random.default_rng(a.seed)
        rng.integers(0, shape[4], size=a.windows * a.seqlen, dtype=np.int32).astype("<i4").tofile(a.ids)


if __name__ == "__main__":
    main()
