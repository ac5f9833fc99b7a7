#!/usr/bin/env bash
# The whole test suite under AddressSanitizer and UBSan (issue 16). CI runs the
# io/ tests and the fuzz corpora under the sanitizers; every other test needs
# the whole tree built with them, hours on a 2-core machine, so this bench runs
# it and writes a markdown record:
#  - the machine, the commit and the build (RelWithDebInfo, -DPTQ_SANITIZE=ON:
#    ASan, UBSan with -fno-sanitize-recover, LeakSanitizer at exit);
#  - ctest's counts and its slowest tests;
#  - every sanitizer report in the tests' output ("ERROR: AddressSanitizer",
#    "ERROR: LeakSanitizer", "runtime error:"), which fail their test too.
# A sanitized build gives each test 10 times its Release time limit
# (PTQ_TEST_TIMEOUT_FACTOR in CMakeLists.txt).
# Usage: bench/asan_suite.sh [BUILD_DIR] [RECORD]   (defaults build-asan, docs/bench/asan_suite.md)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-asan}
record=${2:-docs/bench/asan_suite.md}
jobs=$(nproc)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPTQ_SANITIZE=ON >/dev/null
cmake --build "$build" -j "$jobs"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
log=$build/asan_suite.log
start=$(date +%s)
status=0
ctest --test-dir "$build" -j "$jobs" --output-on-failure >"$log" 2>&1 ||
  status=$?
seconds=$(($(date +%s) - start))

summary=$(grep -E '^[0-9]+% tests passed' "$log" || echo "no ctest summary (exit $status)")
reports=$(grep -cE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log" || true)
{
  echo "# The whole test suite under ASan and UBSan"
  echo
  echo "\`bench/asan_suite.sh\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with local changes)'):"
  echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(. /etc/os-release && echo "$PRETTY_NAME"), $(c++ --version | head -1)."
  echo
  echo "- ctest: $summary; $seconds s."
  echo "- Sanitizer reports in the output: $reports."
  echo "- ctest's exit status: $status."
  echo
  echo "Tests that failed or timed out:"
  echo
  echo '```'
  sed -n '/The following tests FAILED/,$p' "$log" | grep -E '^\s+[0-9]+ - ' || echo "(none)"
  echo '```'
  echo
  echo "The slowest tests:"
  echo
  echo '```'
  sed -nE 's/.*Test +#[0-9]+: ([^ ]+) .* ([0-9.]+) sec$/\2 s  \1/p' "$log" | sort -rn | head -15
  echo '```'
  if [ "$reports" != 0 ]; then
    echo
    echo "Sanitizer reports:"
    echo
    echo '```'
    grep -E -A12 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log" | head -200
    echo '```'
  fi
} >"$record"
echo "wrote $record"
exit "$status"
