#!/usr/bin/env bash
# Build (or verify) the virtual environment of the reference scPRINT package in <repo>/.venv-ref.
#
# The reference (scprint 2.3.8 + simpler-flash 1.0.7) pins torch 2.2 and numpy<2, so it never shares
# sc_print's environment. We install it with the local CPU torch wheel and its runtime dependencies
# (reference-requirements.txt, next to this script) and put a tiny torchvision stand-in (shim/) on its
# path. Idempotent: a finished environment is detected by a stamp file and only checked.
#
# Usage: bash scripts/conformance/setup_reference_env.sh [--force]
# Env:   SC_PRINT_REF_VENV (default <repo>/.venv-ref), PYTHON (default python3.11 or python3),
#        SC_PRINT_REF_TORCH (default 2.13.0, the torch version of sc_print's own environment).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${SC_PRINT_REF_VENV:-$repo/.venv-ref}"
torch_version="${SC_PRINT_REF_TORCH:-2.13.0}"
python_bin="${PYTHON:-$(command -v python3.11 || command -v python3)}"
stamp="$venv/.sc_print_reference_ready"
recipe_id="scprint==2.3.8 simpler-flash==1.0.7 torch==${torch_version} $(sha256sum "$here/reference-requirements.txt" | cut -c1-16)"

check() {
    "$venv/bin/python" - <<'PY'
import importlib.metadata as md
import torch, numpy, lightning, torchvision
from torchvision.ops import StochasticDepth
import simpler_flash  # noqa: F401
from scprint.model import model as _m  # noqa: F401
assert torchvision.__version__.endswith("scprint-shim"), torchvision.__file__
print(f"reference env ok: scprint {md.version('scprint')}, simpler-flash {md.version('simpler-flash')}, "
      f"torch {torch.__version__}, numpy {numpy.__version__}, lightning {lightning.__version__}")
PY
}

if [[ "${1:-}" != "--force" && -f "$stamp" && "$(cat "$stamp")" == "$recipe_id" ]]; then
    check && exit 0
    echo "reference env at $venv is broken; rebuilding" >&2
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python_bin" -m venv "$venv"
fi
pip_quiet() {
    # pip warns about every configured index folder that is absent on this machine: keep the log readable
    "$venv/bin/python" -m pip --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }
}
pip_quiet install -q -U pip
# torch first, pinned to the CPU build: otherwise the resolver reaches for CUDA wheels.
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==${torch_version}+cpu" > "$constraints"
pip_quiet install -q -c "$constraints" "torch==${torch_version}"
# the reference itself without its torch==2.2 pins
pip_quiet install -q --no-deps scprint==2.3.8 simpler-flash==1.0.7
pip_quiet install -q -c "$constraints" -r "$here/reference-requirements.txt"
# a real torchvision would shadow nothing useful and cannot load with CPU torch: make sure none is there
if "$venv/bin/python" -m pip show -q torchvision >/dev/null 2>&1; then
    pip_quiet uninstall -q -y torchvision
fi
# the stand-in package goes on the interpreter's path through a .pth file
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$here/shim" > "$site/sc_print_torchvision_shim.pth"

check
echo "$recipe_id" > "$stamp"
