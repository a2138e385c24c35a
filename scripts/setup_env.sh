#!/usr/bin/env bash
# Sets up a fresh machine: a virtual environment in .venv with the pinned torch and the build and
# test requirements, then builds and installs fastops into it (incrementally, in build/).
#   PYTHON=python3.11 bash scripts/setup_env.sh
# FASTOPS_CUDA=0/1 and FASTOPS_CUDA_ARCHS pass through to the build (see CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
# Build against the torch just installed (no build isolation: the extension's ABI is torch's).
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps .
# (from another folder: here, the unbuilt source package would shadow the installed one)
(cd / && "$OLDPWD/.venv/bin/python" -c "import fastops, json; print('fastops built:', json.dumps(fastops.build_info()))")
