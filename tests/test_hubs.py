from __future__ import annotations

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from _network_fixtures import assert_unchanged, make_grn_adata, make_mudata, network_genes
from scipy import sparse

import sc_print as sp
from sc_print._keys import Key

B, T = "scprint_grn_B cell", "scprint_grn_T cell"


@pytest.fixture
def adata() -> ad.AnnData:
    return make_grn_adata()


def _reference_graph(adata: ad.AnnData, varp_key: str) -> nx.DiGraph:
    """DiGraph built straight from the stored matrix with networkx (no sc_print code)."""
    g = nx.from_scipy_sparse_array(sparse.csr_array(adata.varp[varp_key]), create_using=nx.DiGraph)
    g.remove_edges_from(list(nx.selfloop_edges(g)))
    g.remove_nodes_from([n for n in list(g) if g.degree(n) == 0])
    return nx.relabel_nodes(g, dict(enumerate(adata.var_names)))


# ------------------------------------------------------------------------------------------ hubs
def test_hubs_match_networkx(adata):
    assert sp.tl.hubs(adata) is None
    for varp_key in (B, T):
        ref = _reference_graph(adata, varp_key)
        table = adata.uns[Key.uns.hubs(varp_key)]
        assert isinstance(table, pd.DataFrame)
        assert list(table.columns) == ["degree", "in_strength", "out_strength", "eigenvector"]
        assert set(table.index) == set(ref.nodes)
        assert table["degree"].is_monotonic_decreasing
        expected = {
            "degree": dict(ref.degree()),
            "in_strength": dict(ref.in_degree(weight="weight")),
            "out_strength": dict(ref.out_degree(weight="weight")),
            "eigenvector": nx.eigenvector_centrality_numpy(ref, weight="weight"),
        }
        for score, values in expected.items():
            want = pd.Series(values).reindex(table.index)
            np.testing.assert_allclose(table[score].to_numpy(), want.to_numpy(), rtol=1e-5, atol=1e-7)
            column = adata.var[Key.var.hub_score(varp_key, score)]
            np.testing.assert_allclose(column.reindex(table.index).to_numpy(), want.to_numpy(), rtol=1e-5, atol=1e-7)
            outside = ~adata.var_names.isin(table.index)
            assert outside.sum() == adata.n_vars - len(ref)
            assert column[outside].isna().all()
        params = adata.uns[f"{Key.uns.hubs(varp_key)}_params"]
        assert params["network"] == varp_key
        assert params["key"] == "scprint_grn"
        assert list(params["scores"]) == ["degree", "in_strength", "out_strength", "eigenvector"]


def test_hubs_other_scores_top_k_and_groups(adata):
    sp.tl.hubs(adata, groups="T cell", scores=["pagerank", "out_degree"], top_k=3)
    assert Key.uns.hubs(B) not in adata.uns
    table = adata.uns[Key.uns.hubs(T)]
    assert list(table.columns) == ["pagerank", "out_degree"]
    assert table["out_degree"].max() == 3
    expected = nx.pagerank(sp.get.graph(adata, key=T, top_k=3), weight="weight")
    np.testing.assert_allclose(table["pagerank"], pd.Series(expected).reindex(table.index), rtol=1e-6)
    assert adata.uns[f"{Key.uns.hubs(T)}_params"]["top_k"] == 3


def test_hubs_copy(adata):
    before = adata.copy()
    out = sp.tl.hubs(adata, key=B, scores="degree", copy=True)
    assert isinstance(out, ad.AnnData)
    assert Key.var.hub_score(B, "degree") in out.var
    assert_unchanged(adata, before)


def test_hubs_mudata(adata):
    mdata = make_mudata(adata)
    sp.tl.hubs(mdata, key=B, scores="degree")
    assert Key.var.hub_score(B, "degree") in mdata.mod["rna"].var
    assert sp.get.hubs(mdata, key=B)["score"].eq("degree").all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"key": "nope"}, KeyError, r"sp\.tl\.grn"),
        ({"groups": ["B cell", "NK cell"]}, KeyError, "NK cell"),
        ({"scores": ["degree", "betweenness"]}, ValueError, "betweenness"),
        ({"scores": []}, ValueError, "hub score"),
        ({"top_k": 0}, ValueError, "top_k"),
    ],
)
def test_hubs_errors_leave_adata_unchanged(adata, kwargs, error, match):
    before = adata.copy()
    with pytest.raises(error, match=match):
        sp.tl.hubs(adata, **kwargs)
    assert_unchanged(adata, before)


