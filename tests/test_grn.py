"""sp.tl.grn / sp.tl.select_heads and the mean-Q/K aggregation of sc_print.grn."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import sc_print as scp
from sc_print.grn import QKAccumulator, attention_network, network_scores, truth_matrix


def _snapshot(adata):
    return copy.deepcopy(adata)


def _assert_unchanged(before, after) -> None:
    assert (before.X != after.X).nnz == 0
    pd.testing.assert_frame_equal(before.obs, after.obs)
    pd.testing.assert_frame_equal(before.var, after.var)
    assert set(before.uns) == set(after.uns)
    assert set(before.varp) == set(after.varp)
    assert set(before.layers) == set(after.layers)


# ---------------------------------------------------------------------------------------------------- engine
def test_accumulator_is_the_mean_over_cells_where_the_gene_was_seen() -> None:
    gen = torch.Generator().manual_seed(0)
    acc = QKAccumulator(n_tokens=2, n_genes=5, layers=[0, 2], nhead=2, head_dim=3)
    slots = torch.tensor([[0, 1, 3], [1, 2, 3]])
    q = torch.randn(2, 5, 2, 3, generator=gen)
    k = torch.randn(2, 5, 2, 3, generator=gen)
    acc.set_batch(slots)
    acc(2, q, k)
    q_mean, k_mean, seen = acc.means()
    assert seen.tolist() == [True, True, True, True, True, True, False]  # gene 4 never seen
    # gene 1 (slot 3) was in both cells, at token positions 3 and 2
    expected = (q[0, 3] + q[1, 2]) / 2
    torch.testing.assert_close(q_mean[1, 3], expected)
    torch.testing.assert_close(k_mean[1, 0], (k[0, 0] + k[1, 0]) / 2)  # cell token 0 in both cells
    assert torch.all(q_mean[0] == 0)  # layer 0 was never recorded


def _naive_network(q: torch.Tensor, k: torch.Tensor, n_tokens: int) -> np.ndarray:
    """Dense reference: per layer-head softmax(QK^T/sqrt(d)), mean over heads, drop cell tokens."""
    n_layers, _, nhead, hd = q.shape
    mats = [
        torch.softmax(q[layer, :, h] @ k[layer, :, h].T / hd**0.5, dim=-1)
        for layer in range(n_layers)
        for h in range(nhead)
    ]
    return torch.stack(mats).mean(0)[n_tokens:, n_tokens:].numpy()


@pytest.mark.parametrize("block_rows", [3, 1024])
def test_attention_network_matches_the_dense_computation(block_rows: int) -> None:
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 12, 2, 4, generator=gen), torch.randn(2, 12, 2, 4, generator=gen)
    net = attention_network(q, k, n_tokens=2, filtration="none", block_rows=block_rows)
    np.testing.assert_allclose(net.toarray(), _naive_network(q, k, 2), atol=1e-6)
    thr = attention_network(q, k, n_tokens=2, filtration="threshold", block_rows=block_rows).toarray()
    dense = _naive_network(q, k, 2)
    np.testing.assert_allclose(thr, np.where(dense >= 1 / 12, dense, 0), atol=1e-6)
    top = attention_network(q, k, n_tokens=2, filtration="top_k", top_k=3, block_rows=block_rows)
    assert (np.diff(top.indptr) == 3).all()
    cube = attention_network(q, k, n_tokens=2, per_head=True)
    assert cube.shape == (10, 10, 4)
    np.testing.assert_allclose(cube.mean(-1), dense, atol=1e-6)


def test_head_weights_select_heads() -> None:
    gen = torch.Generator().manual_seed(2)
    q, k = torch.randn(2, 8, 2, 4, generator=gen), torch.randn(2, 8, 2, 4, generator=gen)
    cube = attention_network(q, k, n_tokens=1, per_head=True)
    one = attention_network(q, k, n_tokens=1, heads=[(1, 0)], filtration="none").toarray()
    np.testing.assert_allclose(one, cube[:, :, 2], atol=1e-6)
    with pytest.raises(ValueError, match="No attention head"):
        attention_network(q, k, n_tokens=1, heads=[(1, 0)], head_weights=[0.0])


def test_network_scores_epr_and_auprc() -> None:
    truth = truth_matrix(pd.DataFrame({"source": ["a", "a", "b"], "target": ["b", "c", "c"]}), ["a", "b", "c", "d"])
    assert truth.sum() == 3
    perfect = truth.toarray().astype(float)
    scores = network_scores(perfect, truth)
    assert scores["auprc"] == pytest.approx(1.0)
    assert scores["epr"] == pytest.approx(1 / scores["prevalence"])
    worst = network_scores(1.0 - perfect, truth)
    assert worst["epr"] == 0.0
    with pytest.raises(KeyError, match="source"):
        truth_matrix(pd.DataFrame({"tf": ["a"], "target": ["b"]}), ["a", "b"])


# ---------------------------------------------------------------------------------------------------- sp.tl.grn
def test_grn_per_group_writes_sparse_networks(toy_model, toy_counts_adata) -> None:
    adata = toy_counts_adata
    scp.tl.grn(adata, model=toy_model, groupby="cell_type", n_genes=60, n_cells=40, batch_size=16)
    record = adata.uns["scprint_grn"]
    assert record["orientation"] == "query_is_source"
    assert set(record["varp_keys"]) == {"B cell", "T cell", "monocyte"}
    for group, key in record["varp_keys"].items():
        matrix = adata.varp[key]
        assert sp.isspmatrix_csr(matrix) or isinstance(matrix, sp.csr_array)
        assert matrix.shape == (adata.n_vars, adata.n_vars)
        assert record["n_genes"][group] == 60
        assert record["n_cells"][group] == 40
        rows_with_edges = np.flatnonzero(np.diff(matrix.indptr))
        assert 0 < len(rows_with_edges) <= 60
        assert matrix.data.min() >= 1 / (60 + toy_model.net.n_cell_tokens) - 1e-7  # threshold rule
    assert record["params"]["genes"] == "hvg"
    assert record["model"]["d_model"] == toy_model.net.config.d_model


def test_grn_matches_a_direct_forward(toy_model, toy_counts_adata) -> None:
    """The stored network equals mean-Q/K softmax computed by hand from the model's Q and K."""
    adata = toy_counts_adata
    genes = list(adata.var_names[:25])
    scp.tl.grn(adata, model=toy_model, genes=genes, filtration="none", batch_size=7)
    net = adata.varp["scprint_grn"][:25][:, :25].toarray()
    # by hand: all cells, same gene list, batch of everything
    from sc_print.data import GeneMapper, tokenize_rows

    ids = adata.var_names.to_numpy()
    mapper = GeneMapper(toy_model.vocab.index(ids))
    tokens = tokenize_rows(adata.X, mapper, mode="fixed", genes=toy_model.vocab.index(genes))
    qs, ks = {}, {}

    def hook(layer, q, k):
        qs[layer], ks[layer] = q.mean(0), k.mean(0)

    with torch.no_grad():
        toy_model.net(tokens.gene_idx, tokens.expr, tokens.depth, qk_hook=hook)
    q = torch.stack([qs[i] for i in sorted(qs)])
    k = torch.stack([ks[i] for i in sorted(ks)])
    expected = _naive_network(q, k, toy_model.net.n_cell_tokens)
    # genes of the list are in vocabulary order inside the model; map back to var order
    order = np.argsort(toy_model.vocab.index(genes))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    np.testing.assert_allclose(net, expected[np.ix_(inv, inv)], atol=1e-5)


