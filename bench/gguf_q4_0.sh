#!/usr/bin/env bash
# GPTQ onto llama.cpp's Q4_0 grid against llama-quantize Q4_0 with an imatrix
# from the same 128 calibration windows, judged by llama.cpp itself:
# llama-perplexity's KL divergence (150 chunks of 512 tokens of WikiText-2
# test) against ptq's F16 GGUF of the model (the converter's bytes).
#
#   bench/gguf_q4_0.sh [--model small] [--ptq BINARY] [--work DIR] [--out FILE]
#
# Writes a Markdown table (file bytes, tensor bytes, mean KLD, same top-1) with
# the commands and the machine to FILE (default docs/bench/gguf_q4_0.md).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
command="bench/gguf_q4_0.sh $*"
model=small
ptq=$root/build/pipeline/ptq
fixtures=${PTQ_SHARED_DIR:-$root/../shared}/fixtures
tools=${PTQ_SHARED_DIR:-$root/../shared}/tools/llama.cpp
work=$root/build/gguf-q4_0
out=$root/docs/bench/gguf_q4_0.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --ptq) ptq=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$work"
src=$fixtures/models/$model
text=$fixtures/corpus/generic_eval/wikitext2_test.txt
ppl=(-c 512 --chunks 150 -t 2)

"$ptq" quantize --model "$src" --method none --format gguf --gguf-type F16 --out "$work/f16" 2>/dev/null \
  || [ -f "$work/f16/model.gguf" ]
"$tools/llama-perplexity" -m "$work/f16/model.gguf" -f "$text" "${ppl[@]}" \
  --kl-divergence-base "$work/base.kld" > "$work/base.log" 2>&1
"$tools/llama-imatrix" -m "$work/f16/model.gguf" -f "$fixtures/goldens/$model/calib_generic_decoded.txt" \
  -c 512 --chunks 128 -t 2 -o "$work/imatrix.gguf" > "$work/imatrix.log" 2>&1
"$tools/llama-quantize" --imatrix "$work/imatrix.gguf" "$work/f16/model.gguf" "$work/llama-q4_0.gguf" \
  Q4_0 2 > "$work/quantize.log" 2>&1
rm -rf "$work/ptq-gptq-q4_0"
/usr/bin/time -f "%e" -o "$work/ptq.seconds" "$ptq" quantize --model "$src" --method gptq --format gguf \
  --gguf-type Q4_0 --calib-ids "$fixtures/goldens/$model/calib_generic.ids" --threads 2 \
  --out "$work/ptq-gptq-q4_0" 2> "$work/ptq.log"

kld() {  # file -> "mean KLD|same top-1 %"
  "$tools/llama-perplexity" -m "$1" "${ppl[@]}" --kl-divergence-base "$work/base.kld" --kl-divergence \
    > "$2" 2>&1
  python3 - "$2" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"Mean\s+KLD:\s+([-0-9.]+)", t); p = re.search(r"Same top p:\s+([-0-9.]+)", t)
print(f"{float(m.group(1)):.6f}|{float(p.group(1)):.2f}")
PY
}
tensor_bytes() {
  "$ptq" inspect --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])'
}
row() {  # name file log
  local k; k=$(kld "$2" "$3")
  echo "| $1 | $(stat -c %s "$2") | $(tensor_bytes "$2") | ${k%|*} | ${k#*|} |"
}
{
  echo "# GPTQ onto Q4_0 vs llama-quantize Q4_0 + imatrix ($model)"
  echo
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores. Command: \`$command\`."
  echo "KL divergence and same top-1 from \`llama-perplexity --kl-divergence\` (150 chunks of 512"
  echo "tokens of WikiText-2 test; base: ptq's F16 GGUF). Imatrix: \`llama-imatrix\` over"
  echo "goldens/$model/calib_generic_decoded.txt (-c 512 --chunks 128); ptq's GPTQ uses the same"
  echo "128 windows (calib_generic.ids). GPTQ took $(cat "$work/ptq.seconds") s."
  echo
  echo "| file | file bytes | tensor bytes | mean KLD | same top-1 % |"
  echo "|---|---:|---:|---:|---:|"
  row "llama-quantize Q4_0 --imatrix" "$work/llama-q4_0.gguf" "$work/llama.kld.log"
  row "ptq GPTQ → Q4_0" "$work/ptq-gptq-q4_0/model.gguf" "$work/ptq.kld.log"
} > "$out"
cat "$out"
