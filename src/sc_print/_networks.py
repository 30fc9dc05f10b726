"""Stored gene networks: where they live, how they are oriented, their genes, edges and hub tables.

The one internal module through which ``sp.tl`` (hubs, communities), ``sp.get`` and ``sp.pl`` address the
networks written by :func:`sc_print.tl.grn` (squidpy's ``gr``/``pl`` meet only in ``_constants`` the same way):
none of those subpackages imports another's private names.

Storage contract (``docs/contributing/architecture.md``, "GRN storage"): one sparse ``n_vars x n_vars``
matrix per group in ``.varp`` (row ``i``, column ``j`` = weight of ``var_names[i] -> var_names[j]``) and a
record in ``.uns[key_added]`` with ``varp_keys`` (group -> ``.varp`` key) and ``orientation``.
"""

from __future__ import annotations

import hashlib
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

#: how a stored network is oriented (``.uns[key_added]["orientation"]``, see ``sp.tl.grn``)
Orientation = Literal["query_is_source", "key_is_source"]
ORIENTATIONS: tuple[str, ...] = ("query_is_source", "key_is_source")
#: ``.var`` columns searched (in this order) for gene symbols when matching TFs
SYMBOL_COLUMNS: tuple[str, ...] = ("symbol", "gene_symbols", "feature_name")


# --------------------------------------------------------------------------------------------------- resolution
@dataclass(frozen=True)
class NetworkRef:
    """One stored network: where it lives and how it is oriented."""

    record_key: str | None  #: ``.uns`` record written by ``sp.tl.grn`` (None: bare ``.varp`` matrix)
    group: str  #: stored group name (``"all"`` without ``groupby``; the ``.varp`` key for a bare matrix)
    varp_key: str  #: ``.varp`` key of the matrix
    orientation: str | None  #: stored orientation (None: unknown)
    original: str | None = None  #: the group label before it was made safe to store (None: not recorded)

    @property
    def key(self) -> str:
        """Key to pass back to ``sp.tl.*`` to address this network's record."""
        return self.record_key if self.record_key is not None else self.varp_key

    @property
    def label(self) -> str:
        """Name of the network in plots: its group label, or the ``.varp`` key of a bare matrix."""
        if self.record_key is None:
            return self.varp_key
        return self.group if self.original is None else self.original


def grn_records(adata: AnnData) -> dict[str, Mapping]:
    """``.uns`` entries that look like ``sp.tl.grn`` records (a mapping with ``varp_keys``)."""
    return {
        str(k): v for k, v in adata.uns.items() if isinstance(v, Mapping) and isinstance(v.get("varp_keys"), Mapping)
    }


def record_orientation(record: Mapping) -> str | None:
    """The orientation stored in a ``sp.tl.grn`` record, None when missing or unknown."""
    orientation = record.get("orientation")
    return str(orientation) if orientation is not None and str(orientation) in ORIENTATIONS else None


def _original_labels(record: Mapping) -> dict[str, str]:
    """``{stored group name: original label}`` of a record whose labels were made safe to store."""
    names = record.get("group_names")
    return {str(k): str(v) for k, v in names.items()} if isinstance(names, Mapping) else {}


def _record_refs(record_key: str, record: Mapping) -> list[NetworkRef]:
    orientation = record_orientation(record)
    originals = _original_labels(record)
    refs = []
    for group, varp_key in record["varp_keys"].items():
        original = originals.get(str(group))
        refs.append(NetworkRef(record_key, str(group), str(varp_key), orientation, original))
    return refs


def available_networks(adata: AnnData) -> str:
    records = sorted(grn_records(adata))
    varp = sorted(str(k) for k in adata.varp)
    return f"records in .uns: {records}, matrices in .varp: {varp}"


def network_refs(adata: AnnData, key: str) -> list[NetworkRef]:
    """All networks addressed by ``key`` (a ``.uns`` record key or a ``.varp`` key)."""
    if not isinstance(key, str):
        msg = f"`key` must be a string naming a network, got {type(key).__name__}."
        raise TypeError(msg)
    records = grn_records(adata)
    if key in records:
        refs = _record_refs(key, records[key])
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
            for ref in _record_refs(record_key, record):
                if ref.varp_key == key:
                    return [ref]
        return [NetworkRef(None, key, key, None)]
    msg = (
        f"No gene network {key!r} in this AnnData ({available_networks(adata)}). "
        "Pass one of these as `key`, or run `sp.tl.grn(adata, ...)` first."
    )
    raise KeyError(msg)


def network_keys(adata: AnnData | MuData, key: str, *, mod: str = "rna") -> dict[str, str]:
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
    return {ref.group: ref.varp_key for ref in network_refs(resolve_adata(adata, mod), key)}


