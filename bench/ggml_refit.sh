#!/usr/bin/env bash
# What GPTQ inside ggml's types refits after rounding (--gguf-refit): each
# block's d and dmin only (scales), or first the k-quants' and IQ4_XS's
# sub-block scales and mins too (sub_scales, the default). Judged on
# validation text, never the test texts: the last 200 kB of three calibration
# books, 100 chunks of 512 tokens, llama-perplexity --kl-divergence against
# ptq's F16 GGUF of the same model; both trained models, four types.
#
#   bench/ggml_refit.sh [--out FILE]   (default docs/bench/ggml_refit.md)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/docs/bench/ggml_refit.md
[ "${1:-}" = --out ] && out=$2
ptq=$root/build/pipeline/ptq
fixtures=${PTQ_SHARED_DIR:-$root/../shared}/fixtures
tools=${PTQ_SHARED_DIR:-$root/../shared}/tools/llama.cpp
work=$root/build/ggml-refit
mkdir -p "$work"
bash "$root/bench/validation_text.sh" >"$work/val.txt"
ppl=(-f "$work/val.txt" -c 512 --chunks 100 -t 2)
row() {  # model type refit -> one table row
  local name=$1-$2-$3
  rm -rf "$work/$name"
  /usr/bin/time -f "%e" -o "$work/$name.s" "$ptq" quantize --model "$fixtures/models/$1" \
    --method gptq --act-order --format gguf --gguf-type "$2" --gguf-refit "$3" \
    --calib-ids "$fixtures/goldens/$1/calib_generic.ids" --threads 2 --out "$work/$name" \
    >"$work/$name.log" 2>&1
  "$tools/llama-perplexity" -m "$work/$name/model.gguf" "${ppl[@]}" \
    --kl-divergence-base "$work/$1.kld" --kl-divergence >"$work/$name.kld.log" 2>&1
  python3 - "$work/$name.kld.log" "$1 | $2 | $3" "$(cat "$work/$name.s")" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
patterns = (r"Mean\s+KLD:\s+([-0-9.]+)", r"99\.9%\s+KLD:\s+([-0-9.]+)", r"Same top p:\s+([-0-9.]+)")
print("| " + sys.argv[2] + " | " + " | ".join(re.search(p, t).group(1) for p in patterns) + " | " + sys.argv[3] + " |")
PY
}
{
  echo "# GPTQ in ggml types: what to refit after rounding (validation text)"
  echo
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores. Command: \`bench/ggml_refit.sh\`."
  echo "Validation text: the last 200 kB of three calibration books, 100 chunks of 512 tokens;"
  echo "llama-perplexity --kl-divergence against ptq's F16 GGUF of the same model. Every file:"
  echo "\`ptq quantize --method gptq --act-order --format gguf --gguf-type TYPE --gguf-refit REFIT\`."
  echo
  echo "| model | type | refit | mean KLD | 99.9 % KLD | same top-1 % | quantize s |"
  echo "|---|---|---|---:|---:|---:|---:|"
  for model in small tiny; do
    "$ptq" quantize --model "$fixtures/models/$model" --method none --format gguf --gguf-type F16 \
      --out "$work/$model-f16" >/dev/null 2>&1 || true
    "$tools/llama-perplexity" -m "$work/$model-f16/model.gguf" "${ppl[@]}" \
      --kl-divergence-base "$work/$model.kld" >"$work/$model-base.log" 2>&1
    for type in Q4_K_M Q3_K_S IQ4_XS Q2_K; do
      for refit in scales sub_scales; do row "$model" "$type" "$refit"; done
    done
  done
} >"$out"
cat "$out"
