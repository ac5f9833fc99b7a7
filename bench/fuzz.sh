#!/usr/bin/env bash
# libFuzzer campaign over every parser ptq owns (tests/fuzz/, one target each).
#   bench/fuzz.sh [SECONDS [PARALLEL [TARGET...]]]
# builds build-fuzz with clang-14 (-DPTQ_FUZZ=ON: ASan + UBSan + libFuzzer),
# makes the seeds (fuzz_make_seeds: the fixtures shrunk by ptq's own writers),
# runs each target (default: all) for SECONDS (default 1200), PARALLEL targets
# at a time (default 1), with -rss_limit_mb=2048 -timeout=10. Each target's
# summary replaces its row in docs/bench/fuzz_results.tsv (with the commit its
# binaries were built from and the date), so a campaign may be run a few
# targets at a time, on several days; docs/bench/fuzz.md is written from all
# the rows. A target that
# finds a crash is restarted until its time is spent; crashes, leaks, OOMs
# and timeouts are kept in build-fuzz/campaign/artifacts/<target>/, each
# target's log in build-fuzz/campaign/logs/. The corpus grows in
# build-fuzz/campaign/corpus/<target>/ from run to run.
#   bench/fuzz.sh minimize [TARGET...]
# merges the campaign's corpus and seeds with the committed corpus into
# tests/fuzz/corpus/<target>/: libFuzzer's greedy set cover of the edges
# (-set_cover_merge=1 -use_counters=0), which keeps the corpus small enough to
# commit and to replay in CI, then trimmed to PTQ_FUZZ_CORPUS_KB (160) per
# target, the largest inputs first; the reproducers of fixed bugs in
# tests/fuzz/corpus/<target>/regressions/ stay.
# The light parsers (safetensors, ids, model_config) run on past SECONDS
# until they have done PTQ_FUZZ_MIN_EXECS executions (10 million).
# PTQ_FUZZ_WORKERS: libFuzzer processes per target sharing its corpus
# (libFuzzer rereads the corpus folder every second, so each worker picks up
# the others' finds); a row counts their executions together. "N" for every
# target, or a list such as "model_config=8,ids=3,1" (default 1).
# PTQ_FUZZ_PREBUILT=1: run the binaries and seeds already in build-fuzz (e.g.
# copied to a machine without clang or fixtures); build-fuzz/commit names the
# commit they are from.
# PTQ_FUZZ_ADD=1: add this run to the target's row of the same commit and
# machine (seconds, executions, runs and findings summed), for a campaign cut
# into parts by a machine's time limit; the corpus carries over between parts.
# PTQ_FUZZ_JOBS: build jobs (default 2); PTQ_FUZZ_MAX_LEN: largest input (65536).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${PTQ_SHARED_DIR:-$root/../shared}
build=$root/build-fuzz
work=$build/campaign
max_len=${PTQ_FUZZ_MAX_LEN:-65536}
light_targets=" safetensors ids model_config "
all_targets() { for f in "$root"/tests/fuzz/*_fuzz.cpp; do basename "$f" _fuzz.cpp; done; }

build_targets() {
  CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPTQ_FUZZ=ON -DPTQ_BUILD_TESTS=ON -DPTQ_SHARED_DIR="$shared" >/dev/null
  ninja -C "$build" -j "${PTQ_FUZZ_JOBS:-2}" fuzz_make_seeds $(printf 'fuzz_%s ' "$@") >/dev/null
  source_commit >"$build/commit"
}

# The last value of libFuzzer's final statistic `stat` in a log, or 0.
final_stat() { grep -o "stat::$1: *[0-9]*" "$2" | awk '{n = $2} END {print n + 0}'; }
# The bytes of the files under a folder.
bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
# Files named <kind>-* among a target's artifacts newer than its start stamp.
findings() { find "$1" -name "$2-*" -newer "$1/.start" | wc -l; }

# One libFuzzer process on target `name`'s corpus for `seconds`, restarted after
# each finding; past its time, it runs on until `min_execs`. Logs to `log`,
# prints its executions and runs.
fuzz_worker() {
  local name=$1 seconds=$2 min_execs=$3 log=$4 bin=$build/tests/fuzz/fuzz_$1
  local corpus=$work/corpus/$name artifacts=$work/artifacts/$name/
  local start=$SECONDS left=$seconds execs=0 runs=0 limit
  : >"$log"
  while ((left > 0 || execs < min_execs)); do
    # Past its time, a light target runs the executions it lacks (-runs).
    limit="-max_total_time=$left"
    ((left > 0)) || limit="-runs=$((min_execs - execs))"
    "$bin" "$limit" -rss_limit_mb=2048 -timeout=10 -max_len="$max_len" \
      -print_final_stats=1 -artifact_prefix="$artifacts" "$corpus" \
      "$root/tests/fuzz/corpus/$name" "$work/seeds/$name" >"$log.run" 2>&1 &
    local pid=$!
    wait "$pid" || true
    # The target's scratch folder (tests/fuzz/fuzz_util.hpp), left behind by a crash.
    rm -rf "/dev/shm/ptq-fuzz-$pid" "${TMPDIR:-/tmp}/ptq-fuzz-$pid"
    cat "$log.run" >>"$log"
    execs=$((execs + $(final_stat number_of_executed_units "$log.run")))
    runs=$((runs + 1))
    left=$((seconds - (SECONDS - start)))
    # A finding among the seeds (before INITED) would come back at every restart.
    grep -q INITED "$log.run" || break
  done
  rm -f "$log.run"
  echo "$execs $runs"
}

# The workers PTQ_FUZZ_WORKERS gives target `name`.
workers_for() {
  local entry n=1 spec=${PTQ_FUZZ_WORKERS:-1}
  for entry in ${spec//,/ }; do
    [[ $entry == *=* ]] || n=$entry
  done
  for entry in ${spec//,/ }; do
    [[ $entry == "$1="* ]] && n=${entry#*=}
  done
  echo "$n"
}

# One target for `seconds` with its workers; one summary line.
fuzz_one() {
  local name=$1 seconds=$2 workers
  workers=$(workers_for "$name")
  local corpus=$work/corpus/$name artifacts=$work/artifacts/$name log=$work/logs/$name.log
  mkdir -p "$corpus" "$artifacts" "$work/seeds/$name"
  touch "$artifacts/.start"
  local start=$SECONDS min_execs=0 execs=0 runs=0 w
  [[ $light_targets == *" $name "* ]] &&
    min_execs=$(((${PTQ_FUZZ_MIN_EXECS:-10000000} + workers - 1) / workers))
  for ((w = 0; w < workers; w++)); do
    fuzz_worker "$name" "$seconds" "$min_execs" "$log.$w" >"$log.$w.count" &
  done
  wait
  : >"$log"
  for ((w = 0; w < workers; w++)); do
    cat "$log.$w" >>"$log"
    read -r e r <"$log.$w.count"
    execs=$((execs + e)) runs=$((runs + r))
    rm -f "$log.$w" "$log.$w.count"
  done
  local elapsed=$((SECONDS - start))
  printf '%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n' "$name" "$workers" "$elapsed" \
    "$execs" $((execs / (elapsed > 0 ? elapsed : 1))) "$(find "$corpus" -type f | wc -l)" \
    "$(findings "$artifacts" crash)" "$(findings "$artifacts" leak)" \
    "$(findings "$artifacts" oom)" "$(findings "$artifacts" timeout)" \
    "$(grep -cE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$log")" "$runs"
}

# The commit the binaries are built from, "+dirty" when the tree has changes.
source_commit() {
  local commit
  commit=$(git -C "$root" rev-parse --short=10 HEAD)
  git -C "$root" diff --quiet HEAD -- . ':!docs' || commit+=+dirty
  echo "$commit"
}

# The rows of `results` (fuzz_results.tsv) with this run's summaries put in:
# a target's row is replaced, or with PTQ_FUZZ_ADD=1 summed with its row of
# the same commit and machine.
merge_rows() {
  local results=$1 commit=$2 day=$3 machine=$4 parallel=$5
  shift 5
  local old=$work/rows.old new=$work/rows.new
  if [[ -f $results ]]; then tail -n +2 "$results"; fi >"$old"
  for name in "$@"; do
    printf '%s\t%s\t%s\t%s\t%s\t' "$name" "$commit" "$day" "$machine" "$parallel"
    cut -f2- "$work/logs/$name.summary"
  done >"$new"
  # Columns: 1 target 2 commit 3 date 4 machine 5 at a time 6 workers 7 seconds
  # 8 executions 9 exec/s 10 corpus 11-15 findings 16 runs.
  awk -F'\t' -v OFS='\t' -v add="${PTQ_FUZZ_ADD:-0}" '
    FILENAME == ARGV[1] { row[$1] = $0; next }
    add == 1 && ($1 in row) {
      split(row[$1], o, "\t")
      if (o[2] == $2 && o[4] == $4) {
        $7 += o[7]; $8 += o[8]; $16 += o[16]
        for (i = 11; i <= 15; i++) $i += o[i]
        $9 = int($8 / ($7 > 0 ? $7 : 1))
      }
    }
    { row[$1] = $0 }
    END { for (t in row) print row[t] }' "$old" "$new" | sort
}

campaign() {
  local seconds=$1 parallel=$2
  shift 2
  if [[ ${PTQ_FUZZ_PREBUILT:-0} != 1 ]]; then
    build_targets "$@"
    rm -rf "$work/seeds"
    "$build/tests/fuzz/fuzz_make_seeds" "$work/seeds"
  fi
  mkdir -p "$work/logs"
  local commit day machine
  commit=$(cat "$build/commit") day=$(date -u +%Y-%m-%d)
  machine="$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1), $(nproc) cores"
  for name in "$@"; do
    while (($(jobs -rp | wc -l) >= parallel)); do wait -n || true; done
    fuzz_one "$name" "$seconds" >"$work/logs/$name.summary" &
  done
  wait
  # A target whose run broke off leaves no summary: no row is written for any.
  for name in "$@"; do
    [[ -s $work/logs/$name.summary ]] ||
      { echo "bench/fuzz.sh: $name left no summary; fuzz_results.tsv unchanged" >&2; exit 1; }
  done
  local results=$root/docs/bench/fuzz_results.tsv
  {
    printf 'target\tcommit\tdate\tmachine\tparallel\tworkers\tseconds\texecutions\texec_per_s'
    printf '\tcorpus\tcrashes\tleaks\tooms\ttimeouts\tsanitizer_reports\truns\n'
    merge_rows "$results" "$commit" "$day" "$machine" "$parallel" "$@"
  } >"$results.tmp"
  mv "$results.tmp" "$results"
  column -t -s $'\t' "$results"
  "$root/bench/fuzz_report.sh" "$results" >"$root/docs/bench/fuzz.md"
}

minimize() {
  build_targets "$@"
  local budget=$((${PTQ_FUZZ_CORPUS_KB:-160} * 1024))
  for name in "$@"; do
    local committed=$root/tests/fuzz/corpus/$name in=$work/merge-in/$name merged=$work/merged/$name
    rm -rf "$in" "$merged"
    mkdir -p "$in" "$merged" "$committed" "$work/corpus/$name" "$work/seeds/$name" "$work/logs"
    # The reproducers in regressions/ stay whether or not they add coverage.
    find "$committed" -maxdepth 1 -type f -exec cp {} "$in" \;
    "$build/tests/fuzz/fuzz_$name" -set_cover_merge=1 -use_counters=0 -max_len="$max_len" \
      -rss_limit_mb=2048 -timeout=10 "$merged" "$in" "$work/corpus/$name" "$work/seeds/$name" \
      >"$work/logs/$name.merge.log" 2>&1
    # Over the budget, the largest inputs go (the campaign's corpus keeps them).
    while (($(bytes "$merged") > budget)); do
      rm "$(find "$merged" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)"
    done
    find "$committed" -maxdepth 1 -type f -delete
    cp "$merged"/* "$committed"/
    echo "$name: $(find "$committed" -type f | wc -l) inputs, $(bytes "$committed") bytes" \
      "(regressions/ included)"
  done
}

if [[ ${1:-} == minimize ]]; then
  shift
  (($#)) || set -- $(all_targets)
  minimize "$@"
else
  seconds=${1:-1200} parallel=${2:-1}
  shift $(($# < 2 ? $# : 2))
  (($#)) || set -- $(all_targets)
  campaign "$seconds" "$parallel" "$@"
fi
