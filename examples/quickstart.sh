#!/usr/bin/env bash
# The main job on the embedded example, from a fresh clone on Debian 12:
# install the build dependencies, build ptq, quantize the tiny checkpoint with
# GPTQ (calibrated on a public-domain book) onto llama.cpp's Q4_0 grid into a
# GGUF file llama.cpp loads, and evaluate that file against the float model on
# 300 KB of WikiText-2 (perplexity, KL, top-1 agreement).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"

out=build/quickstart
rm -rf "$out" && mkdir -p "$out"
./build/pipeline/ptq inspect examples/models/tiny
./build/pipeline/ptq quantize --model examples/models/tiny --method gptq --format gguf --gguf-type Q4_0 \
  --calib book=examples/data/the_time_machine.txt --samples 32 --seqlen 512 --seed 0 \
  --out "$out/tiny-gptq-q4_0"
./build/pipeline/ptq inspect "$out/tiny-gptq-q4_0" | tail -1
./build/pipeline/ptq eval --model "$out/tiny-gptq-q4_0" --reference examples/models/tiny \
  --text examples/data/wikitext2_test_head.txt --ctx 512 --json "$out/eval.json"
echo "input: $(du -sh examples/models/tiny | cut -f1), output: $(du -sh "$out/tiny-gptq-q4_0" | cut -f1)"
echo "quantized model: $out/tiny-gptq-q4_0/model.gguf (model card: README.md beside it); results: $out/eval.json"
