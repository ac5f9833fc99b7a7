#!/usr/bin/env python3
"""Token ids of the fixture vocabularies through the tokenizer classes of
transformers v5, which take the normalizer, pre-tokenizer and decoder from the
class that tokenizer_config.json names and only the vocabulary and merges from
tokenizer.json.

    python3 tests/data/make_tokenizer_class_goldens.py --fixtures ../shared/fixtures \
        --out tests/data/tokenizer_classes

Each case copies a fixture's tokenizer.json into a folder whose
tokenizer_config.json names another class (or keeps the fixture's own), loads it
with AutoTokenizer.from_pretrained, as transformers loads a checkpoint, and
writes <case>.json: the class transformers built, the pipeline it runs (the
backend's normalizer, pre_tokenizer, decoder and model type, as the tokenizers
library serializes them), whether that pipeline differs from the fixture
tokenizer.json's own, and the ids of the 426 texts of goldens/tokenizers.json
(add_special_tokens False, and True). A case that fails records its error; the
others go on. Requires transformers >= 5.
"""

import argparse
import json
import pathlib
import shutil
import tempfile
import traceback

import transformers

# name: (fixture folder holding tokenizer.json, tokenizer_class written into
# tokenizer_config.json; None keeps the fixture's own config)
CASES = {
    "tiny-qwen2": ("models/tiny", "Qwen2Tokenizer"),
    "gpt2-qwen2": ("tokenizers/gpt2", "Qwen2Tokenizer"),
    "llama2-llama": ("tokenizers/llama2-hf", None),
    "llama2-gemma": ("tokenizers/llama2-hf", "GemmaTokenizer"),
    "phi3-gemma": ("tokenizers/phi-3-mini-hf", "GemmaTokenizer"),
}
PIPELINE_PARTS = ("normalizer", "pre_tokenizer", "decoder")


def pipeline_of(tokenizer_json):
    parts = {k: tokenizer_json.get(k) for k in PIPELINE_PARTS}
    model = tokenizer_json.get("model", {})
    parts["model"] = {k: model.get(k) for k in ("type", "byte_fallback", "ignore_merges", "fuse_unk")}
    return parts


def run_case(fixtures, source, tokenizer_class, texts):
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        src = fixtures / source
        shutil.copy(src / "tokenizer.json", folder / "tokenizer.json")
        config_path = src / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        if tokenizer_class is not None:
            config["tokenizer_class"] = tokenizer_class
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        built = json.loads(tok.backend_tokenizer.to_str())
        own = json.loads((src / "tokenizer.json").read_text())
        return {
            "fixture": source,
            "tokenizer_class": config.get("tokenizer_class"),
            "built_class": type(tok).__name__,
            "pipeline": pipeline_of(built),
            "pipeline_differs_from_tokenizer_json": pipeline_of(built) != pipeline_of(own),
            "cases": [{"text": t,
                       "ids": tok(t, add_special_tokens=False)["input_ids"],
                       "ids_with_special": tok(t, add_special_tokens=True)["input_ids"]}
                      for t in texts],
        }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()
    goldens = json.loads((args.fixtures / "goldens/tokenizers.json").read_text())
    texts = [c["text"] for c in goldens["tiny"]["cases"]]
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (source, tokenizer_class) in CASES.items():
        try:
            result = run_case(args.fixtures, source, tokenizer_class, texts)
        except Exception:  # recorded, the other cases go on
            result = {"fixture": source, "tokenizer_class": tokenizer_class,
                      "error": traceback.format_exc()}
        result["transformers"] = transformers.__version__
        (args.out / f"{name}.json").write_text(json.dumps(result, ensure_ascii=False))
        print(name, result.get("built_class"), "error" if "error" in result else
              f"{len(result['cases'])} texts, pipeline differs: "
              f"{result['pipeline_differs_from_tokenizer_json']}")


if __name__ == "__main__":
    main()