def test_hubs_eigenvector_fallback(adata, monkeypatch):
    def broken(*args, **kwargs):
        msg = "ARPACK failed"
        raise nx.NetworkXError(msg)

    monkeypatch.setattr(nx, "eigenvector_centrality_numpy", broken)
    with pytest.warns(RuntimeWarning, match="power iteration"):
        sp.tl.hubs(adata, key=B, scores="eigenvector")
    table = adata.uns[Key.uns.hubs(B)]
    monkeypatch.undo()
    expected = nx.eigenvector_centrality_numpy(_reference_graph(adata, B), weight="weight")
    np.testing.assert_allclose(table["eigenvector"], pd.Series(expected).reindex(table.index), rtol=1e-3, atol=1e-6)

    def not_converging(*args, **kwargs):
        raise nx.PowerIterationFailedConvergence(1000)

    monkeypatch.setattr(nx, "eigenvector_centrality_numpy", broken)
    monkeypatch.setattr(nx, "eigenvector_centrality", not_converging)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        sp.tl.hubs(adata, key=T, scores=("degree", "eigenvector"))
    table = adata.uns[Key.uns.hubs(T)]
    assert table["eigenvector"].isna().all()
    assert table["degree"].notna().all()


def test_hubs_empty_network(adata):
    adata.varp[B] = sparse.csr_matrix(adata.varp[B].shape, dtype=np.float32)
    with pytest.warns(RuntimeWarning, match="no edges"):
        sp.tl.hubs(adata, key=B)
    assert adata.uns[Key.uns.hubs(B)].empty
    assert adata.var[Key.var.hub_score(B, "degree")].isna().all()


def test_hubs_negative_weights_use_absolute_value(adata):
    adata.varp[B] = -adata.varp[B]
    sp.tl.hubs(adata, key=B, scores=("in_strength", "eigenvector"))
    table = adata.uns[Key.uns.hubs(B)]
    assert (table["in_strength"] < 0).all()
    assert (table["eigenvector"] >= 0).all()


# ------------------------------------------------------------------------------------------ diff_hubs
def test_diff_hubs(adata):
    # drop the genes of one network's first 20 sources' edges in B so that some genes exist only in T
    m = adata.varp[B].tolil()
    gone = network_genes(adata, B)[:20]
    idx = adata.var_names.get_indexer(gone)
    m[idx, :] = 0
    m[:, idx] = 0
    adata.varp[B] = m.tocsr()
    adata.varp[B].eliminate_zeros()
    sp.tl.hubs(adata, scores=("degree", "out_strength"))

    table = sp.tl.diff_hubs(adata, key_a=B, key_b=T, score="out_strength", inplace=False)
    assert f"{B}_vs_{T}_diff_hubs" not in adata.uns
    a = adata.uns[Key.uns.hubs(B)]["out_strength"]
    b = adata.uns[Key.uns.hubs(T)]["out_strength"]
    assert set(table.index) == set(a.index) | set(b.index)
    assert not table.loc[gone, "in_a"].any()
    assert table.loc[gone, "in_b"].all()
    assert (table.loc[gone, "score_a"] == 0).all()
    common = a.index.intersection(b.index)
    np.testing.assert_allclose(table.loc[common, "diff"], b[common] - a[common], rtol=1e-6)
    np.testing.assert_allclose(table["diff"], table["score_b"] - table["score_a"])
    assert (table["rank_change"] == table["rank_a"] - table["rank_b"]).all()
    assert table["rank_a"].min() == 1
    assert table.loc[a.idxmax(), "rank_a"] == 1
    assert table["diff"].abs().is_monotonic_decreasing

    assert sp.tl.diff_hubs(adata, key_a=B, key_b=T, score="out_strength") is None
    pd.testing.assert_frame_equal(adata.uns[f"{B}_vs_{T}_diff_hubs"], table)
    assert adata.uns[f"{B}_vs_{T}_diff_hubs_params"]["score"] == "out_strength"


def test_diff_hubs_copy(adata):
    sp.tl.hubs(adata, scores="degree")
    before = adata.copy()
    out = sp.tl.diff_hubs(adata, key_a=B, key_b=T, copy=True)
    assert f"{B}_vs_{T}_diff_hubs" in out.uns
    assert_unchanged(adata, before)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key_a": B, "key_b": "nope"}, r"sp\.tl\.grn"),
        ({"key_a": B, "key_b": T, "score": "eigenvector"}, r"scores=\[\.\.\., 'eigenvector'\]"),
        ({"key_a": "scprint_grn", "key_b": T}, "choose one"),
    ],
)
def test_diff_hubs_errors(adata, kwargs, match):
    sp.tl.hubs(adata, scores="degree")
    before = adata.copy()
    with pytest.raises((KeyError, ValueError), match=match):
        sp.tl.diff_hubs(adata, **kwargs)
    assert_unchanged(adata, before)


