#!/usr/bin/env bash
# Download exactly the wheels of benchmarks/gpu/wheels.txt for Python 3.12 / manylinux x86-64 into .whl/ (or $1),
# for a GPU machine with no network (see docs/gpu.md). Prints the total size: it must stay under the 64 MiB the
# working tree may carry with it.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest="${1:-.whl}"
mkdir -p "$dest"
python="${PYTHON:-python3}"
grep -v '^\s*#' benchmarks/gpu/wheels.txt | grep -v '^\s*$' | while read -r req; do
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 -d "$dest" "$req" 2>/dev/null ||
        # no wheel on PyPI (pure-Python sdist only, e.g. docrep): build one here, it is platform independent
        "$python" -m pip wheel --quiet --no-deps -w "$dest" "$req"
done
ls "$dest"/*.whl | wc -l | xargs echo "wheels:"
du -ch "$dest"/*.whl | tail -1
