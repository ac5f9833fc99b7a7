#!/usr/bin/env bash
# Recipe tuning on validation text (issue 19; docs/tuning.md is the protocol): every
# candidate recipe quantizes each trained model from its 128 generic calibration windows
# and is scored on the validation texts of bench/validation_split.py (held-out pieces of
# the training books and of the curl sources, disjoint from every calibration window),
# never on WikiText-2 test or curl_code_heldout.txt. --test evaluates the same runs once
# on the test texts (eval_generic.ids / eval_domain.ids), after the choice.
#
#   bench/tune_recipes.sh [--models "tiny small qwen2"] [--candidates "w4-g128.plain ..."]
#       [--rounds "16 3 5"] [--threads N] [--jobs J] [--ptq BINARY] [--work DIR] [--out FILE]
#       [--domain-share S] [--test] [--report-only]
#
# Models: tiny and small from the fixtures, qwen2 = tests/data/train_model.py qwen2's model
# (PTQ_QWEN2, default .models/qwen2; it shares small's tokenizer and calibration windows);
# NAME+rot, a Llama NAME rotated by bench/rotate_checkpoint.py (made under DIR/rotated).
# A candidate is TARGET.VARIANT: TARGET one of w4-g128, w3-g128, w4-pc; VARIANT a set of
# recipe keys over plain GPTQ (below). The score of a candidate is the share of plain GPTQ's
# excess over fp32 it removes on each validation text, and their mean.
# --rounds: each candidate is quantized once per value, with that --batch-windows (16 is
# ptq's default). It changes only how X^T X's float32 partial sums are chunked, so the
# runs differ in float rounding alone, and by as much as a recipe's gain at W4 g128
# (docs/bench/tuning_probes.md): a candidate is scored by its perplexity's mean over the
# rounds against plain GPTQ's mean over the same rounds.
# --domain-share S: every candidate (plain GPTQ too) calibrates on a mix of the model's
# generic and domain calibration windows (calib_domain.ids), S % domain; 0 (default):
# the generic windows alone.
# Quantization runs one at a time with N threads; evaluations J at a time with N / J each.
# Results stay under DIR/<model>/<candidate>/ (round 16) and DIR/<model>/<candidate>@bwR/
# (--report-only rewrites the report from them).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
command="bench/tune_recipes.sh $*"
models="tiny small qwen2"
candidates=""
rounds=16
threads=$(nproc)
jobs=1
ptq=$root/build/pipeline/ptq
fixtures=${PTQ_SHARED_DIR:-$root/../shared}/fixtures
qwen2=${PTQ_QWEN2:-$root/.models/qwen2}
work=$root/build/tune-recipes
out=$root/docs/bench/tuning.md
test=0
run=1
share=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --models) models=$2; shift 2 ;;
    --candidates) candidates=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --ptq) ptq=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --domain-share) share=$2; shift 2 ;;
    --test) test=1; shift ;;
    --report-only) run=0; shift ;;
    *) echo "tune_recipes.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

# The recipe keys each variant sets over plain GPTQ (damp 0.01, natural order, no clip),
# one "NAME|KEYS" a line, in the order of the default candidate list.
# The Hessian-weighted MSE clip with error exponent $1 (the shipped recipes: 2.4).
clip_norm() { echo "{method: mse, steps: 100, max_shrink: 0.8, norm: $1, weighting: hessian}"; }
clip=$(clip_norm 2.4)
variants=(
  "plain|"
  "clip|clip=$clip"
  "refit|refit=least_squares"
  "clip-refit|clip=$clip refit=least_squares"
  "damp0.1|damp=0.1"
  "actorder|act_order=true"
  "actorder-static|act_order=true static_groups=true"
  "best|@best"
  "gptaq|target=float_outputs"
  "clip-gptaq|clip=$clip target=float_outputs"
  "clip-gptaq-td0.3|clip=$clip target=float_outputs target_damp=0.3"
  "clip-gptaq-td3|clip=$clip target=float_outputs target_damp=3"
  "clipn2-gptaq|clip=$(clip_norm 2) target=float_outputs"
  "clipn3-gptaq|clip=$(clip_norm 3) target=float_outputs"
  "clipn2-gptaq-td3|clip=$(clip_norm 2) target=float_outputs target_damp=3"
  "clipn3-gptaq-td3|clip=$(clip_norm 3) target=float_outputs target_damp=3"
  "clip-gptaq-refit|clip=$clip target=float_outputs refit=least_squares"
  "clip-gptaq-actorder|clip=$clip target=float_outputs act_order=true static_groups=true"
  "cd|code_sweeps=8"
  "clip-cd|clip=$clip code_sweeps=8"
  "clip-gptaq-cd|clip=$clip target=float_outputs code_sweeps=8"
  "clip-gptaq-td3-cd|clip=$clip target=float_outputs target_damp=3 code_sweeps=8"
  "awq|scaling=awq awq_clip=true"
  "awq-clip-gptaq|scaling=awq awq_clip=false clip=$clip target=float_outputs"
)
declare -A variant=()
all_candidates=""
for t in w4-g128 w3-g128 w4-pc; do
  for v in "${variants[@]}"; do
    variant[${v%%|*}]=${v#*|}
    all_candidates+=" $t.${v%%|*}"
  done
done
declare -A target=([w4-g128]="bits=4 group=128" [w3-g128]="bits=3 group=128" [w4-pc]="bits=4 group=channel")
candidates=${candidates:-$all_candidates}
for c in $candidates; do
  [[ -n ${target[${c%%.*}]:-} && -v "variant[${c#*.}]" ]] || {
    echo "tune_recipes.sh: unknown candidate $c" >&2
    exit 2
  }
done

# NAME+rot: NAME with its norms folded and its residual stream rotated
# (bench/rotate_checkpoint.py), the same function with other weights; it shares
# NAME's windows and texts.
model_dir() {
  case $1 in
    *+rot)
      [[ -f $work/rotated/${1%+rot}/config.json ]] ||
        python3 "$root/bench/rotate_checkpoint.py" "$(model_dir "${1%+rot}")" "$work/rotated/${1%+rot}"
      echo "$work/rotated/${1%+rot}" ;;
    qwen2) echo "$qwen2" ;;
    *) echo "$fixtures/models/$1" ;;
  esac
}
goldens() { if [[ ${1%+rot} == qwen2 ]]; then echo "$fixtures/goldens/small"; else echo "$fixtures/goldens/${1%+rot}"; fi; }