def select_refs(refs: list[NetworkRef], groups: str | Sequence[str] | None, key: str) -> list[NetworkRef]:
    """Keep the networks of ``groups`` (all when None); unknown groups raise a KeyError.

    A group is named by its stored name or by its original label (before it was made safe to store).
    """
    if groups is None:
        return refs
    wanted = [groups] if isinstance(groups, str) else [str(g) for g in groups]
    by_group = {r.original: r for r in refs if r.original is not None} | {r.group: r for r in refs}
    unknown = [g for g in wanted if g not in by_group]
    if unknown:
        msg = f"Unknown group(s) {unknown} for network {key!r}; available groups: {[r.label for r in refs]}."
        raise KeyError(msg)
    if not wanted:
        msg = "`groups` is empty; pass None for all groups."
        raise ValueError(msg)
    return list(dict.fromkeys(by_group[g] for g in wanted))


def select_one(adata: AnnData, key: str, group: str | None) -> NetworkRef:
    """The single network addressed by ``key`` and ``group``."""
    refs = network_refs(adata, key)
    if group is not None:
        return select_refs(refs, [group], key)[0]
    if len(refs) > 1:
        msg = (
            f"{key!r} holds {len(refs)} networks (groups {[r.group for r in refs]}); "
            "choose one with `group=` or pass its `.varp` key as `key`."
        )
        raise ValueError(msg)
    return refs[0]


# --------------------------------------------------------------------------------------------------- genes
def var_column(adata: AnnData, column: str) -> np.ndarray:
    """String values of ``.var[column]``, falling back to the var name where missing or empty."""
    if column not in adata.var.columns:
        msg = f"`.var` has no column {column!r} (columns: {list(adata.var.columns)}); pass an existing column."
        raise KeyError(msg)
    values = adata.var[column].astype(object).to_numpy()
    names = adata.var_names.to_numpy(dtype=str)
    missing = pd.isna(values) | (values == "")
    return np.where(missing, names, values.astype(str)).astype(object)


def gene_names(adata: AnnData, gene_symbols: str | None) -> np.ndarray:
    """Names reported for each var: ``var_names`` or ``.var[gene_symbols]``."""
    if gene_symbols is None:
        return adata.var_names.to_numpy(dtype=str).astype(object)
    return var_column(adata, gene_symbols)


def symbols_for_tf(adata: AnnData, gene_symbols: str | None) -> np.ndarray:
    """Symbols used to recognise TFs: ``.var[gene_symbols]``, a known symbol column, or ``var_names``."""
    if gene_symbols is not None:
        return var_column(adata, gene_symbols)
    for column in SYMBOL_COLUMNS:
        if column in adata.var.columns:
            return var_column(adata, column)
    names = adata.var_names.to_numpy(dtype=str).astype(object)
    ensembl = pd.Index(strip_ensembl_version(names))
    if ensembl.str.startswith("ENS").any():  # Ensembl ids: their symbols come from the shipped gene table
        symbols = load_gene_table()["symbol"].reindex(ensembl).fillna("").to_numpy(dtype=object)
        names = np.where(symbols != "", symbols, names)
    return names


def tf_mask(adata: AnnData, gene_symbols: str | None) -> np.ndarray:
    """Boolean mask over vars: the gene is a TF of the shipped list."""
    return is_tf(symbols_for_tf(adata, gene_symbols))


def tf_by_name(adata: AnnData, gene_symbols: str | None) -> pd.Series:
    """TF flag of each reported gene name (:func:`gene_names`); a name shared by several vars: any of them."""
    return pd.Series(tf_mask(adata, gene_symbols), index=gene_names(adata, gene_symbols)).groupby(level=0).any()


def check_orientation(orientation: str | None) -> None:
    """Raise a ValueError unless ``orientation`` is one of :data:`ORIENTATIONS` or None."""
    if orientation is not None and orientation not in ORIENTATIONS:
        msg = f"`orientation` must be one of {list(ORIENTATIONS)} or None (as stored), got {orientation!r}."
        raise ValueError(msg)


# --------------------------------------------------------------------------------------------------- edges
def edge_table(
    adata: AnnData,
    ref: NetworkRef,
    *,
    top_k: int | None = None,
    min_weight: float | None = None,
    tf_only: bool = False,
    orientation: str | None = None,
    gene_symbols: str | None = None,
    self_loops: bool = False,
) -> pd.DataFrame:
    """Edge list of one stored network (validated arguments; see :func:`sc_print.get.network`)."""
    check_positive_int(top_k, "top_k", allow_none=True)
    check_orientation(orientation)
    if min_weight is not None and not np.isfinite(min_weight):
        msg = f"`min_weight` must be a finite number or None, got {min_weight!r}."
        raise ValueError(msg)
    names = gene_names(adata, gene_symbols)
    tf = tf_mask(adata, gene_symbols) if tf_only else None

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


