#!/usr/bin/env bash
# `ptq report` on small: the float model and seven variants (RTN W8, RTN W4 g128,
# GPTQ W4 g128, AWQ W4 g128, W8A8 SmoothQuant, GGUF Q4_K_M, RTN W2) on the
# generic and domain eval texts of goldens/small and three tasks, with
# llama-bench speeds for the GGUF file. Writes docs/bench/report_small.md (the
# report's Markdown under a header naming the machine) and report_small.png (the
# page as headless Chromium renders it).
#
#   bench/report_small.sh [--windows W] [--limit N]   (defaults 100 windows, 300 items)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ptq=$root/build/pipeline/ptq
shared=${PTQ_SHARED_DIR:-$root/../shared}
fixtures=$shared/fixtures
work=$root/build/report-small
windows=100 limit=300
while [[ $# -gt 0 ]]; do
  case $1 in
    --windows) windows=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$work"
calib=(--calib-ids "$fixtures/goldens/small/calib_generic.ids")
variants=("rtn-w8|--method rtn --bits 8 --group channel"
  "rtn-w4-g128|--method rtn --bits 4 --group 128"
  "gptq-w4-g128|--method gptq --bits 4 --group 128 ${calib[*]}"
  "awq-w4-g128|--method awq --bits 4 --group 128 ${calib[*]}"
  "w8a8-sq|--recipe $root/recipes/w8a8-smoothquant-a0.5.yaml ${calib[*]}"
  "gguf-q4_k_m|--method rtn --format gguf --gguf-type Q4_K_M"
  "rtn-w2|--method rtn --bits 2 --group 128")
args=()
for v in "${variants[@]}"; do
  name=${v%%|*} flags=${v#*|}
  [ -d "$work/$name" ] || "$ptq" quantize --model "$fixtures/models/small" $flags --threads "$(nproc)" \
    --out "$work/$name" >"$work/$name.log" 2>&1
  args+=(--variant "$name=$work/$name")
done
rm -rf "$work/report"
"$ptq" report --baseline "small=$fixtures/models/small" "${args[@]}" \
  --text "generic=$fixtures/goldens/small/eval_generic.ids" \
  --text "domain=$fixtures/goldens/small/eval_domain.ids" \
  --tasks "$fixtures/tasks/arc_easy_test.jsonl" --tasks "$fixtures/tasks/piqa_valid.jsonl" \
  --tasks "$fixtures/tasks/hellaswag_val.jsonl" --limit "$limit" --max-windows "$windows" \
  --llama-bench "$shared/tools/llama.cpp/llama-bench" --threads "$(nproc)" --out "$work/report" \
  2>"$work/report.log"
{
  echo "# ptq report of small (bench/report_small.sh)"
  echo
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores. Command: \`bench/report_small.sh --windows $windows --limit $limit\`:"
  echo "the first $windows windows of 512 tokens of goldens/small/eval_generic.ids and eval_domain.ids,"
  echo "the first $limit items of each task. The page as Chromium renders it: report_small.png."
  echo
  sed 1d "$work/report/report.md"
} >"$root/docs/bench/report_small.md"
chromium --headless --no-sandbox --disable-gpu --window-size=1280,3600 \
  --screenshot="$root/docs/bench/report_small.png" "file://$work/report/report.html" >/dev/null 2>&1
cat "$root/docs/bench/report_small.md"
