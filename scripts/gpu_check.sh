#!/usr/bin/env bash
# Everything a lent GPU machine can show, in one device call (see docs/ARCHITECTURE.md, "GPU"):
#   1. builds fastops from source against that machine's own torch, CUDA kernels required;
#   2. runs the whole test suite there (the CUDA tests run instead of being skipped);
#   3. runs the CUDA tests again under compute-sanitizer: memcheck (out-of-bounds and misaligned
#      accesses), racecheck (shared-memory races), initcheck (reads of uninitialized global memory)
#      and synccheck (barriers in divergent code), each within SANITIZER_TIMEOUT seconds (default 300);
#   4. runs the benchmark suite on the GPU (results under benchmarks/results/<gpu>/);
#   5. packs logs and results into $OUT/gpu_results.tgz.
#
# From a session with a GPU (device tool), in the repo root here:
#   echo /.whl/ >> .git/info/exclude
#   .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .whl cmake==4.4.5     # only if the image's CMake is < 4
#   device run: bash scripts/gpu_check.sh        (carry: [".whl"] when downloaded)
# then here: tar xzf <files_at>/gpu_results.tgz   and commit benchmarks/results/ and the logs' figures.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fastops-gpu-out}
mkdir -p "$OUT" gpu_logs
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
status=0
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

step "machine"
nvidia-smi | tee gpu_logs/nvidia-smi.txt
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

step "cmake"
if ! $PY - <<'PYEOF'
import re, shutil, subprocess, sys
exe = shutil.which("cmake")
out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout if exe else ""
m = re.search(r"(\d+)\.", out)
sys.exit(0 if m and int(m.group(1)) >= 4 else 1)
PYEOF
then
  if ls .whl/cmake-*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --find-links .whl cmake
  else
    echo "CMake < 4 and no .whl/cmake-*.whl carried: the build will fail (see this script's header)"
  fi
fi

step "build"
export FASTOPS_CUDA=1 FASTOPS_CUDA_ARCHS=${FASTOPS_CUDA_ARCHS:-90} MAX_JOBS=${MAX_JOBS:-16}
if ! $PY -m pip install --no-build-isolation --no-deps -v . > gpu_logs/build.log 2>&1; then
  tail -50 gpu_logs/build.log; echo "BUILD FAILED"; status=1
else
  grep -E "fastops:|Successfully" gpu_logs/build.log
  (cd /tmp && $PY -c "import fastops; print(fastops.build_info())")
fi

if [ $status -eq 0 ]; then
  step "tests (all, CUDA included)"
  $PY -m pytest -q -p no:cacheprovider tests 2>&1 | tee gpu_logs/tests.log | tail -25
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1

  # Without torch's caching allocator every tensor is its own allocation, so memcheck sees reads past
  # a tensor's end and initcheck sees reads of memory no kernel wrote (with the cache, both land in
  # memory an earlier tensor owned).
  for tool in memcheck racecheck initcheck synccheck; do
    step "compute-sanitizer $tool (CUDA tests)"
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "${SANITIZER_TIMEOUT:-300}" \
      compute-sanitizer --tool $tool --error-exitcode 99 --print-limit 20 \
      $PY -m pytest -q -p no:cacheprovider -m cuda -x -k "not large_index" tests \
      > gpu_logs/sanitizer-$tool.log 2>&1
    rc=$?
    tail -15 gpu_logs/sanitizer-$tool.log
    [ $rc -eq 0 ] || { echo "compute-sanitizer $tool: exit $rc"; status=1; }
  done

  step "benchmarks"
  $PY benchmarks/run.py --device cuda 2>&1 | tee gpu_logs/benchmarks.log | tail -40
fi

step "pack"
tar czf "$OUT/gpu_results.tgz" gpu_logs benchmarks/results
ls -la "$OUT"
echo "gpu_check status: $status"
exit $status
