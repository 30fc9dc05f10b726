"""Network analysis of the stored gene networks: hub centralities, hub differences, communities."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_print._keys import Key
from sc_print._validation import check_positive_int, resolve_adata
from sc_print.get._network import _graph, _network_refs, _select_one, _select_refs, _stored_score

from ._common import output_target

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import networkx as nx
    from anndata import AnnData
    from mudata import MuData

    from sc_print.get._network import _NetworkRef

logger = logging.getLogger(__name__)

DEFAULT_SCORES: tuple[str, ...] = ("degree", "in_strength", "out_strength", "eigenvector")


# --------------------------------------------------------------------------------------------------- keys
# Derived from the network's ``.varp`` key like the helpers of ``Key``; candidates to move into ``_keys.py``.
def _hubs_params_key(varp_key: str) -> str:
    """``.uns`` key of the parameters of ``sp.tl.hubs`` for one network."""
    return f"{Key.uns.hubs(varp_key)}_params"


def _community_var_key(varp_key: str) -> str:
    """``.var`` column of the community labels of one network."""
    return f"{varp_key}_community"


def _communities_uns_key(varp_key: str) -> str:
    """``.uns`` record of the communities of one network."""
    return f"{varp_key}_communities"


def _diff_hubs_key(varp_key_a: str, varp_key_b: str) -> str:
    """``.uns`` key of the hub comparison of two networks."""
    return f"{varp_key_a}_vs_{varp_key_b}_diff_hubs"


# --------------------------------------------------------------------------------------------------- scores
def _abs_weights(graph: nx.DiGraph | nx.Graph) -> nx.DiGraph | nx.Graph:
    """The graph itself when all weights are >= 0, else a copy with absolute weights."""
    if all(w >= 0 for _, _, w in graph.edges(data="weight")):
        return graph
    logger.info("network %r has negative weights; using |weight|", graph.graph.get("network"))
    out = graph.copy()
    for _, _, data in out.edges(data=True):
        data["weight"] = abs(data["weight"])
    return out


def _eigenvector(graph: nx.DiGraph) -> dict:
    """Weighted eigenvector centrality (networkx convention: in-edges for a directed graph).

    Uses :func:`networkx.eigenvector_centrality_numpy` (ARPACK); on failure falls back to power iteration,
    and to NaN with a warning when that fails too.
    """
    import networkx as nx

    name = graph.graph.get("network")
    positive = _abs_weights(graph)
    if positive.number_of_edges() == 0:
        msg = f"Network {name!r} has no edges: eigenvector centrality set to NaN."
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
        return dict.fromkeys(graph.nodes, np.nan)
    try:
        return nx.eigenvector_centrality_numpy(positive, weight="weight", max_iter=max(100, 10 * len(positive)))
    except (nx.NetworkXException, RuntimeError, ValueError, TypeError) as err:
        first_error = err
    try:
        values = nx.eigenvector_centrality(positive, weight="weight", max_iter=1000, tol=1e-8)
    except (nx.NetworkXException, ZeroDivisionError) as err:
        msg = (
            f"Eigenvector centrality of network {name!r} did not converge ({first_error!r}; power iteration: "
            f"{err!r}); the `eigenvector` score is NaN. Other scores are unaffected."
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
        return dict.fromkeys(graph.nodes, np.nan)
    msg = (
        f"`networkx.eigenvector_centrality_numpy` failed on network {name!r} ({first_error!r}); "
        "the `eigenvector` score comes from power iteration (`networkx.eigenvector_centrality`) instead."
    )
    warnings.warn(msg, RuntimeWarning, stacklevel=4)
    return values


def _pagerank(graph: nx.DiGraph) -> dict:
    import networkx as nx

    return nx.pagerank(_abs_weights(graph), weight="weight")


#: score name -> function(DiGraph) -> {node: value}
_SCORES: dict[str, Callable[[nx.DiGraph], dict]] = {
    "degree": lambda g: dict(g.degree()),
    "in_degree": lambda g: dict(g.in_degree()),
    "out_degree": lambda g: dict(g.out_degree()),
    "strength": lambda g: dict(g.degree(weight="weight")),
    "in_strength": lambda g: dict(g.in_degree(weight="weight")),
    "out_strength": lambda g: dict(g.out_degree(weight="weight")),
    "eigenvector": _eigenvector,
    "pagerank": _pagerank,
}


def _check_scores(scores: str | Sequence[str]) -> list[str]:
    wanted = [scores] if isinstance(scores, str) else list(scores)
    unknown = [s for s in wanted if s not in _SCORES]
    if unknown or not wanted:
        msg = f"Unknown hub score(s) {unknown or wanted}; choose from {list(_SCORES)}."
        raise ValueError(msg)
    return list(dict.fromkeys(wanted))


def _check_copy_inplace(*, copy: bool, inplace: bool) -> None:
    if copy and not inplace:
        msg = "`copy=True` cannot be used with `inplace=False`."
        raise ValueError(msg)


def _hub_table(graph: nx.DiGraph, scores: list[str]) -> pd.DataFrame:
    """One row per node of ``graph``, one column per score, sorted by the first score (descending)."""
    nodes = pd.Index(list(graph.nodes), name="gene", dtype=object)
    table = pd.DataFrame(index=nodes)
    for score in scores:  # a plain loop (no comprehension frame) keeps the warnings' stacklevel right
        table[score] = pd.Series(_SCORES[score](graph), dtype=np.float64).reindex(nodes)
    return table.sort_values(scores[0], ascending=False, kind="stable")


# --------------------------------------------------------------------------------------------------- hubs
def hubs(
    adata: AnnData | MuData,
    *,
    key: str = Key.uns.grn,
    groups: str | Sequence[str] | None = None,
    scores: str | Sequence[str] = DEFAULT_SCORES,
    top_k: int | None = None,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Hub (centrality) scores of the stored gene networks.

    One :class:`networkx.DiGraph` is built per network (self-loops dropped) and the requested scores are
    computed with networkx: ``degree`` (in + out edges), ``in_degree``, ``out_degree``, ``strength``,
    ``in_strength``, ``out_strength`` (sums of edge weights), ``eigenvector``
    (:func:`networkx.eigenvector_centrality_numpy` on the weighted graph, in-edge convention; falls back to
    power iteration, then to NaN, with a warning) and ``pagerank``. Eigenvector and PageRank use
    ``|weight|`` when a network has negative weights.

    Parameters
    ----------
    adata
        AnnData holding networks written by :func:`sc_print.tl.grn`, or a MuData (see ``mod``).
    key
        ``.uns`` record key of ``sp.tl.grn`` (all its groups) or the ``.varp`` key of one network.
    groups
        Group(s) to score; None scores every group of ``key``.
    scores
        Score name(s), among those listed above.
    top_k
        Build each graph from the ``top_k`` strongest targets of each source only (see
        :func:`sc_print.get.network`); None uses every stored edge.
    mod
        Modality used when ``adata`` is a MuData (results go to ``mdata.mod[mod]``).
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    A copy when ``copy=True``, else None. For each network (``.varp`` key ``varp_key``) writes

    `.uns['{varp_key}_hubs']` : :class:`pandas.DataFrame`
        Index = gene names (genes with at least one edge), one column per score, sorted by the first score.
    `.var['{varp_key}_{score}']` : float
        The score of each gene; NaN for genes outside the network.
    `.uns['{varp_key}_hubs_params']` : dict
        The call's parameters (``key``, ``network``, ``group``, ``scores``, ``top_k``).
    """
    scores = _check_scores(scores)
    check_positive_int(top_k, "top_k", allow_none=True)
    target = resolve_adata(adata, mod)
    refs = _select_refs(_network_refs(target, key), groups, key)

    results = []
    for ref in refs:
        graph = _graph(target, ref, top_k=top_k)
        logger.info("hub scores of %r: %d genes, %d edges", ref.varp_key, graph.number_of_nodes(), graph.size())
        results.append((ref, _hub_table(graph, scores)))

    adata, target = output_target(adata, mod, copy=copy)
    for ref, table in results:
        _write_hubs(target, ref, table, key=key, scores=scores, top_k=top_k)
    return adata if copy else None


