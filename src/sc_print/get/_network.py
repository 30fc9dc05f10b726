"""Read the gene networks stored by :func:`sc_print.tl.grn` (and the hub scores of :func:`sc_print.tl.hubs`).

Storage contract (``docs/contributing/architecture.md``, "GRN storage"): one sparse ``n_vars x n_vars``
matrix per group in ``.varp`` (row ``i``, column ``j`` = weight of ``var_names[i] -> var_names[j]``) and a
record in ``.uns[key_added]`` with ``varp_keys`` (group -> ``.varp`` key) and ``orientation``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from sc_print._keys import Key
from sc_print._tf import is_tf
from sc_print._validation import check_positive_int, resolve_adata
from sc_print.data import load_gene_table, strip_ensembl_version

if TYPE_CHECKING:
    import networkx as nx
    from anndata import AnnData
    from mudata import MuData

logger = logging.getLogger(__name__)

#: how a stored network is oriented (``.uns[key_added]["orientation"]``, see ``sp.tl.grn``)
Orientation = Literal["query_is_source", "key_is_source"]
ORIENTATIONS: tuple[str, ...] = ("query_is_source", "key_is_source")
#: ``.var`` columns searched (in this order) for gene symbols when matching TFs
_SYMBOL_COLUMNS: tuple[str, ...] = ("symbol", "gene_symbols", "feature_name")


# --------------------------------------------------------------------------------------------------- resolution
@dataclass(frozen=True)
class _NetworkRef:
    """One stored network: where it lives and how it is oriented."""

    record_key: str | None  #: ``.uns`` record written by ``sp.tl.grn`` (None: bare ``.varp`` matrix)
    group: str  #: group name (``"all"`` without ``groupby``; the ``.varp`` key for a bare matrix)
    varp_key: str  #: ``.varp`` key of the matrix
    orientation: str | None  #: stored orientation (None: unknown)

    @property
    def key(self) -> str:
        """Key to pass back to ``sp.tl.*`` to address this network's record."""
        return self.record_key if self.record_key is not None else self.varp_key

    @property
    def label(self) -> str:
        """Name of the network in plots: its group, or the ``.varp`` key of a bare matrix."""
        return self.group if self.record_key is not None else self.varp_key


def _grn_records(adata: AnnData) -> dict[str, Mapping]:
    """``.uns`` entries that look like ``sp.tl.grn`` records (a mapping with ``varp_keys``)."""
    return {
        str(k): v for k, v in adata.uns.items() if isinstance(v, Mapping) and isinstance(v.get("varp_keys"), Mapping)
    }


def _record_orientation(record: Mapping) -> str | None:
    orientation = record.get("orientation")
    return str(orientation) if orientation is not None and str(orientation) in ORIENTATIONS else None


def _available_networks(adata: AnnData) -> str:
    records = sorted(_grn_records(adata))
    varp = sorted(str(k) for k in adata.varp)
    return f"records in .uns: {records}, matrices in .varp: {varp}"


def _network_refs(adata: AnnData, key: str) -> list[_NetworkRef]:
    """All networks addressed by ``key`` (a ``.uns`` record key or a ``.varp`` key)."""
    if not isinstance(key, str):
        msg = f"`key` must be a string naming a network, got {type(key).__name__}."
        raise TypeError(msg)
    records = _grn_records(adata)
    if key in records:
        record = records[key]
        orientation = _record_orientation(record)
        refs = [_NetworkRef(key, str(g), str(vk), orientation) for g, vk in record["varp_keys"].items()]
        if not refs:
            msg = f"The network record `.uns[{key!r}]` lists no networks. Run `sp.tl.grn(adata, ...)` again."
            raise KeyError(msg)
        missing = [r.varp_key for r in refs if r.varp_key not in adata.varp]
        if missing:
            msg = (
                f"The network record `.uns[{key!r}]` points to {missing}, which are missing from `.varp`. "
                f"Run `sp.tl.grn(adata, ..., key_added={key!r})` again."
            )
            raise KeyError(msg)
        return refs
    if key in adata.varp:
        for record_key, record in records.items():
            for group, varp_key in record["varp_keys"].items():
                if str(varp_key) == key:
                    return [_NetworkRef(record_key, str(group), key, _record_orientation(record))]
        return [_NetworkRef(None, key, key, None)]
    msg = (
        f"No gene network {key!r} in this AnnData ({_available_networks(adata)}). "
        "Pass one of these as `key`, or run `sp.tl.grn(adata, ...)` first."
    )
    raise KeyError(msg)


def _network_keys(adata: AnnData | MuData, key: str, *, mod: str = "rna") -> dict[str, str]:
    """Map each group of the network(s) addressed by ``key`` to its ``.varp`` key.

    Parameters
    ----------
    adata
        AnnData, or MuData whose modality ``mod`` holds the networks.
    key
        A ``.uns`` record key written by ``sp.tl.grn`` (e.g. ``"scprint_grn"``: all its groups) or a
        ``.varp`` key (e.g. ``"scprint_grn_B cell"``: that network only).
    mod
        Modality used when ``adata`` is a MuData.

    Returns
    -------
    ``{group: varp_key}``.
    """
    return {ref.group: ref.varp_key for ref in _network_refs(resolve_adata(adata, mod), key)}


