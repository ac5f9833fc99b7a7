#!/usr/bin/env bash
# The calibration-mix sweep of PROTOCOL.md on small, by `ptq sweep`: the domain
# share of the calibration data over 0, 30, 50, 70, 100 %, every share from one
# `ptq calibrate` file of per-source statistics (all 128 generic and 128 domain
# windows), 70/30 also sequentially on its 90 + 38 windows; the best W3 g128
# recipe, written dequantized (float32 scales, as the recorded reference rows);
# every variant evaluated on the whole generic and domain eval sets.
# Writes docs/bench/calib_sweep.md (the sweep table, approx against exact at
# 70/30) and calib_sweep.png (the report page as headless Chromium renders it).
#
#   bench/calib_sweep.sh [--model small] [--recipe FILE] [--max-windows W] [--work DIR] [--out FILE] [--reuse]
#
# --reuse: write the report of a finished sweep already in DIR (the same ptq sweep
# command, run by hand; its seconds from DIR.s when there).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command="bench/calib_sweep.sh $*"
ptq=$root/build/pipeline/ptq
fixtures=${PTQ_SHARED_DIR:-$root/../shared}/fixtures
model=small recipe=$root/recipes/w3-g128-best.yaml max_windows=0
work=$root/build/calib-sweep out=$root/docs/bench/calib_sweep.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --recipe) recipe=$(realpath "$2"); shift 2 ;;
    --max-windows) max_windows=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --reuse) reuse=1; shift ;;
    *) echo "calib_sweep.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
goldens=$fixtures/goldens/$model
[ -n "${reuse:-}" ] || { rm -rf "$work" && mkdir -p "$(dirname "$work")"; }
[ -n "${reuse:-}" ] || /usr/bin/time -f "%e" -o "$work.s" "$ptq" sweep --model "$fixtures/models/$model" \
  --calib "g=$goldens/calib_generic.ids" --calib "d=$goldens/calib_domain.ids" \
  --shares 0,30,50,70,100 --exact 30 --recipe "$recipe" --format dequantized \
  --eval "generic=$goldens/eval_generic.ids" --eval "domain=$goldens/eval_domain.ids" \
  --max-windows "$max_windows" --out "$work" 2>"$work.log"
{
  echo "# Calibration mix sweep ($model)"
  echo
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(cat "$work.s" 2>/dev/null || echo "?") s in all."
  echo "Command: \`$command\`, which runs"
  echo "\`ptq sweep --calib g=calib_generic.ids --calib d=calib_domain.ids --shares 0,30,50,70,100 --exact 30"
  echo "--recipe $(basename "$recipe") --format dequantized --eval generic=eval_generic.ids --eval domain=eval_domain.ids\`"
  echo "(max windows $max_windows, 0 = all). d-S-stats: quantized from the statistics file with S % domain"
  echo "(\`ptq quantize --stats --mix g=100-S --mix d=S\`); d-30-exact: the sequential run on the first 90"
  echo "generic and 38 domain windows (docs/calibration.md). The report page: calib_sweep.png."
  echo
  sed -n '/^## Sweep/,/^## Text/p' "$work/report/report.md" | sed '$d'
  python3 - "$work/report/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ppl = {v["name"]: {t["text"]: t["ppl"] for t in v["texts"]} for v in r["variants"]}
print("Approximate against exact at 70/30:\n")
for text in ("generic", "domain"):
    a, e = ppl["d-30-stats"][text], ppl["d-30-exact"][text]
    print(f"- {text} ppl: approx - exact = {a - e:+.3f} ({100 * (a - e) / e:+.2f} % of the exact {e:.3f})")
PY
} >"$out"
chromium --headless --no-sandbox --disable-gpu --window-size=1280,1900 \
  --screenshot="${out%.md}.png" "file://$work/report/report.html" >/dev/null 2>&1
cat "$out"
