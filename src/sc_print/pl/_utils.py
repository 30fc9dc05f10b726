"""Helpers shared by the ``sp.pl`` functions: panels, TF colouring and labels, saving and showing figures."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_print._io import atomic_target, check_free
from sc_print._networks import gene_names, tf_mask

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

GENE_COLOR = "#9e9e9e"
TF_COLOR = "#d62728"

#: docstring text of the options every plot ends with: ``show`` and ``save`` (see :func:`_finish`) and ``mod``
DOC_SHOW_SAVE_MOD = """\
show
    Show the figure; None shows a new figure unless ``save`` is given (and scanpy's ``autoshow`` is on).
save
    Path to save the figure to (format from the extension).
overwrite
    Replace an existing file at ``save``; otherwise an existing file is an error and nothing is written.
mod
    Modality used when ``adata`` is a MuData."""


def _axes_grid(
    n: int, ax: Axes | Sequence[Axes] | None, figsize: tuple[float, float]
) -> tuple[list[Axes], Figure, bool]:
    """``n`` side-by-side panels: new ones when ``ax`` is None, else the given Axes (one per panel)."""
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    if ax is None:
        fig, axes = plt.subplots(1, n, figsize=figsize, squeeze=False)
        return list(axes[0]), fig, True
    given = [ax] if isinstance(ax, Axes) else list(ax)
    if len(given) != n or not all(isinstance(a, Axes) for a in given):
        msg = f"`ax` must hold one matplotlib Axes per panel ({n} panels), got {ax!r}."
        raise ValueError(msg)
    return given, given[0].figure, False


def _finish(
    fig: Figure, *, created: bool, show: bool | None, save: str | os.PathLike | None, overwrite: bool = False
) -> None:
    """Lay out a figure created here, save it to ``save``, then show it.

    ``show=None`` shows only a figure created here, when not saving and when ``scanpy.settings.autoshow`` is on.
    An existing file at ``save`` is replaced only with ``overwrite=True``; the figure is written to a temporary
    file next to it and renamed, so a failed save leaves no partial file.
    """
    if created:
        fig.tight_layout()
    if save is not None:
        import matplotlib as mpl

        target = Path(save).expanduser()
        fmt = target.suffix[1:] or str(mpl.rcParams["savefig.format"])
        if not target.suffix:  # matplotlib's rule: no extension = the default format, appended
            target = target.with_name(f"{target.name}.{fmt}")
        check_free([target], overwrite=overwrite)
        with atomic_target(target) as tmp:
            fig.savefig(tmp, bbox_inches="tight", format=fmt)
        logger.info("saved figure to %s", target)
    if show is None:
        import scanpy as sc

        show = created and save is None and bool(sc.settings.autoshow)
    if show:
        import matplotlib.pyplot as plt

        plt.show()


def _display_names(adata: AnnData, genes: pd.Index, gene_symbols: str | None) -> list[str]:
    """Labels of ``genes`` (var names): the ``.var[gene_symbols]`` value when requested."""
    if gene_symbols is None:
        return [str(g) for g in genes]
    mapping = pd.Series(gene_names(adata, gene_symbols), index=adata.var_names)
    mapping = mapping[~mapping.index.duplicated()]
    return [str(mapping.get(g, g)) for g in genes]


def _tf_of(adata: AnnData, genes: pd.Index, gene_symbols: str | None) -> np.ndarray:
    """TF flag of ``genes`` (var names)."""
    flags = pd.Series(tf_mask(adata, gene_symbols), index=adata.var_names)
    flags = flags[~flags.index.duplicated()]
    return np.array([bool(flags.get(g, False)) for g in genes], dtype=bool)


def _tf_legend(ax: Axes, *, tf_color: str, gene_color: str, marker: str | None = None) -> None:
    """Legend of the TF / other-gene colours: patches (bars), or markers of shape ``marker`` for TFs."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if marker is None:
        handles = [Patch(color=tf_color, label="TF"), Patch(color=gene_color, label="other gene")]
    else:
        handles = [
            Line2D([], [], color=tf_color, marker=marker, linestyle="", label="TF"),
            Line2D([], [], color=gene_color, marker="o", linestyle="", label="other gene"),
        ]
    ax.legend(handles=handles, loc="best", fontsize="small", frameon=False)
