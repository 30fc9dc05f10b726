"""Minimal stand-in for ``torchvision`` in the reference scPRINT environment.

PyPI's torchvision wheels are CUDA builds that cannot load next to CPU torch, and the reference
(``simpler_flash``) only needs :class:`torchvision.ops.StochasticDepth`. This package provides just
that; it is put first on ``PYTHONPATH`` of ``.venv-ref`` and is not part of sc_print.
"""

from __future__ import annotations

from . import ops

__version__ = "0.0.0+scprint-shim"
__all__ = ["ops"]
