#!/usr/bin/env python3
"""Train a real-text model of another family than the fixtures' Llamas.

    python3 tests/data/train_model.py ARCH DATA OUT

ARCH:
- qwen2 (issue 19): a Qwen2-architecture model of about small's size, so that quality
  claims are checked on another family. Hidden 512, 6 layers, 8 query heads / 2 KV
  heads (head_dim 64), SwiGLU MLP 1536, q/k/v biases, tied embeddings, RMSNorm eps
  1e-6, RoPE theta 1e6; about 22.3 M parameters; small's tokenizer.
- qwen3moe (issue 17): a Qwen3-MoE model of tiny's size, so that the mixture code is
  checked on a router that training made decisive and experts that differ (the test
  models built from tiny's MLP have neither). Hidden 256, 4 layers, 4 query heads / 2
  KV heads (head_dim 64), q/k norms, in every layer 4 experts of SwiGLU 256 with top-2
  routing (probabilities renormalized), tied embeddings; about 4.4 M parameters; tiny's
  tokenizer. Trained with transformers' load-balancing loss (coefficient 0.01), which
  keeps every expert in use; the saved config has it switched off.

DATA holds (bench/validation_split.py writes the texts; the rest are fixture files):
    train_generic.txt, train_domain.txt       training text (validation pieces removed)
    validation_generic.txt, validation_domain.txt
    tokenizer.json, tokenizer_config.json     the fixture model's byte-level BPE (id 0 = EOS)
    eval_generic.ids, eval_domain.ids         its tokenized test texts (same tokenizer)
OUT receives the float16 checkpoint (in shards of at most 15 MB), config.json, the two
tokenizer files, training.json (hyper-parameters, loss curve, fp32 perplexities on the
test and validation texts by PROTOCOL.md's evaluation protocol) and logits_prompt.f32
([64, vocab] float32 logits of the first 64 eval_generic ids, from the saved checkpoint
reloaded in float32 with eager attention on the CPU).

Training as the fixtures' models were made (transformers, real text, its own seed):
AdamW, bf16 autocast, random 512-token windows of the training text (each text
tokenized whole and followed by EOS), fixed seed and deterministic kernels (attention
by PyTorch's math kernel: the same GPU and versions give the same bytes).

tiny and small also saw WikiText-2 validation, which the fixtures do not ship; without
text in its conventions a model sees " ," (a space before every comma), " @-@ " and
" 's" for the first time in the test text (a first try scored worse than uniform
there). So every third paragraph of the generic training text is rewritten in
WikiText's conventions (wikitext_style): one line per paragraph, punctuation and
clitics split off by spaces, @-@ / @,@ / @.@ inside words and numbers. The validation
and test texts are never touched.
"""

import json
import math
import pathlib
import re
import shutil
import sys
import time

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

SEED = 0
SEQ = 512
BATCH = 32
WARMUP = 100
LR = 1.5e-3
MIN_LR = 1.5e-4
WEIGHT_DECAY = 0.1
EVAL_EVERY = 250
EOS = 0

COMMON = dict(
    num_key_value_heads=2, head_dim=64, hidden_act="silu", max_position_embeddings=2048,
    rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=EOS, eos_token_id=EOS,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
)
# Per ARCH: config and model classes, config, training steps.
ARCHS = {
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(
        COMMON, vocab_size=8192, hidden_size=512, intermediate_size=1536, num_hidden_layers=6,
        num_attention_heads=8, use_sliding_window=False), 1200),
    "qwen3moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM, dict(
        COMMON, vocab_size=2048, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=256,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        output_router_logits=True, router_aux_loss_coef=0.01), 1500),
}


WIKITEXT_EVERY = 3
INSIDE = {",": "\x01", ".": "\x02", "-": "\x03"}


def wikitext_style(paragraph):
    s = " ".join(paragraph.split())
    s = s.translate(str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"}))
    s = re.sub(r"(?<=\d)([,.])(?=\d)", lambda m: INSIDE[m.group(1)], s)
    s = re.sub(r"(?<=\w)-(?=\w)", INSIDE["-"], s)
    s = re.sub(r"(?i)(\w)(n't)\b", r"\1 \2", s)
    s = re.sub(r"(?i)(\w)('s|'re|'ve|'ll|'d|'m)\b", r"\1 \2", s)
    s = re.sub(r'([,.;:!?()"\[\]])', r" \1 ", s)
    s = s.replace(INSIDE[","], " @,@ ").replace(INSIDE["."], " @.@ ").replace(INSIDE["-"], " @-@ ")
    return " " + " ".join(s.split()) + " \n"


def training_text(path, wikitext):
    text = path.read_text(encoding="utf-8")
    if not wikitext:
        return text
    paragraphs = text.split("\n\n")
    return "\n\n".join(wikitext_style(p) if i % WIKITEXT_EVERY == 0 and p.strip() else p
                        for i, p in enumerate(paragraphs))


def tokenize(tok, text):
    return np.array(tok.encode(text).ids + [EOS], dtype=np.int64)


def lr_at(step, steps):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    t = (step - WARMUP) / max(1, steps - WARMUP)
    return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * t))


