"""The notebook path on real cells: prepare → embed → denoise → grn → hubs → pl → get → decoupler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import sc_print as scp
from sc_print._keys import Key


@pytest.fixture(scope="module")
def pbmc(shared_data):
    """300 sorted PBMC cells (raw counts, symbols), stratified by cell type, with Cell Ontology ids."""
    import anndata as ad

    from sc_print.ontology import to_ontology

    adata = ad.read_h5ad(shared_data / "pbmc_10x_small_sets" / "sorted_pbmc_reference_2140cells_9types_raw.h5ad")
    gen = np.random.default_rng(0)
    labels = adata.obs["cell_type_sorted"].astype(str)
    keep = np.concatenate([gen.choice(np.flatnonzero(labels == t), 35, replace=False) for t in sorted(labels.unique())])
    adata = adata[np.sort(keep)].copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obs["cell_type"] = adata.obs["cell_type_sorted"].astype(str)
    adata.obs["cell_type_ontology_term_id"] = to_ontology("cell_type", adata.obs["cell_type"])
    return adata


@pytest.fixture(scope="module")
def pbmc_model(pbmc):
    """A tiny ScPrint pretrained for a few steps on those cells (labels: Cell Ontology ids)."""
    import torch

    from sc_print.model import ScPrint

    torch.manual_seed(0)
    train = pbmc.copy()
    ScPrint.setup_anndata(train, labels_keys=["cell_type_ontology_term_id"])
    model = ScPrint(train, size="tiny", max_len=256)
    model.train(max_steps=8, batch_size=32, warmup_steps=2, enable_progress_bar=False)
    return model


@pytest.mark.shared_data
def test_notebook_path_fills_every_slot(pbmc, pbmc_model) -> None:
    import decoupler as dc
    import matplotlib.axes
    import scanpy as sc

    adata = pbmc.copy()
    model = pbmc_model
    scp.pp.prepare(adata, model=model)
    scp.tl.embed(
        adata, model=model, max_len=256, gene_embeddings=True, truth={"cell_type": "cell_type_ontology_term_id"}
    )
    scp.tl.denoise(adata, model=model, genes="hvg", n_genes=300)
    scp.tl.grn(adata, model=model, groupby="cell_type", groups=["bcells", "nk", "monocytes"], n_genes=150)
    scp.tl.hubs(adata, key="scprint_grn")

    # DESIGN §1 slots
    for column in (Key.var.gene_id, Key.var.in_vocab):
        assert column in adata.var
    assert Key.obs.depth in adata.obs
    assert Key.uns.prepare in adata.uns
    assert adata.obsm["X_scprint"].shape == (adata.n_obs, model.net.config.d_model)
    assert "X_scprint_cell_type" in adata.obsm
    assert adata.obs["scprint_pred_cell_type"].dtype.name == "category"
    assert adata.obs["scprint_conf_cell_type"].between(0, 1).all()
    proba = adata.obsm["scprint_proba_cell_type"]
    np.testing.assert_allclose(proba.to_numpy().sum(1), 1.0, rtol=1e-5)
    assert "accuracy" in adata.uns["scprint_embed"]
    assert sp.issparse(adata.layers["scprint_denoised"])
    gene_emb = adata.varm[Key.varm.gene_emb]
    assert gene_emb.shape == (adata.n_vars, model.net.config.d_model)
    assert np.isfinite(gene_emb[adata.var[Key.var.in_vocab].to_numpy()]).any()
    record = adata.uns["scprint_grn"]
    assert record["orientation"] == "query_is_source"
    for group, key in record["varp_keys"].items():
        assert key == f"scprint_grn_{group}"
        assert sp.issparse(adata.varp[key])
        assert adata.varp[key].shape == (adata.n_vars, adata.n_vars)
        assert Key.uns.hubs(key) in adata.uns
        assert Key.var.hub_score(key, "degree") in adata.var

    ax = scp.pl.hubs(adata, key="scprint_grn_bcells", show=False)
    assert isinstance(ax, matplotlib.axes.Axes | list)

    net = scp.get.network(adata, key="scprint_grn_bcells", top_k=30)
    assert list(net.columns) == ["source", "target", "weight"]
    assert not net.duplicated(["source", "target"]).any()
    norm = adata.copy()
    sc.pp.normalize_total(norm)
    sc.pp.log1p(norm)
    dc.mt.ulm(norm, net, tmin=5)
    scores = norm.obsm["score_ulm"]
    assert isinstance(scores, pd.DataFrame)
    assert scores.shape[0] == adata.n_obs
    assert scores.shape[1] > 0
