#!/usr/bin/env bash
# Real model sizes on this machine: random-weight checkpoints with Llama-2-7B's
# widths (hidden 4096, MLP 11008, 32 heads, vocab 32000, bf16 shards;
# tests/data/make_wide_checkpoint.py), generated here and deleted afterwards.
#  1. For 2, 4 and 8 layers (and 1 layer of Qwen2.5-7B's widths: hidden 3584,
#     MLP 18944, 28 heads over 4 KV heads, q/k/v biases, vocab 152064): ptq
#     quantize GPTQ W4 g128 (4 windows of 512, --format gptq) and ptq eval (4
#     windows of 512 of WikiText-2 test), each
#     under bench/peak_memory.py (peak RssAnon: what ptq allocates, not the
#     mapped checkpoint's pages), beside its --dry-run estimate and the bound:
#     one block's float32 weights + its Hessians (double) + the calibration
#     activations + the float32 embedding and head, + 20 %.
#  2. Time per block, (t(8 layers) - t(2 layers)) / 6, and its projection to
#     7B (32 layers) and 70B (80 layers of Llama-2-70B's widths, scaled by each
#     part's FLOPs) for GPTQ with 128 windows, beside --dry-run's projections
#     (the 70B checkpoint written sparse: --dry-run reads headers only).
#  3. RTN -> GGUF Q4_K_M of the full 32-layer shape end to end: time and peak.
# Usage: bash bench/wide_model.sh [--ptq PATH] [--skip-full]   (repo root, after building)
# Writes docs/bench/wide_model.md. Needs ~18 GB of free disk for step 3.
set -euo pipefail
cd "$(dirname "$0")/.."
ptq=./build/pipeline/ptq
full=1
while [ $# -gt 0 ]; do
  case "$1" in
    --ptq) ptq=$2; shift 2 ;;
    --skip-full) full=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
shared=${PTQ_SHARED_DIR:-../shared}
work=$(mktemp -d "${TMPDIR:-/tmp}/ptq-wide.XXXXXX")
# Checkpoints and outputs go on exit; the figures stay when a step failed.
trap 'find "$work" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +' EXIT
calib="$shared/fixtures/corpus/generic_calib/$(ls "$shared/fixtures/corpus/generic_calib" | head -1)"
text="$shared/fixtures/corpus/generic_eval/wikitext2_test.txt"
gptq_args=(--method gptq --bits 4 --group 128 --seqlen 512 --format gptq --calib "$calib")
measure() {  # measure NAME CMD...: peak memory and time of CMD into $work/NAME.json
  local name=$1; shift
  python3 bench/peak_memory.py --json "$work/$name.json" -- "$@" > "$work/$name.log" 2>&1
}
for run in llama2-7b-2 llama2-7b-4 llama2-7b-8 qwen2.5-7b-1; do
  model="$work/$run"
  python3 tests/data/make_wide_checkpoint.py --shape "${run%-*}" --layers "${run##*-}" --out "$model"
  "$ptq" quantize --model "$model" "${gptq_args[@]}" --samples 4 --out "$work/out" --dry-run \
    > "$work/gptq-$run.dry"
  measure "gptq-$run" "$ptq" quantize --model "$model" "${gptq_args[@]}" --samples 4 --out "$work/out"
  "$ptq" eval --model "$model" --text "$text" --max-windows 4 --dry-run > "$work/eval-$run.dry"
  measure "eval-$run" "$ptq" eval --model "$model" --text "$text" --max-windows 4
  rm -rf "$model" "$work/out"
done
# --dry-run's projections: 32 layers of 7B, and 80 of 70B (sparse: headers only).
for shape in "llama2-7b 32" "llama2-70b 80"; do
  set -- $shape
  python3 tests/data/make_wide_checkpoint.py --shape "$1" --layers "$2" --out "$work/$1-dry" --no-data
  "$ptq" quantize --model "$work/$1-dry" "${gptq_args[@]}" --samples 128 --out "$work/unused" \
    --dry-run > "$work/$1-128.dry"
  rm -rf "$work/$1-dry"
done
if [ "$full" = 1 ]; then
  model="$work/llama2-7b-32"
  python3 tests/data/make_wide_checkpoint.py --shape llama2-7b --layers 32 --out "$model"
  "$ptq" quantize --model "$model" --method rtn --format gguf --gguf-type Q4_K_M \
    --out "$work/q4km" --dry-run > "$work/q4km.dry"
  measure q4km "$ptq" quantize --model "$model" --method rtn --format gguf --gguf-type Q4_K_M \
    --out "$work/q4km"
  du -b "$model"/*.safetensors | awk '{s+=$1} END {printf "%.0f\n", s}' > "$work/q4km.in"
  du -b "$work/q4km/model.gguf" | cut -f1 > "$work/q4km.out"
  rm -rf "$model" "$work/q4km"
fi
mkdir -p docs/bench
python3 bench/wide_model_report.py "$work" "$full" > docs/bench/wide_model.md.tmp
{
  echo "# Real model sizes on a small machine: memory and time at 7B width"
  echo
  echo "Command: \`bash bench/wide_model.sh\` (checkpoints: tests/data/make_wide_checkpoint.py)."
  echo
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr)"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
  echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  cat docs/bench/wide_model.md.tmp
} > docs/bench/wide_model.md
rm docs/bench/wide_model.md.tmp
rm -rf "$work"
cat docs/bench/wide_model.md