def _select_refs(refs: list[_NetworkRef], groups: str | Sequence[str] | None, key: str) -> list[_NetworkRef]:
    """Keep the networks of ``groups`` (all when None); unknown groups raise a KeyError."""
    if groups is None:
        return refs
    wanted = [groups] if isinstance(groups, str) else [str(g) for g in groups]
    by_group = {r.group: r for r in refs}
    unknown = [g for g in wanted if g not in by_group]
    if unknown:
        msg = f"Unknown group(s) {unknown} for network {key!r}; available groups: {list(by_group)}."
        raise KeyError(msg)
    if not wanted:
        msg = "`groups` is empty; pass None for all groups."
        raise ValueError(msg)
    return [by_group[g] for g in dict.fromkeys(wanted)]


def _select_one(adata: AnnData, key: str, group: str | None) -> _NetworkRef:
    """The single network addressed by ``key`` and ``group``."""
    refs = _network_refs(adata, key)
    if group is not None:
        return _select_refs(refs, [group], key)[0]
    if len(refs) > 1:
        msg = (
            f"{key!r} holds {len(refs)} networks (groups {[r.group for r in refs]}); "
            "choose one with `group=` or pass its `.varp` key as `key`."
        )
        raise ValueError(msg)
    return refs[0]


# --------------------------------------------------------------------------------------------------- genes
def _var_column(adata: AnnData, column: str) -> np.ndarray:
    """String values of ``.var[column]``, falling back to the var name where missing or empty."""
    if column not in adata.var.columns:
        msg = f"`.var` has no column {column!r} (columns: {list(adata.var.columns)}); pass an existing column."
        raise KeyError(msg)
    values = adata.var[column].astype(object).to_numpy()
    names = adata.var_names.to_numpy(dtype=str)
    missing = pd.isna(values) | (values == "")
    return np.where(missing, names, values.astype(str)).astype(object)


def _gene_names(adata: AnnData, gene_symbols: str | None) -> np.ndarray:
    """Names reported for each var: ``var_names`` or ``.var[gene_symbols]``."""
    if gene_symbols is None:
        return adata.var_names.to_numpy(dtype=str).astype(object)
    return _var_column(adata, gene_symbols)


def _symbols_for_tf(adata: AnnData, gene_symbols: str | None) -> np.ndarray:
    """Symbols used to recognise TFs: ``.var[gene_symbols]``, a known symbol column, or ``var_names``."""
    if gene_symbols is not None:
        return _var_column(adata, gene_symbols)
    for column in _SYMBOL_COLUMNS:
        if column in adata.var.columns:
            return _var_column(adata, column)
    names = adata.var_names.to_numpy(dtype=str).astype(object)
    ensembl = pd.Index(strip_ensembl_version(names))
    if ensembl.str.startswith("ENS").any():  # Ensembl ids: their symbols come from the shipped gene table
        symbols = load_gene_table()["symbol"].reindex(ensembl).fillna("").to_numpy(dtype=object)
        names = np.where(symbols != "", symbols, names)
    return names


def _tf_mask(adata: AnnData, gene_symbols: str | None) -> np.ndarray:
    """Boolean mask over vars: the gene is a TF of the shipped list."""
    return is_tf(_symbols_for_tf(adata, gene_symbols))


def _tf_by_name(adata: AnnData, gene_symbols: str | None) -> pd.Series:
    """TF flag of each reported gene name (:func:`_gene_names`); a name shared by several vars: any of them."""
    return pd.Series(_tf_mask(adata, gene_symbols), index=_gene_names(adata, gene_symbols)).groupby(level=0).any()


def _check_orientation(orientation: str | None) -> None:
    if orientation is not None and orientation not in ORIENTATIONS:
        msg = f"`orientation` must be one of {list(ORIENTATIONS)} or None (as stored), got {orientation!r}."
        raise ValueError(msg)


