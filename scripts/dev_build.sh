#!/usr/bin/env bash
# Builds fastops._C into the source tree (fastops/_C*.so and fastops/_build_config.py, both
# git-ignored), so a checkout runs from source without installing:
#   bash scripts/dev_build.sh                 # FASTOPS_CUDA and MAX_JOBS pass through, as for pip
#   PYTHONPATH=$PWD .venv/bin/pytest -q       # tests against this tree's fastops
# Each checkout (git worktree) keeps its own build/inplace-<cpu|cuda> folder, so several can be
# built and tested side by side with one .venv. PYTHON picks the interpreter (default .venv's, or
# the main checkout's .venv through FASTOPS_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(cd "${FASTOPS_VENV:-.venv}" && pwd)  # absolute: cmake runs ninja from its own folders
py=${PYTHON:-$venv/bin/python}
kind=$([ "${FASTOPS_CUDA:-}" = "0" ] && echo cpu || echo cuda)
dir=build/inplace-$kind
mkdir -p build
"$venv/bin/cmake" -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$py" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" -DCMAKE_MAKE_PROGRAM="$venv/bin/ninja" > "$dir.log" 2>&1 \
  || { tail -30 "$dir.log"; exit 1; }
"$venv/bin/cmake" --build "$dir"
cp "$dir"/_C*.so "$dir"/_build_config.py fastops/
echo "dev build ($kind): fastops/$(basename "$dir"/_C*.so)"