def test_diff_hubs_needs_hubs(adata):
    before = adata.copy()
    with pytest.raises(KeyError, match=r"Run `sp\.tl\.hubs\(adata, key='scprint_grn'\)` first"):
        sp.tl.diff_hubs(adata, key_a=B, key_b=T)
    with pytest.raises(ValueError, match="inplace"):
        sp.tl.diff_hubs(adata, key_a=B, key_b=T, copy=True, inplace=False)
    assert_unchanged(adata, before)


# ------------------------------------------------------------------------------------------ communities
def test_communities(adata):
    assert sp.tl.communities(adata, rng=0) is None
    for varp_key in (B, T):
        labels = adata.var[f"{varp_key}_community"]
        assert isinstance(labels.dtype, pd.CategoricalDtype)
        record = adata.uns[f"{varp_key}_communities"]
        sizes = record["sizes"]
        genes = network_genes(adata, varp_key)
        assert sum(sizes.values()) == len(genes)
        assert labels[genes].notna().all()
        assert labels.isna().sum() == adata.n_vars - len(genes)
        assert labels.value_counts().to_dict() == sizes
        assert list(sizes.values()) == sorted(sizes.values(), reverse=True)
        assert -0.5 <= record["modularity"] <= 1
        assert record["params"]["seed"] == 0
    # reproducible, and a numpy Generator is accepted
    first = adata.var[f"{B}_community"].copy()
    again = sp.tl.communities(adata, key=B, rng=0, copy=True)
    pd.testing.assert_series_equal(again.var[f"{B}_community"], first)
    sp.tl.communities(adata, key=B, rng=np.random.default_rng(1), resolution=2.0)
    assert adata.uns[f"{B}_communities"]["params"]["resolution"] == 2.0


def test_communities_recover_planted_blocks():
    adata = make_grn_adata(groups=None, n_vars=60, n_network=60)
    # two dense blocks with weak links between them
    block = np.zeros((60, 60), dtype=np.float32)
    block[:30, :30] = 1.0
    block[30:, 30:] = 1.0
    block[0, 45] = 0.01
    np.fill_diagonal(block, 0)
    adata.varp["scprint_grn"] = sparse.csr_matrix(block)
    sp.tl.communities(adata, key="scprint_grn", rng=0)
    labels = adata.var["scprint_grn_community"].astype(str).to_numpy()
    assert len(set(labels[:30])) == 1
    assert len(set(labels[30:])) == 1
    assert labels[0] != labels[30]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"key": "nope"}, KeyError, r"sp\.tl\.grn"),
        ({"groups": "NK cell"}, KeyError, "NK cell"),
        ({"resolution": 0}, ValueError, "resolution"),
        ({"rng": "seed"}, TypeError, "rng"),
    ],
)
def test_communities_errors(adata, kwargs, error, match):
    before = adata.copy()
    with pytest.raises(error, match=match):
        sp.tl.communities(adata, **kwargs)
    assert_unchanged(adata, before)


# ------------------------------------------------------------------------------------------ storage
def test_results_survive_h5ad_roundtrip(adata, tmp_path):
    sp.tl.hubs(adata)
    sp.tl.diff_hubs(adata, key_a=B, key_b=T)
    sp.tl.communities(adata)
    path = tmp_path / "hubs.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(sp.get.hubs(back), sp.get.hubs(adata))
    pd.testing.assert_frame_equal(back.uns[f"{B}_vs_{T}_diff_hubs"], adata.uns[f"{B}_vs_{T}_diff_hubs"])
    pd.testing.assert_series_equal(back.var[f"{T}_community"], adata.var[f"{T}_community"])
    assert back.uns[f"{T}_communities"]["sizes"] == adata.uns[f"{T}_communities"]["sizes"]


def test_mudata_copy(adata):
    import mudata as md

    mdata = make_mudata(adata)
    with md.set_options(pull_on_update=False):  # MuData.copy() warns about mudata's coming default otherwise
        out = sp.tl.communities(mdata, key=B, copy=True)
    assert type(out) is type(mdata)
    assert f"{B}_community" in out.mod["rna"].var
    assert f"{B}_community" not in adata.var
