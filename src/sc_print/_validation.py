"""Input checks shared by ``sp.pp`` and every ``sp.tl`` function.

- :func:`resolve_adata`: AnnData or the RNA modality of a MuData.
- :func:`check_positive_int`: integer options such as ``batch_size`` or ``top_k``.
- :func:`get_counts`: find the raw counts (``layer=``, ``.X`` or ``.raw.X``).
- :func:`check_counts`: one pass over the counts, in row chunks, that rejects NaN/inf, negative, non-integer
  values and empty cells, and returns the total counts of each cell.

The checks never load a whole backed matrix: they read row chunks, and on sparse matrices only the stored
values (``.data``) are inspected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import numpy as np
from anndata import AnnData
from scipy import sparse

logger = logging.getLogger(__name__)

#: Rows read at a time by the checks.
CHUNK_SIZE = 10_000
# Beyond this maximum, non-integer data is called "normalised" rather than "log-normalised".
_LOG_MAX = 30.0


def resolve_adata(data: Any, mod: str = "rna") -> AnnData:
    """Return the AnnData to work on.

    Parameters
    ----------
    data
        An :class:`~anndata.AnnData` (returned as is) or a :class:`~mudata.MuData`.
    mod
        Modality of a MuData holding the RNA counts.

    Returns
    -------
    The AnnData itself, or ``data.mod[mod]`` for a MuData.

    Raises
    ------
    KeyError
        When a MuData has no modality ``mod``; the message lists the available ones.
    TypeError
        When ``data`` is neither an AnnData nor a MuData.
    """
    if isinstance(data, AnnData):
        return data
    from mudata import MuData  # imported here: mudata is slow to import and only needed for MuData input

    if isinstance(data, MuData):
        if mod not in data.mod:
            msg = (
                f"The MuData has no modality {mod!r}; available modalities: {list(data.mod.keys())}. "
                "Pass the one holding the RNA counts with `mod=`."
            )
            raise KeyError(msg)
        return data.mod[mod]
    msg = f"Expected an AnnData or a MuData, got {type(data).__name__}."
    raise TypeError(msg)


@overload
def check_positive_int(value: Any, name: str, *, allow_none: Literal[False] = False) -> int: ...
@overload
def check_positive_int(value: Any, name: str, *, allow_none: Literal[True]) -> int | None: ...
def check_positive_int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    """Check an integer option.

    Parameters
    ----------
    value
        The value passed by the user.
    name
        Name of the option, for the message.
    allow_none
        Accept ``None`` (returned as is).

    Returns
    -------
    ``value`` as a Python int (or ``None`` when allowed).

    Raises
    ------
    ValueError
        When ``value`` is not an integer >= 1 (booleans are rejected).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        msg = f"`{name}` must be a positive integer{' or None' if allow_none else ''}, got {value!r}."
        raise ValueError(msg)
    return int(value)


def _where(layer: str | None = None, *, raw: bool = False) -> str:
    if raw:
        return "`.raw.X`"
    return "`.X`" if layer is None else f"`.layers[{layer!r}]`"


@dataclass
class _Stats:
    """Summary of the values of a matrix, accumulated over chunks."""

    n_nan: int = 0
    n_inf: int = 0
    n_negative: int = 0
    n_nonint: int = 0
    min: float = np.inf
    max: float = -np.inf
    example: float | None = None
    row_sums: list[np.ndarray] = field(default_factory=list)

    def is_counts(self) -> bool:
        return not (self.n_nan or self.n_inf or self.n_negative or self.n_nonint)

    def add_values(self, values: np.ndarray) -> None:
        values = np.asarray(values).ravel()
        if values.size == 0:
            return
        if values.dtype.kind == "b":
            return
        if values.dtype.kind in "iu":
            self.min = min(self.min, float(values.min()))
            self.max = max(self.max, float(values.max()))
            self.n_negative += int(np.count_nonzero(values < 0)) if values.dtype.kind == "i" else 0
            return
        finite = np.isfinite(values)
        if not finite.all():
            self.n_nan += int(np.count_nonzero(np.isnan(values)))
            self.n_inf += int(np.count_nonzero(np.isinf(values)))
            values = values[finite]
            if values.size == 0:
                return
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        self.n_negative += int(np.count_nonzero(values < 0))
        nonint = values != np.round(values)
        n_nonint = int(np.count_nonzero(nonint))
        if n_nonint and self.example is None:
            self.example = float(values[np.argmax(nonint)])
        self.n_nonint += n_nonint


