#!/usr/bin/env python3
"""Logits of a packed checkpoint as Hugging Face transformers loads it.

Usage: hf_loader_logits.py MODEL_DIR IDS_FILE OUT_F32 [cuda|cpu]
Loads MODEL_DIR with AutoModelForCausalLM in float32 (a GPTQ,
compressed-tensors or bitsandbytes folder goes through transformers' own
quantizer integration; bitsandbytes' 4-bit Linears compute in float32 too),
runs the int32 token ids of IDS_FILE as one sequence and writes
the logits as float32 [tokens, vocab]. Prints the package versions used.
"""

import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    model_dir, ids_path, out_path = sys.argv[1:4]
    device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    for name in ("compressed_tensors", "bitsandbytes"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    print("versions", versions)
    ids = np.fromfile(ids_path, dtype=np.int32).astype(np.int64)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, device_map=device)
    for module in model.modules():  # bitsandbytes: its Linears' compute dtype is the config's
        if hasattr(module, "compute_dtype"):
            module.compute_dtype = torch.float32
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(ids[None], device=device)).logits[0]
    logits.float().cpu().numpy().astype(np.float32).tofile(out_path)
    print("logits", tuple(logits.shape), "->", out_path)


if __name__ == "__main__":
    main()
