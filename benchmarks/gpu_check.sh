#!/usr/bin/env bash
# The prepared GPU check (docs/RELIABILITY.md): one line per check, under 8 minutes on one H100/H200.
# Uses the checkout's .venv when there is one, else the python on PATH (which needs torch).
# Without a CUDA device it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
