#!/usr/bin/env bash
# Set up, then everything CI checks: lint, format, types, tests with coverage.
# `scripts/check.sh --full` also runs the slow tests (long grids).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
markers=(-m "not slow")
[ "${1:-}" = "--full" ] && markers=(-m "")
timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "[$name: $((SECONDS - t0)) s]"; }
timed ruff .venv/bin/ruff check .
timed format .venv/bin/ruff format --check .
timed mypy .venv/bin/mypy
# pytest exits 5 when it collects no test; set -e turns that into a failure too
timed pytest .venv/bin/python -m pytest "${markers[@]}" --cov=seq2seq --cov-report=term \
  --cov-fail-under=85 -q
