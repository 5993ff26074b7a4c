#!/usr/bin/env bash
# First real GPU evidence of unitgrad: study `main` at a reduced budget, end to end, <= 8 minutes on one H200.
#   bash bench/gpu_wheels.sh                # here, once: wheels into .whl/, the CIFAR-10 archive into .carry/
#   bash bench/gpu_quick.sh                 # on the GPU machine (carry .whl and .carry)
#   bash bench/gpu_quick.sh --device cpu    # dry run: 20 images per class, 1 epoch, cifar_resnet8 (5-8 min, 2 cores)
# Writes $OUT/README.md, summary.csv, paired.csv, claims.md, main.md and 3 figures ($OUT defaults to a fresh
# temporary folder). No DVC: the quick evidence calls the commands dvc.yaml's stages call, directly, with a params
# file of its own (bench/gpu_quick.py writes it from params.yaml), so no lock, cache or params.yaml is touched.
# No Ray either: its wheel is too large to carry, so the k runs are k `unitgrad train` processes started at once.
#
# Plan (H200, results/bench/gpu.md: cifar_resnet18 bf16 channels_last, two-pass SAM/PUGD 29-30 k img/s and SGD
# 58 k img/s at batch 512, GPU-bound; 10 k / 20 k img/s at batch 128, host-bound):
#   work = 3 seeds x 10 epochs x 50 k images = 1.5 M images per optimizer;
#   SAM + PUGD: 3.0 M two-pass images / 29 k img/s = 103 s; SGD: 1.5 M / 58 k img/s = 26 s; all: ~130 s of GPU
#   when the device is kept busy. Batch 256 (SAM's CIFAR batch) alone is partly host-bound (~15-20 k img/s
#   two-pass, i.e. ~200 s serial); 9 processes packed at once (k = 9, ~1.3 GiB each) fill the launch gaps, so
#   training should take 130-200 s plus ~20 s of process start, not 5 min.
#   Fixed costs (CPU times measured by the dry run here): decoding 60 k JPEGs ~30 s, corrupting 1,000 test images
#   15 x 5 ways ~40 s (3.5 s per 100), 9 evaluations of 10 k + 75 k images (~5 s of GPU each, 9 at once) and
#   their process starts ~30 s, report ~20 s: ~2 min.
#   Expected total 4.5-6 min; the hard stop below (450 s on the GPU) leaves the README of the phases done if it is
#   wrong. The CPU dry run has no such budget: on 2 shared cores it takes 5-8 min, most of it process starts.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d -t unitgrad-gpu-quick.XXXXXX)}"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
# carried wheels (bench/gpu_wheels.sh) for what the GPU machine's Python lacks; none are needed where it has them
have='import importlib.util as u, pydantic, dvclive; assert u.find_spec("imagecorruptions")'
if [ -d .whl ] && ! "$PYTHON" -c "$have" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
limit=450
for arg in "$@"; do [ "$arg" = cpu ] && limit=1800; done
echo "gpu_quick: writing to $OUT (hard stop after $limit s)"
status=0
timeout "$limit" "$PYTHON" bench/gpu_quick.py --out "$OUT" "$@" || status=$?
[ "$status" = 124 ] && echo "gpu_quick: stopped at $limit s; $OUT/README.md lists the phases that finished" >&2
exit "$status"
