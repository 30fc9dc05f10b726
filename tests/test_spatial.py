"""Spatial functions over squidpy / decoupler: ``sp.tl.niches``, ``regulon_activity``, ``spatial_regulons``,
``sp.pl.spatial``; on the her2st H1 section and the mouse olfactory bulb of ``../shared/data``."""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from packaging.requirements import Requirement
from scipy import sparse
from sklearn.metrics import adjusted_rand_score

import sc_print as sp

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

H1 = "her2st_breast_st/her2st_H1_613spots_raw.h5ad"
MOB = "mouse_ob_st/mouse_ob_st_262spots_raw.h5ad"
TFS = ["ESR1", "FOXA1", "GATA3", "SPDEF", "XBP1", "TFAP2A", "MYC", "JUN", "FOS", "EGR1", "KLF4", "SOX4"]


def _snapshot(adata: ad.AnnData) -> tuple:
    return (
        list(adata.obs.columns),
        sorted(adata.obsm),
        sorted(adata.uns),
        sorted(adata.layers),
        adata.obsm["spatial"].copy() if "spatial" in adata.obsm else None,
    )


def _same(adata: ad.AnnData, snap: tuple) -> bool:
    now = _snapshot(adata)
    coords_equal = (now[4] is None and snap[4] is None) or np.array_equal(now[4], snap[4], equal_nan=True)
    return now[:4] == snap[:4] and coords_equal


def _with_pca(adata: ad.AnnData) -> ad.AnnData:
    norm = adata.copy()
    sc.pp.normalize_total(norm, target_sum=1e4)
    sc.pp.log1p(norm)
    sc.pp.highly_variable_genes(norm, n_top_genes=1000)
    sc.tl.pca(norm, n_comps=20, mask_var="highly_variable", random_state=0)
    adata.obsm["X_pca"] = norm.obsm["X_pca"]
    return adata


def _correlation_network(adata: ad.AnnData, key: str = "corr_net", tfs: list[str] = TFS) -> list[str]:
    """A network in ``.varp[key]``: |Pearson r| on log-normalised counts from each TF to 400 variable genes."""
    norm = adata.copy()
    sc.pp.normalize_total(norm, target_sum=1e4)
    sc.pp.log1p(norm)
    sc.pp.highly_variable_genes(norm, n_top_genes=400)
    genes = list(norm.var_names[norm.var["highly_variable"]])
    tfs = [tf for tf in tfs if tf in adata.var_names]
    cols = adata.var_names.get_indexer(genes)
    X = norm.X[:, cols].toarray()
    Xt = norm.X[:, adata.var_names.get_indexer(tfs)].toarray()
    corr = np.nan_to_num(np.corrcoef(Xt.T, X.T)[: len(tfs), len(tfs) :])
    W = sparse.lil_matrix((adata.n_vars, adata.n_vars))
    for i, tf in enumerate(tfs):
        W[adata.var_names.get_loc(tf), cols] = np.abs(corr[i])
    adata.varp[key] = W.tocsr()
    return tfs


@pytest.fixture(scope="module")
def h1_base(shared_data: Path) -> ad.AnnData:
    path = shared_data / H1
    if not path.exists():
        pytest.skip(f"{path} absent")
    return _with_pca(ad.read_h5ad(path))


@pytest.fixture
def h1(h1_base: ad.AnnData) -> ad.AnnData:
    return h1_base.copy()


