from __future__ import annotations

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from _network_fixtures import TF_SYMBOLS, assert_unchanged, make_grn_adata, make_mudata, network_genes
from scipy import sparse

import sc_print as sp
from sc_print._networks import network_keys as _network_keys
from sc_print._tf import is_tf, tf_symbols


@pytest.fixture
def adata() -> ad.AnnData:
    return make_grn_adata()


def _stored_edges(adata: ad.AnnData, varp_key: str, *, transpose: bool = False) -> dict[tuple[str, str], float]:
    m = sparse.coo_matrix(adata.varp[varp_key])
    names = adata.var_names
    rows, cols = (m.col, m.row) if transpose else (m.row, m.col)
    return {(names[r], names[c]): float(w) for r, c, w in zip(rows, cols, m.data, strict=True) if r != c}


# ------------------------------------------------------------------------------------------ TF list
def test_shipped_tf_list():
    human, mouse = tf_symbols("NCBITaxon:9606"), tf_symbols("NCBITaxon:10090")
    assert len(human) > 1500
    assert len(mouse) > 1500
    assert {"SPI1", "PAX5", "GATA3"} <= human
    assert {"Spi1", "Pax5", "Gata3"} <= mouse
    assert is_tf(["SPI1", "spi1", "Spi1", "ACTB", None, np.nan]).tolist() == [True, True, True, False, False, False]
    with pytest.raises(ValueError, match="organism"):
        tf_symbols("NCBITaxon:0")


# ------------------------------------------------------------------------------------------ key resolution
def test_network_keys_record_and_varp(adata):
    assert _network_keys(adata, "scprint_grn") == {"B cell": "scprint_grn_B cell", "T cell": "scprint_grn_T cell"}
    assert _network_keys(adata, "scprint_grn_T cell") == {"T cell": "scprint_grn_T cell"}
    single = make_grn_adata(groups=None)
    assert _network_keys(single, "scprint_grn") == {"all": "scprint_grn"}


def test_network_keys_unknown(adata):
    with pytest.raises(KeyError, match=r"run `sp\.tl\.grn\(adata, \.\.\.\)` first") as err:
        _network_keys(adata, "nope")
    assert "scprint_grn_B cell" in str(err.value)
    assert "'scprint_grn'" in str(err.value)


def test_network_keys_record_pointing_to_missing_varp(adata):
    del adata.varp["scprint_grn_T cell"]
    with pytest.raises(KeyError, match="missing from `.varp`"):
        _network_keys(adata, "scprint_grn")


def test_network_keys_mudata(adata):
    mdata = make_mudata(adata)
    assert _network_keys(mdata, "scprint_grn") == _network_keys(adata, "scprint_grn")
    with pytest.raises(KeyError, match="modality"):
        _network_keys(mdata, "scprint_grn", mod="atac")
    with pytest.raises(TypeError, match="AnnData or a MuData"):
        _network_keys(adata.X, "scprint_grn")


# ------------------------------------------------------------------------------------------ network
def test_network_matches_stored_matrix(adata):
    net = sp.get.network(adata, key="scprint_grn", group="B cell")
    assert list(net.columns) == ["source", "target", "weight"]
    assert net["weight"].dtype == np.float64
    assert all(isinstance(s, str) for s in net["source"])
    assert all(isinstance(t, str) for t in net["target"])
    assert not net.duplicated(["source", "target"]).any()
    assert not (net["source"] == net["target"]).any()
    expected = _stored_edges(adata, "scprint_grn_B cell")
    got = {(s, t): w for s, t, w in net.itertuples(index=False)}
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-6)
    # sorted by source, then weight descending
    assert net["source"].is_monotonic_increasing
    assert all(g["weight"].is_monotonic_decreasing for _, g in net.groupby("source"))
    # the .varp key addresses the same network
    pd.testing.assert_frame_equal(net, sp.get.network(adata, key="scprint_grn_B cell"))


def test_network_self_loops(adata):
    with_loops = sp.get.network(adata, key="scprint_grn_B cell", self_loops=True)
    without = sp.get.network(adata, key="scprint_grn_B cell")
    loops = with_loops[with_loops["source"] == with_loops["target"]]
    assert len(loops) == 5
    assert len(with_loops) == len(without) + 5


