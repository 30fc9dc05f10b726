"""Read the gene networks stored by :func:`sc_print.tl.grn` (and the hub scores of :func:`sc_print.tl.hubs`).

Resolution of keys and groups, gene names and edge tables live in :mod:`sc_print._networks`, shared with
``sp.tl`` and ``sp.pl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_print._keys import Key
from sc_print._networks import (
    Orientation,
    edge_table,
    network_graph,
    network_refs,
    select_one,
    select_refs,
    stored_hubs,
)
from sc_print._validation import resolve_adata

if TYPE_CHECKING:
    from collections.abc import Sequence

    import networkx as nx
    from anndata import AnnData
    from mudata import MuData


def network(
    adata: AnnData | MuData,
    *,
    key: str = Key.uns.grn,
    group: str | None = None,
    top_k: int | None = None,
    min_weight: float | None = None,
    tf_only: bool = False,
    orientation: Orientation | None = None,
    gene_symbols: str | None = None,
    self_loops: bool = False,
    mod: str = "rna",
) -> pd.DataFrame:
    """Stored gene network as a long edge list, ready for decoupler.

    The result is accepted unchanged as ``net`` by decoupler 2.x, e.g. ``dc.mt.ulm(adata, net)``.

    Parameters
    ----------
    adata
        AnnData holding networks written by :func:`sc_print.tl.grn`, or a MuData (see ``mod``).
    key
        ``.uns`` record key of ``sp.tl.grn`` (``key_added``) or the ``.varp`` key of one network
        (e.g. ``"scprint_grn_B cell"``).
    group
        Group to read when ``key`` is a record with several groups.
    top_k
        Keep the ``top_k`` highest-weight targets of each source.
    min_weight
        Drop edges whose weight is below this value.
    tf_only
        Keep only edges whose source is a transcription factor of the shipped list (matched on gene
        symbols: ``.var[gene_symbols]``, else ``.var["symbol"|"gene_symbols"|"feature_name"]`` when
        present, else ``var_names``; case-insensitive).
    orientation
        ``"query_is_source"`` (the attention query gene is the source) or ``"key_is_source"``. The
        matrix is transposed when this differs from the orientation recorded by ``sp.tl.grn``;
        ``None`` returns the network as stored.
    gene_symbols
        ``.var`` column with the gene names to report instead of ``var_names`` (missing values fall back
        to the var name). When several vars share a name, the strongest edge of each pair is kept.
    self_loops
        Keep edges from a gene to itself.
    mod
        Modality used when ``adata`` is a MuData.

    Returns
    -------
    DataFrame with columns ``source``, ``target`` (str) and ``weight`` (float): unique (source, target)
    pairs, sorted by source then decreasing weight. Zero and non-finite entries are not edges.

    Examples
    --------
    >>> import anndata as ad
    >>> import numpy as np
    >>> from scipy import sparse
    >>> import sc_print as sp
    >>> adata = ad.AnnData(np.ones((4, 3), dtype=np.float32))
    >>> adata.var_names = ["SPI1", "CD19", "PAX5"]
    >>> adata.varp["my_net"] = sparse.csr_matrix([[0, 0.5, 0.2], [0, 0, 0.9], [0.4, 0, 0]])
    >>> sp.get.network(adata, key="my_net")
      source target  weight
    0   CD19   PAX5     0.9
    1   PAX5   SPI1     0.4
    2   SPI1   CD19     0.5
    3   SPI1   PAX5     0.2
    >>> sp.get.network(adata, key="my_net", top_k=1)["target"].tolist()
    ['PAX5', 'SPI1', 'CD19']
    """
    adata = resolve_adata(adata, mod)
    ref = select_one(adata, key, group)
    return edge_table(
        adata,
        ref,
        top_k=top_k,
        min_weight=min_weight,
        tf_only=tf_only,
        orientation=orientation,
        gene_symbols=gene_symbols,
        self_loops=self_loops,
    )


def graph(
    adata: AnnData | MuData,
    *,
    key: str = Key.uns.grn,
    group: str | None = None,
    top_k: int | None = None,
    min_weight: float | None = None,
    tf_only: bool = False,
    orientation: Orientation | None = None,
    gene_symbols: str | None = None,
    self_loops: bool = False,
    mod: str = "rna",
) -> nx.DiGraph:
    """Stored gene network as a :class:`networkx.DiGraph`.

    Parameters
    ----------
    adata
        AnnData holding networks written by :func:`sc_print.tl.grn`, or a MuData (see ``mod``).
    key, group, top_k, min_weight, tf_only, orientation, gene_symbols, self_loops, mod
        As in :func:`sc_print.get.network`, which gives the edges.

    Returns
    -------
    Directed graph over the genes that have at least one edge. Edges carry ``weight``; nodes carry
    ``is_tf`` (bool, shipped TF list); ``graph.graph`` holds ``network`` (``.varp`` key), ``group`` and
    ``orientation``.
    """
    adata = resolve_adata(adata, mod)
    ref = select_one(adata, key, group)
    return network_graph(
        adata,
        ref,
        gene_symbols=gene_symbols,
        top_k=top_k,
        min_weight=min_weight,
        tf_only=tf_only,
        orientation=orientation,
        self_loops=self_loops,
    )


# --------------------------------------------------------------------------------------------------- hubs
def hubs(
    adata: AnnData | MuData,
    *,
    key: str = Key.uns.grn,
    group: str | Sequence[str] | None = None,
    mod: str = "rna",
) -> pd.DataFrame:
    """Hub scores stored by :func:`sc_print.tl.hubs`, as a tidy table.

    Parameters
    ----------
    adata
        AnnData (or MuData, see ``mod``) on which ``sp.tl.hubs`` was run.
    key
        ``.uns`` record key of ``sp.tl.grn`` (all its groups) or the ``.varp`` key of one network.
    group
        Group(s) to read; None reads every group of ``key``.
    mod
        Modality used when ``adata`` is a MuData.

    Returns
    -------
    DataFrame with columns ``network`` (``.varp`` key), ``group``, ``gene``, ``score`` (score name) and
    ``value`` (float), one row per network, gene and score. A ValueError when the network changed after
    ``sp.tl.hubs`` ran (the scores would be stale).

    Examples
    --------
    >>> import anndata as ad
    >>> import numpy as np
    >>> from scipy import sparse
    >>> import sc_print as sp
    >>> adata = ad.AnnData(np.ones((4, 3), dtype=np.float32))
    >>> adata.var_names = ["SPI1", "CD19", "PAX5"]
    >>> adata.varp["my_net"] = sparse.csr_matrix([[0, 0.5, 0.2], [0, 0, 0.9], [0.4, 0, 0]])
    >>> sp.tl.hubs(adata, key="my_net", scores="out_degree")
    >>> sp.get.hubs(adata, key="my_net")
      network   group  gene       score  value
    0  my_net  my_net  SPI1  out_degree    2.0
    1  my_net  my_net  CD19  out_degree    1.0
    2  my_net  my_net  PAX5  out_degree    1.0
    """
    adata = resolve_adata(adata, mod)
    refs = select_refs(network_refs(adata, key), group, key)
    tables = [stored_hubs(adata, ref) for ref in refs]
    frames = []
    for ref, table in zip(refs, tables, strict=True):
        long = table.rename_axis("gene").reset_index().melt(id_vars="gene", var_name="score", value_name="value")
        long.insert(0, "group", ref.label)
        long.insert(0, "network", ref.varp_key)
        frames.append(long)
    out = pd.concat(frames, ignore_index=True)
    out["gene"] = out["gene"].astype(str)
    out["value"] = out["value"].astype(np.float64)
    return out
