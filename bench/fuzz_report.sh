#!/usr/bin/env bash
# docs/bench/fuzz.md from bench/fuzz.sh's results:
#   bench/fuzz_report.sh RESULTS.tsv SECONDS PARALLEL > docs/bench/fuzz.md
# Each target's row says what it fuzzes: the first line of its source's comment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
results=$1 seconds=$2 parallel=$3
cat <<EOF
# Fuzzing ptq's parsers

Command: \`bench/fuzz.sh $seconds $parallel\` ($(date -u +%Y-%m-%d)): every target of
tests/fuzz/ for $seconds s, $parallel at a time, built by $(clang++-14 --version | head -1)
with ASan, UBSan and libFuzzer (\`-DPTQ_FUZZ=ON\`), \`-rss_limit_mb=2048 -timeout=10\`,
leak detection on, seeded with the fixtures (shrunk by \`fuzz_make_seeds\`) and the committed
corpus (tests/fuzz/corpus/). A finding restarts the target until its time is spent.
Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores (shared with other work).

| target | fuzzes | seconds | executions | exec/s | corpus | crashes | leaks | OOMs | timeouts | sanitizer reports |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
tail -n +2 "$results" | while IFS=$'\t' read -r name secs execs rate corpus crashes leaks ooms timeouts reports _; do
  what=$(sed -n '1s|^// *||p' "$root/tests/fuzz/${name}_fuzz.cpp")
  echo "| $name | $what | $secs | $execs | $rate | $corpus | $crashes | $leaks | $ooms | $timeouts | $reports |"
done
cat <<EOF

Findings are in build-fuzz/campaign/artifacts/<target>/ (reproduce one with
\`build-fuzz/tests/fuzz/fuzz_<target> FILE\`); \`bench/fuzz.sh minimize\` folds the
campaign's corpus into tests/fuzz/corpus/, which ctest replays (\`Fuzz.<target>Replay\`;
CI's sanitizer stage replays the io/ targets' corpora under ASan and UBSan too).
EOF
