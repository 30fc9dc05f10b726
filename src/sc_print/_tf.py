"""Transcription factors shipped with the package (``_resources/tfs.txt``).

The list comes from GRnnData (MIT licence, see the header of the resource file). Symbols are matched
case-insensitively, so the human list (``SPI1``) and the mouse list (``Spi1``) both apply whatever the
capitalisation used in ``adata.var``.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Iterable

HUMAN = "NCBITaxon:9606"
MOUSE = "NCBITaxon:10090"


@cache
def _tf_table() -> pd.DataFrame:
    """Shipped TF list as a table with columns ``symbol`` and ``organism``."""
    text = files("sc_print").joinpath("_resources", "tfs.txt").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return pd.DataFrame(rows, columns=["symbol", "organism"])


@cache
def tf_symbols(organism: str | None = None) -> frozenset[str]:
    """Symbols of the shipped transcription factors.

    Parameters
    ----------
    organism
        ``"NCBITaxon:9606"`` (human), ``"NCBITaxon:10090"`` (mouse), or ``None`` for both lists.

    Returns
    -------
    The symbols as written in the source lists (human upper case, mouse capitalised).
    """
    table = _tf_table()
    if organism is not None:
        known = sorted(table["organism"].unique())
        if organism not in known:
            msg = f"No shipped TF list for organism {organism!r}; use one of {known} or None (all)."
            raise ValueError(msg)
        table = table[table["organism"] == organism]
    return frozenset(table["symbol"])


@cache
def _tf_upper(organism: str | None = None) -> frozenset[str]:
    return frozenset(s.upper() for s in tf_symbols(organism))


def is_tf(symbols: Iterable[object], *, organism: str | None = None) -> np.ndarray:
    """Flag the gene symbols that are transcription factors in the shipped list.

    Parameters
    ----------
    symbols
        Gene symbols; missing values (``None``/``NaN``) are never TFs.
    organism
        Restrict to one organism's list (see :func:`tf_symbols`); ``None`` uses both.

    Returns
    -------
    Boolean array, one entry per symbol (case-insensitive match).
    """
    upper = _tf_upper(organism)
    return np.fromiter(
        (isinstance(s, str) and s.upper() in upper for s in symbols),
        dtype=bool,
    )
