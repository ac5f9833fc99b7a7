#!/usr/bin/env bash
# Packed checkpoints of small in real loaders. Here: ptq quantizes small with
# GPTQ (32 windows of 512 tokens of goldens/small/calib_generic.ids) into
# compressed-tensors W4A16 g128 (symmetric; also with act-order and static
# groups, compressed-tensors' "weight" actorder) and W8A16 per channel
# (asymmetric), and dumps its own logits of the golden prompt. On the GPU
# machine (device tool, carry build-device and .whl: compressed-tensors and its
# pure-Python dependencies as wheels), bench/hf_loader_logits.py loads each
# folder with transformers + compressed-tensors in float32 and dumps its
# logits. Then, with the device's files in DEVICE_OUT, this script compares:
#   bench/packed_loaders.sh prepare
#   (device) python3 -m pip install --no-index --find-links .whl compressed-tensors &&
#            for n in w4g128 w4ao w8ch; do python3 bench/hf_loader_logits.py \
#              build-device/small-ct-$n build-device/logits_prompt.ids $OUT/hf-$n.f32 cuda; done
#   bench/packed_loaders.sh compare DEVICE_OUT
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${PTQ_SHARED_DIR:-../shared}
ptq=${PTQ:-build/pipeline/ptq}
small=$shared/fixtures/models/small
case "${1:-}" in
  prepare)
    mkdir -p build-device
    cp "$shared/fixtures/goldens/small/logits_prompt.ids" build-device/
    for spec in "w4g128 --bits 4 --group 128 --sym" "w4ao --bits 4 --group 128 --sym --act-order --static-groups" \
      "w8ch --bits 8 --group channel"; do
      set -- $spec
      name=$1; shift
      rm -rf "build-device/small-ct-$name"
      "$ptq" quantize --model "$small" --method gptq "$@" --format compressed-tensors \
        --calib-ids "$shared/fixtures/goldens/small/calib_generic.ids" --samples 32 --seqlen 512 \
        --out "build-device/small-ct-$name"
      "$ptq" eval --model "build-device/small-ct-$name" --ids build-device/logits_prompt.ids --ctx 64 \
        --dump-logits "build-device/ptq-$name.f32"
    done
    du -sh build-device/small-ct-*
    ;;
  compare)
    python3 - "$2" <<'PY'
import sys
import numpy as np
for name in ["w4g128", "w4ao", "w8ch"]:
    ours = np.fromfile(f"build-device/ptq-{name}.f32", dtype=np.float32).reshape(64, -1)
    theirs = np.fromfile(f"{sys.argv[1]}/hf-{name}.f32", dtype=np.float32).reshape(64, -1)
    rel = np.abs(ours - theirs).max() / np.abs(theirs).max()
    print(f"{name}: max|dlogit| / max|logit| = {rel:.3e}, top-1 agreement {(ours.argmax(1) == theirs.argmax(1)).mean():.4f}")
PY
    ;;
  *) echo "usage: $0 prepare | compare DEVICE_OUT" >&2; exit 2 ;;
esac
