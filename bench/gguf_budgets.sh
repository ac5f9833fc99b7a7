#!/usr/bin/env bash
# GGUF files of small under a size budget, judged by llama.cpp itself: for each
# budget, llama-quantize (without and with an imatrix), ptq RTN (whose tensors
# must be llama-quantize's), ptq GPTQ rounding inside the same ggml types at
# llama-quantize's per-tensor policy, and ptq GPTQ with every tensor's type
# chosen for the budget (--gguf-type auto --max-bytes; the sensitivities are
# measured once, then each budget is solved from them with --mix-costs). llama-perplexity --kl-divergence on 150
# chunks of 512 tokens of WikiText-2 test against ptq's F16 GGUF; the imatrix
# is llama-imatrix's over goldens/small/calib_generic_decoded.txt (-c 512
# --chunks 128), the text of the 128 windows GPTQ calibrates on
# (calib_generic.ids). ptq eval's own ppl and KL come from the same chunks
# (--llamacpp-base).
#
#   bench/gguf_budgets.sh [--ptq BINARY] [--work DIR] [--out FILE] [--fresh]
#
# Files an earlier run left in DIR (quantized files, their measurements) are
# reused, so an interrupted run resumes; --fresh starts from an empty DIR.
#
# Writes a Markdown table per budget (file bytes, bits per weight, mean and
# 99.9 % KLD, same top-1, ptq eval's ppl and KL, seconds) with the commands and
# the machine to FILE (default docs/bench/gguf_budgets.md).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
command="bench/gguf_budgets.sh $*"
ptq=$root/build/pipeline/ptq
shared=${PTQ_SHARED_DIR:-$root/../shared}
fixtures=$shared/fixtures
tools=$shared/tools/llama.cpp
work=$root/build/gguf-budgets
out=$root/docs/bench/gguf_budgets.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --ptq) ptq=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "${fresh:-}" ] && rm -rf "$work"
mkdir -p "$work"
src=$fixtures/models/small
calib=$fixtures/goldens/small/calib_generic.ids
text=$fixtures/corpus/generic_eval/wikitext2_test.txt
ppl=(-c 512 --chunks 150 -t 2)

# Budget bytes | llama-quantize types (the first also without an imatrix) |
# ptq's types (ptq has no IQ3_M grid).
budgets=("13434144|Q4_K_M Q4_K_S|Q4_K_M"
  "13028640|Q4_0 IQ4_NL|Q4_0 IQ4_NL"
  "12512544|IQ4_XS|IQ4_XS"
  "11703584|Q3_K_M IQ3_M|Q3_K_M")

[ -f "$work/f16/model.gguf" ] ||
  "$ptq" quantize --model "$src" --method none --format gguf --gguf-type F16 --out "$work/f16" 2>/dev/null
[ -f "$work/base.kld" ] || "$tools/llama-perplexity" -m "$work/f16/model.gguf" -f "$text" "${ppl[@]}" \
  --kl-divergence-base "$work/base.kld" >"$work/base.log" 2>&1
[ -f "$work/imatrix.gguf" ] || "$tools/llama-imatrix" -m "$work/f16/model.gguf" -f "$fixtures/goldens/small/calib_generic_decoded.txt" \
  -c 512 --chunks 128 -t 2 -o "$work/imatrix.gguf" >"$work/imatrix.log" 2>&1

# The sensitivities (mix.json), measured once for every budget.
[ -f "$work/mix-measure/mix.json" ] || /usr/bin/time -f "%e" -o "$work/mix-measure.s" "$ptq" quantize --model "$src" --method gptq --act-order \
  --format gguf --gguf-type auto --max-bytes 13434144 --calib-ids "$calib" --threads 2 \
  --out "$work/mix-measure" >"$work/mix-measure.log" 2>&1

