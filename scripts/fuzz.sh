#!/usr/bin/env bash
# The long fuzzing run: every hypothesis property of the suite with thousands of fresh examples
# each (FASTOPS_FUZZ=long; the normal suite runs a quick derandomized set). Takes an hour or more
# on 2 cores. Extra arguments go to pytest, e.g. one file: bash scripts/fuzz.sh tests/test_fuzz_ops.py
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${FASTOPS_VENV:-.venv}
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(grep -l "@given" tests/test_*.py)
fi
FASTOPS_FUZZ=long "$venv/bin/pytest" -q -p no:cacheprovider "${files[@]}"
