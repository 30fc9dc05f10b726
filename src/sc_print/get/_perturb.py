"""Read the in-silico perturbations stored by :func:`sc_print.tl.perturb` as tidy tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from sc_print._validation import resolve_adata

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData

DEFAULT_KEY = "scprint_perturb"


def perturb_record(adata: AnnData, name: str, key: str) -> Mapping[str, Any]:
    """The ``.uns[key][name]`` record written by ``sp.tl.perturb``, with a clear error when absent."""
    container = adata.uns.get(key)
    if not isinstance(container, Mapping) or not container:
        msg = (
            f"No perturbation results under `.uns[{key!r}]`; run `sp.tl.perturb(adata, genes=..., key_added={key!r})`."
        )
        raise KeyError(msg)
    if name not in container:
        msg = f"No perturbation {name!r} under `.uns[{key!r}]`; stored: {sorted(container)}."
        raise KeyError(msg)
    record = container[name]
    if not isinstance(record, Mapping) or "effects" not in record:
        msg = f"`.uns[{key!r}][{name!r}]` is not a record of `sp.tl.perturb` (no 'effects' table)."
        raise ValueError(msg)
    return record


def perturb(
    adata: AnnData | MuData,
    name: str,
    *,
    key: str = DEFAULT_KEY,
    groups: bool = True,
    min_cells: int = 1,
    mod: str = "rna",
) -> pd.DataFrame:
    """Effects of one stored perturbation on the other genes, as one long table.

    Parameters
    ----------
    adata
        AnnData (or MuData, see ``mod``) on which :func:`sc_print.tl.perturb` ran.
    name
        Name of the perturbation (a key of ``.uns[key]``, e.g. ``"SPI1_ko"``).
    key
        ``key_added`` of the ``sp.tl.perturb`` call.
    groups
        Also the per-group effects (when the call had ``groupby``).
    min_cells
        Keep genes that were in the context of at least this many cells (of their group).
    mod
        Modality used when ``adata`` is a MuData.

    Returns
    -------
    One row per (group, gene): ``perturbation``, ``group`` (``"all"`` for every cell, else the original group
    label), ``gene`` and the effect columns (``n_cells``, ``mean_baseline``, ``mean_perturbed``, ``mean_change``,
    ``log2fc``, ``frac_up``, ``frac_down``, ``t``, ``pval``, ``pval_adj``), in the stored order (by p-value).
    """
    if isinstance(min_cells, bool) or not isinstance(min_cells, int) or min_cells < 1:
        msg = f"`min_cells` must be a positive integer, got {min_cells!r}."
        raise ValueError(msg)
    data = resolve_adata(adata, mod)
    record = perturb_record(data, name, key)
    tables = [("all", record["effects"])]
    if groups and "effects_by_group" in record:
        names = dict(record.get("group_names", {}))
        tables += [(names.get(g, g), t) for g, t in record["effects_by_group"].items()]
    frames = []
    for group, table in tables:
        frame = pd.DataFrame(table).copy()
        frame = frame[frame["n_cells"] >= min_cells]
        frame.insert(0, "gene", frame.index.astype(str))
        frame.insert(0, "group", str(group))
        frame.insert(0, "perturbation", name)
        frames.append(frame.reset_index(drop=True))
    return pd.concat(frames, ignore_index=True)