timed() {  # seconds-file command... : runs the command, its wall time to the file
  local file=$1; shift
  /usr/bin/time -f "%e" -o "$file" "$@"
}
make_file() {  # name kind type -> $work/name.gguf
  local name=$1 kind=$2 type=$3
  [ -f "$work/$name.gguf" ] && [ -f "$work/$name.s" ] && return
  case $kind in
    llama) timed "$work/$name.s" "$tools/llama-quantize" "$work/f16/model.gguf" "$work/$name.gguf" "$type" 2 ;;
    llama-imatrix) timed "$work/$name.s" "$tools/llama-quantize" --imatrix "$work/imatrix.gguf" \
      "$work/f16/model.gguf" "$work/$name.gguf" "$type" 2 ;;
    ptq-rtn | ptq-gptq | ptq-mix)
      local args=(--method rtn --imatrix "$work/imatrix.gguf" --gguf-type "$type")
      [ "$kind" = ptq-gptq ] && args=(--method gptq --act-order --calib-ids "$calib" --gguf-type "$type")
      [ "$kind" = ptq-mix ] && args=(--method gptq --act-order --calib-ids "$calib" --gguf-type auto
        --max-bytes "$type" --mix-costs "$work/mix-measure/mix.json")
      rm -rf "$work/$name.dir"
      timed "$work/$name.s" "$ptq" quantize --model "$src" "${args[@]}" --format gguf \
        --threads 2 --out "$work/$name.dir"
      mv "$work/$name.dir/model.gguf" "$work/$name.gguf" ;;
  esac
}
measure() {  # file -> "mean KLD|99.9% KLD|same top-1|ptq ppl|ptq KL" (ptq's: n/a for a type it cannot read)
  grep -q "Mean.*KLD" "$1.kld.log" 2>/dev/null ||
    "$tools/llama-perplexity" -m "$1" "${ppl[@]}" --kl-divergence-base "$work/base.kld" --kl-divergence \
      >"$1.kld.log" 2>&1
  [ -f "$1.eval.json" ] ||
    "$ptq" eval --model "$1" --llamacpp-base "$work/base.kld" --threads 2 --json "$1.eval.json" \
      >"$1.eval.log" 2>&1 || true
  python3 - "$1.kld.log" "$1.eval.json" <<'PY'
import json, os, re, sys
t = open(sys.argv[1]).read()
kld, tail, top1 = (float(re.search(p, t).group(1)) for p in
                   (r"Mean\s+KLD:\s+([-0-9.]+)", r"99\.9%\s+KLD:\s+([-0-9.]+)", r"Same top p:\s+([-0-9.]+)"))
ours = "n/a|n/a"
if os.path.exists(sys.argv[2]):
    e = json.load(open(sys.argv[2]))["llamacpp_base"]
    ours = "%.3f|%.6f" % (e["ppl"], e["kl"])
print(f"{kld:.6f}|{tail:.4f}|{top1:.2f}|{ours}")
PY
}
tensors() {  # file -> one line per tensor: name, type, digest of its bytes
  "$ptq" inspect --json --digests "$1" |
    python3 -c 'import json,sys; [print(t["name"], t["dtype"], t["fnv1a64"]) for t in json.load(sys.stdin)["tensors"]]' | sort
}
same_tensors() {  # the files' metadata differ (the imatrix's path); their tensors must not
  diff -q <(tensors "$1") <(tensors "$2") >/dev/null
}
row() {  # label name
  local m bpw
  m=$(measure "$work/$2.gguf")
  bpw=$("$ptq" inspect --json "$work/$2.gguf" | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["bits_per_weight"])')
  echo "| $1 | $(stat -c %s "$work/$2.gguf") | $bpw | ${m//|/ | } | $(cat "$work/$2.s") |"
}
{
  echo "# GGUF under a size budget: llama-quantize against ptq (small)"
  echo
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores. Command: \`$command\`."
  echo "llama.cpp's own judgement: \`llama-perplexity --kl-divergence\`, 150 chunks of 512 tokens"
  echo "of WikiText-2 test, base: ptq's F16 GGUF (llama-perplexity's final PPL $(grep -o 'PPL = [0-9.]*' "$work/base.log" | cut -d' ' -f3))."
  echo "ptq GPTQ: \`--method gptq --act-order --format gguf --gguf-type T\` on the 128 windows of"
  echo "calib_generic.ids; llama-quantize and ptq RTN take the imatrix of the same text."
  echo "ptq GPTQ + mix: the same GPTQ with every tensor's type chosen among"
  echo "$(python3 -c 'import json,sys; print(", ".join(json.load(open(sys.argv[1]))["candidates"]))' "$work/mix-measure/mix.json")"
  echo "for the budget (\`--gguf-type auto --max-bytes N\`, predictor kl_scaled); its sensitivities were"
  echo "measured once, in $(cat "$work/mix-measure.s") s (with that run's GPTQ), and each budget solved from them"
  echo "(\`--mix-costs\`): its seconds are the GPTQ run's."
  echo "Bits per weight over all tensors (\`ptq inspect\`); seconds of the quantizer alone."
  for budget in "${budgets[@]}"; do
    IFS='|' read -r bytes llama_types ptq_types <<<"$budget"
    echo
    echo "## ≤ $bytes bytes"
    echo
    echo "| file | bytes | bpw | mean KLD | 99.9 % KLD | same top-1 % | ptq eval ppl | ptq eval KL | s |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    first=1
    for t in $llama_types; do  # without an imatrix: the budget's own type only
      if [ $first = 1 ]; then
        make_file "llama-$t" llama "$t" >"$work/llama-$t.log" 2>&1
        row "llama-quantize $t" "llama-$t"
        first=0
      fi
      make_file "llama-imatrix-$t" llama-imatrix "$t" >"$work/llama-imatrix-$t.log" 2>&1
      row "llama-quantize $t --imatrix" "llama-imatrix-$t"
    done
    for t in $ptq_types; do
      make_file "ptq-gptq-$t" ptq-gptq "$t" >"$work/ptq-gptq-$t.log" 2>&1
      row "ptq GPTQ $t" "ptq-gptq-$t"
    done
    make_file "ptq-mix-$bytes" ptq-mix "$bytes" >"$work/ptq-mix-$bytes.log" 2>&1
    row "**ptq GPTQ + mix**" "ptq-mix-$bytes"
    echo
    for t in $ptq_types; do  # RTN is llama-quantize: compared byte for byte, not measured again
      make_file "ptq-rtn-$t" ptq-rtn "$t" >"$work/ptq-rtn-$t.log" 2>&1
      same_tensors "$work/ptq-rtn-$t.gguf" "$work/llama-imatrix-$t.gguf" && same="the same" || same="NOT the same"
      echo "ptq RTN $t --imatrix ($(cat "$work/ptq-rtn-$t.s") s): $same tensors (names, types, bytes) as llama-quantize $t --imatrix."
    done
  done
} >"$out"
cat "$out"
