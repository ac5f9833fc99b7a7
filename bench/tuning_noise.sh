#!/usr/bin/env bash
# How much of a recipe's score on validation text is rounding noise (issue 19;
# docs/bench/tuning_probes.md). --batch-windows changes how X^T X's float32
# partial sums are chunked (2048-row chunks within each batch of windows), so
# the Hessians differ only in float rounding; the calibration windows, the
# recipe and everything else stay. Each run is quantized and evaluated on both
# validation texts as bench/tune_recipes.sh does; run that script first (it
# writes the recipes and the validation ids this one reads).
#   bench/tuning_noise.sh [MODEL [CANDIDATES [BATCH_WINDOWS]]]
#   e.g. bench/tuning_noise.sh small "w4-g128.plain w4-g128.clip-gptaq" "3 5"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-small} candidates=${2:-"w4-g128.plain w4-g128.clip-gptaq"} sizes=${3:-"3 5"}
fixtures=${PTQ_SHARED_DIR:-$root/../shared}/fixtures
work=$root/build/tune-recipes
ptq=$root/build/pipeline/ptq
tok=$([[ $model == tiny ]] && echo tiny || echo small)
for bw in $sizes; do
  for c in $candidates; do
    d=$work/noise/$model/bw$bw-$c
    mkdir -p "$d"
    "$ptq" quantize --model "$fixtures/models/$model" --out "$d/model" --threads 2 \
      --format dequantized --recipe "$work/$model/$c/recipe.yaml" --batch-windows "$bw" \
      --calib-ids "$fixtures/goldens/$model/calib_generic.ids" >"$d/quantize.log" 2>&1
    for s in validation_generic validation_domain; do
      "$ptq" eval --model "$d/model" --ids "$work/ids/$tok/$s.ids" --threads 1 \
        --json "$d/$s.json" >"$d/eval_$s.log" 2>&1 &
    done
    wait
    python3 - "$d" "$bw" "$c" <<'PY'
import json, sys
d, bw, c = sys.argv[1:]
ppl = [json.load(open(f"{d}/validation_{s}.json"))["ppl"] for s in ("generic", "domain")]
print(f"--batch-windows {bw} {c}: validation_generic {ppl[0]:.4f} validation_domain {ppl[1]:.4f}")
PY
  done
done
