from __future__ import annotations

import warnings

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
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a normal call warns about nothing
        assert sp.tl.hubs(adata) is None
    for varp_key in (B, T):
        ref = _reference_graph(adata, varp_key)
        record = adata.uns[Key.uns.hubs(varp_key)]
        assert set(record) == {"scores", "params"}
        table = record["scores"]
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
        params = record["params"]
        assert params["network"] == varp_key
        assert params["group"] == varp_key.removeprefix("scprint_grn_")
        assert params["key"] == "scprint_grn"
        assert list(params["scores"]) == ["degree", "in_strength", "out_strength", "eigenvector"]
        assert params["groups"] is None
        assert params["top_k"] is None
        assert params["mod"] == "rna"
        assert len(params["network_digest"]) == 64
        assert params["eigenvector"]["strongly_connected"] is True
        assert params["eigenvector"]["converged"] is True
    assert not [k for k in adata.uns if k.endswith("_params")]  # no sibling params keys


def test_hubs_other_scores_top_k_and_groups(adata):
    sp.tl.hubs(adata, groups="T cell", scores=["pagerank", "out_degree"], top_k=3)
    assert Key.uns.hubs(B) not in adata.uns
    table = adata.uns[Key.uns.hubs(T)]["scores"]
    assert list(table.columns) == ["pagerank", "out_degree"]
    assert table["out_degree"].max() == 3
    expected = nx.pagerank(sp.get.graph(adata, key=T, top_k=3), weight="weight")
    np.testing.assert_allclose(table["pagerank"], pd.Series(expected).reindex(table.index), rtol=1e-6)
    params = adata.uns[Key.uns.hubs(T)]["params"]
    assert params["top_k"] == 3
    assert params["groups"] == "T cell"
    assert "eigenvector" not in params


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


def test_hubs_eigenvector_on_a_network_that_is_not_strongly_connected(adata, recwarn):
    # genes without in-edges (most gene networks): networkx's ARPACK version refuses the graph
    m = adata.varp[B].tolil()
    sources = adata.var_names.get_indexer(network_genes(adata, B)[:30])
    m[:, sources] = 0
    adata.varp[B] = m.tocsr()
    ref = _reference_graph(adata, B)
    assert not nx.is_strongly_connected(ref)
    with pytest.raises(nx.AmbiguousSolution):
        nx.eigenvector_centrality_numpy(ref, weight="weight")
    sp.tl.hubs(adata, key=B, scores="eigenvector")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]  # quiet on a normal network
    record = adata.uns[Key.uns.hubs(B)]
    assert record["params"]["eigenvector"]["strongly_connected"] is False
    assert record["params"]["eigenvector"]["converged"] is True
    expected = nx.eigenvector_centrality(ref, weight="weight", max_iter=10_000, tol=1e-12)
    got = record["scores"]["eigenvector"]
    np.testing.assert_allclose(got, pd.Series(expected).reindex(got.index), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(got[adata.var_names[sources]], 0.0, atol=1e-8)  # nothing points to them
    assert np.linalg.norm(got) == pytest.approx(1.0)


def test_hubs_eigenvector_not_converging(adata, monkeypatch):
    import sc_print.tl._hubs as hubs_module

    monkeypatch.setattr(hubs_module, "_EIGEN_MAX_ITER", 1)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        sp.tl.hubs(adata, key=T, scores=("degree", "eigenvector"))
    record = adata.uns[Key.uns.hubs(T)]
    assert record["scores"]["eigenvector"].isna().all()
    assert record["scores"]["degree"].notna().all()
    assert record["params"]["eigenvector"]["converged"] is False


def test_hubs_empty_network(adata):
    adata.varp[B] = sparse.csr_matrix(adata.varp[B].shape, dtype=np.float32)
    with pytest.warns(RuntimeWarning, match="no edges"):
        sp.tl.hubs(adata, key=B)
    assert adata.uns[Key.uns.hubs(B)]["scores"].empty
    assert adata.var[Key.var.hub_score(B, "degree")].isna().all()


def test_hubs_negative_weights_use_absolute_value(adata):
    adata.varp[B] = -adata.varp[B]
    sp.tl.hubs(adata, key=B, scores=("in_strength", "eigenvector"))
    table = adata.uns[Key.uns.hubs(B)]["scores"]
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
    a = adata.uns[Key.uns.hubs(B)]["scores"]["out_strength"]
    b = adata.uns[Key.uns.hubs(T)]["scores"]["out_strength"]
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
    record = adata.uns[Key.uns.diff_hubs(B, T)]
    pd.testing.assert_frame_equal(record["table"], table)
    params = record["params"]
    assert (params["key_a"], params["key_b"], params["score"], params["mod"]) == (B, T, "out_strength", "rna")
    assert (params["network_a"], params["network_b"]) == (B, T)
    assert len(params["network_digest_a"]) == len(params["network_digest_b"]) == 64
    assert params["network_digest_a"] != params["network_digest_b"]
    assert f"{Key.uns.diff_hubs(B, T)}_params" not in adata.uns


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
        assert record["params"] == {
            "key": "scprint_grn",
            "groups": None,
            "resolution": 1.0,
            "seed": 0,
            "top_k": None,
            "mod": "rna",
            "network": varp_key,
            "group": varp_key.removeprefix("scprint_grn_"),
            "network_digest": record["params"]["network_digest"],
        }
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
@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_results_survive_roundtrip(adata, tmp_path, fmt):
    sp.tl.hubs(adata)
    sp.tl.diff_hubs(adata, key_a=B, key_b=T)
    sp.tl.communities(adata, rng=None)
    path = tmp_path / f"hubs.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's/anndata's format notices, not ours
        getattr(adata, f"write_{fmt}")(path)
        back = ad.read_h5ad(path) if fmt == "h5ad" else ad.read_zarr(path)
    assert (
        back.uns[Key.uns.hubs(B)]["params"]["network_digest"] == adata.uns[Key.uns.hubs(B)]["params"]["network_digest"]
    )
    assert back.uns[f"{T}_communities"]["params"]["seed"] is None
    sp.pl.diff_hubs(back, key_a=B, key_b=T, show=False)  # readers accept the read-back records
    pd.testing.assert_frame_equal(sp.get.hubs(back), sp.get.hubs(adata))
    pd.testing.assert_frame_equal(
        back.uns[f"{B}_vs_{T}_diff_hubs"]["table"], adata.uns[f"{B}_vs_{T}_diff_hubs"]["table"]
    )
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


def test_network_keys_that_cannot_be_stored_are_refused_before_writing():
    adata = make_grn_adata(groups=None, key_added="nets")
    adata.varp["a/b"] = adata.varp["nets"]  # in memory only: write_h5ad would nest it, write_zarr refuses it
    before = adata.copy()
    for call in (sp.tl.hubs, sp.tl.communities):
        with pytest.raises(ValueError, match=r"'a/b_.*cannot be used: it contains '/'"):
            call(adata, key="a/b")
        assert_unchanged(adata, before)
