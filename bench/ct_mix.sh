#!/usr/bin/env bash
# A compressed-tensors mix on small (issue 13, Hugging Face side): every block
# Linear's grid chosen among w4-pc, w4-g128, w8-pc and w8-g128 with at most 4.6
# bits per Linear weight (packed codes, float16 scales, zero points and shapes,
# as `ptq inspect` counts them), on the shipped W4 g128 recipe
# (recipes/w4-g128-best.yaml; docs/bench/ct_mix.md names the commit whose
# recipe it measured); the same recipe uniform beside it. Judged as PROTOCOL.md does: ptq
# eval's perplexity on all 719 windows of eval_generic.ids (WikiText-2 test) at
# ctx 512. Then transformers + compressed-tensors (a virtual environment VENV
# with them from PyPI, on the CPU) load the mix and run the golden prompt,
# against ptq's own logits of it.
#
#   bench/ct_mix.sh [--out FILE] VENV...      (default docs/bench/ct_mix.md)
# Each VENV: python3 -m venv VENV && VENV/bin/pip install torch transformers==X
# compressed-tensors accelerate.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/docs/bench/ct_mix.md
if [ "${1:-}" = --out ]; then out=$2; shift 2; fi
venvs=("$@")
ptq=$root/build/pipeline/ptq
fixtures=${PTQ_SHARED_DIR:-$root/../shared}/fixtures
work=$root/build/ct-mix
mkdir -p "$work"
run() {  # name flags...: quantize and evaluate; prints a table row
  local name=$1; shift
  rm -rf "$work/$name"
  /usr/bin/time -f "%e" -o "$work/$name.s" "$ptq" quantize --model "$fixtures/models/small" \
    --recipe "$root/recipes/w4-g128-best.yaml" --format compressed-tensors "$@" \
    --calib-ids "$fixtures/goldens/small/calib_generic.ids" --threads "$(nproc)" \
    --out "$work/$name" >"$work/$name.log" 2>&1
  "$ptq" eval --model "$work/$name" --ids "$fixtures/goldens/small/eval_generic.ids" --ctx 512 \
    --threads "$(nproc)" --json "$work/$name.eval.json" >/dev/null 2>&1
  "$ptq" inspect --json "$work/$name" >"$work/$name.inspect.json"
  python3 - "$name" "$work/$name" "$(cat "$work/$name.s")" <<'PY'
import json, sys
name, d, s = sys.argv[1:]
e = json.load(open(d + ".eval.json"))
q = json.load(open(d + ".inspect.json"))["quantization"]
print(f"| {name} | {q['linear_bits_per_weight']:.3f} | {e['ppl']:.3f} | {s} |")
PY
}
{
  echo "# compressed-tensors mix on small at ≤ 4.6 bits per Linear weight"
  echo
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores. Command: \`bench/ct_mix.sh VENV517 VENV524\` (transformers 5.17.0 and 5.24.0)."
  echo "Recipe \`recipes/w4-g128-best.yaml\`, \`--format compressed-tensors\`; generic ppl over all"
  echo "719 windows of eval_generic.ids at ctx 512 (PROTOCOL.md: fp32 74.870; best uniform W4 g128"
  echo "in docs/bench/best-notes.md 75.759, dequantized float16 output; target ≤ 75.49)."
  echo
  echo "| run | bits per Linear weight | generic ppl | quantize s |"
  echo "|---|---:|---:|---:|"
  run uniform-w4-g128
  run mix-4.6 --bpw 4.6
  echo
  echo "The mix's grids (mix.json), Linears per scheme:"
  echo
  python3 - "$work/mix-4.6/mix.json" <<'PY'
import collections, json, sys
m = json.load(open(sys.argv[1]))
c = collections.Counter(t["type"] for t in m["tensors"])
print(", ".join(f"{k}: {v}" for k, v in sorted(c.items())) + f"; predicted KL {m['predicted']:.5f}")
roles = collections.defaultdict(list)
for t in m["tensors"]:
    roles[t["name"].split(".")[-1]].append(t["type"])
for r, ts in roles.items():
    print(f"- {r}: {' '.join(ts)}")
PY
  echo
  echo "transformers + compressed-tensors load \`mix-4.6\` (float32, CPU) and run the golden prompt"
  echo "(goldens/small/logits_prompt.ids), against ptq eval --dump-logits of the same folder:"
  echo
  "$ptq" eval --model "$work/mix-4.6" --ids "$fixtures/goldens/small/logits_prompt.ids" --ctx 64 \
    --dump-logits "$work/ptq.f32" >/dev/null 2>&1
  for venv in "${venvs[@]}"; do
    rm -f "$work/hf.f32"
    CUDA_VISIBLE_DEVICES= "$venv/bin/python" "$root/bench/hf_loader_logits.py" "$work/mix-4.6" \
      "$fixtures/goldens/small/logits_prompt.ids" "$work/hf.f32" cpu >"$work/hf.log" 2>&1 || true
    grep -E "^versions" "$work/hf.log" | sed 's/^/    /'
    if [ ! -f "$work/hf.f32" ]; then  # the loader's own report of what it refused
      grep -E "MISMATCH|Error" "$work/hf.log" | head -3 | sed 's/^/    /'
      continue
    fi
    python3 - "$work/hf.f32" "$work/ptq.f32" <<'PY'
import sys
import numpy as np
theirs = np.fromfile(sys.argv[1], dtype=np.float32).reshape(64, -1)
ours = np.fromfile(sys.argv[2], dtype=np.float32).reshape(64, -1)
print(f"    max|dlogit| / max|logit| = {np.abs(ours - theirs).max() / np.abs(theirs).max():.3e}, "
      f"top-1 agreement {(ours.argmax(1) == theirs.argmax(1)).mean():.4f}")
PY
  done
} >"$out"
cat "$out"
