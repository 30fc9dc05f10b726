"""The embedded default model: shipped file, loading, vocabulary, labels, card, forward pass."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from sc_print.model import ScPrint

MAX_MB = 25.0
DATA = Path(__file__).parents[2] / "shared" / "data"


def _folder() -> Path:
    return Path(str(files("sc_print") / "_resources" / "default_model"))


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((_folder() / "card.json").read_text())


@pytest.fixture(scope="module")
def model() -> ScPrint:
    return ScPrint.load(_folder(), accelerator="cpu")


def _toy_counts(genes: list[str], n_cells: int = 6, n_genes: int = 400, seed: int = 0) -> ad.AnnData:
    """Negative-binomial counts over ``n_genes`` vocabulary genes plus two genes the model does not know."""
    rng = np.random.default_rng(seed)
    chosen = list(rng.choice(genes, size=n_genes, replace=False))
    mu = rng.lognormal(-0.5, 1.0, size=n_genes)
    counts = rng.negative_binomial(2.0, 2.0 / (2.0 + mu), size=(n_cells, n_genes)).astype(np.float32)
    counts[:, 0] += 1
    extra = rng.poisson(1.0, size=(n_cells, 2)).astype(np.float32)
    X = sparse.csr_matrix(np.hstack([counts, extra]))
    var = pd.DataFrame(index=[*chosen, "NOT_A_GENE_1", "NOT_A_GENE_2"])
    return ad.AnnData(X=X, var=var, obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]))


def _tokens(model: ScPrint, adata: ad.AnnData, seed: int = 0):
    from sc_print.data import GeneMapper, tokenize_rows

    mapper = GeneMapper(model.vocab.index(adata.var_names.to_numpy(dtype=str)))
    return tokenize_rows(adata.X, mapper, mode="random_expr", max_len=model.module.max_len, seed=seed)


def test_files_are_shipped_and_small():
    folder = _folder()
    for name in ("model.pt", "MODEL_CARD.md", "card.json"):
        assert (folder / name).is_file(), name
    size_mb = (folder / "model.pt").stat().st_size / 2**20
    assert size_mb < MAX_MB


def test_file_loads_with_weights_only(card):
    import hashlib

    path = _folder() / "model.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert "pos_encoder.pe" not in state["state_dict"]  # rebuilt from gene positions at load time
    assert all(v.dtype == torch.float32 for v in state["state_dict"].values() if v.is_floating_point())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["file"]["sha256"]


def test_vocabulary_and_architecture(model, card):
    assert len(model.genes) == card["vocabulary"]["n_genes"]
    assert len(set(model.genes)) == len(model.genes)
    assert all(g.startswith("ENSG") for g in model.genes)
    assert model.organisms == ("NCBITaxon:9606",)
    config = model.module.config
    assert (config.d_model, config.nlayers, config.nhead) == (128, 4, 4)
    assert config.expr_decoder == "zinb"
    assert model.net.gene_encoder.embeddings.weight.shape == (len(model.genes), 128)
    assert model.module.max_len == card["training"]["max_len"]
    assert model.metadata_["name"] == "default"


def test_labels(model, card):
    assert set(model.hierarchies) == {"cell_type", "assay"}
    assert model.label_columns == {"cell_type": "cell_type", "assay": "assay"}
    for name, hierarchy in model.hierarchies.items():
        assert [leaf.split(" ")[0] for leaf in card["labels"][name]["leaves"]] == hierarchy.leaves
        assert hierarchy.n_parents == card["labels"][name]["n_parents"]
    cell_types = model.hierarchies["cell_type"].leaves
    assert all(leaf.startswith("CL:") for leaf in cell_types)
    # B cell, NK cell and CD14 monocyte are transferred with confidence in every training PBMC set
    assert {"CL:0000236", "CL:0000623", "CL:0001054"} <= set(cell_types)
    assays = model.hierarchies["assay"].leaves
    assert all(leaf.startswith("EFO:") for leaf in assays)
    assert {"EFO:0009899", "EFO:0009922", "EFO:0010010"} <= set(assays)  # 10x 3' v2, v3, CEL-seq2


def test_forward_pass_on_toy_counts(model):
    adata = _toy_counts(model.genes)
    tok = _tokens(model, adata)
    assert tok.gene_idx.shape == (adata.n_obs, min(400, model.module.max_len))
    with torch.no_grad():
        out = model.net.eval()(tok.gene_idx, tok.expr, tok.depth)
    assert out.mu.shape == tok.expr.shape
    assert out.theta is not None
    assert out.pi_logits is not None
    assert torch.isfinite(out.mu).all()
    assert (out.mu >= 0).all()
    assert torch.allclose(out.mu.sum(1), tok.expr.sum(1), rtol=1e-3)  # mean scaled to the context total
    for name, hierarchy in model.hierarchies.items():
        assert out.cls_logits[name].shape == (adata.n_obs, hierarchy.n_leaves)
        assert torch.isfinite(out.cls_logits[name]).all()
    emb = model.net.embed(out.cell_tokens)
    assert emb.shape == (adata.n_obs, 128)


def test_load_model_default_is_the_shipped_model(model):
    from sc_print.hub import load_model

    loaded = load_model("default")
    assert loaded.metadata_["name"] == "default"
    assert loaded.genes == model.genes
    a = loaded.net.state_dict()
    b = model.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_card_matches_model(model, card):
    text = (_folder() / "MODEL_CARD.md").read_text()
    n_params = sum(int(v.numel()) for k, v in model.net.state_dict().items() if k != "pos_encoder.pe")
    assert card["architecture"]["n_parameters"] == n_params
    assert card["name"] == "default"
    assert card["training"]["steps"] > 0
    assert "pseudo-labels" in text
    assert "published" in text
    heldout = {row["dataset"] for row in card["data"]["datasets"] if row["split"] == "heldout"}
    assert heldout == {"pbmc_sorted_reference", "sc_dropseq"}


@pytest.mark.shared_data
def test_trained_beats_untrained_on_heldout_cells(model):
    """Denoising loss of the shipped model on held-out sorted PBMCs is below that of its untrained architecture."""
    from sc_print.data import downsample_profile, map_gene_names
    from sc_print.nn import expression_loss

    ref = ad.read_h5ad(DATA / "pbmc_10x_small_sets" / "sorted_pbmc_reference_2140cells_9types_raw.h5ad")
    ref = ref[np.random.default_rng(0).choice(ref.n_obs, size=32, replace=False)]
    ids, _ = map_gene_names(ref.var_names, organism="human")
    keep = (ids != "") & ~pd.Series(ids).duplicated().to_numpy()
    adata = ad.AnnData(X=sparse.csr_matrix(ref.X[:, keep]), var=pd.DataFrame(index=ids[keep]))
    torch.manual_seed(0)
    fresh = ScPrint.from_net(
        config=model.module.config,
        state_dict=None,
        genes=model.genes,
        gene_pos=model.vocab.positions,
        hierarchies=model.hierarchies,
        training={"max_len": model.module.max_len},
    )
    tok = _tokens(model, adata)
    noisy = downsample_profile(tok.expr, 0.6, generator=torch.Generator().manual_seed(1))
    losses = []
    for m in (model, fresh):
        with torch.no_grad():
            out = m.net.eval()(tok.gene_idx, noisy, tok.depth, depth_mult=tok.expr.sum(1), classify=False)
        losses.append(float(expression_loss(tok.expr, out.mu, out.theta, out.pi_logits)))
    assert losses[0] < losses[1]