# --------------------------------------------------------------------------------------------------- edges
def _edge_table(
    adata: AnnData,
    ref: _NetworkRef,
    *,
    top_k: int | None = None,
    min_weight: float | None = None,
    tf_only: bool = False,
    orientation: str | None = None,
    gene_symbols: str | None = None,
    self_loops: bool = False,
) -> pd.DataFrame:
    """Edge list of one stored network (validated arguments; see :func:`network`)."""
    check_positive_int(top_k, "top_k", allow_none=True)
    _check_orientation(orientation)
    if min_weight is not None and not np.isfinite(min_weight):
        msg = f"`min_weight` must be a finite number or None, got {min_weight!r}."
        raise ValueError(msg)
    names = _gene_names(adata, gene_symbols)
    tf = _tf_mask(adata, gene_symbols) if tf_only else None

    stored = adata.varp[ref.varp_key]
    coo = stored.tocoo(copy=True) if sparse.issparse(stored) else sparse.coo_array(np.asarray(stored))
    coo.sum_duplicates()  # scipy semantics for repeated entries; also makes (row, col) pairs unique
    rows, cols, weights = np.asarray(coo.row), np.asarray(coo.col), np.asarray(coo.data, dtype=np.float64)
    if orientation is not None and orientation != ref.orientation:
        if ref.orientation is None:
            msg = (
                f"The orientation of `.varp[{ref.varp_key!r}]` is unknown (no `sp.tl.grn` record points to it), "
                "so it cannot be transposed; leave `orientation=None`."
            )
            raise ValueError(msg)
        rows, cols = cols, rows

    keep = np.isfinite(weights) & (weights != 0)
    if not self_loops:
        keep &= rows != cols
    if min_weight is not None:
        keep &= weights >= min_weight
    if tf is not None:
        keep &= tf[rows]
    rows, cols, weights = rows[keep], cols[keep], weights[keep]

    edges = pd.DataFrame({"source": names[rows], "target": names[cols], "weight": weights})
    if not pd.Index(names).is_unique:
        # several vars share a name: keep the strongest edge of each (source, target) pair
        order = np.argsort(-np.abs(edges["weight"].to_numpy()), kind="stable")
        edges = edges.iloc[order].drop_duplicates(subset=["source", "target"], keep="first")
        if not self_loops:
            edges = edges[edges["source"] != edges["target"]]
    edges = edges.sort_values(["source", "weight", "target"], ascending=[True, False, True], kind="stable")
    if top_k is not None:
        edges = edges.groupby("source", sort=False).head(top_k)
    return edges.reset_index(drop=True)


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
    """
    adata = resolve_adata(adata, mod)
    ref = _select_one(adata, key, group)
    return _edge_table(
        adata,
        ref,
        top_k=top_k,
        min_weight=min_weight,
        tf_only=tf_only,
        orientation=orientation,
        gene_symbols=gene_symbols,
        self_loops=self_loops,
    )


def _graph(
    adata: AnnData,
    ref: _NetworkRef,
    *,
    gene_symbols: str | None = None,
    **kwargs: object,
) -> nx.DiGraph:
    """DiGraph of one stored network (edge attribute ``weight``, node attribute ``is_tf``)."""
    import networkx as nx

    edges = _edge_table(adata, ref, gene_symbols=gene_symbols, **kwargs)
    graph = nx.DiGraph(network=ref.varp_key, group=ref.group, orientation=ref.orientation)
    graph.add_weighted_edges_from(edges.itertuples(index=False, name=None), weight="weight")
    tf_by_name = _tf_by_name(adata, gene_symbols)
    nx.set_node_attributes(graph, {n: bool(tf_by_name.get(n, False)) for n in graph.nodes}, name="is_tf")
    return graph


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
    ref = _select_one(adata, key, group)
    return _graph(
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
def _stored_table(adata: AnnData, uns_key: str, *, what: str, run: str) -> pd.DataFrame:
    """The table stored in ``.uns[uns_key]`` as a DataFrame.

    A missing table raises a KeyError saying that ``what`` is missing and which call (``run``) writes it.
    """
    if uns_key not in adata.uns:
        msg = f"No {what} (`.uns[{uns_key!r}]` is missing). Run `{run}` first."
        raise KeyError(msg)
    table = adata.uns[uns_key]
    return table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)


def _stored_hubs(adata: AnnData, ref: _NetworkRef) -> pd.DataFrame:
    """Hub table written by ``sp.tl.hubs`` for one network; KeyError saying what to run when missing."""
    return _stored_table(
        adata,
        Key.uns.hubs(ref.varp_key),
        what=f"hub scores for network {ref.varp_key!r}",
        run=f"sp.tl.hubs(adata, key={ref.key!r})",
    )


def _stored_score(adata: AnnData, ref: _NetworkRef, score: str) -> pd.Series:
    """One hub score of one network (float64, indexed by gene) from the table of ``sp.tl.hubs``."""
    table = _stored_hubs(adata, ref)
    if score not in table.columns:
        msg = (
            f"Hub score {score!r} was not computed for network {ref.varp_key!r} (stored: {list(table.columns)}). "
            f"Run `sp.tl.hubs(adata, key={ref.key!r}, scores=[..., {score!r}])` first."
        )
        raise KeyError(msg)
    return table[score].astype(np.float64)


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
    ``value`` (float), one row per network, gene and score.
    """
    adata = resolve_adata(adata, mod)
    refs = _select_refs(_network_refs(adata, key), group, key)
    tables = [_stored_hubs(adata, ref) for ref in refs]
    frames = []
    for ref, table in zip(refs, tables, strict=True):
        long = table.rename_axis("gene").reset_index().melt(id_vars="gene", var_name="score", value_name="value")
        long.insert(0, "group", ref.group)
        long.insert(0, "network", ref.varp_key)
        frames.append(long)
    out = pd.concat(frames, ignore_index=True)
    out["gene"] = out["gene"].astype(str)
    out["value"] = out["value"].astype(np.float64)
    return out