def _write_hubs(
    adata: AnnData, ref: _NetworkRef, table: pd.DataFrame, *, key: str, scores: list[str], top_k: int | None
) -> None:
    uns_key = Key.uns.hubs(ref.varp_key)
    adata.uns[uns_key] = table
    logger.info("added `.uns[%r]`", uns_key)
    for score in scores:
        column = Key.var.hub_score(ref.varp_key, score)
        adata.var[column] = table[score].reindex(adata.var_names).to_numpy(dtype=np.float64)
        logger.info("added `.var[%r]`", column)
    params = {"key": key, "network": ref.varp_key, "group": ref.group, "scores": list(scores)}
    if top_k is not None:
        params["top_k"] = int(top_k)
    adata.uns[_hubs_params_key(ref.varp_key)] = params


# --------------------------------------------------------------------------------------------------- diff_hubs
def diff_hubs(
    adata: AnnData | MuData,
    *,
    key_a: str,
    key_b: str,
    score: str = "degree",
    mod: str = "rna",
    inplace: bool = True,
    copy: bool = False,
) -> pd.DataFrame | AnnData | MuData | None:
    """Compare the hub scores of two networks (e.g. two cell types).

    Reads the tables written by :func:`sc_print.tl.hubs` for both networks; a gene present in only one
    network scores 0 in the other (it has no edge there).

    Parameters
    ----------
    adata
        AnnData (or MuData, see ``mod``) on which ``sp.tl.hubs`` was run for both networks.
    key_a, key_b
        The two networks: ``.varp`` keys, or ``.uns`` record keys holding a single network.
    score
        Hub score to compare; it must have been computed by ``sp.tl.hubs``.
    mod
        Modality used when ``adata`` is a MuData.
    inplace
        Store the table in ``adata``; when False return it and leave ``adata`` untouched.
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    The table when ``inplace=False``, a copy when ``copy=True``, else None. The table (index = gene,
    sorted by decreasing ``|diff|``) has columns ``score_a``, ``score_b``, ``diff`` (B - A), ``rank_a``,
    ``rank_b`` (1 = top hub), ``rank_change`` (``rank_a - rank_b``, > 0 when the gene rises in B),
    ``in_a``, ``in_b`` (gene has edges in that network). When stored, writes

    `.uns['{varp_key_a}_vs_{varp_key_b}_diff_hubs']` : :class:`pandas.DataFrame`
        The table.
    `.uns['{varp_key_a}_vs_{varp_key_b}_diff_hubs_params']` : dict
        ``key_a``, ``key_b``, ``network_a``, ``network_b`` (``.varp`` keys) and ``score``.
    """
    _check_copy_inplace(copy=copy, inplace=inplace)
    if not isinstance(score, str):
        msg = f"`score` must be one score name, got {score!r}."
        raise TypeError(msg)
    target = resolve_adata(adata, mod)
    ref_a = _select_one(target, key_a, None)
    ref_b = _select_one(target, key_b, None)
    table = _diff_table(_stored_score(target, ref_a, score), _stored_score(target, ref_b, score))

    if not inplace:
        return table
    adata, target = output_target(adata, mod, copy=copy)
    uns_key = _diff_hubs_key(ref_a.varp_key, ref_b.varp_key)
    target.uns[uns_key] = table
    target.uns[f"{uns_key}_params"] = {
        "key_a": key_a,
        "key_b": key_b,
        "network_a": ref_a.varp_key,
        "network_b": ref_b.varp_key,
        "score": score,
    }
    logger.info("added `.uns[%r]`", uns_key)
    return adata if copy else None


