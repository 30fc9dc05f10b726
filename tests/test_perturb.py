"""In-silico perturbation: ``ScPrint.perturb_cells``, ``sp.tl.perturb``, ``sp.get.perturb``, ``sp.pl.perturb``."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sc_print as sp

FIXTURES = Path(__file__).parent / "data" / "checkpoints"
OPTS = {"max_len": 64, "batch_size": 16, "accelerator": "cpu"}


@pytest.fixture
def cells(toy_model_data) -> ad.AnnData:
    """40 training cells of the toy model (its var_names are Ensembl ids), with a group column."""
    adata = toy_model_data[1][:40].copy()
    adata.obs["group"] = pd.Categorical(np.where(np.arange(40) < 20, "a", "b"))
    return adata


def _expressed_gene(adata: ad.AnnData) -> str:
    """A gene expressed by some but not all cells."""
    x = sparse.csr_matrix(adata.X).toarray()
    frac = (x > 0).mean(0)
    return str(adata.var_names[int(np.argmin(np.abs(frac - 0.5)))])


def _snapshot(adata: ad.AnnData) -> tuple:
    return (adata.obs.copy(), set(adata.obsm), set(adata.uns), adata.X.copy())


def _unchanged(adata: ad.AnnData, snap: tuple) -> None:
    obs, obsm, uns, x = snap
    pd.testing.assert_frame_equal(adata.obs, obs)
    assert set(adata.obsm) == obsm
    assert set(adata.uns) == uns
    assert (adata.X != x).nnz == 0


# ------------------------------------------------------------------------------------------------ invariants
def test_unexpressed_knockout_and_factor_one_change_nothing(toy_model, cells: ad.AnnData) -> None:
    gene = _expressed_gene(cells)
    col = cells.var_names.get_loc(gene)
    off = np.asarray(sparse.csr_matrix(cells.X)[:, col].toarray()).ravel() == 0
    assert off.any()
    assert (~off).any()
    out = toy_model.perturb_cells(cells, genes=gene, **OPTS)
    res = out.results[f"{gene}_ko"]
    # cells not expressing the gene: bit-identical outputs, zero shift
    np.testing.assert_array_equal(res.embedding[off], res.baseline[off])
    assert (res.shift[off] == 0).all()
    assert not res.changed[off].any()
    assert res.changed[~off].all()
    assert (res.shift[~off] > 0).all()
    for label in res.proba:
        np.testing.assert_array_equal(res.proba[label][off], res.proba_baseline[label][off])
    # factor 1: nothing changes anywhere, every effect is exactly zero
    one = toy_model.perturb_cells(cells, genes=gene, kind="overexpress", factor=1.0, **OPTS).results[f"{gene}_oe"]
    np.testing.assert_array_equal(one.embedding, one.baseline)
    assert not one.changed.any()
    assert (one.effects["mean_change"] == 0).all()
    assert (one.effects["frac_up"] == 0).all()
    # without forcing the genes into the context, the baseline is the embedding of sp.tl.embed (same draws)
    plain = toy_model.perturb_cells(cells, genes=gene, force_context=False, **OPTS).results[f"{gene}_ko"]
    ref = toy_model.get_latent_representation(cells, **OPTS)
    np.testing.assert_allclose(plain.baseline, ref, rtol=1e-5, atol=1e-5)


def test_knockout_equals_embedding_of_edited_counts(toy_model, cells: ad.AnnData) -> None:
    """With a context of every gene, a zero knock-out is exactly a cell with that count set to 0."""
    gene = _expressed_gene(cells)
    opts = {**OPTS, "mode": "all"}
    res = toy_model.perturb_cells(cells, genes=[gene], **opts).results[f"{gene}_ko"]
    x = sparse.csr_matrix(cells.X).toarray()
    x[:, cells.var_names.get_loc(gene)] = 0
    edited = ad.AnnData(sparse.csr_matrix(x), obs=cells.obs.copy(), var=cells.var.copy())
    ref = toy_model.get_latent_representation(edited, **opts)
    np.testing.assert_allclose(res.embedding, ref, rtol=1e-4, atol=1e-5)
    # knockout="remove" with a recomputed depth: the cell without that gene at all
    removed = toy_model.perturb_cells(cells, genes=[gene], knockout="remove", **opts).results[f"{gene}_ko"]
    ref_removed = toy_model.get_latent_representation(cells[:, cells.var_names != gene].copy(), **opts)
    changed = removed.changed
    np.testing.assert_allclose(removed.embedding[changed], ref_removed[changed], rtol=1e-4, atol=1e-5)


def test_determinism_order_and_batch(toy_model, cells: ad.AnnData) -> None:
    gene = _expressed_gene(cells)
    a = toy_model.perturb_cells(cells, genes=gene, **OPTS).results[f"{gene}_ko"]
    order = np.random.default_rng(0).permutation(cells.n_obs)
    b = toy_model.perturb_cells(cells[order].copy(), genes=gene, **{**OPTS, "batch_size": 7}).results[f"{gene}_ko"]
    np.testing.assert_allclose(a.embedding[order], b.embedding, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.shift[order], b.shift, atol=1e-5)


def test_force_context_and_overexpression(toy_model, cells: ad.AnnData) -> None:
    gene = _expressed_gene(cells)
    opts = {**OPTS, "max_len": 8}  # shorter than the expressed genes of most cells
    forced = toy_model.perturb_cells(cells, genes=gene, kind="overexpress", factor=10.0, **opts)
    res = forced.results[f"{gene}_oe"]
    assert res.changed.sum() == (sparse.csr_matrix(cells.X)[:, cells.var_names.get_loc(gene)].toarray() > 0).sum()
    q = toy_model.perturb_cells(cells, genes=gene, kind="overexpress", quantile=1.0, **opts).results[f"{gene}_oe"]
    top = sparse.csr_matrix(cells.X)[:, cells.var_names.get_loc(gene)].toarray().max()
    assert q.values == {gene: float(top)}
    assert q.changed.sum() > 0
    assert (q.effects.index != gene).all()
    assert set(q.effects.columns) >= {"mean_change", "log2fc", "frac_up", "frac_down", "pval_adj"}


# ------------------------------------------------------------------------------------------------ sp.tl / get / pl
def test_tl_perturb_writes_and_reads(toy_model, cells: ad.AnnData, tmp_path: Path) -> None:
    gene = _expressed_gene(cells)
    sp.tl.perturb(cells, genes={"ko": [gene]}, model=toy_model, groupby="group", min_group_size=5, **OPTS)
    assert cells.obsm["scprint_perturb_ko"].shape == (cells.n_obs, toy_model.net.config.d_model)
    assert "scprint_perturb_ko_shift" in cells.obs
    assert "scprint_perturb_ko_pred_cell_type" in cells.obs
    record = cells.uns["scprint_perturb"]["ko"]
    assert set(record["effects_by_group"]) == {"a", "b"}
    assert record["label_changes"]["n_cells"].sum() == cells.n_obs
    table = sp.get.perturb(cells, "ko")
    assert set(table["group"]) == {"all", "a", "b"}
    assert {"gene", "log2fc", "pval_adj"} <= set(table.columns)
    # a second perturbation accumulates; the same name again needs overwrite=True
    sp.tl.perturb(cells, genes=gene, kind="overexpress", factor=4, model=toy_model, **OPTS)
    assert set(cells.uns["scprint_perturb"]) == {"ko", f"{gene}_oe"}
    snap = _snapshot(cells)
    with pytest.raises(ValueError, match="overwrite=True"):
        sp.tl.perturb(cells, genes={"ko": [gene]}, model=toy_model, **OPTS)
    _unchanged(cells, snap)
    sp.tl.perturb(cells, genes={"ko": [gene]}, model=toy_model, overwrite=True, groupby="group", **OPTS)
    cells.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad")
    pd.testing.assert_frame_equal(sp.get.perturb(back, "ko"), sp.get.perturb(cells, "ko"), check_dtype=False)
    import matplotlib as mpl

    mpl.use("Agg")
    axes = sp.pl.perturb(cells, "ko", show=False, save=tmp_path / "p.png")
    assert len(axes) == 2
    with pytest.raises(FileExistsError):
        sp.pl.perturb(cells, "ko", show=False, save=tmp_path / "p.png")
    sp.pl.perturb(cells, "ko", kind="bar", group="a", show=False, save=tmp_path / "p.png", overwrite=True)
    with pytest.raises(KeyError, match="No perturbation"):
        sp.get.perturb(cells, "missing")
    with pytest.raises(ValueError, match="Unknown kind"):
        sp.pl.perturb(cells, "ko", kind="pie", show=False)
    with pytest.raises(KeyError, match="No effects for group"):
        sp.pl.perturb(cells, "ko", group="zzz", show=False)
    with pytest.raises(ValueError, match="min_cells"):
        sp.get.perturb(cells, "ko", min_cells=0)
    # the groups partition the cells: per-gene counts and sums add up to the overall table
    wide = table.pivot_table(index="gene", columns="group", values="n_cells", fill_value=0)
    np.testing.assert_array_equal(wide["a"] + wide["b"], wide["all"])
    overall = table[table["group"] == "all"].set_index("gene")
    parts = table[table["group"] != "all"].set_index("gene")
    weighted = (parts["mean_change"] * parts["n_cells"]).groupby(level=0).sum() / wide["all"]
    np.testing.assert_allclose(weighted[overall.index], overall["mean_change"], rtol=1e-6, atol=1e-9)


def test_mudata_and_official_checkpoint(toy_genes) -> None:
    md = pytest.importorskip("mudata")
    model = sp.load_model(FIXTURES / "v2.ckpt")
    genes = [g for g in model.genes if str(g).startswith("ENSG")][:60]
    gen = np.random.default_rng(3)
    x = gen.poisson(2.0, size=(12, len(genes))).astype(np.float32)
    rna = ad.AnnData(sparse.csr_matrix(x), var=pd.DataFrame(index=genes))
    mdata = md.MuData({"rna": rna})
    sp.tl.perturb(mdata, genes=genes[0], model=model, **{**OPTS, "max_len": 32})
    assert f"scprint_perturb_{genes[0]}_ko" in mdata.mod["rna"].obsm
    assert mdata.mod["rna"].uns["scprint_perturb"][f"{genes[0]}_ko"]["summary"]["n_cells_changed"] == int(
        (x[:, 0] > 0).sum()
    )


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"genes": "NOT_A_GENE"}, KeyError, "not in `var_names`"),
        ({"genes": []}, ValueError, "non-empty"),
        ({"genes": [[]]}, ValueError, "empty gene list"),
        ({"genes": "G0", "kind": "overexpress", "factor": 0}, ValueError, "must be > 0"),
        ({"genes": "G0", "kind": "overexpress", "factor": -2}, ValueError, "must be > 0"),
        ({"genes": "G0", "kind": "overexpress", "factor": float("nan")}, ValueError, "finite"),
        ({"genes": "G0", "kind": "overexpress"}, ValueError, "exactly one of"),
        ({"genes": "G0", "factor": 2}, ValueError, "knock-out takes neither"),
        ({"genes": "G0", "kind": "overexpress", "quantile": 1.5}, ValueError, r"\(0, 1\]"),
        ({"genes": "G0", "kind": "silence"}, ValueError, "Unknown kind"),
        ({"genes": "G0", "knockout": "drop"}, ValueError, "Unknown knockout"),
        ({"genes": "G0", "mode": "fixed"}, ValueError, "Unknown mode"),
        ({"genes": [["G0"], ["G0"]]}, ValueError, "named"),
        ({"genes": {"a/b": ["G0"]}}, ValueError, "cannot be used"),
        ({"genes": "G0", "groupby": "nope"}, KeyError, "not a column"),
        ({"genes": "G0", "groupby": "group", "min_group_size": 30}, ValueError, "fewer than min_group_size"),
        ({"genes": "G0", "groupby": "group_nan"}, ValueError, "missing values"),
        ({"genes": "OUTSIDE"}, ValueError, "do not map onto the model vocabulary"),
    ],
)
def test_bad_input_is_refused(toy_model, cells: ad.AnnData, kwargs: dict, error: type, match: str) -> None:
    cells.obs["group_nan"] = pd.Categorical(["a"] * 39 + [np.nan])
    x = sparse.hstack([sparse.csr_matrix(cells.X), np.ones((cells.n_obs, 1), np.float32)], format="csr")
    cells = ad.AnnData(x, obs=cells.obs.copy(), var=pd.DataFrame(index=[*cells.var_names, "OUTSIDE"]))
    kwargs = {k: ([cells.var_names[0]] if v == "G0" else v) if k == "genes" else v for k, v in kwargs.items()}
    if isinstance(kwargs["genes"], list) and kwargs["genes"] and kwargs["genes"][0] == ["G0"]:
        kwargs["genes"] = [[cells.var_names[0]], [cells.var_names[0]]]
    if isinstance(kwargs["genes"], dict):
        kwargs["genes"] = {k: [cells.var_names[0]] for k in kwargs["genes"]}
    snap = _snapshot(cells)
    with pytest.raises(error, match=match):
        sp.tl.perturb(cells, model=toy_model, **kwargs, **OPTS)
    _unchanged(cells, snap)


def test_default_model_readout_and_remove() -> None:
    """The embedded default model; readout genes are measured in every cell; remove leaves non-expressers alone."""
    adata = sp.datasets.example()[:8].copy()
    x = sparse.csr_matrix(adata.X).toarray()
    expressed = (x > 0).sum(0)
    gene = str(adata.var_names[int(np.argmin(np.abs(expressed - 4)))])  # expressed by about half of the cells
    readout = [str(g) for g in adata.var_names[np.argsort(-x.sum(0))[:5]] if g != gene][:3]
    out = sp.load_model("default").perturb_cells(
        adata, genes=gene, knockout="remove", readout_genes=readout, max_len=32, batch_size=4, accelerator="cpu"
    )
    res = out.results[f"{gene}_ko"]
    off = x[:, adata.var_names.get_loc(gene)] == 0
    np.testing.assert_array_equal(res.embedding[off], res.baseline[off])
    assert res.changed[~off].all()
    assert (res.effects.loc[readout, "n_cells"] == adata.n_obs).all()
    assert out.context["readout_genes"] == readout
    with pytest.raises(ValueError, match="raise it"):
        sp.load_model("default").perturb_cells(adata, genes=gene, readout_genes=readout, max_len=2, accelerator="cpu")
    with pytest.raises(KeyError, match="readout_genes"):
        sp.load_model("default").perturb_cells(adata, genes=gene, readout_genes=["NOPE"], accelerator="cpu")


def test_existing_obs_column_is_not_overwritten(toy_model, cells: ad.AnnData) -> None:
    gene = _expressed_gene(cells)
    cells.obs[f"scprint_perturb_{gene}_ko_shift"] = 1.0
    snap = _snapshot(cells)
    with pytest.raises(ValueError, match="already stored"):
        sp.tl.perturb(cells, genes=gene, model=toy_model, **OPTS)
    _unchanged(cells, snap)
    sp.tl.perturb(cells, genes=gene, model=toy_model, overwrite=True, **OPTS)
    assert (cells.obs[f"scprint_perturb_{gene}_ko_shift"] != 1.0).any()


def test_depth_keep_differs_only_where_counts_change(toy_model, cells: ad.AnnData) -> None:
    gene = _expressed_gene(cells)
    name = f"{gene}_ko"
    keep = toy_model.perturb_cells(cells, genes=gene, depth="keep", **OPTS).results[name]
    recompute = toy_model.perturb_cells(cells, genes=gene, **OPTS).results[name]
    np.testing.assert_array_equal(keep.baseline, recompute.baseline)
    # only the depth token differs between the two passes (the baselines are bit-identical), so any difference is
    # its effect; on the tiny toy model that effect can be below allclose's tolerance, depending on its training
    assert not np.array_equal(keep.embedding[keep.changed], recompute.embedding[keep.changed])
    np.testing.assert_array_equal(keep.embedding[~keep.changed], recompute.embedding[~keep.changed])
    with pytest.raises(ValueError, match="Unknown depth"):
        toy_model.perturb_cells(cells, genes=gene, depth="fixed", **OPTS)
