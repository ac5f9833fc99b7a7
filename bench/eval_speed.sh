#!/usr/bin/env bash
# `ptq eval` against llama.cpp's `llama-perplexity` on the f16 GGUF of the same
# model (small, ctx 512, the first N windows of WikiText-2 test, 2 threads),
# run side by side: each round runs ptq with OpenBLAS's kernels as ptq picks
# them, ptq limited to AVX2 kernels (OPENBLAS_CORETYPE=Haswell: the instruction
# set of the shared llama.cpp build), then llama-perplexity, so each ptq run is
# paired with the llama.cpp run of its round. Wall time of each whole command
# (load, tokenize, evaluate). Writes docs/bench/eval_speed.md.
# Usage: bash bench/eval_speed.sh [rounds=3] [windows=150]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${PTQ_SHARED_DIR:-$root/../shared}
build=${BUILD_DIR:-$root/build}
rounds=${1:-3}
windows=${2:-150}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPTQ_SHARED_DIR="$shared" >/dev/null
cmake --build "$build" --target ptq -j2 >/dev/null
ptq=$build/pipeline/ptq
perplexity=$shared/tools/llama.cpp/llama-perplexity
model=$shared/fixtures/models/small
text=$shared/fixtures/corpus/generic_eval/wikitext2_test.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ptq" quantize --model "$model" --method none --format gguf --gguf-type F16 --out "$tmp/f16" >/dev/null 2>&1
gguf=$tmp/f16/model.gguf
tokens=$((windows * 512))

ptq_cmd=("$ptq" eval --model "$model" --text "$text" --ctx 512 --max-windows "$windows" --threads 2)
llama_cmd=("$perplexity" -m "$gguf" -f "$text" -c 512 --chunks "$windows" -t 2)

# Runs "$@" with output to $tmp/log, prints its wall seconds.
seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$tmp/log" 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

# The kernels OpenBLAS reports last (after ptq re-executed itself, if it did).
core=$(OPENBLAS_VERBOSE=2 "$ptq" inspect "$model" 2>&1 | sed -n 's/^Core: //p' | tail -1)
rows=()
: >"$tmp/ratio_default"
: >"$tmp/ratio_avx2"
for ((r = 1; r <= rounds; r++)); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  s_default=$(seconds "${ptq_cmd[@]}")
  ppl_ptq=$(sed -n 's/^ppl \([0-9.]*\).*/\1/p' "$tmp/log")
  s_avx2=$(OPENBLAS_CORETYPE=Haswell seconds "${ptq_cmd[@]}")
  ppl_ptq_avx2=$(sed -n 's/^ppl \([0-9.]*\).*/\1/p' "$tmp/log")
  s_llama=$(seconds "${llama_cmd[@]}")
  ppl_llama=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$tmp/log")
  echo "$s_llama / $s_default" | bc -l >>"$tmp/ratio_default"
  echo "$s_llama / $s_avx2" | bc -l >>"$tmp/ratio_avx2"
  rows+=("$(printf '| %d | %s | %.2f s, %.0f tok/s | %.2f s, %.0f tok/s | %.2f s, %.0f tok/s | %.3f | %.3f |' \
    "$r" "$load" "$s_default" "$(echo "$tokens / $s_default" | bc -l)" \
    "$s_avx2" "$(echo "$tokens / $s_avx2" | bc -l)" \
    "$s_llama" "$(echo "$tokens / $s_llama" | bc -l)" \
    "$(echo "$s_llama / $s_default" | bc -l)" "$(echo "$s_llama / $s_avx2" | bc -l)")")
  echo "${rows[-1]}"
done

out=$root/docs/bench/eval_speed.md
mkdir -p "$(dirname "$out")"
{
  echo "# ptq eval against llama-perplexity (small, f16, ctx 512)"
  echo
  echo "Command: \`bash bench/eval_speed.sh $rounds $windows\`, $rounds rounds; each round runs, one after the"
  echo "other: ptq (OpenBLAS kernels as ptq picks them), ptq with \`OPENBLAS_CORETYPE=Haswell\` (AVX2"
  echo "kernels, the instruction set of the shared llama.cpp build), llama-perplexity. Ratio ="
  echo "llama.cpp's seconds / ptq's seconds in the same round (tokens/s of ptq over llama.cpp's);"
  echo "tokens = $windows x 512 for both; wall time of the whole command (load, tokenize, evaluate)."
  echo
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
    "flags: $(grep -m1 -ow -e avx2 /proc/cpuinfo) $(grep -m1 -ow -e avx512f /proc/cpuinfo); $(uname -sr)"
  echo "- OpenBLAS kernels ptq runs by default: ${core:-see algorithms/blas_core.hpp}"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$root" rev-parse --short HEAD)"
  echo "- ptq: \`ptq eval --model small --text wikitext2_test.txt --ctx 512 --max-windows $windows --threads 2\`"
  echo "- llama.cpp: \`llama-perplexity -m small-f16.gguf -f wikitext2_test.txt -c 512 --chunks $windows -t 2\`"
  echo "  (the GGUF written by \`ptq quantize --method none --format gguf --gguf-type F16\`)"
  echo
  echo "| round | load avg before | ptq | ptq AVX2 | llama.cpp | ratio ptq | ratio ptq AVX2 |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  printf 'Median ratio: ptq %.3f, ptq AVX2 %.3f.\n' "$(median <"$tmp/ratio_default")" "$(median <"$tmp/ratio_avx2")"
  echo
  echo "Perplexity: ptq $ppl_ptq (AVX2 kernels: $ppl_ptq_avx2), llama.cpp $ppl_llama. They differ by"
  echo "protocol, not by model: ptq predicts tokens 1..511 of each window (shared/fixtures/PROTOCOL.md),"
  echo "llama-perplexity scores only the second half of each chunk (positions 256..511, with more context)."
  echo
  echo "A load average above the core count ($(nproc)) means other work shared the cores: llama.cpp's"
  echo "threads wait for each other by spinning, so it loses more to it than ptq does, and the ratio"
  echo "then overstates ptq's lead; compare rounds run at a low load."
} >"$out"
cat "$out"
