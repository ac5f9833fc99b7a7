#!/usr/bin/env python3
"""A random-weight checkpoint of a real model's shapes, for the GPU path's speed
runs (docs/bench/cuda.md), and random calibration ids for it.

    python3 bench/make_shaped_checkpoint.py --out DIR [--layers 32] [--shape llama3-8b]
        [--ids FILE --windows 128 --seqlen 2048] [--seed 0] [--header-only]

Writes DIR/config.json (LlamaForCausalLM) and DIR/model.safetensors in bfloat16:
Linear weights N(0, 0.02^2), embeddings and LM head N(0, 0.02^2), norm weights 1.
--layers keeps the first N blocks (per-block timings extrapolate to the whole
model). --ids writes windows x seqlen int32 ids, uniform over the vocabulary.
Runs with torch and safetensors (the GPU machine has both); uses the GPU when
there is one, only to draw the numbers faster. --header-only needs numpy alone.
"""
import argparse
import json
import os

import numpy as np

SHAPES = {
    # hidden, intermediate, heads, kv heads, vocab, rope theta
    "llama3-8b": (4096, 14336, 32, 8, 128256, 500000.0),
    "llama3-70b": (8192, 28672, 64, 8, 128256, 500000.0),
}


def tensor_shapes(shape, layers):
    """Every tensor's name, dimensions and whether it is a norm (ones)."""
    hidden, inter, heads, kv, vocab, _ = shape
    head_dim = hidden // heads
    out = {"model.embed_tokens.weight": ((vocab, hidden), False),
           "lm_head.weight": ((vocab, hidden), False),
           "model.norm.weight": ((hidden,), True)}
    for i in range(layers):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = ((hidden,), True)
        out[p + "post_attention_layernorm.weight"] = ((hidden,), True)
        out[p + "self_attn.q_proj.weight"] = ((heads * head_dim, hidden), False)
        out[p + "self_attn.k_proj.weight"] = ((kv * head_dim, hidden), False)
        out[p + "self_attn.v_proj.weight"] = ((kv * head_dim, hidden), False)
        out[p + "self_attn.o_proj.weight"] = ((hidden, heads * head_dim), False)
        out[p + "mlp.gate_proj.weight"] = ((inter, hidden), False)
        out[p + "mlp.up_proj.weight"] = ((inter, hidden), False)
        out[p + "mlp.down_proj.weight"] = ((hidden, inter), False)
    return out


def tensors(shape, layers, generator, device):
    import torch

    def normal(size):
        t = torch.randn(*size, generator=generator, device=device, dtype=torch.float32)
        return (t * 0.02).to(torch.bfloat16).cpu()

    return {name: torch.ones(*dims, dtype=torch.bfloat16) if ones else normal(dims)
            for name, (dims, ones) in tensor_shapes(shape, layers).items()}


def write_header_only(shape, layers, path):
    """The safetensors header of the checkpoint, its data a sparse hole of zeros:
    enough for `ptq quantize --dry-run` on shapes too large to write."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dims, _) in tensor_shapes(shape, layers).items():
        size = 2 * int(np.prod(dims))
        header[name] = {"dtype": "BF16", "shape": list(dims), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        f.truncate(8 + len(text) + offset)


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
    ap.add_argument("--header-only", action="store_true",
                    help="write the header and leave the data a sparse hole (for --dry-run)")
    a = ap.parse_args()
    shape = SHAPES[a.shape]
    layers = a.layers if a.layers is not None else {"llama3-8b": 32, "llama3-70b": 80}[a.shape]
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config(shape, layers), f, indent=2)
    path = os.path.join(a.out, "model.safetensors")
    if a.header_only:
        write_header_only(shape, layers, path)
    else:  # torch and safetensors only here: --header-only runs without them
        import torch
        from safetensors.torch import save_file
        device = "cuda" if torch.cuda.is_available() else "cpu"
        generator = torch.Generator(device=device).manual_seed(a.seed)
        save_file(tensors(shape, layers, generator, device), path, metadata={"format": "pt"})
    if a.ids:
        rng = np.random.default_rng(a.seed)
        rng.integers(0, shape[4], size=a.windows * a.seqlen, dtype=np.int32).astype("<i4").tofile(a.ids)


if __name__ == "__main__":
    main()