# The recipe of candidate TARGET.VARIANT: plain GPTQ's keys, each overridden by the
# target's and the variant's KEY=VALUE words; @best is the shipped recipes/TARGET-best.yaml.
write_recipe() {  # candidate file
  local t=${1%%.*} v=${1#*.}
  if [[ ${variant[$v]} == @best ]]; then
    cp "$root/recipes/$t-best.yaml" "$2"
    return
  fi
  declare -A keys=([method]=gptq [symmetric]=false [act_order]=false [static_groups]=false
    [damp]=0.01 [block_size]=128 [calibration]="{samples: 128, seqlen: 512, seed: 0}")
  local word IFS=$'\n'
  # One KEY=VALUE a line (a value may hold spaces: the clip mapping).
  for word in $(sed 's/ \([a-z_]*=\)/\n\1/g' <<<"${target[$t]} ${variant[$v]}"); do
    [[ -n $word ]] && keys[${word%%=*}]=${word#*=}
  done
  for word in $(printf '%s\n' "${!keys[@]}" | sort); do echo "$word: ${keys[$word]}"; done >"$2"
}

# Validation (and test) ids of a model's tokenizer: tiny has its own; small and qwen2 share one.
texts_for() {  # model -> folder of validation_{generic,domain}.ids
  local tok=$([[ ${1%+rot} == tiny ]] && echo tiny || echo small) dir=$work/ids
  mkdir -p "$dir/$tok"
  [[ -f $dir/text/validation.json ]] ||
    python3 "$root/bench/validation_split.py" "$dir/text" --shared "$fixtures/.." >&2
  local kind
  for kind in generic domain; do
    [[ -f $dir/$tok/validation_$kind.ids ]] ||
      "$ptq" tokenize --model "$(model_dir "$1")" --text "$dir/text/validation_$kind.txt" \
        --out "$dir/$tok/validation_$kind.ids" >/dev/null
  done
  echo "$dir/$tok"
}

run_name() {  # candidate round -> its folder's name
  if [[ $2 == 16 ]]; then echo "$1"; else echo "$1@bw$2"; fi
}

quantize() {  # model candidate round
  local m=$1 c=$2 dir=$work/$1/$(run_name "$2" "$3")
  rm -rf "$dir" && mkdir -p "$dir"
  write_recipe "$c" "$dir/recipe.yaml"
  local g=$(goldens "$m") calib
  if ((share == 0)); then
    calib=(--calib-ids "$g/calib_generic.ids")
  else
    calib=(--calib "generic=$g/calib_generic.ids:$((100 - share))" --calib "domain=$g/calib_domain.ids:$share")
  fi
  "$ptq" quantize --model "$(model_dir "$m")" --out "$dir/model" --threads "$threads" \
    --format dequantized --recipe "$dir/recipe.yaml" "${calib[@]}" \
    --batch-windows "$3" >"$dir/quantize.log" 2>&1 ||
    { echo "FAILED: quantize $m $c round $3 (see $dir/quantize.log)" >&2; return 1; }
  cp "$dir/model/run.json" "$dir/run.json"
}

evaluate() {  # model candidate set ids
  local dir=$work/$1/$2 model=$work/$1/$2/model
  [[ $2 == fp32 ]] && model=$(model_dir "$1")
  "$ptq" eval --model "$model" --ids "$4" --threads $((threads / jobs > 0 ? threads / jobs : 1)) \
    --json "$dir/$3.json" >"$dir/eval_$3.log" 2>&1 ||
    { echo "FAILED: eval $1 $2 $3 (see $dir/eval_$3.log)" >&2; return 1; }
}

sets="validation_generic validation_domain"
((test)) && sets="eval_generic eval_domain"
if ((run)); then
  for m in $models; do
    ids=$(texts_for "$m")
    runs=""
    for r in $rounds; do
      for c in $candidates; do
        name=$(run_name "$c" "$r")
        runs+=" $name"
        [[ -f $work/$m/$name/run.json ]] || { echo "quantize $m $c round $r" >&2; quantize "$m" "$c" "$r"; }
      done
    done
    mkdir -p "$work/$m/fp32"
    for c in fp32 $runs; do
      for s in $sets; do
        [[ -f $work/$m/$c/$s.json ]] && continue
        file=$ids/$s.ids
        [[ $s == eval_* ]] && file=$(goldens "$m")/$s.ids
        while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
        echo "eval $m $c $s" >&2
        evaluate "$m" "$c" "$s" "$file" &
      done
    done
    wait
  done
fi
folders=""
for c in $candidates; do
  plain=${c%%.*}.plain
  for r in $rounds; do
    folders+=" $c=$r=$(run_name "$c" "$r") $plain=$r=$(run_name "$plain" "$r")"
  done
done
python3 "$root/bench/tune_recipes_report.py" --work "$work" --models "$models" \
  --candidates "$candidates" --rounds "$rounds" --sets "$sets" --command "$command" \
  --threads "$threads" --folders "$folders" --domain-share "$share" >"$out"
echo "wrote $out" >&2
