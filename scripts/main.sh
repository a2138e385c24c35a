#!/usr/bin/env bash
# The main job: set up (scripts/setup_env.sh), then run the benchmark suite and print its tables
# (results are saved under benchmarks/results/<machine>/). Extra arguments go to benchmarks/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python benchmarks/run.py "$@"
