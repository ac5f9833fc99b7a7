#!/usr/bin/env python3
"""Token ids of the fixture vocabularies through the tokenizer classes of
transformers v5, which take the normalizer, pre-tokenizer and decoder from the
class that tokenizer_config.json names and only the vocabulary and merges from
tokenizer.json.

    python3 tests/data/make_tokenizer_class_goldens.py --fixtures ../shared/fixtures \
        --out tests/data/tokenizer_classes

Each case copies a fixture's tokenizer.json into a folder whose
tokenizer_config.json names another class (or keeps the fixture's own, with
the Llama class's legacy switch set or not), loads it
with AutoTokenizer.from_pretrained, as transformers loads a checkpoint, and
writes <case>.json: the class transformers built, the pipeline it runs (the
backend's normalizer, pre_tokenizer, decoder and model type, as the tokenizers
library serializes them), whether that pipeline differs from the fixture
tokenizer.json's own, and the ids of the 426 texts of goldens/tokenizers.json
(add_special_tokens False, and True). Merges written as single strings are
handed to transformers as pairs (merges_as_pairs says why). A case that fails
records its error; the others go on. Requires transformers >= 5.
"""

import argparse
import json
import pathlib
import shutil
import tempfile
import traceback

import transformers

# name: (fixture folder holding tokenizer.json, keys written over its
# tokenizer_config.json: another class, or the Llama class's legacy switch)
CASES = {
    "tiny-qwen2": ("models/tiny", {"tokenizer_class": "Qwen2Tokenizer"}),
    "gpt2-qwen2": ("tokenizers/gpt2", {"tokenizer_class": "Qwen2Tokenizer"}),
    "llama2-llama": ("tokenizers/llama2-hf", {}),
    "llama2-llama-legacy": ("tokenizers/llama2-hf", {"legacy": True}),
    "llama2-gemma": ("tokenizers/llama2-hf", {"tokenizer_class": "GemmaTokenizer"}),
    "phi3-llama": ("tokenizers/phi-3-mini-hf", {}),
    "phi3-llama-fast": ("tokenizers/phi-3-mini-hf", {"tokenizer_class": "LlamaTokenizerFast"}),
    "gpt2-qwen2-fast": ("tokenizers/gpt2", {"tokenizer_class": "Qwen2TokenizerFast"}),
    "phi3-gemma": ("tokenizers/phi-3-mini-hf", {"tokenizer_class": "GemmaTokenizer"}),
}
PIPELINE_PARTS = ("normalizer", "pre_tokenizer", "decoder")


def pipeline_of(tokenizer_json):
    parts = {k: tokenizer_json.get(k) for k in PIPELINE_PARTS}
    model = tokenizer_json.get("model", {})
    parts["model"] = {k: model.get(k) for k in ("type", "byte_fallback", "ignore_merges", "fuse_unk")}
    return parts


def merges_as_pairs(src, dst):
    """Writes src's tokenizer.json to dst with its merges as [left, right] pairs.

    transformers 5.17's class constructors split a merge written as one string
    at every space, and tokenizers 0.23 refuses such a merge, so Llama 2's
    merges of space tokens ("   " is " " + " ") stop both. Each string is split
    at the one space whose halves and whole are all tokens of the vocabulary;
    the vocabulary, the merges' order and the pipeline are unchanged. Returns
    whether anything was rewritten.
    """
    own = json.loads(src.read_text())
    merges = own["model"]["merges"]
    if all(not isinstance(m, str) for m in merges):
        shutil.copy(src, dst)
        return False
    vocab = own["model"]["vocab"]

    def pair(merge):
        if not isinstance(merge, str):
            return merge
        splits = [(merge[:i], merge[i + 1:]) for i, c in enumerate(merge) if c == " "]
        if len(splits) > 1:
            splits = [(a, b) for a, b in splits if a in vocab and b in vocab and a + b in vocab]
        assert len(splits) == 1, f"merge {merge!r}: {len(splits)} splits"
        return list(splits[0])

    own["model"]["merges"] = [pair(m) for m in merges]
    dst.write_text(json.dumps(own, ensure_ascii=False))
    return True


def run_case(fixtures, source, overrides, texts):
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        src = fixtures / source
        rewritten = merges_as_pairs(src / "tokenizer.json", folder / "tokenizer.json")
        config_path = src / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        config.update(overrides)
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        built = json.loads(tok.backend_tokenizer.to_str())
        own = json.loads((src / "tokenizer.json").read_text())
        return {
            "fixture": source,
            "config_overrides": overrides,
            "tokenizer_class": config.get("tokenizer_class"),
            "built_class": type(tok).__name__,
            "merges_rewritten_as_pairs": rewritten,
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
    for name, (source, overrides) in CASES.items():
        try:
            result = run_case(args.fixtures, source, overrides, texts)
        except Exception:  # recorded, the other cases go on
            result = {"fixture": source, "config_overrides": overrides,
                      "error": traceback.format_exc()}
        result["transformers"] = transformers.__version__
        (args.out / f"{name}.json").write_text(json.dumps(result, ensure_ascii=False))
        print(name, result.get("built_class"), "error" if "error" in result else
              f"{len(result['cases'])} texts, pipeline differs: "
              f"{result['pipeline_differs_from_tokenizer_json']}")


if __name__ == "__main__":
    main()
