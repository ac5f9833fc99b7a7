#!/usr/bin/env bash
# docs/bench/fuzz.md from bench/fuzz.sh's record of each target's last run:
#   bench/fuzz_report.sh docs/bench/fuzz_results.tsv > docs/bench/fuzz.md
# Each target's row says what it fuzzes: the first line of its source's comment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
results=$1
cat <<EOF2
# Fuzzing ptq's parsers

Command: \`bench/fuzz.sh SECONDS PARALLEL [TARGET...]\`: each target of tests/fuzz/ for
SECONDS, PARALLEL targets at a time on the machine (each with PTQ_FUZZ_WORKERS processes
on one corpus: "workers"), built by $(clang++-14 --version 2>/dev/null | head -1 || echo clang 14)
with ASan, UBSan and libFuzzer (\`-DPTQ_FUZZ=ON\`) from the commit in its row,
\`-rss_limit_mb=2048 -timeout=10\`, leak detection on, seeded with the fixtures (shrunk by
\`fuzz_make_seeds\`) and the committed corpus (tests/fuzz/corpus/). A finding restarts the
target until its time is spent; the light parsers (safetensors, ids, model_config) run on
until they have done 10 million executions. Each row is the target's last run
(docs/bench/fuzz_results.tsv; a campaign may run a few targets at a time, and a target's
run may be cut into parts that add up: PTQ_FUZZ_ADD). "seconds" is wall time; a target
with several workers was fuzzed for workers x seconds of core time. The machine is the
one the row was run on (its cores shared with other work).

| target | fuzzes | commit | date | machine | at a time | workers | seconds | executions | exec/s | corpus | crashes | leaks | OOMs | timeouts | sanitizer reports |
|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF2
tail -n +2 "$results" | while IFS=$'\t' read -r name commit day machine parallel workers secs execs rate corpus crashes leaks ooms timeouts reports _; do
  what=$(sed -n '1s|^// *||p' "$root/tests/fuzz/${name}_fuzz.cpp")
  echo "| $name | $what | $commit | $day | $machine | $parallel | $workers | $secs | $execs | $rate | $corpus | $crashes | $leaks | $ooms | $timeouts | $reports |"
done
cat <<EOF2

Targets not listed have no run of record yet. Findings are in
build-fuzz/campaign/artifacts/<target>/ (reproduce one with
\`build-fuzz/tests/fuzz/fuzz_<target> FILE\`); \`bench/fuzz.sh minimize\` folds the
campaign's corpus into tests/fuzz/corpus/, which ctest replays (\`Fuzz.<target>Replay\`;
CI's sanitizer stage replays the io/ targets' corpora under ASan and UBSan too).
EOF2
