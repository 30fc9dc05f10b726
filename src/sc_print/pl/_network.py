"""Plot the stored gene network around one gene; it only reads what :func:`sc_print.tl.grn` stored."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_print._keys import Key
from sc_print._networks import edge_table, gene_names, select_one, tf_by_name
from sc_print._utils import doc_params
from sc_print._validation import check_positive_int, resolve_adata

from ._utils import DOC_SHOW_SAVE_MOD, GENE_COLOR, TF_COLOR, _axes_grid, _finish, _tf_legend

if TYPE_CHECKING:
    import os

    from anndata import AnnData
    from matplotlib.axes import Axes
    from mudata import MuData

logger = logging.getLogger(__name__)

#: z-order of the edges, just below matplotlib's default for patches and collections (1)
_EDGE_ZORDER = 0.9


def _neighbourhood(edges: pd.DataFrame, gene: str, n_neighbors: int) -> pd.DataFrame:
    """Edges among ``gene`` and its ``n_neighbors`` most strongly connected neighbours (in or out)."""
    touching = edges[(edges["source"] == gene) | (edges["target"] == gene)]
    other = np.where(touching["source"] == gene, touching["target"], touching["source"])
    strength = pd.Series(np.abs(touching["weight"].to_numpy()), index=other).groupby(level=0).max()
    neighbours = strength.sort_values(ascending=False, kind="stable").head(n_neighbors).index
    nodes = set(neighbours) | {gene}
    return edges[edges["source"].isin(nodes) & edges["target"].isin(nodes)]


@doc_params(show_save_mod=DOC_SHOW_SAVE_MOD)
def network(
    adata: AnnData | MuData,
    *,
    gene: str,
    key: str = Key.uns.grn,
    group: str | None = None,
    n_neighbors: int = 20,
    gene_symbols: str | None = None,
    rng: int | None = 0,
    tf_color: str = TF_COLOR,
    color: str = GENE_COLOR,
    node_size: float = 300.0,
    max_width: float = 4.0,
    figsize: tuple[float, float] = (6.0, 6.0),
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
    mod: str = "rna",
) -> Axes:
    """Sub-network around one gene.

    Draws ``gene``, its ``n_neighbors`` most strongly connected neighbours (by ``|weight|`` of their edge
    to or from ``gene``) and all stored edges among them, with a spring layout
    (:func:`networkx.spring_layout`). Edge width follows ``|weight|``; edges are rasterised (through the
    rasterisation z-order of the Axes). TFs (shipped list) are drawn as squares in ``tf_color``, other genes
    as circles; ``gene`` has a black outline.

    Parameters
    ----------
    adata
        AnnData holding networks written by :func:`sc_print.tl.grn`, or a MuData (see ``mod``).
    gene
        Gene at the centre: a var name, or a ``.var[gene_symbols]`` value when ``gene_symbols`` is given.
    key
        ``.uns`` record key of ``sp.tl.grn`` or the ``.varp`` key of one network.
    group
        Group to draw when ``key`` is a record with several groups.
    n_neighbors
        Number of neighbours of ``gene`` to draw.
    gene_symbols
        ``.var`` column used to name genes (and to match TFs) instead of ``var_names``.
    rng
        Seed of the layout.
    tf_color, color
        Node colours of TFs and of other genes.
    node_size
        Node size (points²).
    max_width
        Width of the strongest edge (points).
    figsize
        Size of a new figure.
    ax
        Axes to draw on; a new figure when None.
    {show_save_mod}

    Returns
    -------
    The Axes.
    """
    import networkx as nx

    check_positive_int(n_neighbors, "n_neighbors")
    adata = resolve_adata(adata, mod)
    ref = select_one(adata, key, group)
    if gene not in set(gene_names(adata, gene_symbols)):
        where = "`adata.var_names`" if gene_symbols is None else f"`adata.var[{gene_symbols!r}]`"
        msg = f"Gene {gene!r} is not in {where}; pass a gene of the network (see `sp.get.network`)."
        raise KeyError(msg)
    edges = edge_table(adata, ref, gene_symbols=gene_symbols)
    sub = _neighbourhood(edges, gene, n_neighbors)
    if sub.empty:
        msg = (
            f"Gene {gene!r} has no edge in network {ref.varp_key!r}; pick a gene of the network "
            f"(e.g. from `sp.get.network(adata, key={ref.varp_key!r})`)."
        )
        raise KeyError(msg)

    graph = nx.DiGraph()
    graph.add_weighted_edges_from(sub.itertuples(index=False, name=None))
    layout_graph = nx.Graph()
    layout_graph.add_weighted_edges_from((u, v, abs(w)) for u, v, w in sub.itertuples(index=False, name=None))
    pos = nx.spring_layout(layout_graph, weight="weight", seed=rng)

    is_tf_name = tf_by_name(adata, gene_symbols)
    tfs = [n for n in graph.nodes if is_tf_name.get(n, False)]
    others = [n for n in graph.nodes if not is_tf_name.get(n, False)]

    axes, fig, created = _axes_grid(1, ax, figsize)
    panel = axes[0]
    weights = np.abs(np.array([w for _, _, w in graph.edges(data="weight")], dtype=float))
    widths = 0.3 + (max_width - 0.3) * weights / weights.max()
    drawn = nx.draw_networkx_edges(
        graph,
        pos,
        ax=panel,
        width=widths,
        edge_color="0.45",
        alpha=0.7,
        arrows=True,
        arrowsize=8,
        node_size=node_size,
    )
    # Edges go below the rasterisation threshold of the Axes, so vector outputs (PDF, SVG) hold them as one
    # image (FancyArrowPatch ignores ``set_rasterized``); nodes and labels stay vector.
    for artist in drawn if isinstance(drawn, list) else [drawn]:
        artist.set_zorder(_EDGE_ZORDER)
    threshold = panel.get_rasterization_zorder()
    if threshold is None or threshold <= _EDGE_ZORDER:
        panel.set_rasterization_zorder(_EDGE_ZORDER + 0.05)
    for nodelist, shape, fill in ((others, "o", color), (tfs, "s", tf_color)):
        if not nodelist:
            continue
        edgecolors = ["black" if n == gene else fill for n in nodelist]
        nx.draw_networkx_nodes(
            graph,
            pos,
            nodelist=nodelist,
            node_shape=shape,
            node_color=fill,
            edgecolors=edgecolors,
            linewidths=1.5,
            node_size=node_size,
            ax=panel,
        )
    nx.draw_networkx_labels(graph, pos, font_size=7, ax=panel)
    panel.set_title(f"{gene} in {ref.label}")
    panel.set_axis_off()
    _tf_legend(panel, tf_color=tf_color, gene_color=color, marker="s")
    _finish(fig, created=created, show=show, save=save, overwrite=overwrite)
    return panel
