"""Plot of a stored in-silico perturbation (:func:`sc_print.tl.perturb`): gene effects and embedding shift."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from sc_print._utils import doc_params
from sc_print._validation import check_positive_int, resolve_adata
from sc_print.get import perturb as perturb_table

from ._utils import DOC_SHOW_SAVE_MOD, GENE_COLOR, TF_COLOR, _axes_grid, _finish

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    import pandas as pd
    from anndata import AnnData
    from matplotlib.axes import Axes
    from mudata import MuData

DEFAULT_KEY = "scprint_perturb"


def _effects_panel(ax: Axes, table: pd.DataFrame, *, kind: str, n_top: int, title: str) -> None:
    up, down = TF_COLOR, "#1f77b4"
    if kind == "volcano":
        lfc = table["log2fc"].to_numpy(dtype=float)
        p = np.clip(table["pval_adj"].to_numpy(dtype=float), 1e-300, 1.0)
        score = -np.log10(np.nan_to_num(p, nan=1.0))
        colors = np.where(lfc > 0, up, down)
        ax.scatter(lfc, score, s=8, c=colors, alpha=0.7, linewidths=0)
        top = table.assign(_s=score).sort_values("_s", ascending=False).head(n_top)
        for _gene, row in top.iterrows():
            ax.annotate(str(row["gene"]), (row["log2fc"], row["_s"]), fontsize="x-small")
        ax.axvline(0.0, color=GENE_COLOR, lw=0.8)
        ax.set_xlabel("log2 fold change (perturbed / baseline)")
        ax.set_ylabel("-log10 adjusted p-value")
    else:
        order = table.reindex(table["log2fc"].abs().sort_values(ascending=False).index).head(n_top)[::-1]
        ax.barh(order["gene"].astype(str), order["log2fc"], color=np.where(order["log2fc"] > 0, up, down))
        ax.axvline(0.0, color=GENE_COLOR, lw=0.8)
        ax.set_xlabel("log2 fold change (perturbed / baseline)")
    ax.set_title(title)


@doc_params(show_save_mod=DOC_SHOW_SAVE_MOD)
def perturb(
    adata: AnnData | MuData,
    name: str,
    *,
    key: str = DEFAULT_KEY,
    kind: Literal["volcano", "bar"] = "volcano",
    group: str | None = None,
    n_top: int = 10,
    min_cells: int = 5,
    figsize: tuple[float, float] = (10.0, 4.0),
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
    mod: str = "rna",
) -> list[Axes]:
    """Effects of a stored perturbation on the other genes, and how far it moved the cells.

    Left: a volcano plot (log2 fold change against the adjusted p-value of the paired per-cell changes) or bars
    of the ``n_top`` largest fold changes. Right: the distribution of the per-cell embedding shift (cosine
    distance to the unperturbed embedding), per group of the call's ``groupby`` when it had one.

    Parameters
    ----------
    adata
        AnnData (or MuData, see ``mod``) on which :func:`sc_print.tl.perturb` ran.
    name
        Name of the perturbation.
    key
        ``key_added`` of the ``sp.tl.perturb`` call.
    kind
        ``"volcano"`` or ``"bar"``.
    group
        Effects of one group of ``groupby`` (original label) instead of all cells.
    n_top
        Genes labelled (volcano) or drawn (bars).
    min_cells
        Genes in the context of fewer cells are not drawn.
    figsize
        Size of a new figure.
    ax
        Two Axes to draw on (effects, shift); a new figure when None.
    {show_save_mod}

    Returns
    -------
    The two Axes.
    """
    if kind not in ("volcano", "bar"):
        msg = f"Unknown kind {kind!r}; choose 'volcano' or 'bar'."
        raise ValueError(msg)
    n_top = check_positive_int(n_top, "n_top")
    data = resolve_adata(adata, mod)
    table = perturb_table(data, name, key=key, min_cells=min_cells, mod=mod)
    wanted = "all" if group is None else str(group)
    available = sorted(set(table["group"]))
    if wanted not in available:
        msg = f"No effects for group {group!r} of perturbation {name!r}; available: {available}."
        raise KeyError(msg)
    table = table[table["group"] == wanted]
    record = data.uns[key][name]
    shift_key = str(record["keys"]["shift"])
    if shift_key not in data.obs.columns:
        msg = f"`.obs[{shift_key!r}]` (the shift of {name!r}) is missing; run `sp.tl.perturb` again."
        raise KeyError(msg)
    axes, fig, created = _axes_grid(2, ax, figsize)
    _effects_panel(axes[0], table, kind=kind, n_top=n_top, title=f"{name}: effects ({wanted})")
    shift = data.obs[shift_key].to_numpy(dtype=float)
    groupby = dict(record.get("params", {})).get("groupby")
    if groupby is not None and groupby in data.obs.columns:
        labels = data.obs[groupby].astype(str).to_numpy()
        cats = sorted(set(labels))
        axes[1].boxplot([shift[labels == c] for c in cats], orientation="horizontal", tick_labels=cats)
        axes[1].set_ylabel(groupby)
    else:
        axes[1].hist(shift, bins=30, color=GENE_COLOR)
        axes[1].set_ylabel("cells")
    axes[1].set_xlabel("embedding shift (cosine distance)")
    axes[1].set_title(f"{name}: cell shift")
    _finish(fig, created=created, show=show, save=save, overwrite=overwrite)
    return axes
