"""sc_print: the scPRINT single-cell foundation model in the scverse ecosystem.

``sp.pp.prepare`` checks raw counts and maps genes; ``sp.tl.embed / denoise / grn / hubs`` run the model
and write results into the AnnData; ``sp.pl`` plots them; ``sp.get`` reads them back as tables and
graphs; ``sp.load_model`` fetches published weights; ``sp.ScPrint`` is the scvi-tools model class.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import data, datasets, get, grn, hub, model, nn, ontology, pl, pp, tl
from ._settings import settings
from .hub import load_model
from .model import ScPrint

try:
    __version__ = version("sc-print")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "ScPrint",
    "data",
    "datasets",
    "get",
    "grn",
    "hub",
    "load_model",
    "model",
    "nn",
    "ontology",
    "pl",
    "pp",
    "settings",
    "tl",
]
