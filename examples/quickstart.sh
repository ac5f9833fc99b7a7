#!/usr/bin/env bash
# The main job on the embedded example, from a fresh clone on Debian 12:
# install the build dependencies, build ptq, quantize the tiny checkpoint to
# 4 bits with GPTQ (calibrated on a public-domain book), and evaluate it against
# the float model on 300 KB of WikiText-2 (perplexity, KL, top-1 agreement).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"

out=build/quickstart
rm -rf "$out" && mkdir -p "$out"
./build/pipeline/ptq inspect examples/models/tiny
./build/pipeline/ptq quantize --model examples/models/tiny --method gptq --bits 4 --group 128 \
  --calib book=examples/data/the_time_machine.txt --samples 32 --seqlen 512 --seed 0 \
  --out "$out/tiny-gptq-w4-g128"
./build/pipeline/ptq eval --model "$out/tiny-gptq-w4-g128" --reference examples/models/tiny \
  --text examples/data/wikitext2_test_head.txt --ctx 512 --json "$out/eval.json"
echo "quantized model: $out/tiny-gptq-w4-g128 (model card: README.md inside); results: $out/eval.json"
