#!/usr/bin/env bash
# Packed checkpoints of small in real loaders. Here: ptq quantizes small (32
# windows of 512 tokens of goldens/small/calib_generic.ids where the method
# calibrates) into compressed-tensors W4A16 g128 with GPTQ (symmetric; also
# with act-order and static groups, compressed-tensors' "weight" actorder), W8A16
# per channel (asymmetric), W8A8 from SmoothQuant (alpha 0.5; int8 inputs per
# token and per tensor), and bitsandbytes NF4; and dumps its own logits of the
# golden prompt from each folder. On the GPU machine (device tool, carry
# build-device and .whl: compressed-tensors and its pure-Python dependencies,
# and bitsandbytes, as wheels), bench/hf_loader_logits.py loads each folder
# with transformers in float32 and dumps its logits. Then, with the device's
# files in DEVICE_OUT, this script compares:
#   bench/packed_loaders.sh prepare
#   (device) python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#            export PYTHONPATH=/tmp/site && for n in $(cat build-device/names); do
#              python3 bench/hf_loader_logits.py build-device/small-$n \
#              build-device/logits_prompt.ids $OUT/hf-$n.f32 cuda; done
#   bench/packed_loaders.sh compare DEVICE_OUT [PREFIX]   (PREFIX of the device's files, hf)
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
    for spec in "ct-w4g128 --method gptq --bits 4 --group 128 --sym --format compressed-tensors" \
      "ct-w4ao --method gptq --bits 4 --group 128 --sym --act-order --static-groups --format compressed-tensors" \
      "ct-w8ch --method gptq --bits 8 --group channel --format compressed-tensors" \
      "ct-w8a8tok --method w8a8 --smoothquant 0.5 --act-granularity token --format compressed-tensors" \
      "ct-w8a8ten --method w8a8 --smoothquant 0.5 --act-granularity tensor --format compressed-tensors" \
      "bnb-nf4 --method nf4 --format bnb-nf4"; do
      set -- $spec
      name=$1; shift
      rm -rf "build-device/small-$name"
      "$ptq" quantize --model "$small" "$@" \
        --calib-ids "$shared/fixtures/goldens/small/calib_generic.ids" --samples 32 --seqlen 512 \
        --out "build-device/small-$name"
      "$ptq" eval --model "build-device/small-$name" --ids build-device/logits_prompt.ids --ctx 64 \
        --dump-logits "build-device/ptq-$name.f32"
      echo "$name" >>build-device/names
    done
    du -sh build-device/small-*
    ;;
  compare)
    # Besides the issue's max |dlogit| / max |logit|: top-1 agreement, the mean
    # KL(loader || ptq) over the positions, and how many leading positions agree
    # to 1e-4 (simulated int8 activations agree exactly until a float-level
    # difference flips one rounding, which then reaches every later position).
    python3 - "$2" "${3:-hf}" <<'PY'
import sys
import numpy as np
def log_softmax(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))
for name in open("build-device/names").read().split():
    try:
        theirs = np.fromfile(f"{sys.argv[1]}/{sys.argv[2]}-{name}.f32", dtype=np.float32).reshape(64, -1)
    except FileNotFoundError:
        continue
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
  *) echo "usage: $0 prepare | compare DEVICE_OUT" >&2; exit 2 ;;
esac
