#!/usr/bin/env bash
# Set up, then everything CI checks: lint, format, types, tests with coverage.
# `scripts/check.sh --full` also runs the slow tests (long grids).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The page test drives Debian's chromium (Playwright never downloads a browser): install it when
# missing and we may (root with apt-get); once it is there the test must run, not skip.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium for the page test (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "could not install chromium; the page test will be skipped" >&2
fi
if [ -x /usr/bin/chromium ]; then export SEQ2SEQ_REQUIRE_BROWSER=1; fi
markers=(-m "not slow")
[ "${1:-}" = "--full" ] && markers=(-m "")
timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "[$name: $((SECONDS - t0)) s]"; }
timed ruff .venv/bin/ruff check .
timed format .venv/bin/ruff format --check .
timed mypy .venv/bin/mypy
# pytest exits 5 when it collects no test; set -e turns that into a failure too
timed pytest .venv/bin/python -m pytest "${markers[@]}" --cov=seq2seq --cov-report=term \
  --cov-fail-under=85 -q
