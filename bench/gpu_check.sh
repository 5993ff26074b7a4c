#!/usr/bin/env bash
# GPU speed check of unitgrad on a lent accelerator: one script, installs nothing, <= 8 minutes.
#   bash bench/gpu_check.sh                 # on the GPU machine (torch + timm present, unitgrad from src/)
#   bash bench/gpu_check.sh --device cpu    # dry run at tiny sizes
# Writes $OUT/gpu.md, gpu.json, packing.md, packing.json ($OUT defaults to a fresh temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d -t unitgrad-gpu-check.XXXXXX)}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
echo "gpu_check: writing to $OUT"
# 260 s of measurements inside a 290 s hard stop; partial results are written as they come
status=0
timeout 290 "$PYTHON" bench/gpu_check.py --out "$OUT" --budget-s 260 "$@" || status=$?
# k = 1, 2, 4, 8 training processes packed on the one GPU (what `unitgrad grid run --gpus-per-run 1/k` starts)
PYTHONPATH="$PWD/bench:$PYTHONPATH" timeout 190 "$PYTHON" bench/gpu_packing.py --out "$OUT" --budget-s 160 "$@" \
  || status=$?
exit "$status"