def test_grn_orientation_transposes(toy_model, toy_counts_adata) -> None:
    adata = toy_counts_adata
    kwargs = {"model": toy_model, "genes": list(adata.var_names[:20]), "filtration": "none"}
    scp.tl.grn(adata, key_added="q", **kwargs)
    scp.tl.grn(adata, key_added="k", orientation="key_is_source", **kwargs)
    np.testing.assert_allclose(adata.varp["q"].toarray(), adata.varp["k"].toarray().T)
    assert adata.uns["k"]["orientation"] == "key_is_source"


def test_grn_genome_wide_and_top_k_are_seeded(toy_model, toy_counts_adata) -> None:
    adata = toy_counts_adata
    kwargs = {"model": toy_model, "genes": "genome_wide", "max_len": 50, "n_repeats": 2, "filtration": "top_k"}
    scp.tl.grn(adata, key_added="a", rng=3, top_k=4, **kwargs)
    scp.tl.grn(adata, key_added="b", rng=3, top_k=4, **kwargs)
    scp.tl.grn(adata, key_added="c", rng=4, top_k=4, **kwargs)
    a, b, c = (adata.varp[key] for key in "abc")
    assert (a != b).nnz == 0
    assert (a != c).nnz > 0
    assert np.diff(a.indptr).max() == 4
    assert adata.uns["a"]["n_genes"]["all"] > 50  # more genes than one context: averaged over contexts


