#!/usr/bin/env bash
# The validation text GGUF choices are made on (never the test texts): the last
# 200 kB of three calibration books, to standard output.
set -euo pipefail
books=${PTQ_SHARED_DIR:-$(cd "$(dirname "$0")/.." && pwd)/../shared}/fixtures/corpus/generic_calib
for b in 2701-0__Moby_Dick_or_The_Whale 205-0__Walden_and_On_The_Duty_Of_Civil_Disobedi \
  27942-0__A_System_Of_Logic_Ratiocinative_And_Indu; do tail -c 200000 "$books/$b.txt"; done