def test_network_top_k_and_min_weight(adata):
    full = sp.get.network(adata, key="scprint_grn_B cell")
    top = sp.get.network(adata, key="scprint_grn_B cell", top_k=3)
    assert top.groupby("source").size().max() == 3
    expected = full.sort_values("weight", ascending=False).groupby("source").head(3)
    assert set(zip(top["source"], top["target"], strict=True)) == set(
        zip(expected["source"], expected["target"], strict=True)
    )
    strong = sp.get.network(adata, key="scprint_grn_B cell", min_weight=0.5)
    assert strong["weight"].min() >= 0.5
    assert len(strong) == int((full["weight"] >= 0.5).sum())
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="top_k"):
            sp.get.network(adata, key="scprint_grn_B cell", top_k=bad)


def test_network_orientation(adata):
    key = "scprint_grn_T cell"
    as_stored = sp.get.network(adata, key=key)
    pd.testing.assert_frame_equal(as_stored, sp.get.network(adata, key=key, orientation="query_is_source"))
    flipped = sp.get.network(adata, key=key, orientation="key_is_source")
    expected = _stored_edges(adata, key, transpose=True)
    assert {(s, t): w for s, t, w in flipped.itertuples(index=False)}.keys() == expected.keys()
    assert flipped["source"].is_monotonic_increasing
    # a network stored key_is_source is transposed back for query_is_source
    other = make_grn_adata(orientation="key_is_source")
    back = sp.get.network(other, key=key, orientation="query_is_source")
    assert {(s, t) for s, t, _ in back.itertuples(index=False)} == set(_stored_edges(other, key, transpose=True))
    with pytest.raises(ValueError, match="orientation"):
        sp.get.network(adata, key=key, orientation="source_by_target")


def test_network_bare_varp_matrix(adata):
    # a dense matrix in .varp without an sp.tl.grn record is readable as stored, not transposable
    adata.varp["my_net"] = adata.varp["scprint_grn_B cell"].toarray()
    assert _network_keys(adata, "my_net") == {"my_net": "my_net"}
    pd.testing.assert_frame_equal(
        sp.get.network(adata, key="my_net"), sp.get.network(adata, key="scprint_grn_B cell"), check_exact=False
    )
    with pytest.raises(ValueError, match="orientation .* is unknown"):
        sp.get.network(adata, key="my_net", orientation="key_is_source")


def test_network_tf_only_symbol_column(adata):
    full = sp.get.network(adata, key="scprint_grn_B cell")
    tfs = sp.get.network(adata, key="scprint_grn_B cell", tf_only=True)
    tf_ids = set(adata.var_names[adata.var["symbol"].isin(TF_SYMBOLS)])
    assert set(tfs["source"]) == tf_ids
    assert len(tfs) == int(full["source"].isin(tf_ids).sum())
    # reported with symbols
    by_symbol = sp.get.network(adata, key="scprint_grn_B cell", tf_only=True, gene_symbols="symbol")
    assert set(by_symbol["source"]) == set(TF_SYMBOLS)
    assert set(by_symbol["target"]) <= set(adata.var["symbol"])
    with pytest.raises(KeyError, match="no column 'gene_name'"):
        sp.get.network(adata, key="scprint_grn_B cell", gene_symbols="gene_name")


def test_network_tf_only_other_symbol_sources():
    # symbols as var names
    adata = make_grn_adata(symbols_as_var_names=True)
    del adata.var["symbol"]
    assert set(sp.get.network(adata, key="scprint_grn_B cell", tf_only=True)["source"]) == set(TF_SYMBOLS)
    # cellxgene-style categorical feature_name column, mouse capitalisation
    adata = make_grn_adata()
    adata.var["feature_name"] = pd.Categorical([s.capitalize() for s in adata.var.pop("symbol")])
    sources = sp.get.network(adata, key="scprint_grn_B cell", tf_only=True, gene_symbols="feature_name")["source"]
    assert set(sources) == {s.capitalize() for s in TF_SYMBOLS}


