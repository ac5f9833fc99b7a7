#!/usr/bin/env bash
# Hard stops on every long ptq command, on the tiny fixture:
#  - kill -9 at KILLS random moments of each (half of them in the last 15 % of
#    its run, where the final writes are), then the rerun (`--resume` for
#    quantize): no file under a final name may differ from the uninterrupted
#    run's, the rerun gives its bytes (run.json's timings, and the report's
#    speed and memory figures, aside), and no hidden temporary entry
#    (".<name>.ptq-<pid>-<n>") of the killed run is left after it;
#  - disk full (a tmpfs smaller than the output) and a read-only destination
#    (a read-only bind mount): exit 2 naming the path and the errno, nothing
#    left in the destination, the inputs unchanged.
# Needs root (mount) and a built ptq. Writes a markdown record.
# Usage: [PTQ=binary] bench/hard_stops.sh [KILLS] [RECORD]   (defaults 20, docs/bench/hard_stops.md)
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-20}
record=${2:-docs/bench/hard_stops.md}
ptq=${PTQ:-$(realpath build/pipeline/ptq)}  # PTQ=... to run another build
fx=$(realpath ../shared/fixtures)
tiny=$fx/models/tiny
g=$fx/goldens/tiny
work=$(mktemp -d /tmp/ptq-hard-stops.XXXXXX)
trap 'umount -q "$work"/full "$work"/ro 2>/dev/null || true; rm -rf "$work"' EXIT
RANDOM=16  # the same moments on every run

calib="--calib g=$g/calib_generic.ids --samples 16 --seqlen 128"
cat >"$work/jobs.yaml" <<EOF
models: [$tiny]
recipes:
  - {name: rtn-w4, keys: {method: rtn, bits: 4, group: 32}}
  - {name: gptq-w4, keys: {method: gptq, bits: 4, group: 32, calibration: {samples: 16, seqlen: 128}}}
calib: ["g=$g/calib_generic.ids"]
report: {texts: ["generic=$g/eval_generic.ids"], max_windows: 8}
EOF
"$ptq" quantize --model "$tiny" --method gptq --bits 4 --group 32 $calib --out "$work/run" 2>/dev/null

# name | command with @OUT@ for the output | what to append on the rerun
commands=(
  "quantize rtn|quantize --model $tiny --method rtn --bits 4 --group 32 --out @OUT@|--resume"
  "quantize gptq|quantize --model $tiny --method gptq --bits 4 --group 32 $calib --checkpoint-seconds 0 --out @OUT@|--resume"
  "quantize awq|quantize --model $tiny --method awq --bits 4 --group 32 $calib --out @OUT@|--resume"
  "quantize w8a8|quantize --model $tiny --method w8a8 $calib --out @OUT@|--resume"
  "quantize nf4|quantize --model $tiny --method nf4 --out @OUT@|--resume"
  "quantize gptq gguf|quantize --model $tiny --method gptq --format gguf --gguf-type Q4_K_M $calib --out @OUT@|--resume"
  "export|export --from $work/run --format dequantized --out @OUT@|"
  "calibrate|calibrate --model $tiny --calib g=$g/calib_generic.ids --calib d=$g/calib_domain.ids --samples 16 --seqlen 128 --out @OUT@/stats.h5|"
  "batch|batch $work/jobs.yaml --out @OUT@|"
  "report|report --baseline $tiny --variant q=$work/run --text g=$g/eval_generic.ids --max-windows 8 --out @OUT@|"
)

# A report.json without its timings and memory figures.
clean_json() {
  python3 -c '
import json, re, sys
drop = re.compile(r"second|speed|per_s|memory|rss|peak|tokens_s|time|worker|date|path")
def clean(v):
    if isinstance(v, dict): return {k: clean(x) for k, x in v.items() if not drop.search(k)}
    if isinstance(v, list): return [clean(x) for x in v]
    return v
print(json.dumps(clean(json.load(open(sys.argv[1]))), sort_keys=True))' "$1"
}

# Whether a file under a final name is what the uninterrupted run wrote: its
# bytes, or for a report the same figures (report.md and .html carry timings,
# so only their ends are compared: a cut file ends elsewhere).
same_file() {
  case $(basename "$1") in
    run.json | *.done.json) return 0 ;;
    report.json) [ "$(clean_json "$1")" = "$(clean_json "$2")" ] ;;
    report.md | report.html) [ "$(tail -c 64 "$1")" = "$(tail -c 64 "$2")" ] ;;
    *) cmp -s "$1" "$2" ;;
  esac
}

# The deterministic content of an output folder: every file under a final
# name (hidden temporaries aside), compared with same_file's rules.
digest() {
  local dir=$1
  [ -e "$dir" ] || { echo absent; return; }
  (cd "$dir" && find . -type f ! -path '*/.*' ! -name run.json ! -name '*.done.json' ! -name 'report.*' -print0 |
     sort -z | xargs -0 -r sha256sum
   find . -name report.json ! -path '*/.*' -print0 | sort -z | while IFS= read -r -d '' f; do clean_json "$f"; done) |
    sha256sum | cut -c1-16
}

inputs_hash() { find "$tiny" "$g" "$work/run" "$work/jobs.yaml" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16; }
before_inputs=$(inputs_hash)