# --------------------------------------------------------------------------------------------------- the extra
def test_spatial_extra_is_installed_and_imports():
    """The pins of the ``spatial`` extra (also in ``test``) are what is installed, and squidpy imports."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    spatial = [Requirement(r) for r in extras["spatial"]]
    assert {r.name for r in spatial} <= {Requirement(r).name for r in extras["test"]}
    for req in spatial:
        assert req.specifier.contains(version(req.name), prereleases=True), (req, version(req.name))
    import squidpy

    assert hasattr(squidpy.gr, "calculate_niche")


def test_without_squidpy_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(0)
    adata = ad.AnnData(np.ones((40, 3), dtype=np.float32), obsm={"spatial": rng.normal(size=(40, 2))})
    adata.obsm["X_pca"] = rng.normal(size=(40, 5))
    monkeypatch.setitem(sys.modules, "squidpy", None)
    with pytest.raises(ImportError, match=r'pip install "sc-print\[spatial\]"'):
        sp.tl.niches(adata, use_rep="X_pca", n_niches=2, min_spots=5)
    with pytest.raises(ImportError, match=r'pip install "sc-print\[spatial\]"'):
        sp.tl.spatial_regulons(adata, key="X_pca")
    assert "scprint_niche" not in adata.obs


# --------------------------------------------------------------------------------------------------- niches
@pytest.mark.shared_data
def test_niches_h1(h1: ad.AnnData):
    sp.tl.niches(h1, use_rep="X_pca", n_niches=6, min_spots=5)
    niche = h1.obs["scprint_niche"]
    assert isinstance(niche.dtype, pd.CategoricalDtype)
    assert list(niche.cat.categories) == [str(i) for i in range(6)]
    sizes = h1.uns["scprint_niche"]["sizes"]
    assert sum(sizes.values()) == h1.n_obs
    assert min(sizes.values()) >= 5
    assert list(sizes.values()) == sorted(sizes.values(), reverse=True)  # named by decreasing size
    assert h1.uns["scprint_niche"]["params"]["n_hops"] == 3
    # spatial niches carry the pathologist regions better than chance
    assert adjusted_rand_score(h1.obs["label"], niche) > 0.05
    # neighbouring spots mostly share a niche (spatially coherent)
    again = sp.tl.niches(h1, use_rep="X_pca", n_niches=6, min_spots=5, copy=True)
    np.testing.assert_array_equal(again.obs["scprint_niche"].to_numpy(), niche.to_numpy())


@pytest.mark.shared_data
def test_niches_are_a_function_of_the_data(h1: ad.AnnData):
    """Same spots, embedding, graph and seed -> same niches, whatever else the AnnData holds."""
    a = sp.tl.niches(h1, use_rep="X_pca", n_niches=5, min_spots=5, copy=True)
    other = h1.copy()
    other.obs["unrelated"] = np.arange(other.n_obs)
    other.X = other.X * 0  # the counts are not used: only the embedding and the coordinates
    b = sp.tl.niches(other, use_rep="X_pca", n_niches=5, min_spots=5, copy=True)
    np.testing.assert_array_equal(a.obs["scprint_niche"].to_numpy(), b.obs["scprint_niche"].to_numpy())
    c = sp.tl.niches(h1, use_rep="X_pca", n_niches=5, min_spots=5, seed=1, copy=True)
    assert c.uns["scprint_niche"]["params"]["seed"] == 1


@pytest.mark.shared_data
def test_niches_bad_input_leaves_adata_unchanged(h1: ad.AnnData):
    snap = _snapshot(h1)
    no_coords = h1.copy()
    del no_coords.obsm["spatial"]
    snap_nc = _snapshot(no_coords)
    with pytest.raises(KeyError, match=r"No spot coordinates.*obsm\['spatial'\]"):
        sp.tl.niches(no_coords, use_rep="X_pca")
    assert _same(no_coords, snap_nc)

    nan = h1.copy()
    nan.obsm["spatial"] = nan.obsm["spatial"].copy()
    nan.obsm["spatial"][3, 0] = np.nan
    snap_nan = _snapshot(nan)
    with pytest.raises(ValueError, match=r"1 of 613 spots have missing \(NaN\).*drop them"):
        sp.tl.niches(nan, use_rep="X_pca")
    assert _same(nan, snap_nan)

    with pytest.raises(KeyError, match=r"X_scprint.*run `sp.tl.embed"):
        sp.tl.niches(h1)
    with pytest.raises(ValueError, match="`n_niches` must be at least 2"):
        sp.tl.niches(h1, use_rep="X_pca", n_niches=1)
    bad_emb = h1.copy()
    bad_emb.obsm["X_pca"] = bad_emb.obsm["X_pca"].copy()
    bad_emb.obsm["X_pca"][0, 0] = np.nan
    with pytest.raises(ValueError, match="finite 2-d embedding"):
        sp.tl.niches(bad_emb, use_rep="X_pca")
    with pytest.raises(ValueError, match="Too few spots for 8 niches of at least min_spots=100"):
        sp.tl.niches(h1, use_rep="X_pca", n_niches=8, min_spots=100)
    with pytest.raises(ValueError, match=r"smaller than min_spots=250.*fewer niches"):
        sp.tl.niches(h1, use_rep="X_pca", n_niches=2, min_spots=250)
    with pytest.raises(KeyError, match="library_key='nope'"):
        sp.tl.niches(h1, use_rep="X_pca", library_key="nope")
    assert _same(h1, snap)


# --------------------------------------------------------------------------------------------------- activities
@pytest.mark.shared_data
def test_regulon_activity_is_decoupler_ulm_on_lognormalised(h1: ad.AnnData):
    import decoupler as dc

    tfs = _correlation_network(h1)
    sp.tl.regulon_activity(h1, key="corr_net", top_k=50)
    act = h1.obsm["scprint_regulon_activity"]
    assert isinstance(act, pd.DataFrame)
    assert act.index.equals(h1.obs_names)
    rec = h1.uns["scprint_regulon_activity"]
    assert rec["regulons"] == list(act.columns)
    assert set(act.columns) <= set(tfs)
    assert len(act.columns) >= 5
    assert rec["params"]["method"] == "ulm"
    # the same as decoupler on a log-normalised copy with the same edge table
    norm = h1.copy()
    sc.pp.normalize_total(norm, target_sum=1e4)
    sc.pp.log1p(norm)
    net = sp.get.network(h1, key="corr_net", tf_only=True, top_k=50)
    dc.mt.ulm(norm, net, tmin=5)
    expected = norm.obsm["score_ulm"][act.columns]
    np.testing.assert_allclose(act.to_numpy(), expected.to_numpy(), rtol=1e-3, atol=1e-5)  # float32 copy
    # a denoised-like layer is scored too (here: the counts themselves, so identical)
    h1.layers["counts"] = h1.X.copy()
    sp.tl.regulon_activity(h1, key="corr_net", top_k=50, layer="counts", key_added="act_layer")
    np.testing.assert_allclose(h1.obsm["act_layer"].to_numpy(), act.to_numpy())


@pytest.mark.shared_data
def test_regulon_activity_bad_input_leaves_adata_unchanged(h1: ad.AnnData):
    _correlation_network(h1)
    non_tf = ["KRT5", "ERBB2", "ADIPOQ", "PLIN1", "IGKC"]
    W = sparse.lil_matrix((h1.n_vars, h1.n_vars))
    for g in non_tf:
        W[h1.var_names.get_loc(g), h1.var_names.get_indexer(non_tf)] = 1.0
    h1.varp["no_tf_net"] = W.tocsr()
    snap = _snapshot(h1)
    with pytest.raises(KeyError, match="does_not_exist"):
        sp.tl.regulon_activity(h1, key="does_not_exist")
    with pytest.raises(ValueError, match=r"no edge from a transcription factor.*tf_only=False"):
        sp.tl.regulon_activity(h1, key="no_tf_net")
    with pytest.raises(ValueError, match="tmin=500"):
        sp.tl.regulon_activity(h1, key="corr_net", tmin=500)
    with pytest.raises(ValueError, match="Unknown method 'gsea2'"):
        sp.tl.regulon_activity(h1, key="corr_net", method="gsea2")
    with pytest.raises(KeyError, match="Layer 'nope'"):
        sp.tl.regulon_activity(h1, key="corr_net", layer="nope")
    assert _same(h1, snap)
    assert "scprint_regulon_activity" not in h1.obsm


# --------------------------------------------------------------------------------------------------- Moran's I
@pytest.mark.shared_data
def test_spatial_regulons_ranks_a_spatial_pattern_first(h1: ad.AnnData):
    rng = np.random.default_rng(0)
    x = h1.obsm["spatial"][:, 0]
    h1.obsm["acts"] = pd.DataFrame(
        {"SMOOTH": (x - x.mean()) / x.std(), "NOISE": rng.normal(size=h1.n_obs)}, index=h1.obs_names
    )
    sp.tl.spatial_regulons(h1, key="acts")
    table = h1.uns["scprint_spatial_regulons"]
    assert list(table.columns) == ["regulon", "I", "p", "FDR"]
    assert table["regulon"].tolist() == ["SMOOTH", "NOISE"]
    assert table["I"].iloc[0] > 0.8
    assert table["FDR"].iloc[0] < 1e-10
    assert abs(table["I"].iloc[1]) < 0.1
    assert table["FDR"].iloc[1] > 0.01
    assert (table["FDR"] >= table["p"] - 1e-12).all()


@pytest.mark.shared_data
def test_spatial_regulons_bad_input(h1: ad.AnnData):
    snap = _snapshot(h1)
    with pytest.raises(KeyError, match=r"run `sp.tl.regulon_activity"):
        sp.tl.spatial_regulons(h1)
    h1.obsm["acts"] = pd.DataFrame({"A": np.arange(h1.n_obs, dtype=float)}, index=h1.obs_names)
    del h1.obsm["spatial"]
    with pytest.raises(KeyError, match="No spot coordinates"):
        sp.tl.spatial_regulons(h1, key="acts")
    assert "scprint_spatial_regulons" not in h1.uns
    assert _snapshot(h1)[2] == snap[2]


# --------------------------------------------------------------------------------------------------- plots
@pytest.mark.shared_data
def test_pl_spatial(h1: ad.AnnData, tmp_path: Path):
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    sp.tl.niches(h1, use_rep="X_pca", n_niches=4, min_spots=5)
    h1.obsm["scprint_regulon_activity"] = pd.DataFrame({"GATA3": np.arange(h1.n_obs, dtype=float)}, h1.obs_names)
    snap = _snapshot(h1)
    axes = sp.pl.spatial(h1, color=["scprint_niche", "ERBB2", "GATA3"], show=False, save=tmp_path / "map.png")
    assert len(axes) == 3
    assert all(isinstance(a, Axes) for a in axes)
    assert (tmp_path / "map.png").stat().st_size > 0
    assert _same(h1, snap)  # nothing written (no colours in .uns)
    with pytest.raises(FileExistsError):
        sp.pl.spatial(h1, color="ERBB2", show=False, save=tmp_path / "map.png")
    sp.pl.spatial(h1, color="ERBB2", show=False, save=tmp_path / "map.png", overwrite=True)
    fig, ax = plt.subplots()
    assert sp.pl.spatial(h1, color="scprint_niche", ax=ax, show=False) is ax
    with pytest.raises(KeyError, match="neither an `.obs` column"):
        sp.pl.spatial(h1, color="NOT_A_GENE", show=False)
    plt.close("all")


# --------------------------------------------------------------------------------------------------- mouse
@pytest.mark.shared_data
def test_mouse_bulb_with_the_human_model_is_a_clear_error(shared_data: Path):
    path = shared_data / MOB
    if not path.exists():
        pytest.skip(f"{path} absent")
    mob = ad.read_h5ad(path)
    mob = mob[mob.obs["layer"].notna()].copy()
    snap = _snapshot(mob)
    with pytest.raises(ValueError, match=r"genes are mouse.*default model vocabulary covers human only"):
        sp.pp.prepare(mob)
    with pytest.raises(
        ValueError, match=r"None of the \d+ genes.*maps onto the vocabulary.*model trained on this organism"
    ):
        sp.tl.embed(mob)
    assert _same(mob, snap)
    # the model-independent steps run on the bulb: niches of a PCA embedding, mouse TF regulons, Moran's I
    _with_pca(mob)
    sp.tl.niches(mob, use_rep="X_pca", n_niches=4, coord_type="grid", n_neighs=4, min_spots=5)
    assert adjusted_rand_score(mob.obs["layer"], mob.obs["scprint_niche"]) > 0.2
    _correlation_network(mob, tfs=["Tbr1", "Neurod1", "Sox11", "Egr1", "Fos", "Klf9", "Nfib", "Sox2", "Pax6"])
    sp.tl.regulon_activity(mob, key="corr_net", top_k=50)
    sp.tl.spatial_regulons(mob, coord_type="grid", n_neighs=4)
    assert len(mob.uns["scprint_spatial_regulons"]) == mob.obsm["scprint_regulon_activity"].shape[1] >= 3


# --------------------------------------------------------------------------------------------------- the chain
@pytest.mark.slow
@pytest.mark.shared_data
def test_chain_on_h1_with_the_default_model(h1_base: ad.AnnData):
    """prepare -> embed -> niches -> niche networks -> hubs -> diff_hubs -> regulon activity -> Moran's I."""
    h1 = h1_base[:240].copy()  # the first 240 spots of the section
    sp.pp.prepare(h1)
    sp.tl.embed(h1, max_len=1000)
    sp.tl.niches(h1, n_niches=3, min_spots=10)
    sp.tl.grn(h1, groupby="scprint_niche", genes="hvg", n_genes=200, n_cells=15)
    keys = h1.uns["scprint_grn"]["varp_keys"]
    assert set(keys) == {"0", "1", "2"}
    sp.tl.hubs(h1, key="scprint_grn")
    table = sp.tl.diff_hubs(h1, key_a=keys["0"], key_b=keys["1"], inplace=False)
    assert {"score_a", "score_b", "diff"} <= set(table.columns)
    assert len(table) > 0
    sp.tl.regulon_activity(h1, key="scprint_grn", group="0", top_k=30, tmin=3)
    assert h1.obsm["scprint_regulon_activity"].shape[0] == 240
    sp.tl.spatial_regulons(h1)
    moran = h1.uns["scprint_spatial_regulons"]
    assert moran["I"].is_monotonic_decreasing
    assert moran["FDR"].between(0, 1).all()
