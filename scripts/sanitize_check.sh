#!/usr/bin/env bash
# Builds the CPU code with AddressSanitizer and UndefinedBehaviorSanitizer (FASTOPS_SANITIZE, CPU
# only, in build/sanitize) and runs the test suite against that build, from a copy of the package
# in build/sanitize-tree, so the checkout's own build is untouched. Any sanitizer report stops the
# run with a non-zero status. Extra arguments go to pytest (e.g. a test file, -x).
#   bash scripts/sanitize_check.sh            # the whole suite (several times slower than usual)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(cd "${FASTOPS_VENV:-.venv}" && pwd)
py=$venv/bin/python
dir=build/sanitize
mkdir -p build
# The AVX-512 copy of the kernels only where this CPU runs it: ASan's instrumented static
# initializers of that copy use AVX-512 instructions, which stop an older CPU at import.
levels="0;1"
grep -qw avx512f /proc/cpuinfo && levels="0;1;2"
FASTOPS_SANITIZE=address,undefined FASTOPS_CUDA=0 "$venv/bin/cmake" -S . -B "$dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTOPS_SANITIZE=address,undefined -DPython_EXECUTABLE="$py" \
  -DFASTOPS_CPU_ISA_LEVELS="$levels" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" -DCMAKE_MAKE_PROGRAM="$venv/bin/ninja" > "$dir.log" 2>&1 \
  || { tail -30 "$dir.log"; exit 1; }
FASTOPS_CUDA=0 "$venv/bin/cmake" --build "$dir"
tree=build/sanitize-tree
rm -rf "$tree" && mkdir -p "$tree"
cp -r fastops "$tree/" && rm -f "$tree"/fastops/_C*.so
cp "$dir"/_C*.so "$dir"/_build_config.py "$tree/fastops/"
# The interpreter and torch are not instrumented: the ASan runtime is preloaded, leaks (Python's own
# at exit) are not reported, and the first error aborts.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
# torch.compile's C++ compiler runs none of our code: it runs without the preloaded runtime (under
# it every compiler process pays ASan's allocator), through wrappers first on PATH. Child Python
# processes (torchrun, DDP workers) keep it, since they load the sanitized extension.
bin=$PWD/build/sanitize-bin
mkdir -p "$bin"
for cc in gcc g++ c++; do
  real=$(PATH=${PATH//$bin:/} command -v "$cc") || continue
  printf '#!/bin/sh\nunset LD_PRELOAD\nexec %s "$@"\n' "$real" > "$bin/$cc"
  chmod +x "$bin/$cc"
done
export PATH="$bin:$PATH"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export FASTOPS_OUTPUT_CACHE=0  # every large output is a fresh allocation ASan can bound
# `pytest` (not `python -m pytest`) keeps the checkout off sys.path, so the tests import the copy
# --capture=sys: a sanitizer's report, written to file descriptor 2 as it stops the process, reaches
# the terminal instead of pytest's captured output, which is lost with the process.
PYTHONPATH="$PWD/$tree" "$venv/bin/pytest" -q -p no:cacheprovider --capture=sys -x "$@"
