#!/usr/bin/env python3
"""A Llama checkpoint with its norms folded and its residual stream rotated (issue 19's probe).

    python3 bench/rotate_checkpoint.py SRC OUT [--seed 0]

The model computes the same function (to float32 rounding) with other weights, whose
rows and columns mix the residual stream's features, as QuaRot and SpinQuant do before
quantizing; this script lets ptq's recipes be scored on such weights before the
transform is built into ptq.

- Each RMSNorm's weight g is folded into the Linears that read it (W <- W diag(g), the
  norm's weight set to 1): input_layernorm into q/k/v, post_attention_layernorm into
  gate/up, model.norm into lm_head.
- With Q an orthogonal d x d matrix (d = hidden size, a power of 2: a Walsh-Hadamard
  matrix with random signs, Q = diag(s) H / sqrt(d)), the stream x becomes x Q:
  embeddings E <- E Q; every Linear reading the stream W <- W Q; every Linear writing
  into it (o_proj, down_proj) W <- Q^T W; lm_head <- lm_head Q. RMSNorm without weight
  commutes with Q (it divides by |x| / sqrt(d), which Q keeps).
- A tied head cannot stay tied (the final norm's weight is folded into the head alone),
  so the output has its own lm_head.weight and tie_word_embeddings false.

Writes OUT/model.safetensors (float32), OUT/config.json and the tokenizer files.
"""

import argparse
import json
import pathlib
import shutil
import struct

import numpy as np

DTYPES = {"F16": np.float16, "F32": np.float32}  # BF16: its bits widened by hand


def read_safetensors(path):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = data[8 + n + a : 8 + n + b]
        if t["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=DTYPES[t["dtype"]]).astype(np.float32)
        out[name] = arr.reshape(t["shape"]).astype(np.float64)
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        b = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def hadamard(d, seed):
    assert d & (d - 1) == 0, f"hidden size {d} is not a power of 2"
    h = np.ones((1, 1))
    while h.shape[0] < d:
        h = np.block([[h, h], [h, -h]])
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=d)
    return signs[:, None] * h / np.sqrt(d)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("src", type=pathlib.Path)
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    config = json.loads((args.src / "config.json").read_text())
    assert config["model_type"] == "llama", "the probe folds Llama's norms only"
    w = {}
    for f in sorted(args.src.glob("*.safetensors")):
        w.update(read_safetensors(f))
    d = config["hidden_size"]
    q = hadamard(d, args.seed)
    if "lm_head.weight" not in w:
        w["lm_head.weight"] = w["model.embed_tokens.weight"].copy()
    for i in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{i}."
        for norm, readers in (("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                              ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"))):
            g = w[prefix + norm + ".weight"]
            for r in readers:
                w[prefix + r + ".weight"] = (w[prefix + r + ".weight"] * g[None, :]) @ q
            w[prefix + norm + ".weight"] = np.ones(d)
        for writer in ("self_attn.o_proj", "mlp.down_proj"):
            w[prefix + writer + ".weight"] = q.T @ w[prefix + writer + ".weight"]
    w["lm_head.weight"] = (w["lm_head.weight"] * w["model.norm.weight"][None, :]) @ q
    w["model.norm.weight"] = np.ones(d)
    w["model.embed_tokens.weight"] = w["model.embed_tokens.weight"] @ q
    args.out.mkdir(parents=True, exist_ok=True)
    write_safetensors(args.out / "model.safetensors", w)
    config["tie_word_embeddings"] = False
    config["dtype"] = "float32"
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (args.src / name).exists():
            shutil.copy(args.src / name, args.out / name)


if __name__ == "__main__":
    main()