def _iter_chunks(X: Any, chunk_size: int, max_rows: int | None = None):
    """Yield row chunks of ``X`` (in memory or backed) as scipy sparse or numpy arrays."""
    n_rows = X.shape[0] if max_rows is None else min(X.shape[0], max_rows)
    for start in range(0, n_rows, chunk_size):
        chunk = X[start : min(start + chunk_size, n_rows)]
        yield chunk if sparse.issparse(chunk) else np.asarray(chunk)


def _scan(
    X: Any, *, columns: np.ndarray | None = None, max_rows: int | None = None, chunk_size: int = CHUNK_SIZE
) -> _Stats:
    """Summarise the values of ``X`` and, when ``columns`` is given, the row sums over those columns."""
    stats = _Stats()
    weights = None if columns is None else np.asarray(columns, dtype=np.float64)
    if sparse.issparse(X) and max_rows is None:
        # in memory: inspect the stored values in slices, sum rows with one sparse product
        data = X.data
        step = chunk_size * 1_000
        for start in range(0, data.size, step):
            stats.add_values(data[start : start + step])
        if weights is not None:
            stats.row_sums.append(np.asarray(X @ weights, dtype=np.float64).ravel())
        return stats
    for chunk in _iter_chunks(X, chunk_size, max_rows):
        stats.add_values(chunk.data if sparse.issparse(chunk) else chunk)
        if weights is not None:
            stats.row_sums.append(np.asarray(chunk @ weights, dtype=np.float64).ravel())
    return stats


def _looks_like_counts(X: Any, *, max_rows: int = CHUNK_SIZE) -> bool:
    """Quick test on the first ``max_rows`` rows: integer, finite, non-negative values."""
    if X is None:
        return False
    return _scan(X, max_rows=max_rows).is_counts()


def count_layers(adata: AnnData) -> list[str]:
    """Layers of ``adata`` whose first rows hold raw counts.

    Parameters
    ----------
    adata
        The AnnData whose layers are inspected (only their first rows are read).

    Returns
    -------
    Names of the layers that look like raw counts.
    """
    return [name for name in adata.layers.keys() if _looks_like_counts(adata.layers[name])]


def _suggestion(adata: AnnData | None) -> str:
    candidates = [] if adata is None else count_layers(adata)
    if candidates:
        listed = ", ".join(repr(name) for name in candidates)
        return f"pass the raw counts with `layer={candidates[0]!r}` (layers holding counts: {listed})"
    return (
        "pass the raw counts with `layer=` (no layer of this object holds raw counts; reload the raw count "
        "matrix, e.g. with `sc.read_10x_h5`)"
    )


def _problem(stats: _Stats, where: str, adata: AnnData | None) -> str | None:
    """Error message for values that are not raw counts, ``None`` when they are."""
    if stats.n_nan or stats.n_inf:
        return (
            f"{where} contains {stats.n_nan} NaN and {stats.n_inf} infinite values; sc_print needs raw counts: "
            f"{_suggestion(adata)}."
        )
    if stats.n_negative:
        return (
            f"{where} has {stats.n_negative} negative values (min {stats.min:.3g}), so it looks scaled or "
            f"corrected, not raw counts; {_suggestion(adata)}."
        )
    if stats.n_nonint:
        kind = "log-normalised" if stats.max <= _LOG_MAX else "normalised"
        return (
            f"{where} looks {kind} (max {stats.max:.3g}, non-integer values such as {stats.example:.4g}); "
            f"{_suggestion(adata)}."
        )
    return None


