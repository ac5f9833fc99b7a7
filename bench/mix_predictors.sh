#!/usr/bin/env bash
# Which cost predictor a GGUF mix should use (docs/quantize.md, "Mixes of
# grids"), chosen on validation text, not on WikiText-2 test: the last 200 kB
# of three calibration books (Moby Dick, Walden, A System of Logic), 100 chunks
# of 512 tokens, llama-perplexity --kl-divergence against ptq's F16 GGUF of
# small. The costs are measured once with predictor kl (every candidate's KL),
# then each budget is solved with each predictor from them (--mix-costs) and
# rounded by GPTQ (--act-order); beside each, GPTQ at llama-quantize's policy
# for the type whose size the budget is.
#
#   bench/mix_predictors.sh [--out FILE]     (default docs/bench/mix_predictors.md)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/docs/bench/mix_predictors.md
[ "${1:-}" = --out ] && out=$2
ptq=$root/build/pipeline/ptq
fixtures=${PTQ_SHARED_DIR:-$root/../shared}/fixtures
tools=${PTQ_SHARED_DIR:-$root/../shared}/tools/llama.cpp
work=$root/build/mix-predictors
mkdir -p "$work"
bash "$root/bench/validation_text.sh" >"$work/val.txt"
ppl=(-f "$work/val.txt" -c 512 --chunks 100 -t 2)
"$ptq" quantize --model "$fixtures/models/small" --method none --format gguf --gguf-type F16 \
  --out "$work/f16" >/dev/null 2>&1 || true
"$tools/llama-perplexity" -m "$work/f16/model.gguf" "${ppl[@]}" --kl-divergence-base "$work/val.kld" \
  >"$work/base.log" 2>&1
quantize() {  # name flags...
  local name=$1; shift
  rm -rf "$work/$name"
  /usr/bin/time -f "%e" -o "$work/$name.s" "$ptq" quantize --model "$fixtures/models/small" \
    --method gptq --act-order --format gguf \
    --calib-ids "$fixtures/goldens/small/calib_generic.ids" --threads 2 --out "$work/$name" "$@" \
    >"$work/$name.log" 2>&1
}
kld() {  # name -> "mean KLD | 99.9% KLD | same top-1"
  "$tools/llama-perplexity" -m "$work/$1/model.gguf" "${ppl[@]}" --kl-divergence-base "$work/val.kld" \
    --kl-divergence >"$work/$1.kld.log" 2>&1
  python3 - "$work/$1.kld.log" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
patterns = (r"Mean\s+KLD:\s+([-0-9.]+)", r"99\.9%\s+KLD:\s+([-0-9.]+)", r"Same top p:\s+([-0-9.]+)")
print(" | ".join(re.search(p, t).group(1) for p in patterns))
PY
}
quantize costs --gguf-type auto --max-bytes 13434144 --mix-predictor kl
{
  echo "# GGUF mix: which cost predictor (validation text, small)"
  echo
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores. Command: \`bench/mix_predictors.sh\`."
  echo "Validation text: the last 200 kB of three calibration books, 100 chunks of 512 tokens;"
  echo "llama-perplexity --kl-divergence against ptq's F16 GGUF. Costs measured once with every"
  echo "candidate's KL; each budget solved with each predictor from them (\`--mix-costs\`)."
  echo
  echo "| budget (bytes) | file | bytes | mean KLD | 99.9 % KLD | same top-1 % | quantize s |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  for b in "13434144 Q4_K_M" "13028640 IQ4_NL" "12512544 IQ4_XS" "11703584 Q3_K_M"; do
    set -- $b
    quantize "policy-$2" --gguf-type "$2"
    echo "| $1 | GPTQ at llama-quantize's $2 policy | $(stat -c %s "$work/policy-$2/model.gguf") | $(kld "policy-$2") | $(cat "$work/policy-$2.s") |"
    for p in output_error kl_scaled kl; do
      quantize "mix-$1-$p" --gguf-type auto --max-bytes "$1" --mix-costs "$work/costs/mix.json" --mix-predictor "$p"
      echo "| $1 | GPTQ + mix, predictor $p | $(stat -c %s "$work/mix-$1-$p/model.gguf") | $(kld "mix-$1-$p") | $(cat "$work/mix-$1-$p.s") |"
    done
  done
} >"$out"
cat "$out"
