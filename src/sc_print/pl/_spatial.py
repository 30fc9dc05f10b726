"""Spot maps of niches, genes (raw or denoised) and regulon activities over squidpy's spatial scatter plot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from sc_print._keys import SpatialKey
from sc_print._spatial import spot_coordinates, squidpy_module
from sc_print._utils import doc_params
from sc_print._validation import resolve_adata

from ._utils import DOC_SHOW_SAVE_MOD, _axes_grid, _finish

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from anndata import AnnData
    from matplotlib.axes import Axes
    from mudata import MuData


def _resolve_colors(adata: AnnData, colors: list[str], activity_key: str) -> dict[str, str]:
    """Where each ``color`` lives: ``"obs"``, ``"var"`` (a gene) or ``"activity"`` (a regulon of ``activity_key``)."""
    activity = adata.obsm.get(activity_key)
    regulons = list(activity.columns) if isinstance(activity, pd.DataFrame) else []
    where: dict[str, str] = {}
    for name in colors:
        if not isinstance(name, str):
            msg = f"`color` entries must be strings (obs columns, genes or regulons), got {name!r}."
            raise TypeError(msg)
        if name in adata.obs:
            where[name] = "obs"
        elif name in adata.var_names:
            where[name] = "var"
        elif name in regulons:
            where[name] = "activity"
        else:
            msg = (
                f"{name!r} is neither an `.obs` column, a gene (var name) nor a regulon of "
                f"`.obsm[{activity_key!r}]` (run `sp.tl.regulon_activity` first); obs columns: {list(adata.obs.columns)}."
            )
            raise KeyError(msg)
    return where


@doc_params(show_save_mod=DOC_SHOW_SAVE_MOD)
def spatial(
    adata: AnnData | MuData,
    *,
    color: str | Sequence[str] = SpatialKey.niche,
    spatial_key: str = "spatial",
    layer: str | None = None,
    activity_key: str = SpatialKey.regulon_activity,
    size: float | None = None,
    cmap: str | None = None,
    figsize: tuple[float, float] | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
    mod: str = "rna",
    **kwargs: Any,
) -> Axes | list[Axes]:
    """Spots coloured by niche, gene expression or regulon activity, one panel per ``color``.

    Draws with ``squidpy.pl.spatial_scatter`` (no tissue image) on a lightweight copy holding only what is
    plotted, so ``adata`` is never modified.

    Parameters
    ----------
    adata
        AnnData with spot coordinates in ``.obsm[spatial_key]``, or a MuData (see ``mod``).
    color
        Keys to plot: ``.obs`` columns (e.g. ``"scprint_niche"``), genes (var names, read from ``layer``) or regulons
        (TF names of ``.obsm[activity_key]``, from :func:`sc_print.tl.regulon_activity`).
    spatial_key
        ``.obsm`` key of the coordinates.
    layer
        Layer of the gene values (e.g. ``"scprint_denoised"``); None uses ``.X``.
    activity_key
        ``.obsm`` key of the regulon activities.
    size
        Marker size; None lets squidpy choose.
    cmap
        Colour map of continuous values.
    figsize
        Size of a new figure; default 4 x 4 per panel.
    ax
        Axes to draw on: one per panel. A new figure when None.
    {show_save_mod}
    **kwargs
        Passed to ``squidpy.pl.spatial_scatter``.

    Returns
    -------
    One Axes per panel: a list when there are several, else the single Axes.
    """
    import anndata as ad

    sq = squidpy_module()
    data = resolve_adata(adata, mod)
    colors = [color] if isinstance(color, str) else list(color)
    if not colors:
        msg = "`color` is empty; pass at least one key to plot."
        raise ValueError(msg)
    coords = spot_coordinates(data, spatial_key)
    where = _resolve_colors(data, colors, activity_key)
    if layer is not None and layer not in data.layers:
        msg = f"Layer {layer!r} not found (available: {list(data.layers)})."
        raise KeyError(msg)
    genes = [name for name in colors if where[name] == "var"]
    matrix = data.layers[layer] if layer is not None else data.X
    if genes:
        positions = data.var_names.get_indexer(genes)
        values = matrix[:, positions]
        values = values.toarray() if sparse.issparse(values) else np.asarray(values)
    else:
        values = np.zeros((data.n_obs, 0), dtype=np.float32)
    obs = pd.DataFrame(index=data.obs_names.astype(str))
    uns: dict[str, Any] = {}
    for name in colors:
        if where[name] == "obs":
            obs[name] = data.obs[name].to_numpy()
            if f"{name}_colors" in data.uns:
                uns[f"{name}_colors"] = list(data.uns[f"{name}_colors"])
        elif where[name] == "activity":
            obs[name] = data.obsm[activity_key][name].to_numpy(dtype=np.float64)
    scratch = ad.AnnData(X=np.asarray(values, dtype=np.float32), obs=obs, obsm={"spatial": coords}, uns=uns)
    scratch.var_names = pd.Index(genes).astype(str)
    if figsize is None:
        figsize = (4.2 * len(colors), 4.0)
    axes, fig, created = _axes_grid(len(colors), ax, figsize)
    for panel, name in zip(axes, colors, strict=True):
        title = (
            f"{name} activity"
            if where[name] == "activity"
            else (f"{name} ({layer})" if genes and where[name] == "var" and layer else name)
        )
        sq.pl.spatial_scatter(
            scratch,
            color=name,
            shape=None,
            spatial_key="spatial",
            size=size,
            cmap=cmap,
            ax=panel,
            title=title,
            **kwargs,
        )
        panel.set_aspect("equal")
    _finish(fig, created=created, show=show, save=save, overwrite=overwrite)
    return axes if len(axes) > 1 else axes[0]
