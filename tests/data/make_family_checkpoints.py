#!/usr/bin/env python3
"""Random-weight checkpoints of the families of issue 17 (Gemma 2, Gemma 3, Phi-3 with
and without LongRoPE, Mixtral, Qwen3-MoE), small but with the real structure, and
their golden outputs from transformers.

    python3 tests/data/make_family_checkpoints.py --out tests/data/models

Per folder, as make_random_checkpoints.py writes them (its README.md says how they
are used): config.json, the safetensors as transformers' save_pretrained writes them,
ref_ids.ids (96 int32 ids) and ref_logits.f32 ([96, vocab] float32 logits of the saved
checkpoint reloaded in float32, eager attention, on the CPU). The mixture-of-experts
models also get router_logits.f32 ([layers, 96, experts]: each layer's router logits
for those ids) and a second folder `<name>-fused` holding the same weights in the
fused layout transformers v5 holds in memory (save_pretrained of 5.17 writes one
Linear per expert, v4's names); same config.json, same goldens. MANIFEST.json lists each folder's tensors (name, dtype, shape), its
config and the logits' statistics; a family that fails to build is recorded there with
its error and the others go on.

Sizes: vocab 512, hidden 64, 4 query heads / 2 KV heads of 16, intermediate 128,
4 layers (Gemma's sliding and global layers alternate, window 16, shorter than the
96 ids); weights ~ N(0, 0.15), norm weights ~ 1 + N(0, 0.25) (Gemma's stored (1 + w)
weights ~ N(0, 0.25)), biases ~ N(0, 0.2), router weights ~ N(0, 0.5).
Requires torch and transformers >= 5.
"""

import argparse
import json
import pathlib
import struct
import traceback

import numpy as np
import torch
import transformers

SEQ_LEN = 96
VOCAB = 512
COMMON = dict(vocab_size=VOCAB, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, intermediate_size=128, num_hidden_layers=4, max_position_embeddings=256,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)
GEMMA_LAYERS = ["sliding_attention", "full_attention"] * 2


