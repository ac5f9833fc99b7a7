#!/usr/bin/env bash
# Forward throughput of `small` at ctx 512 beside one 2048^3 cblas_sgemm with
# the same threads (same run), recorded in docs/bench/forward.md.
# Usage: bash bench/forward.sh [threads=2] [windows=4]   (from the repo root, after building)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
windows=${2:-4}
shared=${PTQ_SHARED_DIR:-../shared}
cmake --build build --target bench_forward >/dev/null
out=$(./build/bench/bench_forward "$shared/fixtures/models/small" \
  "$shared/fixtures/goldens/small/eval_generic.ids" 512 "$windows" "$threads" 3)
mkdir -p docs/bench
{
  echo "# Forward throughput (float32, CPU)"
  echo
  echo "Command: \`bash bench/forward.sh $threads $windows\` (bench/bench_forward.cpp: best of 3;"
  echo "the forward is embed + all blocks + final norm + head over $windows windows of 512 tokens,"
  echo "blocks resident; FLOPs = 2 x linear weights incl. head x tokens + 2 x layers x ctx x hidden x tokens)."
  echo
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(uname -sr)"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
  echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared)"
  echo
  echo '```'
  echo "$out"
  echo '```'
} > docs/bench/forward.md
cat docs/bench/forward.md
