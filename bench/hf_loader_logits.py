#!/usr/bin/env python3
"""Logits of a packed checkpoint as Hugging Face transformers loads it.

Usage: hf_loader_logits.py MODEL_DIR IDS_FILE OUT_F32 [cuda|cpu] [--int8-range-127]
                           [--float32-scales]
Loads MODEL_DIR with AutoModelForCausalLM in float32 (a GPTQ,
compressed-tensors or bitsandbytes folder goes through transformers' own
quantizer integration; bitsandbytes' 4-bit Linears compute in float32 too),
runs the int32 token ids of IDS_FILE as one sequence and writes
the logits as float32 [tokens, vocab]. Prints the package versions used.

--int8-range-127 is a diagnosis, not the loader as shipped: compressed-tensors
simulates int8 activations on [-128, 127] (a dynamic scale of absmax / 127.5);
SmoothQuant, vLLM's int8 kernels' scale (absmax / 127) and ptq use [-127, 127].
The flag swaps compressed-tensors' range for that one, to show that the
range is the whole difference.

--float32-scales, also a diagnosis: GPTQModel's torch kernels dequantize a
float32 model's GPTQ and AWQ weights as float16 scale times code in float16
(PyTorch promotes the integer codes to the scales' dtype), which rounds each
weight to float16; ptq multiplies in float32. The flag casts the loaded
Linears' scales to float32 to show that this rounding is the whole difference.
"""

import sys
from importlib import metadata

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM


def use_int8_range_127():
    import compressed_tensors.quantization.lifecycle.forward as forward
    import compressed_tensors.quantization.utils.helpers as helpers

    original = helpers.calculate_range

    def calculate_range(args, device):
        lo, hi = original(args, device)
        if args.num_bits == 8 and args.type == "int":
            lo = -hi
        return lo, hi

    forward.calculate_range = helpers.calculate_range = calculate_range


def use_float32_scales(model):
    for module in model.modules():
        scales = getattr(module, "scales", None)
        if isinstance(scales, torch.Tensor) and scales.dtype == torch.float16:
            module.scales = scales.float()


def main():
    flags = {"--int8-range-127", "--float32-scales"}
    args = [a for a in sys.argv[1:] if a not in flags]
    if "--int8-range-127" in sys.argv:
        use_int8_range_127()
    model_dir, ids_path, out_path = args[:3]
    device = args[3] if len(args) > 3 else "cpu"
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    for name in ("compressed-tensors", "bitsandbytes", "gptqmodel", "optimum"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    print("versions", versions)
    ids = np.fromfile(ids_path, dtype=np.int32).astype(np.int64)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, device_map=device)
    for module in model.modules():  # bitsandbytes: its Linears' compute dtype is the config's
        if hasattr(module, "compute_dtype"):
            module.compute_dtype = torch.float32
    if "--float32-scales" in sys.argv:
        use_float32_scales(model)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(ids[None], device=device)).logits[0]
    logits.float().cpu().numpy().astype(np.float32).tofile(out_path)
    print("logits", tuple(logits.shape), "->", out_path)


if __name__ == "__main__":
    main()
