#!/usr/bin/env python3
"""Write a random-weight checkpoint with a real 7B model's widths, any number of layers.

For the memory and speed benches of real model sizes (bench/wide_model.sh): the
widths, dtype and file layout are those of the real checkpoints, the weights are
noise. Nothing here is committed; benches delete what they write.

Usage:
    python3 tests/data/make_wide_checkpoint.py --shape llama2-7b --layers 8 --out DIR
    python3 tests/data/make_wide_checkpoint.py --shape qwen2.5-7b --layers 2 --out DIR

Shapes:
    llama2-7b   Llama-2-7B: hidden 4096, MLP 11008, 32 heads (no GQA), vocab 32000,
                untied head; the Llama-2 tokenizer of the fixtures (32000 tokens).
    llama2-70b  Llama-2-70B: hidden 8192, MLP 28672, 64 heads over 8 KV heads;
                with --no-data only (for `ptq quantize --dry-run`'s projection).
    qwen2.5-7b  Qwen2.5-7B: hidden 3584, MLP 18944, 28 heads over 4 KV heads,
                q/k/v biases, vocab 152064, untied head; the GPT-2 byte-level BPE
                tokenizer of the fixtures (its ids are all below the vocab size,
                as Qwen's own tokenizer's are).

The folder holds config.json, the tokenizer files and bf16 safetensors shards of
at most --shard-gib GiB with model.safetensors.index.json, as transformers saves
them. With --no-data the shards are sparse files of the right size whose
tensors are all zero: enough for commands that read only the headers. Each
tensor's values come from a generator seeded by the tensor's name, so
a model with fewer layers is the first layers of one with more.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys

import numpy as np

LLAMA2 = dict(
    architectures=["LlamaForCausalLM"],
    model_type="llama",
    hidden_size=4096,
    intermediate_size=11008,
    num_attention_heads=32,
    num_key_value_heads=32,
    head_dim=128,
    vocab_size=32000,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    attention_bias=False,
    mlp_bias=False,
    hidden_act="silu",
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    torch_dtype="bfloat16",
)

SHAPES = {
    "llama2-7b": dict(config=LLAMA2, tokenizer="llama2-hf", qkv_bias=False),
    "llama2-70b": dict(
        config=dict(LLAMA2, hidden_size=8192, intermediate_size=28672, num_attention_heads=64,
                    num_key_value_heads=8),
        tokenizer="llama2-hf",
        qkv_bias=False,
    ),
    "qwen2.5-7b": dict(
        config=dict(
            architectures=["Qwen2ForCausalLM"],
            model_type="qwen2",
            hidden_size=3584,
            intermediate_size=18944,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=152064,
            max_position_embeddings=32768,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            hidden_act="silu",
            tie_word_embeddings=False,
            use_sliding_window=False,
            bos_token_id=50256,
            eos_token_id=50256,
            torch_dtype="bfloat16",
        ),
        tokenizer="gpt2",
        qkv_bias=True,
    ),
}

WEIGHT_STD = 0.02  # transformers' initializer_range
BIAS_STD = 0.02
NORM_STD = 0.05    # RMSNorm weights 1 + N(0, NORM_STD)


def tensor_plan(shape, layers):
    """[(name, [rows, cols] or [n], kind)] in the order transformers saves them."""
    c = shape["config"]
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    head_dim = c.get("head_dim", h // c["num_attention_heads"])
    q_out = c["num_attention_heads"] * head_dim
    kv_out = c["num_key_value_heads"] * head_dim
    plan = [("model.embed_tokens.weight", [v, h], "weight")]
    for layer in range(layers):
        p = f"model.layers.{layer}."
        plan.append((p + "input_layernorm.weight", [h], "norm"))
        for name, rows in (("q_proj", q_out), ("k_proj", kv_out), ("v_proj", kv_out)):
            plan.append((p + f"self_attn.{name}.weight", [rows, h], "weight"))
            if shape["qkv_bias"]:
                plan.append((p + f"self_attn.{name}.bias", [rows], "bias"))
        plan.append((p + "self_attn.o_proj.weight", [h, q_out], "weight"))
        plan.append((p + "post_attention_layernorm.weight", [h], "norm"))
        plan.append((p + "mlp.gate_proj.weight", [i, h], "weight"))
        plan.append((p + "mlp.up_proj.weight", [i, h], "weight"))
        plan.append((p + "mlp.down_proj.weight", [h, i], "weight"))
    plan.append(("model.norm.weight", [h], "norm"))
    plan.append(("lm_head.weight", [v, h], "weight"))
    return plan


def bf16_bytes(values):
    """float32 -> bfloat16 (round to nearest even), little-endian bytes."""
    bits = values.astype(np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return rounded.astype("<u2").tobytes()


def tensor_values(name, dims, kind):
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    std = {"weight": WEIGHT_STD, "bias": BIAS_STD, "norm": NORM_STD}[kind]
    values = rng.standard_normal(int(np.prod(dims)), dtype=np.float32) * np.float32(std)
    if kind == "norm":
        values += np.float32(1.0)
    return values


def shards_of(plan, shard_bytes):
    shards, size = [[]], 0
    for entry in plan:
        nbytes = 2 * int(np.prod(entry[1]))
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += nbytes
    return shards


def write_shard(path, entries, data):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, dims, _ in entries:
        nbytes = 2 * int(np.prod(dims))
        header[name] = {"dtype": "BF16", "shape": dims, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        if not data:
            f.truncate(8 + len(text) + offset)
            return
        for name, dims, kind in entries:
            f.write(bf16_bytes(tensor_values(name, dims, kind)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shard-gib", type=float, default=4.0)
    ap.add_argument("--no-data", action="store_true", help="sparse shards, all zeros")
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                                        "shared", "fixtures"))
    args = ap.parse_args()
    if args.layers < 1:
        sys.exit("--layers: at least 1")
    shape = SHAPES[args.shape]
    os.makedirs(args.out, exist_ok=True)
    config = dict(shape["config"], num_hidden_layers=args.layers)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    tokenizer_dir = os.path.join(args.fixtures, "tokenizers", shape["tokenizer"])
    for name in os.listdir(tokenizer_dir):
        shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(args.out, name))
    shards = shards_of(tensor_plan(shape, args.layers), int(args.shard_gib * 2**30))
    index = {"metadata": {"total_size": 0}, "weight_map": {}}
    for s, entries in enumerate(shards):
        name = f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors"
        write_shard(os.path.join(args.out, name), entries, not args.no_data)
        for tensor, dims, _ in entries:
            index["weight_map"][tensor] = name
            index["metadata"]["total_size"] += 2 * int(np.prod(dims))
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)


if __name__ == "__main__":
    main()
