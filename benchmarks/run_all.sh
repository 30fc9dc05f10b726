#!/usr/bin/env bash
# Run every benchmark in order (quality on the default model, then speed and memory against the reference
# scPRINT), then regenerate benchmarks/results/summary.md, docs/benchmarks.md and the Results block of README.md.
# Prints the wall time of each step and the total (38 min on 2 cores in the last run).
#
#   bash benchmarks/run_all.sh                 # the embedded default model
#   MODEL=/path/to/model bash benchmarks/run_all.sh
#   PYTHON=python3 NICE=0 bash benchmarks/run_all.sh
#
#   SPEED=0 bash benchmarks/run_all.sh          # quality only (about 10 min)
#
# The speed benchmark needs the reference scPRINT environment (.venv-ref, built by
# scripts/conformance/setup_reference_env.sh); without it the step is skipped and the speed results already in
# benchmarks/results/ (if any) stay in the report. scripts/pretrain_pbmc.py (a 25-min training curve) is not part
# of the suite; its result, when present, is included in the report.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
MODEL="${MODEL:-default}"
NICE="${NICE:-10}"
SPEED="${SPEED:-1}"
cd "$REPO"

# wall time of every step of this run, read by make_report.py (the suite's total in the report)
TIMES="$HERE/results/run_all_times.tsv"
mkdir -p "$HERE/results"
printf 'step\tseconds\tfinished\tcores\tmodel\n' > "$TIMES"

total_start=$(date +%s)
step() {
    local name="$1"
    shift
    local start
    start=$(date +%s)
    echo "=== $name: $*"
    nice -n "$NICE" "$PYTHON" "$@"
    local took=$(( $(date +%s) - start ))
    printf '%s\t%d\t%s\t%s\t%s\n' "$name" "$took" "$(date '+%Y-%m-%d %H:%M')" "$(nproc)" "$MODEL" >> "$TIMES"
    echo "=== $name: $took s"
}

step classification benchmarks/classification.py --model "$MODEL"
step denoise benchmarks/denoise.py --model "$MODEL"
step embedding benchmarks/embedding.py --model "$MODEL"
step annotation benchmarks/annotation.py --model "$MODEL"
step annotation_diagnosis benchmarks/annotation_diagnosis.py --model "$MODEL"   # after annotation (copies its rows)
step grn_quality benchmarks/grn_quality.py --model "$MODEL"
step spatial benchmarks/spatial.py --model "$MODEL"   # needs the spatial extra (squidpy)
step perturb benchmarks/perturb.py --model "$MODEL" --speed-cells 0
step perturb_speed benchmarks/perturb.py --model "$MODEL" --speed-only
step scale benchmarks/scale.py   # sc-print embed, 10^3..10^6 cells, 1 and 2 processes (about 25 min)
if [[ "$SPEED" == 1 && ( -x "$REPO/.venv-ref/bin/python" || -f "$HERE/_work/speed_small_random.ckpt" ) ]]; then
    step speed benchmarks/speed.py
elif [[ "$SPEED" == 1 ]]; then
    echo "=== speed: skipped (no reference environment at $REPO/.venv-ref; see scripts/conformance/setup_reference_env.sh)"
fi
step report benchmarks/make_report.py

total=$(( $(date +%s) - total_start ))
printf 'Total wall time: %d min %d s\n' $(( total / 60 )) $(( total % 60 ))
