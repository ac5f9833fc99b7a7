#!/usr/bin/env bash
# The shipped W4 g128 best recipe (recipes/w4-g128-best.yaml: the MSE clip
# inside GPTQ's grids, GPTQ toward the float model's outputs) on the GPU path,
# beside plain GPTQ W4 g128 (docs/bench/cuda.md, "The best recipe on the GPU"):
#  models: the device path's tests (tests/cuda/device_path_test.cpp); then for
#     tiny and the qwen2 model (docs/tuning.md), 128 generic calibration
#     windows of 512: the best recipe on the CPU, twice on the GPU (outputs
#     compared byte for byte; the GPU's GEMMs in TF32), once on the GPU in
#     float32, and plain GPTQ on the GPU, each run's seconds
#     and its perplexity on the validation texts (bench/validation_split.py,
#     tokenized into IDS/<model>/validation_{generic,domain}.ids);
#  8b: a Llama-3-8B-shaped random bf16 checkpoint of LAYERS blocks, 128
#     windows of 2048 random ids: the --dry-run estimates, then plain GPTQ and
#     the best recipe end to end (load -> packed output written), each with
#     its per-block log and the GPU's memory peak (nvidia-smi, every 100 ms);
#     then the best recipe planned within 20 GiB (--gpu-memory: both streams
#     spilled to host memory, the stage inputs recomputed), its bytes compared
#     with the resident run's.
#   bench/cuda_best_recipe.sh PTQ TEST_CUDA SHARED WORK IDS QWEN2 "models 8b" [LAYERS]
set -euo pipefail
ptq=$1 test_cuda=$2 shared=$3 work=$4 ids=$5 qwen2=$6 parts=$7 layers=${8:-32}
bench=$(dirname "$0")
best=$bench/../recipes/w4-g128-best.yaml
mkdir -p "$work"
now() { date +%s.%N; }

echo "## machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "$(nproc) CPU cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"

# Runs `ptq quantize ARGS --out WORK/NAME`, printing its seconds.
quantize() {
  local name=$1 t0
  shift
  t0=$(now)
  "$ptq" quantize "$@" --out "$work/$name" >"$work/$name.log" 2>&1 || {
    tail -30 "$work/$name.log"; return 1; }
  awk -v n="$name" -v t0="$t0" -v t1="$(now)" 'BEGIN { printf "%-16s %7.1f s\n", n, t1 - t0 }'
}
# Whether two output folders hold the same bytes (run.json, which records
# the run's seconds, aside).
same_bytes() {
  local f
  for f in $(cd "$work/$1" && ls); do
    [ "$f" = run.json ] && continue
    cmp -s "$work/$1/$f" "$work/$2/$f" || { echo "$1 vs $2: $f DIFFERENT"; return; }
  done
  echo "$1 vs $2: identical bytes (run.json aside)"
}
ppl() {
  "$ptq" eval --model "$1" --ids "$2" --device cuda 2>/dev/null | sed -n 's/^ppl \([0-9.]*\) .*/\1/p'
}

if [[ " $parts " == *" models "* ]]; then
  echo "## tests/cuda (device path)"
  PTQ_SHARED_DIR=$shared "$test_cuda" --gtest_filter='DevicePath.*' || echo "## TESTS FAILED"
  for m in tiny qwen2; do
    model=$shared/fixtures/models/tiny calib=$shared/fixtures/goldens/tiny/calib_generic.ids
    [ "$m" = qwen2 ] && model=$qwen2 calib=$shared/fixtures/goldens/small/calib_generic.ids
    echo "## $m, W4 g128, 128 windows of 512 tokens"
    common=(--model "$model" --format gptq --calib-ids "$calib")
    quantize "$m-best-cpu" "${common[@]}" --recipe "$best" --device cpu
    quantize "$m-best-gpu" "${common[@]}" --recipe "$best" --device cuda
    quantize "$m-best-gpu2" "${common[@]}" --recipe "$best" --device cuda
    quantize "$m-best-gpu-fp32" "${common[@]}" --recipe "$best" --device cuda --gpu-math fp32
    quantize "$m-plain-gpu" "${common[@]}" --method gptq --bits 4 --group 128 --device cuda
    grep -m1 "GPU path (" "$work/$m-best-gpu.log" || true
    same_bytes "$m-best-gpu" "$m-best-gpu2"
    for text in generic domain; do
      v=$ids/$m/validation_$text.ids
      [ "$m" = qwen2 ] && v=$ids/small/validation_$text.ids
      echo "validation_$text ppl: float $(ppl "$model" "$v"), best on the CPU" \
        "$(ppl "$work/$m-best-cpu" "$v"), best on the GPU $(ppl "$work/$m-best-gpu" "$v")" \
        "(fp32: $(ppl "$work/$m-best-gpu-fp32" "$v"))," \
        "plain on the GPU $(ppl "$work/$m-plain-gpu" "$v")"
    done
  done
fi

if [[ " $parts " == *" 8b "* ]]; then
  echo "## Llama-3-8B shape, $layers blocks, 128 windows of 2048"
  t0=$(now)
  python3 "$bench/make_shaped_checkpoint.py" --out "$work/m8" --layers "$layers" \
    --ids "$work/c8.ids" --windows 128 --seqlen 2048
  awk -v t0="$t0" -v t1="$(now)" 'BEGIN { printf "checkpoint made in %.1f s\n", t1 - t0 }'
  big=(--model "$work/m8" --format gptq --calib-ids "$work/c8.ids" --samples 128 --seqlen 2048
    --device cuda)
  for run in "plain --method gptq --bits 4 --group 128" "best --recipe $best" \
    "spilled --recipe $best --gpu-memory 20"; do
    read -r name flags <<<"$run"
    # shellcheck disable=SC2086  # flags: split on purpose
    "$ptq" quantize "${big[@]}" $flags --out "$work/dry" --dry-run | grep -E "^(time|GPU)" |
      sed "s/^/$name --dry-run: /"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$work/$name.mem" &
    sampler=$!
    # shellcheck disable=SC2086
    quantize "8b-$name" "${big[@]}" $flags || { kill $sampler; exit 1; }
    kill $sampler
    grep -E "GPU path|^block (0|$((layers - 1))) " "$work/8b-$name.log" || true
    sort -n "$work/$name.mem" | tail -1 | awk '{ printf "GPU memory peak %.1f GiB\n", $1 / 1024 }'
  done
  same_bytes 8b-best 8b-spilled
  rm -rf "${work:?}"/8b-*/
fi
