#!/usr/bin/env bash
# The GPU path's correctness on a GPU machine (docs/bench/cuda.md): the CUDA
# backend's tests (tests/cuda: GEMM, X^T X, attention and GPTQ's factor against float64
# and the CPU; small's block 0 outputs and Hessians, CPU against GPU; small's
# logits on the GPU against transformers), then GPTQ W4 g128 of small on the
# fixture calibration windows into the GPTQ format, twice on the GPU and once
# on the CPU: the two GPU outputs compared byte for byte, each output's
# perplexity on the first 100 generic eval windows (one CPU eval for all).
#   bench/cuda_stage1.sh PTQ TEST_CUDA SHARED WORK
# PTQ, TEST_CUDA: binaries of a -DPTQ_CUDA=ON build; SHARED: the folder
# holding fixtures/ (../shared); WORK: a scratch folder for the outputs.
set -euo pipefail
ptq=$1 test_cuda=$2 shared=$3 work=$4
model=$shared/fixtures/models/small
calib=$shared/fixtures/goldens/small/calib_generic.ids
eval_ids=$shared/fixtures/goldens/small/eval_generic.ids
mkdir -p "$work"

echo "## machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "$(nproc) CPU cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"

echo "## tests/cuda"
PTQ_SHARED_DIR=$shared "$test_cuda"

now() { date +%s.%N; }
echo "## GPTQ W4 g128 of small, 128 windows of 512 tokens"
for run in gpu-1:cuda:0 gpu-2:cuda:0 cpu:cpu; do
  name=${run%%:*} device=${run#*:}
  t0=$(now)
  "$ptq" quantize --model "$model" --method gptq --bits 4 --group 128 --format gptq \
    --calib-ids "$calib" --device "$device" --out "$work/$name" >"$work/$name.log" 2>&1
  awk -v n="$name" -v d="$device" -v t0="$t0" -v t1="$(now)" \
    'BEGIN { printf "%-6s --device %-7s %6.1f s\n", n, d, t1 - t0 }'
done
for f in $(cd "$work/gpu-1" && ls); do
  if cmp -s "$work/gpu-1/$f" "$work/gpu-2/$f"; then same=identical; else same=DIFFERENT; fi
  echo "gpu-1 vs gpu-2 $f: $same"
done

ppl() {
  "$ptq" eval --model "$1" --ids "$eval_ids" --max-windows 100 | sed -n 's/^ppl \([0-9.]*\) .*/\1/p'
}
echo "## perplexity, first 100 generic eval windows (CPU eval)"
float=$(ppl "$model") gpu=$(ppl "$work/gpu-1") cpu=$(ppl "$work/cpu")
echo "float $float  GPTQ on CPU $cpu  GPTQ on GPU $gpu"
awk -v g="$gpu" -v c="$cpu" 'BEGIN { printf "GPU vs CPU: %+.4f %%\n", 100 * (g - c) / c }'
