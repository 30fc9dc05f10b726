"""Synthetic gene networks stored exactly as ``sp.tl.grn`` stores them (docs/contributing/architecture.md).

- ``.varp[Key.varp.grn(key_added, group)]``: ``scipy.sparse.csr_matrix``, float32, ``n_vars x n_vars``; row
  ``i`` -> column ``j`` is the edge ``var_names[i] -> var_names[j]``; genes outside the network have empty
  rows and columns.
- ``.uns[key_added]``: ``params``, ``orientation``, ``varp_keys``, ``n_cells``, ``n_genes``, ``model``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
from anndata.tests.helpers import assert_equal
from scipy import sparse

from sc_print._keys import Key

if TYPE_CHECKING:
    from collections.abc import Sequence

#: symbols of the shipped TF list given to the first network genes
TF_SYMBOLS: tuple[str, ...] = ("SPI1", "PAX5", "TCF7", "GATA3", "IRF4", "STAT1", "FOXP3", "EBF1", "RUNX3", "TBX21")


def random_network(
    rng: np.random.Generator,
    n_vars: int,
    genes: np.ndarray,
    *,
    edges_per_source: int,
    n_self_loops: int = 5,
) -> sparse.csr_matrix:
    """Sparse ``n_vars x n_vars`` float32 network over ``genes``: ``edges_per_source`` random targets per gene
    (weights in (0.01, 1), all distinct) plus ``n_self_loops`` self loops."""
    rows, cols = [], []
    for g in genes:
        targets = rng.choice(genes[genes != g], size=edges_per_source, replace=False)
        rows.extend([g] * edges_per_source)
        cols.extend(targets)
    rows.extend(genes[:n_self_loops])
    cols.extend(genes[:n_self_loops])
    weights = rng.permutation(np.linspace(0.01, 1.0, len(rows))).astype(np.float32)
    return sparse.csr_matrix((weights, (np.asarray(rows), np.asarray(cols))), shape=(n_vars, n_vars), dtype=np.float32)


def make_grn_adata(
    *,
    n_obs: int = 60,
    n_vars: int = 300,
    n_network: int = 240,
    groups: Sequence[str] | None = ("B cell", "T cell"),
    key_added: str = Key.uns.grn,
    orientation: str = "query_is_source",
    edges_per_source: int = 12,
    symbols_as_var_names: bool = False,
    seed: int = 0,
) -> ad.AnnData:
    """AnnData with raw counts and one synthetic stored network per group (``groups=None``: one, ``"all"``).

    ``var_names`` are Ensembl-like ids and ``.var["symbol"]`` holds symbols (the first network genes carry
    :data:`TF_SYMBOLS`); with ``symbols_as_var_names`` the symbols are the var names. Different groups
    share the gene set but have different random edges.
    """
    rng = np.random.default_rng(seed)
    network_genes = np.sort(rng.choice(n_vars, size=n_network, replace=False))
    symbols = np.array([f"GENE{i}" for i in range(n_vars)], dtype=object)
    symbols[network_genes[: len(TF_SYMBOLS)]] = TF_SYMBOLS
    ids = np.array([f"ENSG{i:011d}" for i in range(n_vars)])

    group_names = ["all"] if groups is None else list(groups)
    counts = sparse.csr_matrix(rng.poisson(1.0, size=(n_obs, n_vars)).astype(np.float32))
    adata = ad.AnnData(
        X=counts,
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical(rng.choice(group_names, size=n_obs), categories=group_names)},
            index=[f"cell{i}" for i in range(n_obs)],
        ),
        var=pd.DataFrame({"symbol": symbols}, index=symbols if symbols_as_var_names else ids),
    )
    varp_keys, n_cells, n_genes = {}, {}, {}
    for group in group_names:
        varp_key = Key.varp.grn(key_added, None if groups is None else group)
        adata.varp[varp_key] = random_network(rng, n_vars, network_genes, edges_per_source=edges_per_source)
        varp_keys[group] = varp_key
        n_cells[group] = int((adata.obs["cell_type"] == group).sum())
        n_genes[group] = int(n_network)
    adata.uns[key_added] = {
        "params": {"groupby": None if groups is None else "cell_type", "top_k": edges_per_source, "layer": None},
        "orientation": orientation,
        "varp_keys": varp_keys,
        "n_cells": n_cells,
        "n_genes": n_genes,
        "model": {"name": "synthetic", "sha256": "0" * 64},
    }
    return adata


def make_mudata(adata: ad.AnnData, mod: str = "rna"):
    """MuData with ``adata`` as modality ``mod`` (mudata's new no-pull behaviour, without its FutureWarning)."""
    import mudata as md

    with md.set_options(pull_on_update=False):
        return md.MuData({mod: adata})


def network_genes(adata: ad.AnnData, varp_key: str) -> pd.Index:
    """var names of the genes with at least one non-self-loop edge in ``.varp[varp_key]``."""
    m = sparse.coo_matrix(adata.varp[varp_key])
    keep = m.row != m.col
    idx = np.union1d(m.row[keep], m.col[keep])
    return adata.var_names[idx]


def assert_unchanged(adata: ad.AnnData, before: ad.AnnData) -> None:
    """``adata`` equals the copy ``before`` taken ahead of a failing call (and has no new keys)."""
    assert set(adata.uns) == set(before.uns)
    assert list(adata.var.columns) == list(before.var.columns)
    assert set(adata.varp) == set(before.varp)
    assert_equal(adata, before)
