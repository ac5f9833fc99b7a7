#!/usr/bin/env python3
"""Independent decoder of packed GPTQ, AWQ and compressed-tensors checkpoints,
NumPy only (no ptq code).

Written from the public descriptions: the safetensors container (an 8-byte
little-endian header length, a JSON header of dtype/shape/data_offsets, the
data); AutoGPTQ's packing of a quantized Linear:
  qweight int32 [in * bits / 32, out]   codes along the input dimension
  qzeros  int32 [groups, out * bits / 32] zero points along the output dimension
  scales  float16 [groups, out], g_idx int32 [in]
where each int32 column (qweight) or row (qzeros) is a little-endian bit stream
of `bits`-bit values (3-bit values cross word boundaries), and "gptq" (v1)
checkpoints store zero - 1, "gptq_v2" the zero itself. The weight is
scales[g_idx[i], o] * (q[i, o] - zero[g_idx[i], o]); and compressed-tensors'
"pack-quantized" format (its pack_to_int32):
  weight_packed int32 [out, ceil(in * bits / 32)] signed codes + 2^(bits-1),
  each row one little-endian bit stream; weight_scale [out, groups];
  weight_zero_point int32 [ceil(out * bits / 32), groups] (asymmetric only,
  + 2^(bits-1), packed along the output dimension); weight_shape [out, in];
the weight is scale[o, i // group_size] * (q[o, i] - zero_point[o, i // group_size]);
and its "int-quantized" W8A8: weight int8 [out, in] times weight_scale [out, 1];
and AutoAWQ's GEMM layout: qweight int32 [in, out / 8] and qzeros int32
[groups, out / 8] hold eight 4-bit values per word along the output dimension,
nibble k of word j being output column 8 j + (0, 2, 4, 6, 1, 3, 5, 7)[k];
scales [groups, out]; the weight is scales[g, o] * (q[i, o] - zero[g, o]),
g = i // group_size; and bitsandbytes' 4-bit serialization (Params4bit /
QuantState.as_dict(packed=True)): <m>.weight uint8 holds the codes of the
row-major flattened weight two to a byte, the first in the high nibble;
<m>.weight.quant_map float32 [16] is the code table; <m>.weight.absmax is one
scale per `blocksize` weights, float32, or uint8 indices into
<m>.weight.nested_quant_map scaled by <m>.weight.nested_absmax (one per
nested_blocksize) plus nested_offset when double-quantized; blocksize, dtype,
shape and the nested values are the JSON in <m>.weight.quant_state.bitsandbytes__nf4;
the weight is quant_map[code] * absmax[k // blocksize], cast to dtype.

Usage: packed_decode.py MODEL_DIR OUT_DIR
writes OUT_DIR/<name>.weight.f32 (float32 [out, in], row-major) per Linear.
"""

import json
import os
import struct
import sys

import numpy as np

DTYPES = {"I32": np.int32, "I64": np.int64, "F16": np.float16, "F32": np.float32, "U8": np.uint8, "I8": np.int8, "BF16": None}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = DTYPES.get(info["dtype"])
        if dtype is None:
            continue  # not needed here
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(info["shape"])
    return tensors


def unpack_stream(words, bits, count):
    """Values 0..count-1 of the bit stream held by `words` along axis 0."""
    w = words.astype(np.uint32).astype(np.uint64)
    out = np.zeros((count,) + w.shape[1:], dtype=np.int64)
    mask = (1 << bits) - 1
    for k in range(count):
        bit = k * bits
        word, offset = divmod(bit, 32)
        v = w[word] >> np.uint64(offset)
        if offset + bits > 32:
            v = v | (w[word + 1] << np.uint64(32 - offset))
        out[k] = (v & np.uint64(mask)).astype(np.int64)
    return out


