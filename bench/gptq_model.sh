#!/usr/bin/env bash
# Whole-model GPTQ time: `ptq quantize` against our PyTorch run of the same algorithm
# (bench/gptq_model_torch.py), on tiny and small, both pinned to the same CPUs, one run.
# Builds ptq in Release, runs both, evaluates both outputs (generic ppl, first 100
# windows) and writes docs/bench/gptq_model.md.
#
#   bench/gptq_model.sh [--cpus LIST] [--python PATH] [--build-dir DIR] [--no-build]
#                       [--models "tiny small"] [--out FILE]
#
# --cpus is the taskset CPU list (default 0,1: the CI machine's 2 cores); both sides get
# as many threads as it names CPUs.
set -euo pipefail

command="bench/gptq_model.sh $*"
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${PTQ_SHARED_DIR:-$root/../shared}
cpus=0,1
python=${PTQ_BENCH_PYTHON:-/tmp/venv/bin/python}
build_dir=$root/build-release
build=1
models="tiny small"
out=$root/docs/bench/gptq_model.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --cpus) cpus=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --models) models=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "gptq_model.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
threads=$(taskset -c "$cpus" nproc)

if [[ $build == 1 ]]; then
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPTQ_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build_dir" -j2 --target ptq
fi
ptq=$build_dir/pipeline/ptq
data=$build_dir/bench-gptq-model
rm -rf "$data"
mkdir -p "$data" "$(dirname "$out")"

now() { date +%s.%N; }
# generic ppl of the first 100 eval windows
ppl() {
  "$ptq" eval --model "$1" --ids "$shared/fixtures/goldens/$2/eval_generic.ids" --max-windows 100 \
    --threads "$threads" | sed -n 's/^ppl \([0-9.]*\) .*/\1/p'
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
rows=""
for m in $models; do
  model=$shared/fixtures/models/$m
  calib=$shared/fixtures/goldens/$m/calib_generic.ids
  t0=$(now)
  taskset -c "$cpus" "$ptq" quantize --model "$model" --method gptq --bits 4 --group 128 --format dequantized \
    --calib-ids "$calib" --threads "$threads" --out "$data/$m-ptq" >"$data/$m-ptq.log" 2>&1
  t1=$(now)
  taskset -c "$cpus" "$python" "$root/bench/gptq_model_torch.py" --model "$model" --calib-ids "$calib" \
    --threads "$threads" --out "$data/$m-torch" >"$data/$m-torch.log" 2>&1
  ptq_s=$(awk -v a="$t1" -v b="$t0" 'BEGIN{print a - b}')
  torch_s=$(sed -n 's/^seconds //p' "$data/$m-torch.log")
  gptq_s=$(awk '/^layer /{for(i=1;i<=NF;i++) if($i~/^[0-9.]+s$/) t+=$i} END{print t+0}' "$data/$m-ptq.log")
  rows+=$(printf '| %s | %.1f | %.1f | %.2f | %.1f | %s | %s |' "$m" "$torch_s" "$ptq_s" \
    "$(awk -v a="$torch_s" -v b="$ptq_s" 'BEGIN{print a / b}')" "$gptq_s" "$(ppl "$data/$m-torch" "$m")" "$(ppl "$data/$m-ptq" "$m")")
  rows+=$'\n'
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
commit=${PTQ_BENCH_COMMIT:-$(git -C "$root" rev-parse --short HEAD)}
torch_version=$("$python" -c 'import torch; print(torch.__version__)')

tmp=$out.tmp
cat >"$tmp" <<EOF
# GPTQ, whole model: ptq against PyTorch

Written by \`bench/gptq_model.sh\` on $started (commit $commit).

- Command: \`$command\`.
- Machine: $(lscpu | sed -n 's/^Model name: *//p'), nproc $(nproc); both sides pinned to
  CPUs $cpus (\`taskset -c $cpus\`) with **$threads threads** (\`--threads $threads\`;
  \`torch.set_num_threads($threads)\`).
- Load average (1, 5, 15 min) before: $load_before; after: $load_after. This machine is
  shared with other engineers' builds and tests: where the load exceeds the core count,
  both columns are inflated, and by different amounts (the runs are minutes apart).
- ptq: \`ptq quantize --method gptq --bits 4 --group 128 --calib-ids calib_generic.ids
  --threads $threads\`, Release build, timed as the whole command (loading, calibration,
  writing the output folder and quantized.h5). torch $torch_version on the CPU, float32:
  \`bench/gptq_model_torch.py\` (layer-0 input capture, true-sequential groups, Hessians by
  forward hooks, \`gptq\` of \`bench/gptq_reference.py\`, one window per forward call),
  timed from the first forward to the last layer's outputs (model loading and saving
  excluded).
- Both: 128 windows of 512 tokens (\`goldens/<model>/calib_generic.ids\`), W4 asymmetric,
  groups of 128, damp 0.01, block 128, natural column order.
- torch / ptq > 1 means ptq is faster. "ptq GPTQ s" is the sum of the per-Linear GPTQ
  times in ptq's log; the rest of ptq's time is mostly the block passes of the
  calibration windows. ppl: \`ptq eval --ids eval_generic.ids --max-windows 100\` of each
  output.

| model | torch s | ptq s | torch / ptq | ptq GPTQ s | ppl torch output | ppl ptq output |
|---|---:|---:|---:|---:|---:|---:|
$rows
EOF
mv "$tmp" "$out"
echo "wrote $out"