def test_grn_copy_and_mudata(toy_model, toy_counts_adata) -> None:
    import mudata as md

    before = _snapshot(toy_counts_adata)
    out = scp.tl.grn(toy_counts_adata, model=toy_model, n_genes=30, copy=True)
    _assert_unchanged(before, toy_counts_adata)
    assert "scprint_grn" in out.varp
    mdata = md.MuData({"rna": toy_counts_adata})
    scp.tl.grn(mdata, model=toy_model, n_genes=30)
    assert "scprint_grn" in mdata.mod["rna"].varp
    with pytest.raises(KeyError, match="rna"):
        scp.tl.grn(md.MuData({"atac": toy_counts_adata.copy()}), model=toy_model)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"groupby": "missing"}, KeyError, "missing"),
        ({"groupby": "cell_type", "groups": ["NK cell"]}, KeyError, "NK cell"),
        ({"groupby": "cell_type", "n_cells": 10_000}, ValueError, "n_cells"),
        ({"groupby": "cell_type", "min_cells": 10_000}, ValueError, "min_cells"),
        ({"genes": ["not_a_gene"]}, KeyError, "not_a_gene"),
        ({"genes": "everything"}, ValueError, "gene selection"),
        ({"orientation": "rows"}, ValueError, "orientation"),
        ({"filtration": "tmfg"}, ValueError, "filtration"),
        ({"layers": [7]}, ValueError, "layers"),
        ({"heads": "selected"}, KeyError, "select_heads"),
    ],
)
def test_grn_bad_arguments_leave_adata_untouched(toy_model, toy_counts_adata, kwargs, error, match) -> None:
    before = _snapshot(toy_counts_adata)
    with pytest.raises(error, match=match):
        scp.tl.grn(toy_counts_adata, model=toy_model, **kwargs)
    _assert_unchanged(before, toy_counts_adata)


def test_grn_refuses_normalised_data_and_foreign_genes(toy_model, toy_counts_adata) -> None:
    import scanpy as sc

    adata = toy_counts_adata
    mouse = adata.copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    before = _snapshot(adata)
    with pytest.raises(ValueError, match="count"):
        scp.tl.grn(adata, model=toy_model)
    _assert_unchanged(before, adata)
    mouse.var_names = [f"ENSMUSG{i:011d}" for i in range(mouse.n_vars)]
    with pytest.raises(ValueError, match="vocabulary"):
        scp.tl.grn(mouse, model=toy_model)


def test_grn_nan_counts_raise(toy_model, toy_counts_adata) -> None:
    adata = toy_counts_adata
    adata.X = adata.X.toarray()
    adata.X[0, 0] = np.nan
    before = _snapshot(adata)
    with pytest.raises(ValueError, match="NaN"):
        scp.tl.grn(adata, model=toy_model)
    assert "scprint_grn" not in adata.uns
    assert set(before.varp) == set(adata.varp)


# ---------------------------------------------------------------------------------------------------- heads
def test_select_heads_then_grn_reuses_them(toy_model, toy_counts_adata) -> None:
    adata = toy_counts_adata
    gen = np.random.default_rng(0)
    names = adata.var["symbol"].to_numpy()
    truth = pd.DataFrame({"source": names[gen.integers(0, 100, 300)], "target": names[gen.integers(0, 100, 300)]})
    scp.tl.select_heads(
        adata,
        truth,
        model=toy_model,
        genes=list(adata.var_names[:100]),
        gene_symbols="symbol",
        n_cells=60,
        train_size=0.7,
    )
    record = adata.uns["scprint_heads"]
    nhead = toy_model.net.config.nhead
    assert len(record["coef"]) == toy_model.net.config.nlayers * nhead
    assert (record["weights"] > 0).all()
    assert 0.0 <= record["auprc_test"] <= 1.0
    scp.tl.grn(adata, model=toy_model, heads="selected", n_genes=40, key_added="sel")
    assert adata.uns["sel"]["params"]["heads"] == "selected"
    before = _snapshot(adata)
    with pytest.raises(ValueError, match="fixed gene set"):
        scp.tl.select_heads(adata, truth, model=toy_model, genes="genome_wide")
    with pytest.raises(KeyError, match="gene_names"):
        scp.tl.select_heads(adata, truth, model=toy_model, gene_symbols="gene_names")
    _assert_unchanged(before, adata)