def families():
    t = transformers
    longrope = {"rope_type": "longrope", "rope_theta": 10000.0,
                "original_max_position_embeddings": 32,
                "short_factor": [1.0 + 0.1 * i for i in range(8)],
                "long_factor": [1.0 + 0.7 * i for i in range(8)]}
    return {
        "gemma2": (t.Gemma2Config, t.Gemma2ForCausalLM, torch.bfloat16, 2001, dict(
            COMMON, hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24,
            attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=16,
            layer_types=GEMMA_LAYERS, rms_norm_eps=1e-6, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
        "gemma3": (t.Gemma3TextConfig, t.Gemma3ForCausalLM, torch.bfloat16, 2002, dict(
            COMMON, hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24,
            sliding_window=16, layer_types=GEMMA_LAYERS, rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                             "sliding_attention": {"rope_type": "default",
                                                   "rope_theta": 10000.0}})),
        "phi3": (t.Phi3Config, t.Phi3ForCausalLM, torch.float16, 2003, dict(
            COMMON, hidden_act="silu", rms_norm_eps=1e-5, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
        "phi3-longrope": (t.Phi3Config, t.Phi3ForCausalLM, torch.float16, 2004, dict(
            COMMON, hidden_act="silu", rms_norm_eps=1e-5, tie_word_embeddings=False,
            original_max_position_embeddings=32, rope_parameters=longrope)),
        "mixtral": (t.MixtralConfig, t.MixtralForCausalLM, torch.bfloat16, 2005, dict(
            COMMON, hidden_act="silu", num_local_experts=4, num_experts_per_tok=2,
            rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=None,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
        "qwen3moe": (t.Qwen3MoeConfig, t.Qwen3MoeForCausalLM, torch.bfloat16, 2006, dict(
            COMMON, hidden_act="silu", num_experts=8, num_experts_per_tok=2,
            moe_intermediate_size=32, norm_topk_prob=True, decoder_sparse_step=1,
            mlp_only_layers=[], rms_norm_eps=1e-6, tie_word_embeddings=False,
            attention_bias=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    }


@torch.no_grad()
def randomize(model, seed, gemma):
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            v = (0.0 if gemma else 1.0) + 0.25 * torch.randn(p.shape, generator=g)
        elif name.endswith(".bias"):
            v = 0.2 * torch.randn(p.shape, generator=g)
        elif ".gate." in name or name.endswith("router.weight"):
            v = 0.5 * torch.randn(p.shape, generator=g)
        else:
            v = 0.15 * torch.randn(p.shape, generator=g)
        p.copy_(v.to(p.dtype))


def tensors_of(folder):
    out = []
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        out += [[k, v["dtype"], v["shape"]] for k, v in sorted(header.items())
                if k != "__metadata__"]
    return out


def fused_layout(model, src, dst):
    """The same weights as transformers v5 holds them in memory: each layer's experts
    fused (experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I]).
    save_pretrained converts them back to one Linear per expert (v4's names)."""
    from safetensors.torch import save_file
    dst.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    (dst / "config.json").write_text((src / "config.json").read_text())


def build(name, spec, out):
    cfg_cls, model_cls, dtype, seed, kw = spec
    torch.manual_seed(seed)
    model = model_cls(cfg_cls(**kw)).eval()
    randomize(model, seed, name.startswith("gemma"))
    folder = out / name
    model.to(dtype).save_pretrained(folder)
    (folder / "generation_config.json").unlink(missing_ok=True)
    ids = torch.from_numpy(np.random.default_rng(seed).integers(3, VOCAB, SEQ_LEN)).long()
    ids.numpy().astype("<i4").tofile(folder / "ref_ids.ids")
    ref = model_cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    moe = "experts" in json.dumps(tensors_of(folder))
    with torch.no_grad():
        result = ref(ids[None], output_router_logits=moe) if moe else ref(ids[None])
    logits = result.logits[0].float().numpy()
    logits.astype("<f4").tofile(folder / "ref_logits.f32")
    entry = {"config": json.loads((folder / "config.json").read_text()),
             "tensors": tensors_of(folder), "dtype": str(dtype),
             "logits_absmax": float(np.abs(logits).max()), "logits_std": float(logits.std())}
    if moe:
        router = np.stack([r.float().numpy().reshape(SEQ_LEN, -1) for r in result.router_logits])
        router.astype("<f4").tofile(folder / "router_logits.f32")
        entry["router_logits_shape"] = list(router.shape)
        fused = out / f"{name}-fused"
        fused_layout(model, folder, fused)
        for f in ("ref_ids.ids", "ref_logits.f32", "router_logits.f32"):
            (fused / f).write_bytes((folder / f).read_bytes())
        entry["fused_tensors"] = tensors_of(fused)
        try:  # transformers' own reading of that layout
            check = model_cls.from_pretrained(fused, dtype=torch.float32,
                                              attn_implementation="eager").eval()
            with torch.no_grad():
                again = check(ids[None]).logits[0].float().numpy()
            entry["fused_reload_maxdiff"] = float(np.abs(again - logits).max())
        except Exception:
            entry["fused_reload_error"] = traceback.format_exc()
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=pathlib.Path, required=True)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    manifest = {"torch": torch.__version__, "transformers": transformers.__version__}
    for name, spec in families().items():
        if args.only and name not in args.only:
            continue
        try:
            manifest[name] = build(name, spec, args.out)
            print(f"{name}: ok, {len(manifest[name]['tensors'])} tensors", flush=True)
        except Exception:  # recorded, and the other families go on
            manifest[name] = {"error": traceback.format_exc()}
            print(f"{name}: FAILED\n{manifest[name]['error']}", flush=True)
    (args.out / "FAMILIES.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
