#!/usr/bin/env bash
# Byte-compares the outputs of two ptq binaries over one run of each method on
# tiny: every file of each output folder (quantized.h5, model.safetensors,
# config.json, README.md, ...) must be identical, run.json less its timings and
# peak memory. Use it around a change that must not alter behaviour:
#   bash bench/compare_outputs.sh OLD/ptq NEW/ptq [WORKDIR]
set -euo pipefail
old=$1 new=$2
work=${3:-$(mktemp -d)}
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${PTQ_SHARED_DIR:-$root/../shared}/fixtures"  # fixtures beside the checkout
model="$shared/models/tiny"
ids="$shared/goldens/tiny/calib_generic.ids"
dom="$shared/goldens/tiny/calib_domain.ids"
calib=(--calib-ids "$ids" --samples 8 --seqlen 128 --threads 2)

# name | flags (one run per method, and the scalings and replays on top)
runs=(
  "rtn-w4-g128|--method rtn --bits 4 --group 128"
  "rtn-w3-pc-sym|--method rtn --bits 3 --group channel --sym"
  "gptq-w4-g128|--method gptq --bits 4 --group 128 ${calib[*]}"
  "gptq-w3-actorder-static|--method gptq --bits 3 --group 64 --act-order --static-groups ${calib[*]}"
  "gptq-best|--recipe $root/recipes/w3-g128-best.yaml ${calib[*]}"
  "gptq-mix|--method gptq --bits 4 --group 128 --calib g=$ids:0.7 --calib d=$dom:0.3 --samples 8 --seqlen 128 --threads 2"
  "gptq-smoothquant|--method gptq --bits 4 --group 128 --scaling smoothquant ${calib[*]}"
  "awq-w4-g128|--method awq --bits 4 --group 128 ${calib[*]}"
  "gptq-awq|--method gptq --bits 4 --group 128 --scaling awq ${calib[*]}"
  "w8a8-naive|--method w8a8"
  "w8a8-sq-tensor|--method w8a8 --smoothquant 0.5 --act-granularity tensor ${calib[*]}"
  "nf4|--method nf4"
)

strip_run_json() {
  python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
for k in ("seconds", "peak_rss_bytes"): j.pop(k, None)
for l in j.get("linears", []): l.pop("seconds", None)
print(json.dumps(j, sort_keys=True))' "$1"
}

run_both() {  # name, flags...
  local name=$1; shift
  for side in old new; do
    local bin=$old; [ "$side" = new ] && bin=$new
    rm -rf "$work/$side/$name"
    mkdir -p "$work/$side"
    "$bin" quantize --model "$model" "$@" --out "$work/$side/$name" 2>"$work/$side/$name.log"
  done
}

compare() {  # name
  local name=$1 a="$work/old/$1" b="$work/new/$1" status=0
  diff <(cd "$a" && find . -type f | sort) <(cd "$b" && find . -type f | sort) || status=1
  while read -r f; do
    if [ "$f" = ./run.json ]; then
      cmp -s <(strip_run_json "$a/$f") <(strip_run_json "$b/$f") || { echo "  differs: $f"; status=1; }
    else
      cmp -s "$a/$f" "$b/$f" || { echo "  differs: $f"; status=1; }
    fi
  done < <(cd "$a" && find . -type f | sort)
  return $status
}

failed=0
for entry in "${runs[@]}"; do
  name=${entry%%|*}
  # shellcheck disable=SC2086  # flags are word lists
  run_both "$name" ${entry#*|}
  if compare "$name"; then echo "same   $name"; else echo "DIFFER $name"; failed=1; fi
done
# Replays: scales saved by the runs above, applied by each binary to its own.
for side in old new; do
  bin=$old; [ "$side" = new ] && bin=$new
  rm -rf "$work/$side/awq-replay"
  "$bin" quantize --model "$model" --method awq --bits 4 --group 128 \
    --load-scales "$work/$side/awq-w4-g128/quantized.h5" --out "$work/$side/awq-replay" 2>/dev/null
done
if compare awq-replay; then echo "same   awq-replay"; else echo "DIFFER awq-replay"; failed=1; fi
# Cached statistics: ptq calibrate, then GPTQ from a 70/30 mix of them (the
# statistics file at one path for both, since run.json records it).
for side in old new; do
  bin=$old; [ "$side" = new ] && bin=$new
  rm -rf "$work/stats.h5" "$work/$side/stats.h5" "$work/$side/gptq-stats"
  "$bin" calibrate --model "$model" --calib g="$ids" --calib d="$dom" --samples 8 --seqlen 128 \
    --threads 2 --out "$work/stats.h5" 2>/dev/null
  "$bin" quantize --model "$model" --method gptq --bits 4 --group 128 --stats "$work/stats.h5" \
    --mix g=0.7 --mix d=0.3 --threads 2 --out "$work/$side/gptq-stats" 2>/dev/null
  mv "$work/stats.h5" "$work/$side/stats.h5"
done
cmp -s "$work/old/stats.h5" "$work/new/stats.h5" || { echo "DIFFER stats.h5"; failed=1; }
if compare gptq-stats; then echo "same   gptq-stats"; else echo "DIFFER gptq-stats"; failed=1; fi
exit $failed
