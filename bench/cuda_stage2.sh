#!/usr/bin/env bash
# The GPU path (--device cuda: stream, Hessians and GPTQ on the GPU) on a GPU
# machine (docs/bench/cuda.md, stage 2):
#  1. the device path's tests (tests/cuda/device_path_test.cpp);
#  2. GPTQ W4 g128 of MODEL (small, or tiny) on 128 fixture windows of 512 into the GPTQ
#     format: on the CPU, twice on the GPU in TF32 and once in float32; the
#     two TF32 outputs compared byte for byte; each output's perplexity on the
#     first 100 generic eval windows;
#  3. a Llama-3-8B-shaped random bf16 checkpoint of LAYERS blocks
#     (bench/make_shaped_checkpoint.py) quantized the same way with 128
#     windows of 2048 random ids: the --dry-run estimate, then the run end to
#     end (load -> packed output written) with its per-block log, the host's
#     peak memory and the GPU's (nvidia-smi, sampled every 100 ms);
#  4. the --dry-run estimate for a Llama-3-70B shape (a header-only checkpoint).
#   bench/cuda_stage2.sh PTQ TEST_CUDA SHARED WORK [LAYERS [MODEL]]
set -euo pipefail
ptq=$1 test_cuda=$2 shared=$3 work=$4 layers=${5:-32} name=${6:-small}
model=$shared/fixtures/models/$name
calib=$shared/fixtures/goldens/$name/calib_generic.ids
eval_ids=$shared/fixtures/goldens/$name/eval_generic.ids
bench=$(dirname "$0")
mkdir -p "$work"
now() { date +%s.%N; }

echo "## machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "$(nproc) CPU cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"

echo "## tests/cuda (device path)"
PTQ_SHARED_DIR=$shared "$test_cuda" --gtest_filter='DevicePath.*' || echo "## TESTS FAILED"

echo "## GPTQ W4 g128 of $name, 128 windows of 512 tokens"
for run in cpu:cpu:tf32 tf32-1:cuda:tf32 tf32-2:cuda:tf32 fp32:cuda:fp32; do
  IFS=: read -r name device math <<<"$run"
  t0=$(now)
  "$ptq" quantize --model "$model" --method gptq --bits 4 --group 128 --format gptq \
    --calib-ids "$calib" --device "$device" --gpu-math "$math" --out "$work/$name" \
    >"$work/$name.log" 2>&1
  awk -v n="$name" -v d="$device" -v t0="$t0" -v t1="$(now)" \
    'BEGIN { printf "%-7s --device %-5s %6.1f s\n", n, d, t1 - t0 }'
done
grep -m1 "GPU path" "$work/tf32-1.log" || true
for f in $(cd "$work/tf32-1" && ls); do
  if cmp -s "$work/tf32-1/$f" "$work/tf32-2/$f"; then same=identical; else same=DIFFERENT; fi
  echo "tf32-1 vs tf32-2 $f: $same"
done
ppl() {
  "$ptq" eval --model "$1" --ids "$eval_ids" --max-windows 100 --device cuda 2>/dev/null |
    sed -n 's/^ppl \([0-9.]*\) .*/\1/p'
}
echo "## perplexity, first 100 generic eval windows"
float=$(ppl "$model") cpu=$(ppl "$work/cpu") tf32=$(ppl "$work/tf32-1") fp32=$(ppl "$work/fp32")
echo "float $float  CPU $cpu  GPU tf32 $tf32  GPU fp32 $fp32"
awk -v t="$tf32" -v f="$fp32" -v c="$cpu" \
  'BEGIN { printf "GPU vs CPU: tf32 %+.4f %%, fp32 %+.4f %%\n", 100 * (t - c) / c, 100 * (f - c) / c }'

echo "## Llama-3-8B shape, $layers blocks, 128 windows of 2048"
t0=$(now)
python3 "$bench/make_shaped_checkpoint.py" --out "$work/m8" --layers "$layers" \
  --ids "$work/c8.ids" --windows 128 --seqlen 2048
awk -v t0="$t0" -v t1="$(now)" 'BEGIN { printf "checkpoint made in %.0f s\n", t1 - t0 }'
args=(--model "$work/m8" --method gptq --bits 4 --group 128 --format gptq
  --calib-ids "$work/c8.ids" --samples 128 --seqlen 2048 --device cuda)
"$ptq" quantize "${args[@]}" --out "$work/o8" --dry-run
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$work/gpu_mem.txt" &
sampler=$!
timer=()
if [ -x /usr/bin/time ]; then timer=(/usr/bin/time -v); fi
t0=$(now)
"${timer[@]}" "$ptq" quantize "${args[@]}" --out "$work/o8" >"$work/o8.log" 2>&1 || {
  tail -30 "$work/o8.log"; kill $sampler; exit 1; }
t1=$(now)
kill $sampler
grep -E "^block|GPU path|Maximum resident|Elapsed" "$work/o8.log" || true
awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "end to end %.1f s\n", t1 - t0 }'
sort -n "$work/gpu_mem.txt" | tail -1 | awk '{ printf "GPU memory peak (nvidia-smi) %.1f GiB\n", $1 / 1024 }'
du -sh "$work/o8"

echo "## Llama-3-70B shape (80 blocks): the --dry-run estimate on this GPU"
python3 "$bench/make_shaped_checkpoint.py" --out "$work/m70" --shape llama3-70b --header-only \
  --ids "$work/c70.ids" --windows 128 --seqlen 2048
"$ptq" quantize --model "$work/m70" --method gptq --bits 4 --group 128 --format gptq \
  --calib-ids "$work/c70.ids" --samples 128 --seqlen 2048 --device cuda --out "$work/o70" --dry-run
