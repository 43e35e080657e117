#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs xlandcover with its pinned dependencies.
# torch goes first, pinned by requirements/constraints.txt, so pip never swaps the CPU wheel
# for a multi-gigabyte CUDA build. Re-running is cheap: it reinstalls only when the
# requirement files changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.xlandcover-installed
if [ ! -f "$stamp" ] || [ requirements/dev.txt -nt "$stamp" ] \
   || [ requirements/constraints.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
  .venv/bin/pip install -q -r requirements/constraints.txt
  .venv/bin/pip install -q -c requirements/constraints.txt -r requirements/dev.txt
  .venv/bin/pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
    || .venv/bin/pip install -q --no-deps -e .
  touch "$stamp"
fi
# A real STAC API server for the offline STAC tests lives in its own venv, so its web stack
# never touches the library's environment.
sstamp=.venv-stac/.installed
if [ ! -f "$sstamp" ] || [ requirements/stac-server.txt -nt "$sstamp" ]; then
  [ -x .venv-stac/bin/python ] || "$PY" -m venv .venv-stac
  .venv-stac/bin/pip install -q --disable-pip-version-check -r requirements/stac-server.txt
  touch "$sstamp"
fi