def test_network_duplicate_symbols_are_merged(adata):
    adata.var["symbol"] = adata.var["symbol"].where(~adata.var["symbol"].str.startswith("GENE1"), "GENE1")
    net = sp.get.network(adata, key="scprint_grn_B cell", gene_symbols="symbol")
    assert not net.duplicated(["source", "target"]).any()
    assert not (net["source"] == net["target"]).any()


def test_network_groups(adata):
    with pytest.raises(ValueError, match="choose one with `group=`"):
        sp.get.network(adata, key="scprint_grn")
    before = adata.copy()
    with pytest.raises(KeyError, match=r"Unknown group\(s\) \['NK cell'\]"):
        sp.get.network(adata, key="scprint_grn", group="NK cell")
    with pytest.raises(KeyError, match="sp.tl.grn"):
        sp.get.network(adata, key="scprint_grn_NK cell")
    assert_unchanged(adata, before)
    single = make_grn_adata(groups=None)
    assert len(sp.get.network(single)) > 0


def test_network_mudata(adata):
    mdata = make_mudata(adata)
    pd.testing.assert_frame_equal(
        sp.get.network(mdata, key="scprint_grn_B cell"), sp.get.network(adata, key="scprint_grn_B cell")
    )


def test_network_after_h5ad_roundtrip(adata, tmp_path):
    path = tmp_path / "grn.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert _network_keys(back, "scprint_grn") == _network_keys(adata, "scprint_grn")
    pd.testing.assert_frame_equal(
        sp.get.network(back, key="scprint_grn", group="T cell", orientation="key_is_source"),
        sp.get.network(adata, key="scprint_grn", group="T cell", orientation="key_is_source"),
    )


def test_network_runs_in_decoupler_ulm(adata):
    dc = pytest.importorskip("decoupler")
    net = sp.get.network(adata, key="scprint_grn_B cell", tf_only=True)
    dc.mt.ulm(adata, net, tmin=5)
    scores = adata.obsm["score_ulm"]
    assert isinstance(scores, pd.DataFrame)
    assert scores.shape == (adata.n_obs, len(TF_SYMBOLS))
    assert set(scores.columns) == set(net["source"])
    assert np.isfinite(scores.to_numpy()).all()


# ------------------------------------------------------------------------------------------ graph
def test_graph(adata):
    g = sp.get.graph(adata, key="scprint_grn", group="B cell", gene_symbols="symbol")
    assert isinstance(g, nx.DiGraph)
    net = sp.get.network(adata, key="scprint_grn", group="B cell", gene_symbols="symbol")
    assert g.number_of_edges() == len(net)
    s, t, w = net.iloc[0]
    assert g[s][t]["weight"] == pytest.approx(w)
    assert {n for n, tf in g.nodes(data="is_tf") if tf} == set(TF_SYMBOLS)
    assert g.graph["network"] == "scprint_grn_B cell"
    assert g.graph["group"] == "B cell"
    assert g.graph["orientation"] == "query_is_source"
    ids = sp.get.graph(adata, key="scprint_grn_B cell", top_k=2)
    assert set(ids.nodes) <= set(network_genes(adata, "scprint_grn_B cell"))
    assert max(d for _, d in ids.out_degree()) == 2
    # is_tf found through .var["symbol"] while nodes are var names
    assert sum(tf for _, tf in ids.nodes(data="is_tf")) == len(TF_SYMBOLS)


# ------------------------------------------------------------------------------------------ hubs
def test_get_hubs_missing(adata):
    before = adata.copy()
    with pytest.raises(KeyError, match=r"sp\.tl\.hubs\(adata, key='scprint_grn'\)"):
        sp.get.hubs(adata)
    assert_unchanged(adata, before)


def test_get_hubs_tidy(adata):
    sp.tl.hubs(adata, scores=("degree", "out_strength"))
    tidy = sp.get.hubs(adata)
    assert list(tidy.columns) == ["network", "group", "gene", "score", "value"]
    assert set(tidy["group"]) == {"B cell", "T cell"}
    assert set(tidy["score"]) == {"degree", "out_strength"}
    n_genes = len(network_genes(adata, "scprint_grn_B cell"))
    b = tidy[tidy["group"] == "B cell"]
    assert len(b) == 2 * n_genes
    assert (b["network"] == "scprint_grn_B cell").all()
    gene = b["gene"].iloc[0]
    stored = adata.uns["scprint_grn_B cell_hubs"]["scores"].loc[gene, "degree"]
    assert b[(b["gene"] == gene) & (b["score"] == "degree")]["value"].item() == stored
    only_t = sp.get.hubs(adata, key="scprint_grn", group="T cell")
    assert set(only_t["group"]) == {"T cell"}
    pd.testing.assert_frame_equal(only_t, sp.get.hubs(adata, key="scprint_grn_T cell"))


