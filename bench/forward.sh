#!/usr/bin/env bash
# Forward throughput of `small` at ctx 512, and of one Llama-2-7B-width block
# with random weights, each beside the machine's SGEMM peak with the same
# threads (same run), recorded in docs/bench/forward.md.
# Usage: bash bench/forward.sh [threads=2] [windows=4] [windows_7b=2]   (from the repo root, after building)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
windows=${2:-4}
windows_7b=${3:-2}
shared=${PTQ_SHARED_DIR:-../shared}
cmake --build build --target bench_forward >/dev/null
load=$(cut -d' ' -f1-3 /proc/loadavg)
small=$(./build/bench/bench_forward "$shared/fixtures/models/small" \
  "$shared/fixtures/goldens/small/eval_generic.ids" 512 "$windows" "$threads" 3)
width_7b=$(./build/bench/bench_forward llama2-7b 512 "$windows_7b" "$threads" 3 1)
small_avx2=$(OPENBLAS_CORETYPE=Haswell ./build/bench/bench_forward "$shared/fixtures/models/small" \
  "$shared/fixtures/goldens/small/eval_generic.ids" 512 "$windows" "$threads" 3)
width_7b_avx2=$(OPENBLAS_CORETYPE=Haswell ./build/bench/bench_forward llama2-7b 512 "$windows_7b" "$threads" 3 1)
mkdir -p docs/bench
{
  echo "# Forward throughput (float32, CPU)"
  echo
  echo "Command: \`bash bench/forward.sh $threads $windows $windows_7b\` (bench/bench_forward.cpp: best of 3)."
  echo "small: embed + all blocks + final norm + head over $windows windows of 512 tokens, blocks"
  echo "resident; FLOPs = 2 x linear weights incl. head x tokens + 2 x layers x ctx x hidden x tokens."
  echo "llama2-7b: one block of Llama-2-7B's width (hidden 4096, MLP 11008, 32 heads of 128) with"
  echo "random weights (fixed seed, built in memory) over $windows_7b windows of 512 tokens; same FLOPs"
  echo "formula without the head. SGEMM peak: the better of one 2048^3 cblas_sgemm with $threads OpenBLAS"
  echo "threads and $threads single-threaded ones at once (TBB), in the same run. Each with the OpenBLAS"
  echo "kernels ptq picks, then limited to AVX2 (\`OPENBLAS_CORETYPE=Haswell\`)."
  echo
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(uname -sr)"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
  echo "- load average before the run: $load (the machine is shared)"
  echo
  echo '```'
  printf '%s\n\n' "$small" "$width_7b" "$small_avx2" "$width_7b_avx2"
  echo '```'
} > docs/bench/forward.md
cat docs/bench/forward.md
