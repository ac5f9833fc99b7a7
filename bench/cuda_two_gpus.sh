#!/usr/bin/env bash
# The GPU path data-parallel over two GPUs (--device cuda:0,1) against one
# (--device cuda:0), and its stream spilled to host memory (docs/bench/cuda.md,
# "The spilled stream, measured; two GPUs, not yet"); on a one-GPU machine the
# two-GPU parts are skipped:
#  1. the two-GPU test (tests/cuda/device_path_test.cpp);
#  2. GPTQ W4 g128 of tiny on 128 fixture windows of 512 into the GPTQ format,
#     twice on one GPU and twice on two: repeated outputs compared byte for
#     byte, the two-GPU output with the one-GPU output, and each output's
#     perplexity on the first 100 generic eval windows;
#  3. a Llama-3-8B-shaped random bf16 checkpoint of LAYERS blocks, 128 windows
#     of 2048 random ids: the --dry-run estimates, then end to end (load ->
#     packed output written) on one GPU, on one GPU planning within 13 GiB
#     (the 4 GiB stream does not fit beside the ~10.5 GiB working set: it is
#     spilled, and the MLP hidden state recomputed), and on two, each GPU's
#     memory peak (nvidia-smi, sampled every 100 ms), and the outputs compared.
# NCCL comes from the lib folder of Python's nvidia-nccl package when the
# loader's path has none.
#   bench/cuda_two_gpus.sh PTQ TEST_CUDA SHARED WORK [LAYERS]
set -euo pipefail
ptq=$1 test_cuda=$2 shared=$3 work=$4 layers=${5:-32}
bench=$(dirname "$0")
mkdir -p "$work"
now() { date +%s.%N; }
nccl=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' \
  2>/dev/null || true)
[ -n "$nccl" ] && export LD_LIBRARY_PATH=$nccl:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0  # NVLink multicast stays off on these machines

echo "## machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "$(nproc) CPU cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"

gpus=$(nvidia-smi -L | wc -l)
if [ "$gpus" -ge 2 ]; then
  echo "## tests/cuda (two GPUs)"
  PTQ_SHARED_DIR=$shared "$test_cuda" --gtest_filter='DevicePathOnTwoGpus.*' || echo "## TESTS FAILED"
fi

# Runs `ptq quantize ARGS --device DEVICE --out WORK/NAME`, printing its time.
quantize() {
  local name=$1 device=$2 t0
  shift 2
  t0=$(now)
  "$ptq" quantize "$@" --device "$device" --out "$work/$name" >"$work/$name.log" 2>&1 || {
    tail -30 "$work/$name.log"; return 1; }
  awk -v n="$name" -v d="$device" -v t0="$t0" -v t1="$(now)" \
    'BEGIN { printf "%-6s --device %-8s %6.1f s\n", n, d, t1 - t0 }'
}
# Whether the files of two output folders are the same bytes.
compare() {
  local f same
  for f in $(cd "$work/$1" && ls); do
    if cmp -s "$work/$1/$f" "$work/$2/$f"; then same=identical; else same=DIFFERENT; fi
    echo "$1 vs $2 $f: $same"
  done
}

echo "## GPTQ W4 g128 of tiny, 128 windows of 512 tokens"
model=$shared/fixtures/models/tiny
tiny=(--model "$model" --method gptq --bits 4 --group 128 --format gptq
  --calib-ids "$shared/fixtures/goldens/tiny/calib_generic.ids")
quantize one-1 cuda:0 "${tiny[@]}"
quantize one-2 cuda:0 "${tiny[@]}"
compare one-1 one-2
if [ "$gpus" -ge 2 ]; then
  quantize two-1 cuda:0,1 "${tiny[@]}"
  quantize two-2 cuda:0,1 "${tiny[@]}"
  grep -m1 "GPU path" "$work/two-1.log" || true
  compare two-1 two-2
  compare one-1 two-1
fi
ppl() {
  "$ptq" eval --model "$1" --ids "$shared/fixtures/goldens/tiny/eval_generic.ids" \
    --max-windows 100 --device cuda 2>/dev/null | sed -n 's/^ppl \([0-9.]*\) .*/\1/p'
}
echo "perplexity, first 100 generic eval windows: float $(ppl "$model")  one GPU $(ppl "$work/one-1")" \
  "$([ "$gpus" -ge 2 ] && echo " two GPUs $(ppl "$work/two-1")")"

echo "## Llama-3-8B shape, $layers blocks, 128 windows of 2048"
python3 "$bench/make_shaped_checkpoint.py" --out "$work/m8" --layers "$layers" \
  --ids "$work/c8.ids" --windows 128 --seqlen 2048
big=(--model "$work/m8" --method gptq --bits 4 --group 128 --format gptq
  --calib-ids "$work/c8.ids" --samples 128 --seqlen 2048)
devices=(cuda:0) runs=("o1 cuda:0" "o1s cuda:0 --gpu-memory 13")
[ "$gpus" -ge 2 ] && devices+=(cuda:0,1) runs+=("o2 cuda:0,1")
for device in "${devices[@]}"; do
  "$ptq" quantize "${big[@]}" --device "$device" --out "$work/dry" --dry-run | grep -E "^(time|GPU)"
done
for run in "${runs[@]}"; do
  read -r name device extra <<<"$run"
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 100 \
    >"$work/$name.mem" &
  sampler=$!
  # shellcheck disable=SC2086  # extra: flags, split on purpose
  quantize "$name" "$device" "${big[@]}" $extra || { kill $sampler; exit 1; }
  kill $sampler
  grep -E "GPU path|^block (0|$((layers - 1))) " "$work/$name.log" || true
  sort -t, -k1,1n -k2,2n "$work/$name.mem" |
    awk -F, '{ peak[$1] = $2 } END { for (g in peak) printf "GPU %d memory peak %.1f GiB\n", g, peak[g] / 1024 }'
  [ "$name" = o1 ] || compare o1 "$name"
  [ "$name" = o1 ] || rm -rf "${work:?}/$name"
done