def network_graph(
    adata: AnnData,
    ref: NetworkRef,
    *,
    gene_symbols: str | None = None,
    **kwargs: object,
) -> nx.DiGraph:
    """DiGraph of one stored network (edge attribute ``weight``, node attribute ``is_tf``).

    ``kwargs`` go to :func:`edge_table`.
    """
    import networkx as nx

    edges = edge_table(adata, ref, gene_symbols=gene_symbols, **kwargs)
    graph = nx.DiGraph(network=ref.varp_key, group=ref.group, orientation=ref.orientation)
    graph.add_weighted_edges_from(edges.itertuples(index=False, name=None), weight="weight")
    is_tf_name = tf_by_name(adata, gene_symbols)
    nx.set_node_attributes(graph, {n: bool(is_tf_name.get(n, False)) for n in graph.nodes}, name="is_tf")
    return graph


# --------------------------------------------------------------------------------------------------- stored records
def stored_record(adata: AnnData, uns_key: str, *, what: str, run: str) -> Mapping | pd.DataFrame:
    """``.uns[uns_key]``; a KeyError saying that ``what`` is missing and which call (``run``) writes it."""
    if uns_key not in adata.uns:
        msg = f"No {what} (`.uns[{uns_key!r}]` is missing). Run `{run}` first."
        raise KeyError(msg)
    return adata.uns[uns_key]


def stored_table(adata: AnnData, uns_key: str, field: str, *, what: str, run: str) -> pd.DataFrame:
    """The table ``.uns[uns_key][field]`` of a record written by ``run``, as a DataFrame.

    A bare table at ``.uns[uns_key]`` (the layout of sc_print 0.1.0, without params) is read as well.
    """
    record = stored_record(adata, uns_key, what=what, run=run)
    if isinstance(record, Mapping) and field in record:
        table = record[field]
    elif isinstance(record, pd.DataFrame):
        table = record
    else:
        msg = f"`.uns[{uns_key!r}]` is not a record of {what} (it has no {field!r} table). Run `{run}` again."
        raise KeyError(msg)
    return table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)


def stored_params(adata: AnnData, uns_key: str) -> Mapping:
    """``.uns[uns_key]["params"]`` (empty when the record has none)."""
    record = adata.uns.get(uns_key)
    params = record.get("params") if isinstance(record, Mapping) else None
    return params if isinstance(params, Mapping) else {}


def network_digest(adata: AnnData, varp_key: str) -> str:
    """sha256 of the edges of ``.varp[varp_key]`` (shape, positions and float64 weights of its non-zeros).

    Stored in the params of the network tools, so that readers notice a network changed since (e.g. by a
    new ``sp.tl.grn`` run) instead of returning stale scores.
    """
    stored = adata.varp[varp_key]
    csr = sparse.csr_array(stored, copy=True) if sparse.issparse(stored) else sparse.csr_array(np.asarray(stored))
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.sort_indices()
    digest = hashlib.sha256()
    for part in (np.asarray(csr.shape), csr.indptr, csr.indices):
        digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(csr.data, dtype=np.float64).tobytes())
    return digest.hexdigest()


def check_current(
    adata: AnnData, ref: NetworkRef, params: Mapping, *, what: str, run: str, field: str = "network_digest"
) -> None:
    """Raise a ValueError when ``params[field]`` says the result was computed on another version of ``ref``."""
    recorded = params.get(field)
    if recorded is not None and str(recorded) != network_digest(adata, ref.varp_key):
        msg = (
            f"The {what} were computed on a different version of network {ref.varp_key!r} (it changed since, "
            f"e.g. by a new `sp.tl.grn` run). Run `{run}` again."
        )
        raise ValueError(msg)


def stored_hubs(adata: AnnData, ref: NetworkRef) -> pd.DataFrame:
    """Hub table written by ``sp.tl.hubs`` for one network.

    A KeyError saying what to run when it is missing, a ValueError when the network changed since.
    """
    uns_key = Key.uns.hubs(ref.varp_key)
    what = f"hub scores for network {ref.varp_key!r}"
    run = f"sp.tl.hubs(adata, key={ref.key!r})"
    table = stored_table(adata, uns_key, "scores", what=what, run=run)
    check_current(adata, ref, stored_params(adata, uns_key), what=what, run=run)
    return table


def stored_score(adata: AnnData, ref: NetworkRef, score: str) -> pd.Series:
    """One hub score of one network (float64, indexed by gene) from the table of ``sp.tl.hubs``."""
    table = stored_hubs(adata, ref)
    if score not in table.columns:
        msg = (
            f"Hub score {score!r} was not computed for network {ref.varp_key!r} (stored: {list(table.columns)}). "
            f"Run `sp.tl.hubs(adata, key={ref.key!r}, scores=[..., {score!r}])` first."
        )
        raise KeyError(msg)
    return table[score].astype(np.float64)