def _diff_table(score_a: pd.Series, score_b: pd.Series) -> pd.DataFrame:
    genes = score_a.index.union(score_b.index, sort=False)
    a = score_a.reindex(genes)
    b = score_b.reindex(genes)
    table = pd.DataFrame(
        {"score_a": a.fillna(0.0), "score_b": b.fillna(0.0)},
        index=pd.Index(genes, name="gene", dtype=object),
    )
    table["diff"] = table["score_b"] - table["score_a"]
    table["rank_a"] = table["score_a"].rank(ascending=False, method="min").astype(np.int64)
    table["rank_b"] = table["score_b"].rank(ascending=False, method="min").astype(np.int64)
    table["rank_change"] = table["rank_a"] - table["rank_b"]
    table["in_a"] = a.notna().to_numpy()
    table["in_b"] = b.notna().to_numpy()
    order = np.argsort(-table["diff"].abs().to_numpy(), kind="stable")
    return table.iloc[order]


# --------------------------------------------------------------------------------------------------- communities
def _seed(rng: int | np.random.Generator | None) -> int | None:
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**32))
    if isinstance(rng, bool) or not isinstance(rng, int | np.integer):
        msg = f"`rng` must be an int, a numpy Generator or None, got {rng!r}."
        raise TypeError(msg)
    return int(rng)


