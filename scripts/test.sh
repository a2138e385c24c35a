#!/usr/bin/env bash
# Sets up (scripts/setup_env.sh) and runs the whole test suite. Extra arguments go to pytest.
# CUDA tests run where a GPU is present and are skipped elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# pytest, not `python -m pytest`: the latter would put the source folder on sys.path and import the
# unbuilt fastops/ instead of the installed package.
.venv/bin/pytest -q "$@"
