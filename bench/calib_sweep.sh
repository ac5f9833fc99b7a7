#!/usr/bin/env bash
# Issue 6's calibration-mix sweep: how the domain share of the calibration data moves
# generic and domain perplexity. One `ptq calibrate` keeps per-source statistics of the
# float model over all 128 generic and all 128 domain windows of goldens/<model>/; each
# share s then quantizes from those statistics with no forward pass (`ptq quantize
# --stats --mix g=100-s --mix d=s`, the approximation of docs/calibration.md), and the
# 70/30 share is also run exactly (sequential GPTQ on the first 90 generic + 38 domain
# windows, as PROTOCOL.md's mix rows). Every model is evaluated with `ptq eval` on
# eval_generic.ids and eval_domain.ids (KL and top-1 against the float model);
# bench/calib_sweep_report.py writes docs/bench/calib_sweep.md and calib_sweep.svg.
#
#   bench/calib_sweep.sh [--model small] [--flags "<ptq quantize flags>" | --recipe FILE]
#       [--shares "0 30 50 70 100"] [--max-windows W] [--threads N] [--jobs J]
#       [--ptq BINARY] [--fixtures DIR] [--work DIR] [--out FILE] [--no-kl] [--report-only]
#
# --flags default: "--method gptq --bits 3 --group 128"; --recipe FILE passes
# "--recipe FILE" instead (calibration flags are the script's: do not put --calib in them).
# Calibration and quantization run one at a time with N threads; the evaluations then
# run J at a time with N / J threads each. --work keeps every run (model folders,
# run.json, eval JSON, logs) under DIR/<model>/{stats.h5,approx-<s>,exact-70}/;
# --no-kl evaluates perplexity only (no float reference run: half the evaluation time;
# the KL and top-1 columns are then left blank).
# --report-only writes the report from an existing DIR (e.g. copied back from another
# machine). --max-windows W evaluates the first W windows only (a quick check; the
# report says so and its numbers are not comparable with the reference).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
command="bench/calib_sweep.sh $*"
model=small
flags="--method gptq --bits 3 --group 128"
shares="0 30 50 70 100"
threads=$(nproc)
jobs=1
max_windows=0
ptq=$root/build-release/pipeline/ptq
fixtures=${PTQ_SHARED_DIR:-$root/../shared}/fixtures
work=$root/build-release/calib-sweep
out=$root/docs/bench/calib_sweep.md
run=1
reference_flags=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --flags) flags=$2; shift 2 ;;
    --recipe) flags="--recipe $(realpath "$2")"; shift 2 ;;
    --shares) shares=$2; shift 2 ;;
    --max-windows) max_windows=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --ptq) ptq=$2; shift 2 ;;
    --fixtures) fixtures=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-kl) no_kl=1; shift ;;
    --report-only) run=0; shift ;;
    *) echo "calib_sweep.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
for s in $shares; do
  [[ $s =~ ^[0-9]+$ && $s -le 100 ]] || { echo "calib_sweep.sh: share $s is not 0..100" >&2; exit 2; }
done

goldens=$fixtures/goldens/$model
[[ -n ${no_kl:-} ]] || reference_flags=(--reference "$fixtures/models/$model")
dir=$work/$model

# Both sources whole: weights 0.5 / 0.5 of 256 samples = 128 windows each.
calibrate() {
  echo "calibrate $model" >&2
  rm -f "$dir/stats.h5"
  "$ptq" calibrate --model "$fixtures/models/$model" --out "$dir/stats.h5" --threads "$threads" --samples 256 \
    --calib "g=$goldens/calib_generic.ids:0.5" --calib "d=$goldens/calib_domain.ids:0.5" \
    >"$dir/calibrate.log" 2>&1 || { echo "FAILED: calibrate (see $dir/calibrate.log)" >&2; return 1; }
}

quantize() {  # run-name extra-flags...
  local name=$1 d=$dir/$1
  shift
  echo "quantize $model $name" >&2
  rm -rf "$d" && mkdir -p "$d"
  # shellcheck disable=SC2086  # flags are words by design
  # dequantized: the format the recorded sweeps used (float32 scales)
  "$ptq" quantize --model "$fixtures/models/$model" --out "$d/model" --threads "$threads" --format dequantized $flags "$@" \
    >"$d/quantize.log" 2>&1 || { echo "FAILED: quantize $name (see $d/quantize.log)" >&2; return 1; }
  cp "$d/model/run.json" "$d/run.json"
}

evaluate() {  # run-name set
  local d=$dir/$1 s=$2
  "$ptq" eval --model "$d/model" "${reference_flags[@]}" --ids "$goldens/eval_$s.ids" \
    --max-windows "$max_windows" --threads $(( threads / jobs > 0 ? threads / jobs : 1 )) --json "$d/$s.json" \
    >"$d/eval_$s.log" 2>&1 || { echo "FAILED: eval $1 $s (see $d/eval_$s.log)" >&2; return 1; }
}

machine_record() {
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p')"
  echo "threads=$threads"
  echo "jobs=$jobs"
  echo "max_windows=$max_windows"
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit=${PTQ_BENCH_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  echo "flags=$flags"
  echo "command=$command"
}

run_all() {
  mkdir -p "$dir"
  machine_record >"$dir/machine.txt"
  calibrate || return 1
  local s r set failed=0 names="exact-70"
  for s in $shares; do
    quantize "approx-$s" --stats "$dir/stats.h5" --mix "g=$(( 100 - s ))" --mix "d=$s" || failed=1
    names="$names approx-$s"
  done
  quantize exact-70 --samples 128 \
    --calib "g=$goldens/calib_generic.ids:0.7" --calib "d=$goldens/calib_domain.ids:0.3" || failed=1
  for r in $names; do
    [[ -f $dir/$r/run.json ]] || continue
    for set in generic domain; do
      while (( $(jobs -rp | wc -l) >= jobs )); do wait -n || failed=1; done
      echo "eval $model $r $set" >&2
      evaluate "$r" "$set" &
    done
  done
  while (( $(jobs -rp | wc -l) > 0 )); do wait -n || failed=1; done
  return $failed
}

status=0
if [[ $run == 1 ]]; then run_all || status=1; fi
mkdir -p "$(dirname "$out")"
svg=${out%.md}.svg
python3 "$root/bench/calib_sweep_report.py" --work "$dir" --fixtures "$fixtures" --model "$model" \
  --shares "$shares" --out "$out.tmp" --svg "$svg.tmp" --svg-name "$(basename "$svg")"
mv "$svg.tmp" "$svg"
mv "$out.tmp" "$out"
echo "wrote $out and $svg" >&2
exit $status