def _undirected(graph: nx.DiGraph) -> nx.Graph:
    """Undirected graph with ``|w(i->j)| + |w(j->i)|`` as edge weight."""
    import networkx as nx

    out = nx.Graph(network=graph.graph.get("network"))
    out.add_nodes_from(graph.nodes)
    for u, v, w in graph.edges(data="weight"):
        if out.has_edge(u, v):
            out[u][v]["weight"] += abs(w)
        else:
            out.add_edge(u, v, weight=abs(w))
    return out


def communities(
    adata: AnnData | MuData,
    *,
    key: str = Key.uns.grn,
    groups: str | Sequence[str] | None = None,
    resolution: float = 1.0,
    rng: int | np.random.Generator | None = 0,
    top_k: int | None = None,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Gene communities of the stored networks (Louvain).

    Runs :func:`networkx.community.louvain_communities` on the undirected graph of each network, whose
    edge weight is ``|w(i->j)| + |w(j->i)|``. Communities are labelled ``"0"``, ``"1"``, ... by decreasing
    size.

    Parameters
    ----------
    adata
        AnnData holding networks written by :func:`sc_print.tl.grn`, or a MuData (see ``mod``).
    key
        ``.uns`` record key of ``sp.tl.grn`` (all its groups) or the ``.varp`` key of one network.
    groups
        Group(s) to partition; None partitions every group of ``key``.
    resolution
        Louvain resolution (> 0): larger values give smaller communities.
    rng
        Seed (or numpy Generator used to draw one) of the Louvain algorithm; None is not reproducible.
    top_k
        Build each graph from the ``top_k`` strongest targets of each source only.
    mod
        Modality used when ``adata`` is a MuData (results go to ``mdata.mod[mod]``).
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    A copy when ``copy=True``, else None. For each network (``.varp`` key ``varp_key``) writes

    `.var['{varp_key}_community']` : categorical
        Community label of each gene; NaN for genes outside the network.
    `.uns['{varp_key}_communities']` : dict
        ``sizes`` (label -> number of genes), ``modularity`` and ``params`` (``key``, ``network``,
        ``group``, ``resolution``, ``seed``, ``top_k``).
    """
    import networkx as nx

    if isinstance(resolution, bool) or not isinstance(resolution, int | float) or not resolution > 0:
        msg = f"`resolution` must be a positive number, got {resolution!r}."
        raise ValueError(msg)
    check_positive_int(top_k, "top_k", allow_none=True)
    seed = _seed(rng)
    target = resolve_adata(adata, mod)
    refs = _select_refs(_network_refs(target, key), groups, key)

    results = []
    for ref in refs:
        graph = _undirected(_graph(target, ref, top_k=top_k))
        parts = nx.community.louvain_communities(graph, weight="weight", resolution=resolution, seed=seed)
        parts = sorted(parts, key=lambda c: (-len(c), min(c)))
        modularity = (
            float(nx.community.modularity(graph, parts, weight="weight", resolution=resolution))
            if graph.size()
            else float("nan")
        )
        labels = {gene: str(i) for i, part in enumerate(parts) for gene in part}
        logger.info("%d communities in %r (modularity %.3f)", len(parts), ref.varp_key, modularity)
        results.append((ref, parts, labels, modularity))

    adata, target = output_target(adata, mod, copy=copy)
    for ref, parts, labels, modularity in results:
        categories = [str(i) for i in range(len(parts))]
        values = pd.Series(labels, dtype=object).reindex(target.var_names).to_numpy()
        column = _community_var_key(ref.varp_key)
        target.var[column] = pd.Categorical(values, categories=categories)
        params = {"key": key, "network": ref.varp_key, "group": ref.group, "resolution": float(resolution)}
        if seed is not None:
            params["seed"] = seed
        if top_k is not None:
            params["top_k"] = int(top_k)
        uns_key = _communities_uns_key(ref.varp_key)
        target.uns[uns_key] = {
            "sizes": {label: len(part) for label, part in zip(categories, parts, strict=True)},
            "modularity": modularity,
            "params": params,
        }
        logger.info("added `.var[%r]` and `.uns[%r]`", column, uns_key)
    return adata if copy else None
