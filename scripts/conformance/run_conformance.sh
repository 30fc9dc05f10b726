#!/usr/bin/env bash
# Conformance of sc_print with the reference scPRINT package on official-format checkpoints.
#
# 1. builds the reference environment if needed (setup_reference_env.sh, idempotent),
# 2. regenerates the fixtures (make_fixtures.py, run with the reference python) into a temporary folder
#    and checks that they match the committed ones in tests/data/checkpoints (same reference outputs),
# 3. runs the `reference`-marked tests with SC_PRINT_REFERENCE_PYTHON set, plus the fixture tests.
#
# Usage: bash scripts/conformance/run_conformance.sh [extra pytest args]
# Env:   SC_PRINT_REF_VENV (default <repo>/.venv-ref), SC_PRINT_PYTHON (default <repo>/.venv/bin/python)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${SC_PRINT_REF_VENV:-$repo/.venv-ref}"
python="${SC_PRINT_PYTHON:-$repo/.venv/bin/python}"

bash "$here/setup_reference_env.sh"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$venv/bin/python" "$here/make_fixtures.py" --out "$out"
"$python" - "$out" "$repo/tests/data/checkpoints" <<'PY'
import sys
from pathlib import Path

import numpy as np

fresh, committed = Path(sys.argv[1]), Path(sys.argv[2])
worst = 0.0
for ref in sorted(fresh.glob("*_reference.npz")):
    old = committed / ref.name
    if not old.exists():
        print(f"{ref.name}: not committed yet")
        continue
    with np.load(ref) as a, np.load(old) as b:
        if sorted(a.files) != sorted(b.files):
            print(f"{ref.name}: outputs differ: {sorted(set(a.files) ^ set(b.files))}")
            continue
        diff = max(float(np.abs(a[k].astype(float) - b[k]).max()) for k in a.files)
    worst = max(worst, diff)
    print(f"{ref.name}: max |fresh - committed| = {diff:.2e}")
if worst > 1e-6:
    print("warning: the regenerated reference outputs differ from the committed fixtures; "
          "regenerate them with scripts/conformance/make_fixtures.py if the reference changed")
PY

cd "$repo"
SC_PRINT_REFERENCE_PYTHON="$venv/bin/python" "$python" -m pytest tests/test_conformance.py -v -s "$@"
