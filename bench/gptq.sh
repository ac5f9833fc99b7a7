#!/usr/bin/env bash
# GPTQ speed: ptq's gptq_quantize against our PyTorch implementation of the reference
# GPTQ.fasterquant (bench/gptq_reference.py), same layers, same thread count, one run.
# Builds bench_gptq_torch in Release, runs both, writes docs/bench/gptq.md.
#
#   bench/gptq.sh [--threads N] [--python PATH] [--build-dir DIR] [--no-build] [--keep-data]
#                 [--out FILE]
#
# --no-build runs an existing DIR/bench/bench_gptq_torch (e.g. copied to another machine);
# --keep-data keeps the layers in DIR/bench-gptq-data (about 1 GB) for profiling.
set -euo pipefail

command="bench/gptq.sh $*"
root=$(cd "$(dirname "$0")/.." && pwd)
threads=2
python=${PTQ_BENCH_PYTHON:-/tmp/venv/bin/python}
build_dir=$root/build-release
build=1
keep_data=0
out=$root/docs/bench/gptq.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep-data) keep_data=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "gptq.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

if [[ $build == 1 ]]; then
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPTQ_BUILD_TESTS=OFF \
    >/dev/null
  cmake --build "$build_dir" -j2 --target bench_gptq_torch
fi
bench=$build_dir/bench/bench_gptq_torch
data=$build_dir/bench-gptq-data
rm -rf "$data"
mkdir -p "$data" "$(dirname "$out")"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
"$python" "$root/bench/gptq_reference.py" --out "$data" --threads "$threads"
tables=$("$bench" "$data" --threads "$threads")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
commit=${PTQ_BENCH_COMMIT:-$(git -C "$root" rev-parse --short HEAD)}
torch_version=$("$python" -c 'import torch; print(torch.__version__)')

tmp=$out.tmp
cat >"$tmp" <<EOF
# GPTQ: ptq against PyTorch, layer by layer

Written by \`bench/gptq.sh\` on $started (commit $commit).

- Command: \`${OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE }$command\`.
- Machine: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'),
  model $(lscpu | sed -n 's/^Model: *//p')), nproc $(nproc); both sides limited to
  **$threads threads** (\`torch.set_num_threads($threads)\`; TBB \`global_control\` and
  single-threaded OpenBLAS inside the row tasks for ptq).
- Load average (1, 5, 15 min) before: $load_before; after: $load_after. The machine may
  be shared: where the load exceeds the core count, both columns are inflated.
- torch $torch_version on the CPU, float32, our own implementation of the reference
  \`GPTQ.fasterquant\` semantics (\`bench/gptq_reference.py\`); ptq: \`gptq_quantize\`,
  Release build, float32 column loop (its Hessian factorization runs in float64).
- Timed: one call of the whole quantization of a layer (grids, damping, Cholesky
  inverse, column loop), H given. Config \`w4-g128\`: 4 bits, asymmetric, groups of 128
  (dynamic), natural column order, block 128, damp 0.01.
- Layers: W ~ N(0, 1/in); H = 2/n X^T X for n = 2048 tokens of correlated inputs
  X = Z1 diag(s) + Z2 B (log-uniform channel scales s over 1e-2..1e1, a rank-64 mixing B),
  so H is ill-conditioned, and singular where in > 2048 (damping repairs it).
- torch / ptq > 1 means ptq is faster.

$tables

Cross-check columns: codes that differ from the PyTorch run (original column order);
rows containing any difference (one flipped rounding changes the error that the rest of
its row receives, so differences come in runs within a row); the largest difference of
the dequantized weights; and the layer's output error tr((W - W') H (W - W')^T) of each
result. The \`f64\` row runs both sides in float64 and must agree exactly; the float32 rows
differ only where float32 rounding (torch's float32 Cholesky against ptq's float64 one,
and different GEMM summation orders) tips a value across a rounding boundary.
EOF
mv "$tmp" "$out"
[[ $keep_data == 1 ]] || rm -rf "$data"
echo "wrote $out"
