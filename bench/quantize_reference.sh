#!/usr/bin/env bash
# ptq's RTN, GPTQ, W8A8 and NF4 against the reference quantizers of shared/fixtures/PROTOCOL.md
# ("Reference quantizers"): every row ptq supports is quantized from the fixtures'
# calibration windows, evaluated with `ptq eval` on eval_generic.ids and eval_domain.ids
# (KL and top-1 against the float model), and compared with
# goldens/<model>/reference_quantizers.json in docs/bench/quantize_reference.md.
#
#   bench/quantize_reference.sh [--models "tiny small"] [--rows "rtn-w4-pc gptq-w4-g128 ..."]
#       [--threads N] [--jobs J] [--max-windows W] [--ptq BINARY] [--fixtures DIR]
#       [--sets "generic domain"] [--work DIR] [--out FILE] [--report-only]
#
# Quantization runs one row at a time with N threads (its seconds are those of an idle
# machine); the evaluations then run J at a time with N / J threads each.
# --work keeps each row's results (run.json, eval JSON, logs) under DIR/<model>/<row>/;
# --report-only skips the runs and writes the report from an existing DIR (e.g. results
# copied back from another machine; several models may come from several runs).
# --max-windows W evaluates the first W windows only (a quick check: not comparable
# with the reference, so pass/fail is then left blank).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
command="bench/quantize_reference.sh $*"
models="tiny small"
rows=""
threads=$(nproc)
jobs=1
max_windows=0
sets="generic domain"
ptq=$root/build-release/pipeline/ptq
fixtures=${PTQ_SHARED_DIR:-$root/../shared}/fixtures
work=$root/build-release/quantize-reference
out=$root/docs/bench/quantize_reference.md
run=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --models) models=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --max-windows) max_windows=$2; shift 2 ;;
    --sets) sets=$2; shift 2 ;;
    --ptq) ptq=$2; shift 2 ;;
    --fixtures) fixtures=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --report-only) run=0; shift ;;
    *) echo "quantize_reference.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

# The `ptq quantize` flags of each row; calibration files are relative to goldens/<model>/.
declare -A recipe=(
  [rtn-w8-pc]="--method rtn --bits 8 --group channel"
  [rtn-w4-pc]="--method rtn --bits 4 --group channel"
  [rtn-w4-g128]="--method rtn --bits 4 --group 128"
  [rtn-w3-g128]="--method rtn --bits 3 --group 128"
  [gptq-w4-pc]="--method gptq --bits 4 --group channel --calib-ids @/calib_generic.ids"
  [gptq-w4-pc-actorder]="--method gptq --bits 4 --group channel --act-order --calib-ids @/calib_generic.ids"
  [gptq-w4-g128]="--method gptq --bits 4 --group 128 --calib-ids @/calib_generic.ids"
  [gptq-w4-g128-sym]="--method gptq --bits 4 --group 128 --sym --calib-ids @/calib_generic.ids"
  [gptq-w3-g128]="--method gptq --bits 3 --group 128 --calib-ids @/calib_generic.ids"
  [gptq-w3-g128-actorder]="--method gptq --bits 3 --group 128 --act-order --calib-ids @/calib_generic.ids"
  [gptq-w3-g128-calib-domain]="--method gptq --bits 3 --group 128 --calib-ids @/calib_domain.ids"
  [gptq-w3-g128-calib-mix70-30]="--method gptq --bits 3 --group 128 --calib g=@/calib_generic.ids:0.7 --calib d=@/calib_domain.ids:0.3"
  [gptq-w4-pc-calib-domain]="--method gptq --bits 4 --group channel --calib-ids @/calib_domain.ids"
  [gptq-w4-pc-calib-mix70-30]="--method gptq --bits 4 --group channel --calib g=@/calib_generic.ids:0.7 --calib d=@/calib_domain.ids:0.3"
  [awq-w4-g128]="--method awq --bits 4 --group 128 --calib-ids @/calib_generic.ids"
  [awq-w3-g128]="--method awq --bits 3 --group 128 --calib-ids @/calib_generic.ids"
  # Issue 6: ptq's best recipes (docs/bench/best-notes.md); no reference row.
  [w4-g128-best]="--recipe $root/recipes/w4-g128-best.yaml --calib-ids @/calib_generic.ids"
  [w3-g128-best]="--recipe $root/recipes/w3-g128-best.yaml --calib-ids @/calib_generic.ids"
  [w4-pc-best]="--recipe $root/recipes/w4-pc-best.yaml --calib-ids @/calib_generic.ids"
  # Issue 5: SmoothQuant's scales folded in, then GPTQ rounding; no reference row.
  [gptq-smoothquant-w4-g128]="--recipe $root/recipes/gptq-smoothquant-w4-g128.yaml --calib-ids @/calib_generic.ids"
  [gptq-smoothquant-a0.2-w4-g128]="--recipe $root/recipes/gptq-smoothquant-w4-g128.yaml --smoothquant 0.2 --calib-ids @/calib_generic.ids"
  [w8a8-naive]="--method w8a8"
  [w8a8-smoothquant-a0.5]="--method w8a8 --smoothquant 0.5 --calib-ids @/calib_generic.ids"
  [w8a8-smoothquant-a0.8]="--method w8a8 --smoothquant 0.8 --calib-ids @/calib_generic.ids"
  [nf4-b64]="--method nf4 --nf4-block 64"
  [rtn-w4-g64]="--method rtn --bits 4 --group 64"
)
all_rows="rtn-w8-pc rtn-w4-pc rtn-w4-g128 rtn-w3-g128 gptq-w4-pc gptq-w4-pc-actorder gptq-w4-g128
  gptq-w4-g128-sym gptq-w3-g128 gptq-w3-g128-actorder gptq-w3-g128-calib-domain
  gptq-w3-g128-calib-mix70-30 gptq-w4-pc-calib-domain gptq-w4-pc-calib-mix70-30 awq-w4-g128 awq-w3-g128
  w8a8-naive w8a8-smoothquant-a0.5 w8a8-smoothquant-a0.8 nf4-b64 rtn-w4-g64 w4-g128-best w3-g128-best w4-pc-best
  gptq-smoothquant-w4-g128 gptq-smoothquant-a0.2-w4-g128"