@torch.no_grad()
def protocol_nll(model, ids, device, batch=32):
    """PROTOCOL.md: 512-token windows, tokens 1..511 predicted; (nll sum, count)."""
    n = len(ids) // SEQ
    windows = torch.from_numpy(np.asarray(ids[: n * SEQ], dtype=np.int64).reshape(n, SEQ))
    total, count = 0.0, 0
    for i in range(0, n, batch):
        x = windows[i : i + batch].to(device)
        logits = model(x).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        total -= logp.gather(-1, x[:, 1:, None]).double().sum().item()
        count += x[:, 1:].numel()
    return total, count


def evaluate(model, texts, device):
    out = {}
    for name, ids in texts.items():
        nll, count = protocol_nll(model, ids, device)
        out[name] = {"ppl": math.exp(nll / count), "nll_sum": nll, "tokens": count}
    return out


def train(arch, data, device):
    config_class, model_class, config, steps = ARCHS[arch]
    tok = Tokenizer.from_file(str(data / "tokenizer.json"))
    train_ids = np.concatenate([tokenize(tok, training_text(data / "train_generic.txt", True)),
                                tokenize(tok, training_text(data / "train_domain.txt", False))])
    val = {k: tokenize(tok, (data / f"validation_{k}.txt").read_text(encoding="utf-8"))
           for k in ("generic", "domain")}
    torch.manual_seed(SEED)
    model = model_class(config_class(**config)).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    rng = np.random.default_rng(SEED)
    curve, start = [], time.time()
    for step in range(steps):
        starts = rng.integers(0, len(train_ids) - SEQ - 1, BATCH)
        x = torch.from_numpy(np.stack([train_ids[s : s + SEQ] for s in starts])).to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % EVAL_EVERY == 0 or step == 0:
            model.eval()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                v = {k: round(math.log(r["ppl"]), 4) for k, r in evaluate(model, val, device).items()}
            model.train()
            curve.append({"step": step + 1, "train_loss": round(loss.item(), 4),
                          "validation_loss": v, "seconds": round(time.time() - start, 1)})
            print(curve[-1], flush=True)
    return model, len(train_ids), curve


def main():
    arch, data, out = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    config_class, model_class, config, steps = ARCHS[arch]
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    # cuDNN's and the memory-efficient attention backward add in a varying
    # order; the math kernel repeats its bits, so a second run gives the same model.
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    device = "cuda"
    model, tokens, curve = train(arch, data, device)
    # A training switch only (the MoE's): inference ignores it, and ptq refuses what it does not know.
    if "output_router_logits" in config:
        model.config.output_router_logits = False
    model.to(torch.float16).save_pretrained(out, max_shard_size="15MB")
    (out / "generation_config.json").unlink(missing_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(data / name, out / name)

    # Goldens from the saved float16 weights, computed in float32.
    ref = model_class.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    ref.eval()
    eval_ids = {k: np.fromfile(data / f"eval_{k}.ids", dtype="<i4") for k in ("generic", "domain")}
    prompt = torch.from_numpy(eval_ids["generic"][:64].astype(np.int64))[None]
    with torch.no_grad():
        ref(prompt).logits[0].float().numpy().astype("<f4").tofile(out / "logits_prompt.f32")
    tok = Tokenizer.from_file(str(data / "tokenizer.json"))
    texts = dict(eval_ids)
    texts.update({f"validation_{k}": tokenize(tok, (data / f"validation_{k}.txt").read_text(
        encoding="utf-8")) for k in ("generic", "domain")})
    fp32 = evaluate(ref.to(device), texts, device)
    record = {
        "architecture": model_class.__name__, "config": config,
        "params": sum(p.numel() for p in model.parameters()),
        "training_tokens": tokens, "steps": steps, "batch": BATCH, "seq": SEQ, "lr": LR,
        "min_lr": MIN_LR, "wikitext_style_every": WIKITEXT_EVERY, "warmup": WARMUP, "weight_decay": WEIGHT_DECAY, "seed": SEED,
        "curve": curve, "fp32": fp32,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name(),
    }
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(fp32, indent=1))


if __name__ == "__main__":
    main()