def check_counts(
    X: Any,
    *,
    where: str,
    columns: np.ndarray | None = None,
    adata: AnnData | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> np.ndarray:
    """Check that ``X`` holds raw counts and that no cell is empty; return the total counts of each cell.

    Works on dense arrays, CSR/CSC matrices and backed matrices, in row chunks of ``chunk_size`` cells
    (in-memory sparse matrices are checked through their stored values).

    Parameters
    ----------
    X
        Cells x genes matrix.
    where
        Where ``X`` comes from, for the messages (e.g. ``"`.X`"``).
    columns
        Boolean mask of the genes to sum (e.g. the genes that map to the gene table); all genes when ``None``.
    adata
        The AnnData ``X`` belongs to; when given, the messages list its layers that do hold counts.
    chunk_size
        Rows read at a time.

    Returns
    -------
    Float64 array with the sum of the counts of each cell over ``columns``.

    Raises
    ------
    ValueError
        For NaN or infinite values, negative values, non-integer values (normalised, log-transformed or scaled
        data) and cells whose counts over ``columns`` are all zero.
    """
    n_cells, n_genes = X.shape
    mask = np.ones(n_genes, dtype=bool) if columns is None else np.asarray(columns, dtype=bool)
    if mask.shape != (n_genes,):
        msg = f"`columns` has shape {mask.shape}; expected ({n_genes},), one entry per gene."
        raise ValueError(msg)
    stats = _scan(X, columns=mask, chunk_size=chunk_size)
    problem = _problem(stats, where, adata)
    if problem is not None:
        raise ValueError(problem)
    depth = np.concatenate(stats.row_sums) if stats.row_sums else np.zeros(n_cells)
    n_empty = int(np.count_nonzero(depth <= 0))
    if n_empty:
        genes = "all genes" if columns is None else f"the {int(mask.sum())} mapped genes"
        msg = (
            f"{n_empty} of {n_cells} cells have zero counts in {where} over {genes}; remove them first, e.g. "
            "with `sc.pp.filter_cells(adata, min_counts=1)` (on the mapped genes if the cells only have counts "
            "in unmapped genes)."
        )
        raise ValueError(msg)
    return depth


def get_counts(adata: AnnData, layer: str | None = None) -> tuple[Any, str]:
    """Find the raw counts of ``adata``.

    Order: ``layer`` when given; else ``.X`` when it holds counts; else ``.raw.X`` when it holds counts and
    covers every gene of ``adata`` (columns matched by name). Only the first cells are inspected here; run
    :func:`check_counts` on the result for the full check.

    Parameters
    ----------
    adata
        The AnnData.
    layer
        Layer holding the raw counts.

    Returns
    -------
    matrix
        Cells x genes counts aligned with ``adata.var_names`` (possibly backed).
    source
        Where they were found: ``"`.X`"``, ``"`.layers['counts']`"`` or ``"`.raw.X`"``.

    Raises
    ------
    KeyError
        When ``layer`` is not a layer of ``adata``; the message lists the layers.
    ValueError
        When ``layer`` is not given and neither ``.X`` nor ``.raw.X`` holds raw counts; the message says what
        the data looks like and which layer to pass.
    """
    if layer is not None:
        if layer not in adata.layers:
            msg = f"Layer {layer!r} not found; available layers: {list(adata.layers.keys())}."
            raise KeyError(msg)
        return adata.layers[layer], _where(layer)

    X = adata.X
    if X is not None and _looks_like_counts(X):
        return X, _where()
    raw = adata.raw
    if raw is not None and _looks_like_counts(raw.X):
        if raw.var_names.equals(adata.var_names):
            return raw.X, _where(raw=True)
        if adata.var_names.isin(raw.var_names).all():
            logger.info("Using `.raw.X` (columns matched to `var_names`) as raw counts.")
            return raw[:, adata.var_names].X, _where(raw=True)
        logger.info("`.raw.X` holds counts but lacks some of the genes of `var_names`; not using it.")

    if X is None:
        msg = f"`.X` is empty; {_suggestion(adata)}."
        raise ValueError(msg)
    stats = _scan(X, max_rows=CHUNK_SIZE)
    problem = _problem(stats, _where(), adata) or f"`.X` does not hold raw counts; {_suggestion(adata)}."
    raise ValueError(problem)