rows=${rows:-$all_rows}
for r in $rows; do
  [[ -n ${recipe[$r]:-} ]] || { echo "quantize_reference.sh: unknown row $r" >&2; exit 2; }
done

quantize_row() {  # model row
  local m=$1 r=$2 dir=$work/$1/$2 flags=${recipe[$2]//@/$fixtures/goldens/$1}
  rm -rf "$dir" && mkdir -p "$dir"
  # shellcheck disable=SC2086  # flags are words by design
  # dequantized: the float32 scales the reference quantizers use (packed formats store float16)
  "$ptq" quantize --model "$fixtures/models/$m" --out "$dir/model" --threads "$threads" --format dequantized $flags \
    >"$dir/quantize.log" 2>&1 || { echo "FAILED: quantize $m $r (see $dir/quantize.log)" >&2; return 1; }
  cp "$dir/model/run.json" "$dir/run.json"
}

eval_row() {  # model row set
  local m=$1 r=$2 s=$3 dir=$work/$1/$2 start=$SECONDS
  "$ptq" eval --model "$dir/model" --reference "$fixtures/models/$m" \
    --ids "$fixtures/goldens/$m/eval_$s.ids" --max-windows "$max_windows" \
    --threads $(( threads / jobs > 0 ? threads / jobs : 1 )) --json "$dir/$s.json" \
    >"$dir/eval_$s.log" 2>&1 || { echo "FAILED: eval $m $r $s (see $dir/eval_$s.log)" >&2; return 1; }
  echo "wall seconds $(( SECONDS - start ))" >>"$dir/eval_$s.log"
}

run_all() {
  mkdir -p "$work"
  {
    echo "cpu=$(lscpu | sed -n 's/^Model name: *//p')"
    echo "cores=$(( $(lscpu | sed -n 's/^Core(s) per socket: *//p') * $(lscpu | sed -n 's/^Socket(s): *//p') ))"
    echo "threads_online=$(nproc)"
    echo "threads=$threads"
    echo "jobs=$jobs"
    echo "max_windows=$max_windows"
    echo "kernel=$(uname -sr)"
    echo "openblas_coretype=${OPENBLAS_CORETYPE:-}"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit=${PTQ_BENCH_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
    echo "command=$command"
  } >"$work/machine.txt"
  local m r s failed=0
  for m in $models; do
    for r in $rows; do
      echo "quantize $m $r" >&2
      quantize_row "$m" "$r" || failed=1
    done
  done
  # Evaluations J at a time; a failure is reported, the others still run.
  for m in $models; do
    for r in $rows; do
      [[ -f $work/$m/$r/run.json ]] || continue
      for s in $sets; do
        while (( $(jobs -rp | wc -l) >= jobs )); do wait -n || failed=1; done
        echo "eval $m $r $s" >&2
        eval_row "$m" "$r" "$s" &
      done
    done
  done
  while (( $(jobs -rp | wc -l) > 0 )); do wait -n || failed=1; done
  return $failed
}

status=0
if [[ $run == 1 ]]; then run_all || status=1; fi
mkdir -p "$(dirname "$out")"
python3 "$root/bench/quantize_reference_report.py" --work "$work" --fixtures "$fixtures" \
  --models "$models" --rows "$rows" --out "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out" >&2
exit $status
