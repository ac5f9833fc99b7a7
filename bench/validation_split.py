#!/usr/bin/env python3
"""The validation text recipes and hyper-parameters are chosen on (issue 19).

    python3 bench/validation_split.py OUT [--shared ../shared]

Never the test texts (WikiText-2 test, curl_code_heldout.txt) and never a
calibration window: validation is held-out pieces of the fixtures' training
text, disjoint from every calibration window of tiny and small.

- generic: each book of corpus/generic_calib is cut into chunks of whole
  paragraphs of at least CHUNK characters; chunk i is validation when
  i % 25 == 12 (4 % of each book, spread through it).
- domain: corpus/domain_calib/curl_code.txt is cut at its
  `/* ===== curl/<path> ===== */` lines into files; file i is validation when
  i % 12 == 5.
- Each calibration window (goldens/<model>/calib_*.ids of tiny and small) is
  decoded, split at <|endoftext|>, and each piece located in the corpus by
  exact search; a candidate chunk that intersects a located piece is dropped.

Writes OUT/validation_generic.txt, OUT/validation_domain.txt, the training
text of a model that must not see them (OUT/train_generic.txt: the books
without their validation chunks, OUT/train_domain.txt likewise), and
OUT/validation.json: which chunks, how many windows were located, sha256 of
each file. Deterministic: the same fixtures give the same bytes.
"""

import argparse
import hashlib
import json
import pathlib
import sys

import numpy as np
from tokenizers import Tokenizer

CHUNK = 4000
BOOK_EVERY, BOOK_PICK = 25, 12
FILE_EVERY, FILE_PICK = 12, 5
EOS = 0
MODELS = ("tiny", "small")
# A decoded piece shorter than this is not searched for (it could be anywhere).
MIN_PIECE = 200


def book_chunks(text):
    """Chunks of whole paragraphs (blank-line separated), each >= CHUNK chars."""
    chunks, start, at = [], 0, 0
    while True:
        at = text.find("\n\n", at)
        if at < 0:
            break
        at += 2
        if at - start >= CHUNK:
            chunks.append((start, at))
            start = at
    if start < len(text):
        chunks.append((start, len(text)))
    return chunks


def curl_files(text):
    marker = "/* ===== curl/"
    starts = []
    at = text.find(marker)
    while at >= 0:
        starts.append(at)
        at = text.find("\n" + marker, at + 1)
        at = at + 1 if at >= 0 else -1
    return [(s, e) for s, e in zip(starts, starts[1:] + [len(text)])]


def calibration_regions(shared, corpus):
    """(file name, start, end) of every located piece of every calibration window."""
    regions, pieces, located = [], 0, 0
    for model in MODELS:
        tok = Tokenizer.from_file(str(shared / "fixtures/models" / model / "tokenizer.json"))
        for kind in ("generic", "domain"):
            ids = np.fromfile(shared / f"fixtures/goldens/{model}/calib_{kind}.ids", dtype="<i4")
            for window in ids.reshape(-1, 512):
                cuts = [-1] + [i for i, t in enumerate(window) if t == EOS] + [len(window)]
                for a, b in zip(cuts, cuts[1:]):
                    # The first and last tokens may hold half a UTF-8 character.
                    piece = tok.decode(window[a + 1 : b].tolist())[8:-8]
                    if len(piece) < MIN_PIECE:
                        continue
                    pieces += 1
                    for name, text in corpus.items():
                        at = text.find(piece)
                        if at >= 0:
                            regions.append((name, at, at + len(piece)))
                            located += 1
    return regions, pieces, located


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--shared", type=pathlib.Path,
                    default=pathlib.Path(__file__).resolve().parent.parent.parent / "shared")
    args = ap.parse_args()
    books = sorted((args.shared / "fixtures/corpus/generic_calib").glob("*.txt"))
    curl = args.shared / "fixtures/corpus/domain_calib/curl_code.txt"
    corpus = {p.name: p.read_text(encoding="utf-8") for p in books + [curl]}
    regions, pieces, located = calibration_regions(args.shared, corpus)

    def clear(name, start, end):
        return not any(n == name and s < end and start < e for n, s, e in regions)

    picked, dropped = {}, []
    for name, text in corpus.items():
        parts = curl_files(text) if name == curl.name else book_chunks(text)
        every, pick = (FILE_EVERY, FILE_PICK) if name == curl.name else (BOOK_EVERY, BOOK_PICK)
        for i, (s, e) in enumerate(parts):
            if i % every != pick:
                continue
            (picked.setdefault(name, []) if clear(name, s, e) else dropped).append((s, e))

    args.out.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, names in (("generic", [b.name for b in books]), ("domain", [curl.name])):
        val, train = [], []
        for name in names:
            text, at = corpus[name], 0
            for s, e in picked.get(name, []):
                val.append(text[s:e])
                train.append(text[at:s])
                at = e
            train.append(text[at:])
        for stem, parts in ((f"validation_{kind}", val), (f"train_{kind}", train)):
            data = "".join(parts).encode("utf-8")
            (args.out / f"{stem}.txt").write_bytes(data)
            files[stem] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    record = {
        "calibration_pieces": pieces,
        "located_in_corpus": located,
        "chunks_dropped_for_calibration_overlap": len(dropped),
        "validation_chunks": {n: [[s, e] for s, e in v] for n, v in picked.items()},
        "files": files,
    }
    (args.out / "validation.json").write_text(json.dumps(record, indent=1) + "\n")
    for stem, f in files.items():
        print(f"{stem}.txt: {f['bytes']} bytes, sha256 {f['sha256'][:16]}")
    print(f"calibration pieces located in the corpus: {located} of {pieces}; "
          f"candidate chunks dropped for overlap: {len(dropped)}", file=sys.stderr)


if __name__ == "__main__":
    main()
