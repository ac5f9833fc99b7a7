#!/usr/bin/env bash
# Full-set perplexity of the fixture models against goldens/<m>/reference.json,
# recorded in docs/bench/eval_reference.md.
# Usage: bash bench/eval_reference.sh [threads=2] [models="tiny small"] [sets="eval_generic"]
# (from the repo root, after building; sets may add eval_domain)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
models=${2:-tiny small}
sets=${3:-eval_generic}
shared=${PTQ_SHARED_DIR:-../shared}
cmake --build build --target ptq >/dev/null
tmp=$(mktemp -d)
rows=""
for m in $models; do
  for s in $sets; do
    start=$(date +%s)
    ./build/pipeline/ptq eval --model "$shared/fixtures/models/$m" \
      --ids "$shared/fixtures/goldens/$m/$s.ids" --threads "$threads" --json "$tmp/$m-$s.json" 2>/dev/null >/dev/null
    seconds=$(( $(date +%s) - start ))
    rows+=$(python3 - "$tmp/$m-$s.json" "$shared/fixtures/goldens/$m/reference.json" "$m" "$s" "$seconds" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))
ref = json.load(open(sys.argv[2]))[sys.argv[4]]
rel = (ours["ppl"] - ref["ppl"]) / ref["ppl"]
ok = abs(rel) < 5e-4 and ours["predicted_tokens"] == ref["predicted_tokens"] and ours["windows"] == ref["windows"]
print(f'| {sys.argv[3]} | {sys.argv[4]} | {ours["ppl"]:.6f} | {ref["ppl"]:.6f} | {rel:+.2e} | '
      f'{ours["nll_sum"]:.3f} | {ref["nll_sum"]:.3f} | {ours["predicted_tokens"]} / {ref["predicted_tokens"]} | '
      f'{ours["windows"]} | {sys.argv[5]} | {"yes" if ok else "NO"} |')
PY
)$'\n'
  done
done
mkdir -p docs/bench
{
  echo "# Full-set perplexity vs the fixtures' reference (float32)"
  echo
  echo "Command: \`bash bench/eval_reference.sh $threads \"$models\" \"$sets\"\`; protocol of"
  echo "shared/fixtures/PROTOCOL.md (windows of 512, remainder dropped, tokens 1..511 predicted)."
  echo "Pass: |ppl - ref| / ref < 0.05 %, predicted tokens and windows equal."
  echo
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, --threads $threads; $(uname -sr)"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
  echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: seconds are wall time under that load)"
  echo
  echo "| model | set | ppl | reference ppl | rel. diff | nll_sum | reference nll_sum | predicted tokens (ours / ref) | windows | seconds | pass |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s' "$rows"
} > docs/bench/eval_reference.md
rm -rf "$tmp"
cat docs/bench/eval_reference.md
