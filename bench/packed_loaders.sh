#!/usr/bin/env bash
# Packed checkpoints of small in real loaders. Here: ptq quantizes small (32
# windows of 512 tokens of goldens/small/calib_generic.ids where the method
# calibrates) into compressed-tensors W4A16 g128 with GPTQ (symmetric; also
# with act-order and static groups, compressed-tensors' "weight" actorder), W8A16
# per channel (asymmetric), W8A8 from SmoothQuant (alpha 0.5; int8 inputs per
# token and per tensor), bitsandbytes NF4, GPTQ folders (4-bit g128 symmetric,
# asymmetric and with act-order, 3-bit g128, 2-bit g64, 8-bit per channel) and an
# AWQ folder (4-bit g128); and dumps its own logits of the golden prompt from
# each folder.
# compressed-tensors and bitsandbytes load on the GPU machine (device tool, carry
# build-device and .whl: compressed-tensors and its pure-Python dependencies,
# and bitsandbytes, as wheels): bench/hf_loader_logits.py loads each folder
# with transformers in float32 and dumps its logits. GPTQ and AWQ load through
# GPTQModel, whose dependencies need a newer torch and transformers than the
# device has, so they load here on the CPU from a virtual environment with
# packages from PyPI (the `cpu` step). Then this script compares:
#   bench/packed_loaders.sh prepare
#   (device) python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#            export PYTHONPATH=/tmp/site && for n in $(cat build-device/names); do
#              python3 bench/hf_loader_logits.py build-device/small-$n \
#              build-device/logits_prompt.ids $OUT/hf-$n.f32 cuda; done
#   python3 -m venv VENV && VENV/bin/pip install gptqmodel==7.7.0 optimum==2.3.0
#   [PREFIX=P] bench/packed_loaders.sh cpu VENV [FLAGS]   (FLAGS for hf_loader_logits.py)
#   bench/packed_loaders.sh compare DEVICE_OUT [PREFIX]   (PREFIX of the loader's files, hf)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${PTQ_SHARED_DIR:-../shared}
ptq=${PTQ:-build/pipeline/ptq}
small=$shared/fixtures/models/small
case "${1:-}" in
  prepare)
    mkdir -p build-device
    cp "$shared/fixtures/goldens/small/logits_prompt.ids" build-device/
    : >build-device/names
    : >build-device/names-cpu
    for spec in "ct-w4g128 --method gptq --bits 4 --group 128 --sym --format compressed-tensors" \
      "ct-w4ao --method gptq --bits 4 --group 128 --sym --act-order --static-groups --format compressed-tensors" \
      "ct-w8ch --method gptq --bits 8 --group channel --format compressed-tensors" \
      "ct-w8a8tok --method w8a8 --smoothquant 0.5 --act-granularity token --format compressed-tensors" \
      "ct-w8a8ten --method w8a8 --smoothquant 0.5 --act-granularity tensor --format compressed-tensors" \
      "bnb-nf4 --method nf4 --format bnb-nf4" \
      "gptq-w4g128 --method gptq --bits 4 --group 128 --sym --format gptq" \
      "gptq-w4g128a --method gptq --bits 4 --group 128 --format gptq" \
      "gptq-w4ao --method gptq --bits 4 --group 128 --sym --act-order --format gptq" \
      "gptq-w3g128 --method gptq --bits 3 --group 128 --sym --format gptq" \
      "gptq-w2g64 --method gptq --bits 2 --group 64 --format gptq" \
      "gptq-w8ch --method gptq --bits 8 --group channel --sym --format gptq" \
      "awq-w4g128 --method awq --bits 4 --group 128 --format awq"; do
      set -- $spec
      name=$1; shift
      rm -rf "build-device/small-$name"
      "$ptq" quantize --model "$small" "$@" \
        --calib-ids "$shared/fixtures/goldens/small/calib_generic.ids" --samples 32 --seqlen 512 \
        --out "build-device/small-$name"
      "$ptq" eval --model "build-device/small-$name" --ids build-device/logits_prompt.ids --ctx 64 \
        --dump-logits "build-device/ptq-$name.f32"
      case $name in
        gptq-* | awq-*) echo "$name" >>build-device/names-cpu ;;
        *) echo "$name" >>build-device/names ;;
      esac
    done
    du -sh build-device/small-*
    ;;
  cpu)
    venv=$2
    shift 2
    mkdir -p build-device/cpu
    for n in $(cat build-device/names-cpu); do
      CUDA_VISIBLE_DEVICES= "$venv/bin/python" bench/hf_loader_logits.py "$@" "build-device/small-$n" \
        build-device/logits_prompt.ids "build-device/cpu/${PREFIX:-hf}-$n.f32" cpu 2>&1 | grep -E "^(versions|logits)|selected"
    done
    ;;
  compare)
    # Besides the issue's max |dlogit| / max |logit|: top-1 agreement, the mean
    # KL(loader || ptq) over the positions, and how many leading positions agree
    # to 1e-4 (simulated int8 activations agree exactly until a float-level
    # difference flips one rounding, which then reaches every later position).
    python3 - "$2" "${3:-hf}" <<'PY'
import os
import sys
import numpy as np
def log_softmax(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))
names = open("build-device/names").read().split() + open("build-device/names-cpu").read().split()
for name in names:
    found = [f"{d}/{sys.argv[2]}-{name}.f32" for d in (sys.argv[1], "build-device/cpu")]
    found = [path for path in found if os.path.exists(path)]
    if not found:
        continue
    theirs = np.fromfile(found[0], dtype=np.float32).reshape(64, -1)
    ours = np.fromfile(f"build-device/ptq-{name}.f32", dtype=np.float32).reshape(64, -1)
    scale = np.abs(theirs).max()
    row = np.abs(ours - theirs).max(1) / scale
    lead = int(np.argmax(row > 1e-4)) if (row > 1e-4).any() else len(row)
    lt, lo = log_softmax(theirs.astype(np.float64)), log_softmax(ours.astype(np.float64))
    kl = (np.exp(lt) * (lt - lo)).sum(1).mean()
    print(f"{name}: max|dlogit| / max|logit| = {row.max():.3e}, top-1 agreement "
          f"{(ours.argmax(1) == theirs.argmax(1)).mean():.4f}, mean KL {kl:.2e}, "
          f"positions within 1e-4 before the first that is not: {lead}/64")
PY
    ;;
  *) echo "usage: $0 prepare | cpu VENV [FLAGS] | compare DEVICE_OUT [PREFIX]" >&2; exit 2 ;;
esac
