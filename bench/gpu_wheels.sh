#!/usr/bin/env bash
# Prepare what bench/gpu_quick.sh needs on the lent GPU machine (no network there): wheels into .whl/ and the
# CIFAR-10 archive into .carry/ (both git-ignored; carry both). Run here, from anywhere:  bash bench/gpu_wheels.sh
# The wheels are what unitgrad's commands import and that machine's Python 3.12 image lacks: pydantic (the
# params schema), dvclive and the parts of dvc it imports (the metrics logs), imagecorruptions-imaug (its frost
# images). DVC's pipeline machinery and Ray are not needed there and do not travel (Ray alone is over 64 MiB).
# Versions: requirements.lock's, so the GPU runs use what the tests ran with.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVE="${ARCHIVE:-../shared/data/cifar10-jpeg.tar.gz}"
PYTHON="${PYTHON:-python3}"
NAMES="pydantic pydantic_core annotated-types typing-inspection typing_extensions dvclive dvc dvc-render
  dvc-studio-client flatten-dict funcy ruamel.yaml voluptuous wcwidth imagecorruptions-imaug"
pins=()
for name in $NAMES; do
  pin=$(grep -i "^${name}==" requirements.lock) || { echo "error: $name is not pinned in requirements.lock" >&2; exit 2; }
  pins+=("$pin")
done
rm -rf .whl && mkdir -p .whl .carry
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "${pins[@]}"
cp "$ARCHIVE" .carry/cifar10-jpeg.tar.gz
du -ch .whl/*.whl | tail -1 | sed 's/total/wheels (.whl)/'
du -h .carry/cifar10-jpeg.tar.gz
echo "carry: [\".whl\", \".carry\"]; the checkout travels too: keep all three under 64 MiB"
