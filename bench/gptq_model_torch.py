#!/usr/bin/env python3
"""Whole-model sequential GPTQ in PyTorch on the CPU: the timing baseline of bench/gptq_model.sh.

Our own implementation of the flow of IST-DASLab/gptq's llama.py (written from its
description, not copied): the inputs of decoder layer 0 are captured for every
calibration window; then, layer by layer, the Linears are quantized in true-sequential
groups (q, k, v), (o), (gate, up), (down). For each group the whole layer runs over all
windows with forward hooks that accumulate the Hessian of each Linear's input; each
Linear is quantized by `gptq` of bench/gptq_reference.py and its weight replaced by the
dequantized one. Finally the quantized layer runs once more over all windows and its
outputs become the next layer's inputs. One window per forward call, as llama.py does.

Prints `seconds <s>` (the whole run, model loading and saving excluded) and, with --out,
saves the quantized model (float16, Hugging Face layout) for `ptq eval`.
"""
import argparse
import pathlib
import shutil
import sys
import time

import numpy as np
import torch
import transformers

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gptq_reference import Config, gptq  # noqa: E402  (bench/ is not a package)

SEQUENTIAL = [
    ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
    ["self_attn.o_proj"],
    ["mlp.gate_proj", "mlp.up_proj"],
    ["mlp.down_proj"],
]
# The configuration of `ptq quantize --method gptq --bits B --group 128` (damp 0.01, block 128).
def config(bits):
    return Config(f"w{bits}-g128", bits=bits, group_size=128, percdamp=0.01, block_size=128)


class Hessian:
    """Running average H = 2/n X^T X over the n input rows seen so far.

    Each batch rescales the old sum before adding its own rows, so H stays an average
    whatever the number of windows (llama.py counts windows, we count tokens: the scale
    of H does not change GPTQ's result)."""

    def __init__(self, columns):
        self.h = torch.zeros(columns, columns)
        self.rows = 0

    def add(self, x):
        x = x.reshape(-1, x.shape[-1]).float()
        new_rows = self.rows + x.shape[0]
        self.h *= self.rows / new_rows
        self.rows = new_rows
        x = x * (2.0 / new_rows) ** 0.5
        self.h += x.T @ x


class StopForward(Exception):
    """Raised by the layer-0 catcher once it has the layer's inputs."""


class Catcher(torch.nn.Module):
    """Stands in for decoder layer 0: records its input and keyword arguments, then stops."""

    def __init__(self, layer, inputs):
        super().__init__()
        self.layer = layer
        self.inputs = inputs
        self.kwargs = None

    def forward(self, hidden_states, **kwargs):
        self.inputs.append(hidden_states)
        self.kwargs = kwargs
        raise StopForward


def capture_layer0_inputs(model, windows):
    """Inputs of decoder layer 0 for each window, and the keyword arguments it got
    (attention mask, position ids and rotary embeddings: the same for every window)."""
    layers = model.model.layers
    inputs = []
    catcher = Catcher(layers[0], inputs)
    layers[0] = catcher
    for window in windows:
        try:
            model(window.unsqueeze(0), use_cache=False)
        except StopForward:
            pass
    layers[0] = catcher.layer
    # No KV cache: each window is a fresh context (a cache would make later windows
    # attend to earlier ones).
    kwargs = {k: v for k, v in catcher.kwargs.items() if k != "past_key_values"}
    return inputs, kwargs


def run_layer(layer, inputs, kwargs):
    return [layer(x, **kwargs) for x in inputs]


def quantize_group(layer, names, inputs, kwargs, cfg):
    """Gathers the Hessians of `names` over all windows, then GPTQ-quantizes each Linear."""
    modules = {name: layer.get_submodule(name) for name in names}
    hessians = {name: Hessian(m.in_features) for name, m in modules.items()}
    hooks = [
        m.register_forward_hook(lambda _m, args, _out, h=hessians[name]: h.add(args[0].detach()))
        for name, m in modules.items()
    ]
    run_layer(layer, inputs, kwargs)
    for hook in hooks:
        hook.remove()
    for name, m in modules.items():
        _, deq = gptq(m.weight.data, hessians[name].h, cfg)
        m.weight.data = deq.to(m.weight.dtype)


@torch.no_grad()
def quantize_model(model, windows, cfg):
    inputs, kwargs = capture_layer0_inputs(model, windows)
    for index, layer in enumerate(model.model.layers):
        start = time.perf_counter()
        for names in SEQUENTIAL:
            quantize_group(layer, names, inputs, kwargs, cfg)
        inputs = run_layer(layer, inputs, kwargs)
        print(f"layer {index}: {time.perf_counter() - start:.2f} s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=pathlib.Path, required=True)
    parser.add_argument("--calib-ids", type=pathlib.Path, required=True, help="int32 [windows, seqlen]")
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bits", type=int, default=4, help="weight bits (groups of 128, asymmetric)")
    parser.add_argument("--out", type=pathlib.Path, help="save the quantized model here (float16)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ids = np.fromfile(args.calib_ids, dtype="<i4")
    if ids.size == 0 or ids.size % args.seqlen:
        sys.exit(f"{args.calib_ids}: expected a non-empty multiple of {args.seqlen} int32 ids, found {ids.size}")
    windows = torch.from_numpy(ids.astype(np.int64)).reshape(-1, args.seqlen)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()

    start = time.perf_counter()
    quantize_model(model, windows, config(args.bits))
    seconds = time.perf_counter() - start
    print(f"seconds {seconds:.3f}", flush=True)

    if args.out:
        tmp = args.out.with_name(args.out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.half().save_pretrained(tmp)
        for f in args.model.glob("tokenizer*"):
            shutil.copy(f, tmp / f.name)
        shutil.rmtree(args.out, ignore_errors=True)
        tmp.rename(args.out)


if __name__ == "__main__":
    main()
