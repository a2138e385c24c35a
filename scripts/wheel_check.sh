#!/usr/bin/env bash
# Checks the wheel end to end: builds it (pip wheel, reusing the build folder of scripts/setup_env.sh,
# so after a setup only packaging remains), checks its metadata requires exactly the torch it was
# built against plus numpy, installs it into a fresh virtual environment holding only that torch and
# numpy, and there imports fastops and runs an op against a plain-torch reference. Run after
# scripts/setup_env.sh (CI: .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(cd "${FASTOPS_VENV:-.venv}" && pwd)
dist=build/wheel-check/dist
fresh=build/wheel-check/venv
rm -rf "$dist" && mkdir -p "$dist"
"$venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-build-isolation --no-deps -w "$dist" .
wheel=$(ls "$dist"/fastops-*.whl)
torch_version=$("$venv/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
"$venv/bin/python" build_support/check_wheel_metadata.py "$wheel" "$torch_version"
if [ ! -x "$fresh/bin/python" ]; then
  "$venv/bin/python" -m venv --clear "$fresh"
fi
# Only the wheel's own requirements: pip resolves torch from the wheel's pin.
"$fresh/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-cache-dir "$wheel"
"$fresh/bin/python" -m pip list --format=freeze --disable-pip-version-check > build/wheel-check/installed.txt
# From outside the source tree: the unbuilt fastops/ here must not shadow the installed one.
(cd / && "$OLDPWD/$fresh/bin/python" "$OLDPWD/build_support/check_installed_wheel.py" "$OLDPWD/build/wheel-check/installed.txt")
echo "wheel check passed: $(basename "$wheel") (torch==$torch_version)"
