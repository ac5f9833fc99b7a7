#!/usr/bin/env bash
# Builds bench_tokenize (Release) and records the encode speed of WikiText-2 test
# with the tiny and small tokenizers in docs/bench/tokenize.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${PTQ_SHARED_DIR:-$root/../shared}
build=${BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPTQ_SHARED_DIR="$shared" >/dev/null
cmake --build "$build" --target bench_tokenize -j2 >/dev/null
text=$shared/fixtures/corpus/generic_eval/wikitext2_test.txt
out=$root/docs/bench/tokenize.md
mkdir -p "$(dirname "$out")"
{
  echo "# Tokenizer encode speed"
  echo
  echo "Text: corpus/generic_eval/wikitext2_test.txt ($(stat -c %s "$text") bytes), one thread, Release build."
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores available."
  echo "Command: bench/tokenize.sh ($(date -u +%Y-%m-%d))"
  echo
  (cd "$shared/fixtures" && "$build/bench/bench_tokenize" "$text" models/tiny models/small)
} > "$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
