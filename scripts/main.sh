#!/usr/bin/env bash
# The main job: set up (scripts/setup_env.sh), run the demo (a small detector trained, evaluated and
# drawn on synthetic shapes: `fastops demo`, pictures in runs/demo/), then the op benchmark suite
# and its tables (results saved under benchmarks/results/<machine>/). --quick runs both small;
# every argument goes to benchmarks/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
demo_args=()
for arg in "$@"; do
  if [ "$arg" = "--quick" ]; then demo_args+=(--quick); fi
done
# the console script imports the installed fastops (from here, `python -m fastops` would find the
# unbuilt source folder)
.venv/bin/fastops demo --out runs/demo "${demo_args[@]}"
.venv/bin/python benchmarks/run.py "$@"