def test_network_sums_duplicate_entries(adata):
    # a CSR matrix with a repeated (row, col) entry: scipy semantics sum them, pairs stay unique
    m = sparse.csr_matrix(adata.varp["scprint_grn_B cell"])
    r = int(np.flatnonzero(np.diff(m.indptr))[0])
    start, end = m.indptr[r], m.indptr[r + 1]
    c = int(next(col for col in m.indices[start:end] if col != r))
    data = np.insert(m.data, end, np.float32(0.5))
    indices = np.insert(m.indices, end, c)
    indptr = m.indptr.copy()
    indptr[r + 1 :] += 1
    doubled = sparse.csr_matrix((data, indices, indptr), shape=m.shape)
    assert not doubled.has_canonical_format
    adata.varp["scprint_grn_B cell"] = doubled
    net = sp.get.network(adata, key="scprint_grn_B cell")
    assert not net.duplicated(["source", "target"]).any()
    w = net[(net["source"] == adata.var_names[r]) & (net["target"] == adata.var_names[c])]["weight"].item()
    assert w == pytest.approx(float(m[r, c]) + 0.5)


def test_get_hubs_refuses_scores_of_a_changed_network(adata):
    sp.tl.hubs(adata, scores="degree")
    adata.varp["scprint_grn_B cell"] = adata.varp["scprint_grn_B cell"] * 2  # e.g. a new sp.tl.grn run
    with pytest.raises(ValueError, match=r"different version of network 'scprint_grn_B cell'.*sp\.tl\.hubs"):
        sp.get.hubs(adata, key="scprint_grn")
    # the other network is unchanged and still readable; a new sp.tl.hubs run makes B readable again
    assert set(sp.get.hubs(adata, key="scprint_grn_T cell")["group"]) == {"T cell"}
    sp.tl.hubs(adata, key="scprint_grn_B cell", scores="degree")
    assert set(sp.get.hubs(adata)["group"]) == {"B cell", "T cell"}


def test_get_hubs_reads_the_bare_table_of_0_1_0(adata):
    sp.tl.hubs(adata, scores="degree")
    new = sp.get.hubs(adata)
    for varp_key in ("scprint_grn_B cell", "scprint_grn_T cell"):  # sc_print 0.1.0 stored the bare table
        adata.uns[f"{varp_key}_hubs"] = adata.uns[f"{varp_key}_hubs"]["scores"]
    pd.testing.assert_frame_equal(sp.get.hubs(adata), new)
    adata.uns["scprint_grn_B cell_hubs"] = {"something": 1}
    with pytest.raises(KeyError, match="no 'scores' table"):
        sp.get.hubs(adata)


def test_groups_stored_under_safe_names_are_found_by_their_label():
    adata = make_grn_adata(groups=("NK_T", "B cell"))
    record = adata.uns["scprint_grn"]
    record["group_names"] = {"NK_T": "NK/T", "B cell": "B cell"}  # as sp.tl.grn records a mapped label
    by_label = sp.get.network(adata, key="scprint_grn", group="NK/T")
    pd.testing.assert_frame_equal(by_label, sp.get.network(adata, key="scprint_grn", group="NK_T"))
    sp.tl.hubs(adata, groups=["NK/T", "NK_T"], scores="degree")  # both names of one network: scored once
    tidy = sp.get.hubs(adata, group="NK/T")
    assert set(tidy["group"]) == {"NK/T"}
    assert set(tidy["network"]) == {"scprint_grn_NK_T"}
    assert adata.uns["scprint_grn_NK_T_hubs"]["params"]["group"] == "NK/T"
    with pytest.raises(KeyError, match=r"available groups: \['NK/T', 'B cell'\]"):
        sp.get.network(adata, key="scprint_grn", group="NK-T")