run() {  # command, output; background with its pid in $pid
  local cmd=${1//@OUT@/$2}
  mkdir -p "$(dirname "$2")"
  [[ $1 == *"@OUT@/"* ]] && mkdir -p "$2"  # a file output inside the folder
  "$ptq" $cmd >"$work/log" 2>&1 &
  pid=$!
}

{
echo "# Hard stops: kill -9, disk full, read-only destination"
echo
echo "\`bench/hard_stops.sh $kills\` on $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores), $(date -u +%F)."
echo "Each command on the tiny fixture: $kills kills at seeded random moments (half in the last 15 % of"
echo "its run, where the final writes are), then the same command again (\`--resume\` for quantize)."
echo "'partial under a final name' counts kills after which an output existed under its final name"
echo "with other bytes than the uninterrupted run's; 'rerun differs' counts reruns whose output differs;"
echo "'hidden leftovers' counts the killed runs' temporary entries still there after the rerun."
echo
echo "| command | run (s) | kills | complete when killed | partial under a final name | rerun differs | hidden leftovers |"
echo "|---|---:|---:|---:|---:|---:|---:|"
} >"$work/table.md"

for entry in "${commands[@]}"; do
  IFS='|' read -r name cmd again <<<"$entry"
  ref=$work/ref
  rm -rf "$ref"; mkdir -p "$ref"
  start=$(date +%s.%N)
  run "$cmd" "$ref/out"
  wait "$pid" || { echo "the uninterrupted $name failed:"; tail -3 "$work/log"; exit 1; } >&2
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  want=$(digest "$ref/out")
  complete=0 partial=0 differs=0 leftovers=0
  for ((k = 0; k < kills; k++)); do
    if ((k % 2)); then frac=$((850 + RANDOM % 150)); else frac=$((RANDOM % 1000)); fi
    delay=$(echo "$seconds * $frac / 1000" | bc -l)
    try=$work/try; rm -rf "$try"; mkdir -p "$try"
    run "$cmd" "$try/out"; sleep "$delay"; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    if [ -e "$try/out" ] && [ "$(digest "$try/out")" != absent ]; then
      if [ "$(digest "$try/out")" = "$want" ]; then complete=$((complete + 1)); fi
    fi
    # A final name holds the whole output or nothing (a batch's folders are
    # judged per job: each committed one must be whole).
    for f in $(cd "$try" && find . -type f ! -path '*/.*' 2>/dev/null); do
      if [ -e "$ref/$f" ] && ! same_file "$try/$f" "$ref/$f"; then partial=$((partial + 1)); echo "partial: $name kill $k $f" >&2; break; fi
    done
    # The rerun: whenever the final output is not there (a batch always runs
    # again: it resumes its jobs itself).
    final=$try/out; [ "$name" = calibrate ] && final=$try/out/stats.h5
    if [ ! -e "$final" ] || [ "$name" = batch ]; then
      rerun=$cmd; [ -e "$final" ] || rerun="$cmd $again"
      run "$rerun" "$try/out"; wait "$pid" || echo "rerun failed: $name kill $k: $(tail -2 "$work/log")" >&2
    fi
    [ "$(digest "$try/out")" = "$want" ] || { differs=$((differs + 1)); echo "differs: $name kill $k" >&2; }
    left=$(find "$try" -name '.*.ptq-*' | wc -l)
    ((left == 0)) || { leftovers=$((leftovers + left)); find "$try" -name '.*.ptq-*' | sed "s/^/leftover: $name kill $k /" >&2; }
  done
  printf '| %s | %.1f | %d | %d | %d | %d | %d |\n' "$name" "$seconds" "$kills" "$complete" "$partial" "$differs" "$leftovers" >>"$work/table.md"
  echo "$name done" >&2
done

# Disk full and read-only destinations.
{
echo
echo "| destination | command | exit | message names the path | errno | left in the destination |"
echo "|---|---|---:|---|---|---|"
} >>"$work/table.md"
mkdir -p "$work/full" "$work/ro" "$work/ro_src"
mount -t tmpfs -o size=1m tmpfs "$work/full"
mount --bind "$work/ro_src" "$work/ro" && mount -o remount,bind,ro "$work/ro"
for dest in full ro; do
  for entry in "${commands[@]:0:2}" "${commands[5]}" "${commands[7]}"; do
    IFS='|' read -r name cmd again <<<"$entry"
    out=$work/$dest/out
    c=${cmd//@OUT@\/stats.h5/$work/$dest/stats.h5}  # calibrate's file straight in the destination
    set +e; "$ptq" ${c//@OUT@/$out} >"$work/log" 2>&1; code=$?; set -e
    named=no; grep -q "$work/$dest" "$work/log" && named=yes
    errno=$(grep -o -E 'No space left on device|Read-only file system|File too large' "$work/log" | head -1 || true)
    left=$(find "$work/$dest" -mindepth 1 | wc -l)
    printf '| %s | %s | %d | %s | %s | %d entries |\n' \
      "$([ $dest = full ] && echo 'tmpfs of 1 MiB' || echo 'read-only bind mount')" "$name" "$code" "$named" "${errno:-none}" "$left" >>"$work/table.md"
    [ "$code" = 2 ] || { echo "--- $dest $name exit $code:"; tail -3 "$work/log"; } >&2
  done
done
after_inputs=$(inputs_hash)
echo >>"$work/table.md"
echo "Inputs (the fixture, the earlier run, the jobs file) before and after: $before_inputs, $after_inputs." >>"$work/table.md"
cp "$work/table.md" "$record"
cat "$record"
