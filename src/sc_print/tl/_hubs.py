"""Network analysis of the stored gene networks: hub centralities, hub differences, communities."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from sc_print._keys import Key, community_keys, diff_hubs_keys, hub_keys
from sc_print._networks import network_digest, network_graph, network_refs, select_one, select_refs, stored_score
from sc_print._utils import log_written, track
from sc_print._validation import check_positive_int, resolve_adata

from ._common import output_target

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import networkx as nx
    from anndata import AnnData
    from mudata import MuData


logger = logging.getLogger(__name__)

DEFAULT_SCORES: tuple[str, ...] = ("degree", "in_strength", "out_strength", "eigenvector")
#: power iteration of the eigenvector centrality: at most this many steps, stop when the mean change is below tol
_EIGEN_MAX_ITER = 10_000
_EIGEN_TOL = 1e-12


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


def _eigenvector(graph: nx.DiGraph, info: dict[str, Any]) -> dict:
    """Weighted eigenvector centrality (networkx convention: in-edges, unit Euclidean norm).

    The dominant left eigenvector by power iteration on ``I + A`` from a uniform start, the iteration of
    :func:`networkx.eigenvector_centrality` (vectorised with scipy). Unlike
    :func:`networkx.eigenvector_centrality_numpy` it is defined for graphs that are not strongly connected,
    the usual case for gene networks: genes that no cycle of the dominant component reaches score 0. Whether
    the graph was strongly connected and the number of iterations go to ``info``; NaN with a warning when
    the network has no edges or the iteration does not converge.
    """
    import networkx as nx

    name = graph.graph.get("network")
    positive = _abs_weights(graph)
    nodes = list(positive.nodes)
    info.update(method="power_iteration", strongly_connected=False, iterations=0, converged=False)
    if positive.number_of_edges() == 0:
        msg = f"Network {name!r} has no edges: eigenvector centrality set to NaN."
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
        return dict.fromkeys(nodes, np.nan)
    info["strongly_connected"] = bool(nx.is_strongly_connected(positive))
    # A[i, j] = w(i -> j); in-edge convention: x_j <- x_j + sum_i w(i -> j) x_i
    step = sparse.csr_array(nx.to_scipy_sparse_array(positive, nodelist=nodes, weight="weight", dtype=float).T)
    n = len(nodes)
    x = np.full(n, 1.0 / np.sqrt(n))
    for iteration in range(1, _EIGEN_MAX_ITER + 1):
        new = x + step @ x
        new /= np.linalg.norm(new)
        change = float(np.abs(new - x).sum())
        x = new
        if change < n * _EIGEN_TOL:
            info.update(iterations=iteration, converged=True)
            return dict(zip(nodes, x.tolist(), strict=True))
    info["iterations"] = _EIGEN_MAX_ITER
    msg = (
        f"Eigenvector centrality of network {name!r} did not converge in {_EIGEN_MAX_ITER} power iterations; "
        "the `eigenvector` score is NaN. Other scores are unaffected."
    )
    warnings.warn(msg, RuntimeWarning, stacklevel=4)
    return dict.fromkeys(nodes, np.nan)


def _pagerank(graph: nx.DiGraph, info: dict[str, Any]) -> dict:
    import networkx as nx

    return nx.pagerank(_abs_weights(graph), weight="weight")


#: score name -> function(DiGraph, info) -> {node: value}; a function may note how it computed into ``info``
_SCORES: dict[str, Callable[[nx.DiGraph, dict[str, Any]], dict]] = {
    "degree": lambda g, _: dict(g.degree()),
    "in_degree": lambda g, _: dict(g.in_degree()),
    "out_degree": lambda g, _: dict(g.out_degree()),
    "strength": lambda g, _: dict(g.degree(weight="weight")),
    "in_strength": lambda g, _: dict(g.in_degree(weight="weight")),
    "out_strength": lambda g, _: dict(g.out_degree(weight="weight")),
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


def _hub_table(graph: nx.DiGraph, scores: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per node of ``graph``, one column per score, sorted by the first score (descending).

    Also returns how the eigenvector centrality was computed (empty when not requested).
    """
    nodes = pd.Index(list(graph.nodes), name="gene", dtype=object)
    table = pd.DataFrame(index=nodes)
    info: dict[str, Any] = {}
    for score in scores:  # a plain loop (no comprehension frame) keeps the warnings' stacklevel right
        table[score] = pd.Series(_SCORES[score](graph, info), dtype=np.float64).reindex(nodes)
    return table.sort_values(scores[0], ascending=False, kind="stable"), info


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
    computed: ``degree`` (in + out edges), ``in_degree``, ``out_degree``, ``strength``, ``in_strength``,
    ``out_strength`` (sums of edge weights), ``eigenvector`` and ``pagerank``
    (:func:`networkx.pagerank`). ``eigenvector`` is the weighted eigenvector centrality of networkx
    (in-edge convention, unit norm), computed by the power iteration of
    :func:`networkx.eigenvector_centrality` so that it is defined on networks that are not strongly
    connected (most gene networks): genes that no cycle of the dominant part of the network reaches score 0;
    how it was computed is recorded in the params. Eigenvector and PageRank use ``|weight|`` when a network
    has negative weights.

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

    `.uns['{varp_key}_hubs']` : dict
        ``scores``: :class:`pandas.DataFrame` indexed by gene (genes with at least one edge), one column per
        score, sorted by the first score; ``params``: every option of the call (``key``, ``groups``,
        ``scores``, ``top_k``, ``mod``), the ``network`` (``.varp`` key), its ``group`` and
        ``network_digest`` (sha256 of its edges: readers refuse scores of a network that changed since),
        and, with ``eigenvector``, how it was computed (``eigenvector``: ``method``,
        ``strongly_connected``, ``iterations``, ``converged``).
    `.var['{varp_key}_{score}']` : float
        The score of each gene; NaN for genes outside the network.

    Examples
    --------
    Any sparse ``n_vars x n_vars`` matrix in ``.varp`` is a network (``sp.tl.grn`` writes one per group):

    >>> import anndata as ad
    >>> import numpy as np
    >>> from scipy import sparse
    >>> import sc_print as sp
    >>> adata = ad.AnnData(np.ones((4, 3), dtype=np.float32))
    >>> adata.var_names = ["SPI1", "CD19", "PAX5"]
    >>> adata.varp["my_net"] = sparse.csr_matrix([[0, 0.5, 0.2], [0, 0, 0.9], [0.4, 0, 0]])
    >>> sp.tl.hubs(adata, key="my_net", scores=["out_degree", "in_strength"])
    >>> adata.uns["my_net_hubs"]["scores"]
          out_degree  in_strength
    gene
    SPI1         2.0          0.4
    CD19         1.0          0.5
    PAX5         1.0          1.1
    >>> adata.var["my_net_in_strength"].tolist()
    [0.4, 0.5, 1.1]
    """
    scores = _check_scores(scores)
    check_positive_int(top_k, "top_k", allow_none=True)
    target = resolve_adata(adata, mod)
    refs = select_refs(network_refs(target, key), groups, key)
    keys = {ref.varp_key: hub_keys(ref.varp_key, scores) for ref in refs}

    results = []
    for ref in track(refs, total=len(refs), description="hub scores"):
        graph = network_graph(target, ref, top_k=top_k)
        logger.info("hub scores of %r: %d genes, %d edges", ref.varp_key, graph.number_of_nodes(), graph.size())
        table, info = _hub_table(graph, scores)
        params = {
            "key": key,
            "groups": _groups_record(groups),
            "scores": list(scores),
            "top_k": top_k,
            "mod": mod,
            "network": ref.varp_key,
            "group": ref.label,
            "network_digest": network_digest(target, ref.varp_key),
        }
        if info:
            params["eigenvector"] = info
        results.append((ref, table, params))

    adata, target = output_target(adata, mod, copy=copy)
    for ref, table, params in results:
        slots = keys[ref.varp_key]
        target.uns[slots.uns] = {"scores": table, "params": params}
        log_written("uns", slots.uns)
        for score, column in slots.var.items():
            target.var[column] = table[score].reindex(target.var_names).to_numpy(dtype=np.float64)
            log_written("var", column)
    return adata if copy else None


def _groups_record(groups: str | Sequence[str] | None) -> str | list[str] | None:
    """``groups`` as stored in params (h5ad keeps str, list of str and None)."""
    return groups if groups is None or isinstance(groups, str) else [str(g) for g in groups]


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

    `.uns['{varp_key_a}_vs_{varp_key_b}_diff_hubs']` : dict
        ``table``: the table; ``params``: ``key_a``, ``key_b``, ``score``, ``mod``, ``network_a``,
        ``network_b`` (``.varp`` keys) and their ``network_digest_a``, ``network_digest_b``.
    """
    _check_copy_inplace(copy=copy, inplace=inplace)
    if not isinstance(score, str):
        msg = f"`score` must be one score name, got {score!r}."
        raise TypeError(msg)
    target = resolve_adata(adata, mod)
    ref_a = select_one(target, key_a, None)
    ref_b = select_one(target, key_b, None)
    uns_key = diff_hubs_keys(ref_a.varp_key, ref_b.varp_key)
    table = _diff_table(stored_score(target, ref_a, score), stored_score(target, ref_b, score))

    if not inplace:
        return table
    params = {
        "key_a": key_a,
        "key_b": key_b,
        "score": score,
        "mod": mod,
        "network_a": ref_a.varp_key,
        "network_b": ref_b.varp_key,
        "network_digest_a": network_digest(target, ref_a.varp_key),
        "network_digest_b": network_digest(target, ref_b.varp_key),
    }
    adata, target = output_target(adata, mod, copy=copy)
    target.uns[uns_key] = {"table": table, "params": params}
    log_written("uns", uns_key)
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
        ``sizes`` (label -> number of genes), ``modularity`` and ``params`` (``key``, ``groups``,
        ``resolution``, ``seed`` (the seed used; None when ``rng=None``), ``top_k``, ``mod``, ``network``,
        ``group``, ``network_digest``).
    """
    import networkx as nx

    if isinstance(resolution, bool) or not isinstance(resolution, int | float) or not resolution > 0:
        msg = f"`resolution` must be a positive number, got {resolution!r}."
        raise ValueError(msg)
    check_positive_int(top_k, "top_k", allow_none=True)
    seed = _seed(rng)
    target = resolve_adata(adata, mod)
    refs = select_refs(network_refs(target, key), groups, key)
    keys = {ref.varp_key: community_keys(ref.varp_key) for ref in refs}

    results = []
    for ref in track(refs, total=len(refs), description="communities"):
        graph = _undirected(network_graph(target, ref, top_k=top_k))
        parts = nx.community.louvain_communities(graph, weight="weight", resolution=resolution, seed=seed)
        parts = sorted(parts, key=lambda c: (-len(c), min(c)))
        modularity = (
            float(nx.community.modularity(graph, parts, weight="weight", resolution=resolution))
            if graph.size()
            else float("nan")
        )
        labels = {gene: str(i) for i, part in enumerate(parts) for gene in part}
        logger.info("%d communities in %r (modularity %.3f)", len(parts), ref.varp_key, modularity)
        params = {
            "key": key,
            "groups": _groups_record(groups),
            "resolution": float(resolution),
            "seed": seed,
            "top_k": top_k,
            "mod": mod,
            "network": ref.varp_key,
            "group": ref.label,
            "network_digest": network_digest(target, ref.varp_key),
        }
        results.append((ref, parts, labels, modularity, params))

    adata, target = output_target(adata, mod, copy=copy)
    for ref, parts, labels, modularity, params in results:
        slots = keys[ref.varp_key]
        categories = [str(i) for i in range(len(parts))]
        values = pd.Series(labels, dtype=object).reindex(target.var_names).to_numpy()
        target.var[slots.var] = pd.Categorical(values, categories=categories)
        log_written("var", slots.var)
        target.uns[slots.uns] = {
            "sizes": {label: len(part) for label, part in zip(categories, parts, strict=True)},
            "modularity": modularity,
            "params": params,
        }
        log_written("uns", slots.uns)
    return adata if copy else None
