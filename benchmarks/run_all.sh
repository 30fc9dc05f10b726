#!/usr/bin/env bash
# Run every quality benchmark in order, then regenerate benchmarks/results/summary.md, docs/benchmarks.md and
# the Results block of README.md. Prints the wall time of each step and the total.
#
#   bash benchmarks/run_all.sh                 # the embedded default model
#   MODEL=/path/to/model bash benchmarks/run_all.sh
#   PYTHON=python3 NICE=0 bash benchmarks/run_all.sh
#
# The speed benchmark (benchmarks/speed.py) is separate: it needs the reference scPRINT environment. Its results,
# when present in benchmarks/results/, are included in the report.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
MODEL="${MODEL:-default}"
NICE="${NICE:-10}"
cd "$REPO"

total_start=$(date +%s)
step() {
    local name="$1"
    shift
    local start
    start=$(date +%s)
    echo "=== $name: $*"
    nice -n "$NICE" "$PYTHON" "$@"
    echo "=== $name: $(( $(date +%s) - start )) s"
}

step classification benchmarks/classification.py --model "$MODEL"
step denoise benchmarks/denoise.py --model "$MODEL"
step embedding benchmarks/embedding.py --model "$MODEL"
step grn_quality benchmarks/grn_quality.py --model "$MODEL"
step report benchmarks/make_report.py

total=$(( $(date +%s) - total_start ))
printf 'Total wall time: %d min %d s\n' $(( total / 60 )) $(( total % 60 ))
