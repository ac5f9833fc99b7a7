#!/usr/bin/env bash
# Multiple-choice tasks of the fixture models against goldens/<m>/tasks.json
# (log-likelihoods, continuation token counts) and reference.json (acc,
# acc_norm), recorded in docs/bench/tasks_reference.md.
# Usage: bash bench/tasks_reference.sh [threads=2] [models="tiny small"] [items=200]
# (from the repo root, after configuring build/)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
models=${2:-tiny small}
items=${3:-200}
shared=${PTQ_SHARED_DIR:-../shared}
cmake --build build --target bench_tasks >/dev/null
rows=""
for m in $models; do
  rows+=$(./build/bench/bench_tasks "$shared/fixtures" "$m" "$items" "$threads")$'\n'
done
mkdir -p docs/bench
{
  echo "# Multiple-choice tasks vs the fixtures' goldens (float32)"
  echo
  echo "Command: \`bash bench/tasks_reference.sh $threads \"$models\" $items\`; protocol of"
  echo "shared/fixtures/PROTOCOL.md \"Multiple-choice tasks\" (first $items items of each task)."
  echo "Pass: every |ll - golden ll| < 1e-3 nats, every continuation token count equal,"
  echo "acc and acc_norm equal to reference.json (in parentheses)."
  echo
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, --threads $threads; $(uname -sr)"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
  echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: seconds are wall time under that load)"
  echo
  echo "| model | task | items | choices | max abs ll error (nats) | choices >= 1e-3 | token count mismatches | acc (reference) | acc_norm (reference) | seconds (tokenize + score) |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s' "$rows"
} > docs/bench/tasks_reference.md
cat docs/bench/tasks_reference.md
