"""Plots of hub scores (:func:`sc_print.tl.hubs`, :func:`sc_print.tl.diff_hubs`); they only read stored results."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sc_print._keys import Key, diff_hubs_keys
from sc_print._networks import (
    check_current,
    network_refs,
    select_one,
    select_refs,
    stored_params,
    stored_score,
    stored_table,
)
from sc_print._utils import doc_params
from sc_print._validation import check_positive_int, resolve_adata

from ._utils import DOC_SHOW_SAVE_MOD, GENE_COLOR, TF_COLOR, _axes_grid, _display_names, _finish, _tf_legend, _tf_of

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from anndata import AnnData
    from matplotlib.axes import Axes
    from mudata import MuData


# --------------------------------------------------------------------------------------------------- hubs
@doc_params(show_save_mod=DOC_SHOW_SAVE_MOD)
def hubs(
    adata: AnnData | MuData,
    *,
    key: str = Key.uns.grn,
    groups: str | Sequence[str] | None = None,
    score: str = "degree",
    n_top: int = 15,
    gene_symbols: str | None = None,
    tf_color: str = TF_COLOR,
    color: str = GENE_COLOR,
    figsize: tuple[float, float] | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
    mod: str = "rna",
) -> Axes | list[Axes]:
    """Horizontal bars of the top hub genes, one panel per network, side by side.

    Reads the tables written by :func:`sc_print.tl.hubs`; transcription factors (shipped list) are
    highlighted.

    Parameters
    ----------
    adata
        AnnData (or MuData, see ``mod``) on which ``sp.tl.hubs`` was run.
    key
        ``.uns`` record key of ``sp.tl.grn`` (one panel per group) or the ``.varp`` key of one network.
    groups
        Group(s) to plot; None plots every group of ``key``.
    score
        Hub score to rank genes by.
    n_top
        Number of genes per panel.
    gene_symbols
        ``.var`` column used to label genes (and to match TFs) instead of ``var_names``.
    tf_color, color
        Bar colours of TFs and of other genes.
    figsize
        Size of a new figure; default grows with the number of panels and ``n_top``.
    ax
        Axes to draw on: one per panel. A new figure when None.
    {show_save_mod}

    Returns
    -------
    One Axes per panel: a list when there are several networks, else the single Axes.
    """
    check_positive_int(n_top, "n_top")
    adata = resolve_adata(adata, mod)
    refs = select_refs(network_refs(adata, key), groups, key)
    series = [stored_score(adata, ref, score).dropna().sort_values(ascending=False).head(n_top) for ref in refs]
    if figsize is None:
        figsize = (3.6 * len(refs), 0.8 + 0.28 * n_top)
    axes, fig, created = _axes_grid(len(refs), ax, figsize)

    for panel, ref, top in zip(axes, refs, series, strict=True):
        is_tf = _tf_of(adata, top.index, gene_symbols)
        y = np.arange(len(top))
        panel.barh(y, top.to_numpy(), color=np.where(is_tf, tf_color, color))
        panel.set_yticks(y, _display_names(adata, top.index, gene_symbols), fontsize="small")
        panel.invert_yaxis()
        panel.set_xlabel(score)
        panel.set_title(ref.label)
        panel.spines[["top", "right"]].set_visible(False)
        if is_tf.any():
            _tf_legend(panel, tf_color=tf_color, gene_color=color)
    _finish(fig, created=created, show=show, save=save, overwrite=overwrite)
    return axes if len(axes) > 1 else axes[0]


# --------------------------------------------------------------------------------------------------- diff_hubs
@doc_params(show_save_mod=DOC_SHOW_SAVE_MOD)
def diff_hubs(
    adata: AnnData | MuData,
    *,
    key_a: str,
    key_b: str,
    score: str | None = None,
    n_top: int = 10,
    gene_symbols: str | None = None,
    tf_color: str = TF_COLOR,
    color: str = GENE_COLOR,
    figsize: tuple[float, float] = (4.5, 4.5),
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
    mod: str = "rna",
) -> Axes:
    """Scatter of the hub score of each gene in network A against network B.

    Reads the comparison stored by :func:`sc_print.tl.diff_hubs`; the ``n_top`` genes with the largest
    ``|B - A|`` are labelled and TFs are highlighted.

    Parameters
    ----------
    adata
        AnnData (or MuData, see ``mod``) on which ``sp.tl.diff_hubs(adata, key_a=..., key_b=...)`` was run.
    key_a, key_b
        The two networks, as passed to ``sp.tl.diff_hubs``.
    score
        Expected score of the stored comparison (a mismatch raises); None accepts the stored one.
    n_top
        Number of genes to label.
    gene_symbols
        ``.var`` column used to label genes (and to match TFs) instead of ``var_names``.
    tf_color, color
        Point colours of TFs and of other genes.
    figsize
        Size of a new figure.
    ax
        Axes to draw on; a new figure when None.
    {show_save_mod}

    Returns
    -------
    The Axes.
    """
    check_positive_int(n_top, "n_top")
    adata = resolve_adata(adata, mod)
    ref_a = select_one(adata, key_a, None)
    ref_b = select_one(adata, key_b, None)
    uns_key = diff_hubs_keys(ref_a.varp_key, ref_b.varp_key)
    what = f"hub comparison of {ref_a.varp_key!r} and {ref_b.varp_key!r}"
    run = f"sp.tl.diff_hubs(adata, key_a={key_a!r}, key_b={key_b!r})"
    table = stored_table(adata, uns_key, "table", what=what, run=run)
    params = stored_params(adata, uns_key)
    check_current(adata, ref_a, params, what=what, run=run, field="network_digest_a")
    check_current(adata, ref_b, params, what=what, run=run, field="network_digest_b")
    recorded_score = params.get("score")
    if score is not None and recorded_score is not None and score != recorded_score:
        msg = (
            f"The stored comparison uses score {recorded_score!r}, not {score!r}. Run "
            f"`sp.tl.diff_hubs(adata, key_a={key_a!r}, key_b={key_b!r}, score={score!r})` first."
        )
        raise KeyError(msg)
    score_name = score or recorded_score or "score"
    axes, fig, created = _axes_grid(1, ax, figsize)
    panel = axes[0]

    genes = table.index
    is_tf = _tf_of(adata, genes, gene_symbols)
    x, y = table["score_a"].to_numpy(dtype=float), table["score_b"].to_numpy(dtype=float)
    panel.scatter(x[~is_tf], y[~is_tf], s=10, color=color, linewidths=0, rasterized=True)
    panel.scatter(x[is_tf], y[is_tf], s=16, color=tf_color, linewidths=0, rasterized=True)
    if len(table):
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        panel.plot([low, high], [low, high], color="0.6", linestyle="--", linewidth=0.8)
    top = np.argsort(-np.abs(table["diff"].to_numpy(dtype=float)), kind="stable")[:n_top]
    labels = _display_names(adata, genes[top], gene_symbols)
    for i, label in zip(top, labels, strict=True):
        panel.annotate(label, (x[i], y[i]), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    panel.set_xlabel(f"{score_name} in {ref_a.varp_key}")
    panel.set_ylabel(f"{score_name} in {ref_b.varp_key}")
    panel.spines[["top", "right"]].set_visible(False)
    if is_tf.any():
        _tf_legend(panel, tf_color=tf_color, gene_color=color, marker="o")
    _finish(fig, created=created, show=show, save=save, overwrite=overwrite)
    return panel
