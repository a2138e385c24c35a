#!/usr/bin/env bash
# Style and structure checks, as CI runs them (.ci/run) and the pre-commit hooks run them:
#   ruff (lint and format, pyproject.toml), clang-format (csrc/, .clang-format), import-linter
#   (the layers, pyproject.toml). Exits non-zero on the first kind of violation found.
# Uses the tools in .venv (scripts/setup_env.sh installs them; FASTOPS_VENV names another venv);
# `--fix` rewrites instead of checking.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FASTOPS_VENV:-.venv}/bin
mapfile -t cxx < <(git ls-files 'csrc/*.h' 'csrc/*.cpp' 'csrc/*.cu' 'tests/native/*.cpp')
if [ "${1:-}" = "--fix" ]; then
  "$bin/ruff" check --fix .
  "$bin/ruff" format .
  "$bin/clang-format" -i "${cxx[@]}"
else
  "$bin/ruff" check .
  "$bin/ruff" format --check .
  "$bin/clang-format" --dry-run --Werror "${cxx[@]}"
fi
# import-linter reads the source tree (run from the repository root)
"$bin/lint-imports"
echo "lint: clean"