def decode_gptq(q, tensors):
    bits = q["bits"]
    v1 = q.get("checkpoint_format", "gptq") == "gptq"
    for name in sorted(tensors):
        if not name.endswith(".qweight"):
            continue
        base = name[: -len(".qweight")]
        qweight = tensors[name]
        out = qweight.shape[1]
        codes = unpack_stream(qweight, bits, qweight.shape[0] * 32 // bits)  # [in, out]
        zeros = unpack_stream(tensors[base + ".qzeros"].T, bits, out).T  # [groups, out]
        if v1:
            zeros = zeros + 1
        scales = tensors[base + ".scales"].astype(np.float32)  # [groups, out]
        g_idx = tensors[base + ".g_idx"].astype(np.int64)
        yield base, (scales[g_idx] * (codes.astype(np.float32) - zeros[g_idx].astype(np.float32))).T


def decode_int_quantized(tensors):
    for name in sorted(tensors):
        if name.endswith(".weight_scale") and name[: -len("_scale")] in tensors:
            base = name[: -len(".weight_scale")]
            yield base, tensors[base + ".weight"].astype(np.float32) * tensors[name].astype(np.float32)


def decode_compressed(q, tensors):
    if q["format"] == "int-quantized":
        yield from decode_int_quantized(tensors)
        return
    (scheme,) = q["config_groups"].values()
    w = scheme["weights"]
    bits, offset = w["num_bits"], 1 << (w["num_bits"] - 1)
    for name in sorted(tensors):
        if not name.endswith(".weight_packed"):
            continue
        base = name[: -len(".weight_packed")]
        out, n_in = (int(v) for v in tensors[base + ".weight_shape"])
        codes = unpack_stream(tensors[name].T, bits, n_in).T - offset  # [out, in], signed
        scale = tensors[base + ".weight_scale"].astype(np.float32)  # [out, groups]
        if w["symmetric"]:
            zero = np.zeros(scale.shape, dtype=np.int64)
        else:
            zero = unpack_stream(tensors[base + ".weight_zero_point"], bits, out) - offset
        group = w["group_size"] if w["strategy"] == "group" else n_in
        g = np.arange(n_in) // group
        yield base, scale[:, g] * (codes.astype(np.float32) - zero[:, g].astype(np.float32))


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def unpack_awq(words):
    """[rows, out / 8] int32 -> [rows, out] 4-bit values in AWQ's order."""
    w = words.astype(np.uint32)
    out = np.zeros((w.shape[0], w.shape[1] * 8), dtype=np.int64)
    for k, column in enumerate(AWQ_ORDER):
        out[:, column::8] = (w >> np.uint32(4 * k)) & np.uint32(0xF)
    return out


def decode_awq(q, tensors):
    group = q["group_size"]
    for name in sorted(tensors):
        if not name.endswith(".qweight"):
            continue
        base = name[: -len(".qweight")]
        codes = unpack_awq(tensors[name])  # [in, out]
        zeros = unpack_awq(tensors[base + ".qzeros"])  # [groups, out]
        scales = tensors[base + ".scales"].astype(np.float32)
        g = np.arange(codes.shape[0]) // group
        yield base, (scales[g] * (codes.astype(np.float32) - zeros[g].astype(np.float32))).T


def to_dtype(values, name):
    """float32 values rounded to the torch dtype `name`, as float32."""
    if name == "float16":
        return values.astype(np.float16).astype(np.float32)
    if name == "bfloat16":  # round to nearest even on the upper 16 bits
        bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
        return bits.astype(np.uint32).view(np.float32)
    assert name == "float32", name
    return values


def decode_bnb(q, tensors):
    marker = ".weight.quant_state.bitsandbytes__nf4"
    for name in sorted(tensors):
        if not name.endswith(marker):
            continue
        base = name[: -len(marker)]
        state = json.loads(bytes(tensors[name]).decode("utf-8"))
        packed = tensors[base + ".weight"].reshape(-1)
        codes = np.empty(packed.size * 2, dtype=np.int64)
        codes[0::2] = packed >> 4
        codes[1::2] = packed & 0xF
        out, n_in = state["shape"]
        codes = codes[: out * n_in]
        absmax = tensors[base + ".weight.absmax"]
        if base + ".weight.nested_absmax" in tensors:
            nested = tensors[base + ".weight.nested_absmax"]
            table = tensors[base + ".weight.nested_quant_map"]
            b = np.arange(absmax.size) // state["nested_blocksize"]
            absmax = table[absmax.astype(np.int64)] * nested[b] + np.float32(state["nested_offset"])
        k = np.arange(codes.size) // state["blocksize"]
        weight = tensors[base + ".weight.quant_map"][codes] * absmax.astype(np.float32)[k]
        yield base, to_dtype(weight.astype(np.float32), state["dtype"]).reshape(out, n_in)


def main():
    model_dir, out_dir = sys.argv[1], sys.argv[2]
    with open(os.path.join(model_dir, "config.json")) as f:
        q = json.load(f)["quantization_config"]
    decode = {"gptq": decode_gptq, "awq": decode_awq, "compressed-tensors": decode_compressed,
              "bitsandbytes": decode_bnb}[q["quant_method"]]
    tensors = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    os.makedirs(out_dir, exist_ok=True)
    for base, weight in decode(q, tensors):
        np.ascontiguousarray(weight, dtype=np.float32).tofile(os.path.join(out_dir, base + ".weight.f32"))


if __name__ == "__main__":
    main()
