"""ScPrint.finetune: new heads, lineage, save/load, calibrated abstention in sp.tl.embed, bad input."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pandas as pd
import pytest
import torch

import sc_print as sp

FAST = {"max_steps": 3, "batch_size": 32, "warmup_steps": 1, "max_len": 64, "probe_steps": 5}


def _toy_data(genes: pd.DataFrame, n: int = 200, seed: int = 42):
    """Raw counts of three separable cell types in two batches (as ``toy_counts_adata``)."""
    import anndata as ad
    from scipy import sparse

    gen = np.random.default_rng(seed)
    cell_type = gen.integers(3, size=n)
    batch = gen.integers(2, size=n)
    means = np.tile(gen.lognormal(-1.0, 1.2, size=len(genes)), (3, 1))
    for t in range(3):
        means[t, t * 30 : (t + 1) * 30] *= 8.0
    mu = means[cell_type] * gen.lognormal(0, 0.4, size=n)[:, None] * (1.0 + 0.3 * batch[:, None])
    counts = gen.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(np.float32)
    counts[counts.sum(1) == 0, 0] = 1.0
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(cell_type, categories=["B cell", "T cell", "monocyte"]),
            "batch": pd.Categorical.from_codes(batch, categories=["batch_a", "batch_b"]),
        },
        index=[f"cell_{i:03d}" for i in range(n)],
    )
    return ad.AnnData(sparse.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes.index.astype(str)))


@pytest.fixture(scope="module")
def toy_data(toy_genes):
    return _toy_data(toy_genes)


@pytest.fixture(scope="module")
def finetuned(toy_model, toy_data):
    base = copy.deepcopy(toy_model)
    before = {k: v.clone() for k, v in base.net.state_dict().items()}
    data = toy_data.copy()
    data.obs["line"] = data.obs["cell_type"].map({"B cell": "L1", "T cell": "L2", "monocyte": "L3"}).astype(str)
    ft = base.finetune(data, labels_keys="line", batch_key="batch", heldout_fraction=0.2, **FAST)
    return base, before, ft, data


def _snapshot(adata) -> dict:
    return {
        "X": adata.X.toarray().copy(),
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "uns": sorted(adata.uns.keys()),
        "obsm": sorted(adata.obsm.keys()),
    }


def _same(adata, snap: dict) -> None:
    np.testing.assert_array_equal(adata.X.toarray(), snap["X"])
    pd.testing.assert_frame_equal(adata.obs, snap["obs"])
    pd.testing.assert_frame_equal(adata.var, snap["var"])
    assert sorted(adata.uns.keys()) == snap["uns"]
    assert sorted(adata.obsm.keys()) == snap["obsm"]


# ---------------------------------------------------------------------------------------------- the new model
def test_finetune_returns_new_model_and_leaves_base(finetuned):
    base, before, ft, _ = finetuned
    assert ft is not base
    assert ft.module is not base.module
    for key, value in base.net.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert "line" not in base.net.config.labels
    assert list(ft.net.config.labels) == ["cell_type", "line"]  # base label kept, new head appended
    assert ft.label_names("line") == ["L1", "L2", "L3"]
    assert ft.is_trained_
    assert ft.module.batch_adversary is None  # training-time part, not kept


def test_finetune_lineage(finetuned):
    base, _, ft, data = finetuned
    record = ft.metadata_["finetune"]
    assert record["base_model"]["name"] == base.metadata_.get("name", "custom")
    assert len(record["base_model"]["sha256"]) == 64
    assert record["base_model"]["sha256_of"].startswith("weights")  # built in memory: no file checksum
    assert record["data"]["n_cells"] == data.n_obs
    assert record["data"]["n_genes"] == data.n_vars
    assert record["data"]["n_train_cells"] + record["data"]["n_heldout_cells"] == data.n_obs
    assert set(record["data"]["labels"]["line"]) == {"L1", "L2", "L3"}
    assert record["labels"]["line"]["classes"] == ["L1", "L2", "L3"]
    assert record["steps"] == FAST["max_steps"]
    assert {"train_loss", "classification_train", "batch_adversary_train", "denoise_train"} <= set(record["losses"])
    assert record["train"] == "all"
    assert {"transformer.blocks.0", "transformer.blocks.1", "gene_encoder"} <= set(record["trainable"])
    # linear probe of the new head before fine-tuning, its loss recorded
    probe = record["probe"]["losses"]
    assert probe["line read-out"][1] < probe["line read-out"][0]
    assert len(probe["line"]) == 2
    # the new head pools the output gene tokens (the default head="pooled")
    assert record["head"] == "pooled"
    assert ft.net.config.pooled_labels == ["line"]
    assert ft.net.cls_decoders["line"].pool is not None
    # with a read-out of the context expression by default
    assert record["expression_readout"] is True
    assert ft.net.config.readout_labels == ["line"]
    assert ft.net.cls_decoders["line"].readout is not None
    # the training context is recorded and is what the model is embedded with by default
    assert ft.metadata_["context"] == {"mode": "top_expr", "max_len": FAST["max_len"]}
    assert ft.embedding_context() == ("top_expr", FAST["max_len"])
    assert ft.embedding_context("random_expr") == ("random_expr", 2000)
    assert ft.module.context == "top_expr"


def test_finetune_save_load_roundtrip(finetuned, tmp_path):
    _, _, ft, _ = finetuned
    ft.save(tmp_path / "ft")
    loaded = sp.model.ScPrint.load(tmp_path / "ft")
    assert loaded.metadata_["finetune"] == ft.metadata_["finetune"]
    assert loaded.metadata_["calibration"]["line"]["min_confidence"] == ft.calibration("line")["min_confidence"]
    assert loaded.label_names("line") == ft.label_names("line")
    assert loaded.embedding_context() == ft.embedding_context()
    assert loaded.module.context == "top_expr"
    for key, value in ft.net.state_dict().items():
        torch.testing.assert_close(loaded.net.state_dict()[key], value.cpu())


def test_embed_writes_user_labels(finetuned, toy_data):
    _, _, ft, _ = finetuned
    query = toy_data[:40].copy()
    sp.tl.embed(query, model=ft, max_len=64, min_confidence=0)
    pred = query.obs["scprint_pred_line"]
    assert set(pred.cat.categories) <= {"L1", "L2", "L3"}
    assert query.obs["scprint_conf_line"].between(0, 1).all()
    assert list(query.obsm["scprint_proba_line"].columns) == ["L1", "L2", "L3"]
    assert query.uns["scprint_embed"]["abstention"]["line"]["n_unknown"] == 0


def test_calibration_recorded_and_applied(finetuned, toy_data):
    _, _, ft, _ = finetuned
    cal = ft.calibration("line")
    assert 0 <= cal["min_confidence"] < 1
    assert cal["n_cells"] > 0
    assert sum(b["n_cells"] for b in cal["bins"]) == cal["n_cells"]
    assert cal["max_novelty"] > 0
    assert len(cal["novelty"]["means"]) == 3
    query = toy_data[:40].copy()
    sp.tl.embed(query, model=ft, max_len=64)
    info = query.uns["scprint_embed"]["abstention"]["line"]
    assert info["source"] == "calibrated"
    assert info["novelty_test"]
    assert info["min_confidence"] == cal["min_confidence"]
    unknown = query.obs["scprint_pred_line"] == "unknown"
    assert int(unknown.sum()) == info["n_unknown"]
    conf = query.obs["scprint_conf_line"]
    assert (conf[~unknown] >= cal["min_confidence"]).all()


def test_min_confidence_one_abstains_everywhere(finetuned, toy_data):
    _, _, ft, _ = finetuned
    query = toy_data[:20].copy()
    sp.tl.embed(query, model=ft, max_len=64, min_confidence=1.0)
    pred = query.obs["scprint_pred_line"]
    below = (query.obs["scprint_conf_line"] < 1.0).to_numpy()
    assert below.any()
    # a cell abstains when its confidence is below the threshold: with 1.0, every cell but the (float32-)saturated
    np.testing.assert_array_equal((pred == "unknown").to_numpy(), below)
    assert "unknown" in pred.cat.categories
    assert query.obs["scprint_pred_line_id"].eq("unknown").to_numpy()[below].all()
    assert query.obs["scprint_conf_line"].notna().all()  # confidence still written
    assert query.uns["scprint_embed"]["abstention"]["line"]["source"] == "user"


@pytest.mark.parametrize("value", [-0.1, 1.5, "high", True])
def test_min_confidence_bad_value(finetuned, toy_data, value):
    _, _, ft, _ = finetuned
    query = toy_data[:10].copy()
    snap = _snapshot(query)
    with pytest.raises(ValueError, match="min_confidence"):
        sp.tl.embed(query, model=ft, max_len=64, min_confidence=value)
    _same(query, snap)


def test_abstain_novelty_flags_far_cells(finetuned):
    _, _, ft, _ = finetuned
    cal = ft.calibration("line")
    k = next(i for i, m in enumerate(cal["novelty"]["means"]) if m is not None)
    mean = np.asarray(cal["novelty"]["means"][k])
    proba = np.full((2, 3), 0.01)
    proba[:, k] = 0.98
    tokens = np.stack([mean, mean + 100.0])
    mask, info = ft.abstain("line", proba, tokens)
    assert mask.tolist() == [False, True]
    assert info["n_novel"] == 1


def test_query_with_unseen_labels_is_reported(finetuned, toy_data, caplog):
    _, _, ft, _ = finetuned
    query = toy_data[:30].copy()
    query.obs["truth"] = ["L1"] * 10 + ["never_seen"] * 20
    with caplog.at_level(logging.WARNING):
        sp.tl.embed(query, model=ft, max_len=64, truth={"line": "truth"})
    acc = query.uns["scprint_embed"]["accuracy"]["line"]
    assert acc["unseen_labels"] == {"never_seen": 20}
    assert "never saw" in caplog.text


# ---------------------------------------------------------------------------------------------- options
def test_ontology_labels_get_hierarchy_and_existing_head_is_refit(toy_model, toy_data):
    data = toy_data.copy()
    data.obs["cell_type"] = data.obs["cell_type"].map(
        {"B cell": "CL:0000236", "T cell": "CL:0000084", "monocyte": "CL:0000576"}
    )
    ft = copy.deepcopy(toy_model).finetune(data, labels_keys="cell_type", heldout_fraction=0, **FAST)
    assert list(ft.net.config.labels) == ["cell_type"]  # re-fitted, not duplicated
    assert ft.hierarchies["cell_type"].n_parents > 0  # Cell Ontology parents: hierarchical loss
    assert ft.metadata_["calibration"] == {}  # nothing held out, nothing calibrated


def test_token_head_is_scprints_classifier(toy_model, toy_data):
    ft = copy.deepcopy(toy_model).finetune(
        toy_data.copy(),
        labels_keys="cell_type",
        head="token",
        expression_readout=False,
        heldout_fraction=0,
        **FAST,
    )
    assert ft.net.config.pooled_labels == []
    assert ft.net.config.readout_labels == []
    assert ft.net.cls_decoders["cell_type"].pool is None
    assert ft.net.cls_decoders["cell_type"].readout is None
    assert ft.metadata_["finetune"]["head"] == "token"
    assert ft.metadata_["finetune"]["expression_readout"] is False


def test_expression_readout_is_fitted_by_the_probe(toy_model, toy_data):
    data = toy_data.copy()
    data.obs["line"] = data.obs["cell_type"].astype(str)
    ft = copy.deepcopy(toy_model).finetune(
        data, labels_keys="line", expression_readout=True, heldout_fraction=0, **FAST
    )
    assert ft.net.config.readout_labels == ["line"]
    assert ft.metadata_["finetune"]["expression_readout"] is True
    readout = ft.net.cls_decoders["line"].readout
    assert torch.count_nonzero(readout.weight) > 0  # zero at init, fitted by the probe
    assert not readout.weight.requires_grad  # fitted to convergence, then frozen in the training that follows
    losses = ft.metadata_["finetune"]["probe"]["losses"]
    assert losses["line read-out"][1] < losses["line read-out"][0]
    assert losses["line"][0] < 0.5 * losses["line read-out"][0]  # the rest of the head starts from the regression
    data.obs["line"] = data.obs["line"].where(data.obs["cell_type"].astype(str) != "B cell", "B")  # renamed class
    again = copy.deepcopy(toy_model).finetune(
        data, labels_keys="line", expression_readout=True, heldout_fraction=0, **{**FAST, "max_steps": 0}
    )
    assert ft.net.cls_decoders["line"].readout is readout  # the first model is not touched
    assert again.net.cls_decoders["line"].readout.weight.shape == readout.weight.shape
    _assert_alone_equals_full(ft, toy_data, "line")  # the read-out is a function of the cell's own context
    with pytest.raises(TypeError, match="expression_readout"):
        toy_model.finetune(toy_data, labels_keys="cell_type", expression_readout="yes", **FAST)


def test_fit_readout_is_scikit_learn_logistic_regression() -> None:
    """Each leaf's read-out is the one-vs-rest L2 logistic regression of scikit-learn with the same C."""
    from sklearn.linear_model import LogisticRegression

    from sc_print.model._probe import fit_readout
    from sc_print.nn import ExpressionReadout

    gen = np.random.default_rng(0)
    n, n_genes, n_context, n_classes = 150, 10, 5, 3
    target = torch.as_tensor(gen.integers(n_classes, size=n))
    # each cell shows its own genes, as a context does (absent genes are zeros of the dense design)
    gene_idx = torch.as_tensor(np.stack([gen.permutation(n_genes)[:n_context] for _ in range(n)]))
    signal = (gene_idx.numpy() % n_classes) == target.numpy()[:, None]
    expr = torch.as_tensor(gen.poisson(2.0 + 4.0 * signal) + 1.0).float()
    readout = ExpressionReadout(n_genes, n_classes)
    missing = torch.cat([target, torch.full((5,), -1)])  # unknown cells are left out
    losses = fit_readout(
        readout, torch.cat([gene_idx, gene_idx[:5]]), torch.cat([expr, expr[:5]]), missing, None, c=0.5
    )
    assert losses[1] < losses[0]
    x = np.zeros((n, n_genes))
    np.put_along_axis(x, gene_idx.numpy(), ExpressionReadout.values(expr).numpy(), axis=1)
    for k in range(n_classes):
        clf = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x, (target.numpy() == k).astype(int))
        # the same decision function; the weights up to the slow direction shared with the bias (all genes
        # together: every context holds n_context genes)
        logits = readout(gene_idx, expr)[:, k].detach().numpy()
        np.testing.assert_allclose(logits, clf.decision_function(x), atol=5e-3)
        np.testing.assert_allclose(readout.weight[:, k].detach().numpy(), clf.coef_[0], atol=3e-3)


def test_second_finetune_keeps_the_first_head(finetuned, toy_data):
    """Fine-tuning a fine-tuned model on a new label keeps its pooled / read-out head as trained."""
    _, _, ft, _ = finetuned
    first = {k: v.clone() for k, v in ft.net.cls_decoders["line"].state_dict().items()}
    data = toy_data.copy()
    data.obs["group"] = np.where(data.obs["cell_type"].astype(str) == "T cell", "T", "other")
    again = copy.deepcopy(ft).finetune(
        data, labels_keys="group", train="heads", heldout_fraction=0, **{**FAST, "max_steps": 0}
    )
    assert again.net.config.pooled_labels == ["line", "group"]
    kept = again.net.cls_decoders["line"].state_dict()
    for key, value in first.items():
        torch.testing.assert_close(kept[key], value)


def _assert_alone_equals_full(ft, toy_data, label: str) -> None:
    """One cell embedded alone gets the probabilities it gets inside the shuffled full object (batch size 7)."""
    import anndata as ad

    one = toy_data[3:4].copy()
    sp.tl.embed(one, model=ft, labels=[label], min_confidence=0)
    shuffled = toy_data[np.random.default_rng(0).permutation(toy_data.n_obs)]
    full = ad.AnnData(shuffled.X.copy(), obs=shuffled.obs.copy(), var=shuffled.var.copy())
    sp.tl.embed(full, model=ft, labels=[label], batch_size=7, min_confidence=0)
    name = toy_data.obs_names[3]
    np.testing.assert_allclose(
        one.obsm[f"scprint_proba_{label}"].to_numpy()[0],
        full.obsm[f"scprint_proba_{label}"].loc[name].to_numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_pooled_head_answers_do_not_depend_on_the_other_cells(finetuned, toy_data):
    _, _, ft, _ = finetuned
    _assert_alone_equals_full(ft, toy_data, "line")


def test_pooled_probe_keeps_at_most_max_cells(toy_model, toy_data):
    from sc_print.model._probe import fit_heads

    ft = copy.deepcopy(toy_model).finetune(toy_data.copy(), labels_keys="cell_type", heldout_fraction=0, **FAST)
    codes = {"cell_type": ft.label_hierarchy("cell_type").encode(toy_data.obs["cell_type"].astype(str).to_numpy())}
    seen = {}
    embed_cells = ft.embed_cells

    def recording(adata, **kwargs):
        seen.update(kwargs)
        return embed_cells(adata, **kwargs)

    ft.embed_cells = recording
    losses = fit_heads(ft, toy_data, ["cell_type"], codes, steps=80, lr=3e-3, seed=0, batch_size=50, max_cells=50)
    assert seen["gene_outputs"] is True
    assert len(seen["indices"]) == 50 == len(np.unique(seen["indices"]))
    assert losses["cell_type"][1] < losses["cell_type"][0]


def test_train_heads_freezes_trunk(toy_model, toy_data):
    base = copy.deepcopy(toy_model)
    data = toy_data.copy()
    ft = base.finetune(data, labels_keys="cell_type", train="heads", heldout_fraction=0, **FAST)
    for key, value in base.net.state_dict().items():
        if key.startswith("transformer."):
            torch.testing.assert_close(ft.net.state_dict()[key], value)
    assert ft.metadata_["finetune"]["ssl_scale"] == 0.0
    assert ft.metadata_["finetune"]["trainable"] == ["cls_decoders"]


def test_finetune_split_is_seeded_and_stratified(toy_data):
    from sc_print.model._finetune import _split

    labels = toy_data.obs[["cell_type"]].astype(str)
    a, b, c = _split(labels, 0.2, 3), _split(labels, 0.2, 3), _split(labels, 0.2, 4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for value in labels["cell_type"].unique():  # every class held out in proportion
        sel = labels["cell_type"].to_numpy() == value
        assert a[sel].sum() == round(0.2 * sel.sum())


def test_finetune_resumes_from_checkpoint(toy_model, toy_data, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    opts = {**FAST, "max_steps": 2}
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=2, save_top_k=-1)
    copy.deepcopy(toy_model).finetune(toy_data, labels_keys="cell_type", heldout_fraction=0, callbacks=[ckpt], **opts)
    file = next(tmp_path.glob("step=2*.ckpt"))
    opts["max_steps"] = 3
    resumed = copy.deepcopy(toy_model).finetune(
        toy_data, labels_keys="cell_type", heldout_fraction=0, ckpt_path=str(file), **opts
    )
    assert resumed.metadata_["finetune"]["steps"] == 3


# ---------------------------------------------------------------------------------------------- bad input
def test_missing_label_column(toy_model, toy_data):
    snap = _snapshot(toy_data)
    with pytest.raises(KeyError, match="not_there"):
        toy_model.finetune(toy_data, labels_keys="not_there", **FAST)
    with pytest.raises(KeyError, match="Batch column"):
        toy_model.finetune(toy_data, labels_keys="cell_type", batch_key="nope", **FAST)
    _same(toy_data, snap)


def test_all_nan_labels(toy_model, toy_data):
    data = toy_data.copy()
    data.obs["empty"] = np.nan
    snap = _snapshot(data)
    with pytest.raises(ValueError, match="no usable label"):
        toy_model.finetune(data, labels_keys="empty", **FAST)
    _same(data, snap)


def test_single_class(toy_model, toy_data):
    data = toy_data.copy()
    data.obs["one"] = "A"
    with pytest.raises(ValueError, match="at least two"):
        toy_model.finetune(data, labels_keys="one", **FAST)


def test_rare_classes_warned_and_ignored(toy_model, toy_data, caplog):
    data = toy_data.copy()
    data.obs["lab"] = data.obs["cell_type"].astype(str)
    data.obs.iloc[:2, data.obs.columns.get_loc("lab")] = "rare"
    snap = _snapshot(data)
    with caplog.at_level(logging.WARNING):
        ft = copy.deepcopy(toy_model).finetune(data, labels_keys="lab", min_cells_per_class=5, **FAST)
    assert "fewer than min_cells_per_class=5" in caplog.text
    assert "rare" not in ft.label_names("lab")
    _same(data, snap)


def test_too_few_cells_per_class_everywhere(toy_model, toy_data):
    data = toy_data[:12].copy()
    with pytest.raises(ValueError, match="min_cells_per_class"):
        toy_model.finetune(data, labels_keys="cell_type", min_cells_per_class=10, **FAST)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train": "some"}, "Unknown train"),
        ({"n_layers": 9}, "n_layers"),
        ({"heldout_fraction": 0.95}, "heldout_fraction"),
        ({"train": "heads", "batch_key": "batch"}, "train='heads'"),
        ({"labels_keys": []}, "at least one"),
        ({"noise": 1.5}, "noise"),
        ({"context": "fixed"}, "Unknown context"),
        ({"probe_steps": -1}, "probe_steps"),
        ({"head": "mlp"}, "Unknown head"),
        ({"deep_scale": -1.0}, "deep_scale"),
        ({"deep_scale": float("nan")}, "deep_scale"),
    ],
)
def test_bad_options(toy_model, toy_data, kwargs, match):
    opts = {"labels_keys": "cell_type", **FAST, **kwargs}
    with pytest.raises(ValueError, match=match):
        toy_model.finetune(toy_data, **opts)


def test_embed_uses_the_recorded_context(finetuned, toy_data):
    _, _, ft, _ = finetuned
    query = toy_data[:20].copy()
    sp.tl.embed(query, model=ft, labels=["line"], batch_size=8)
    context = query.uns["scprint_embed"]["context"]
    assert context["mode"] == "top_expr"
    assert context["n_genes"] == FAST["max_len"]
    explicit = toy_data[:20].copy()
    sp.tl.embed(explicit, model=ft, labels=["line"], mode="top_expr", max_len=FAST["max_len"], batch_size=20)
    np.testing.assert_allclose(explicit.obsm["X_scprint"], query.obsm["X_scprint"], rtol=1e-5, atol=1e-5)


def test_standardise_head_sees_standardised_tokens():
    from sc_print.model._probe import standardise_head
    from sc_print.nn import ClsDecoder

    gen = torch.Generator().manual_seed(0)
    tokens = 5.0 + 0.1 * torch.randn(300, 16, generator=gen)  # a large shared part, small cell-specific one
    head = ClsDecoder(16, 3, layers=[16], dropout=0.0)
    standardise_head(head, tokens.mean(0), tokens.std(0), seed=0)
    hidden = head.decoder[0](tokens)
    torch.testing.assert_close(hidden.mean(0), torch.zeros(16), atol=1e-4, rtol=0)
    # a rotation of the standardised tokens: the total variance is kept
    torch.testing.assert_close(hidden.var(0).sum(), torch.tensor(16.0), atol=1e-3, rtol=1e-3)
    linear = ClsDecoder(16, 3, layers=[], dropout=0.0)
    standardise_head(linear, tokens.mean(0), tokens.std(0), seed=0)
    assert torch.count_nonzero(linear(tokens)) == 0  # a linear head starts at zero logits


def test_reserved_label_name(toy_model, toy_data):
    data = toy_data.copy()
    data.obs["cell"] = data.obs["cell_type"]
    with pytest.raises(ValueError, match="'cell' or 'depth'"):
        toy_model.finetune(data, labels_keys="cell", **FAST)


# ---------------------------------------------------------------------------------------------- the default model
def test_default_model_calibration_shipped_without_touching_weights():
    import hashlib
    import json
    from pathlib import Path

    folder = Path(sp.__file__).parent / "_resources" / "default_model"
    card = json.loads((folder / "card.json").read_text())
    assert hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest() == card["file"]["sha256"]
    model = sp.load_model("default")
    for label in ("cell_type", "assay"):
        cal = model.calibration(label)
        assert 0 < cal["min_confidence"] < 1
        assert cal["max_novelty"] > 0
        assert sum(b["n_cells"] for b in cal["bins"]) == cal["n_cells"]


def test_default_model_abstains_on_bundled_cell_lines():
    """PBMC cell types are not claimed for lung-cancer cell lines (the demo's data)."""
    adata = sp.datasets.example()[:16].copy()
    sp.tl.embed(adata, labels=["cell_type"], batch_size=16)
    assert (adata.obs["scprint_pred_cell_type"] == "unknown").all()
    info = adata.uns["scprint_embed"]["abstention"]["cell_type"]
    assert info["n_unknown"] == 16
    assert adata.obs["scprint_conf_cell_type"].notna().all()


def test_binned_accuracy_reads_the_reliability_table():
    from sc_print.model._calibration import binned_accuracy, calibration_bins

    conf = np.array([0.15, 0.15, 0.55, 0.55, 0.95, 0.95, 0.95, 1.0])
    correct = np.array([0, 0, 1, 0, 1, 1, 1, 1], dtype=bool)
    bins = calibration_bins(conf, correct)
    np.testing.assert_allclose(binned_accuracy(bins, np.array([0.12, 0.5, 0.99, 1.0])), [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(binned_accuracy(bins, np.array([0.35])), [0.0])  # empty bin: nearest filled one
    assert np.isnan(binned_accuracy([], np.array([0.5]))).all()


def test_default_model_reports_what_its_confident_assay_calls_are_worth():
    """The assay head calls the Drop-seq cell lines CEL-seq2 confidently; the record says what that is worth."""
    adata = sp.datasets.example()[:16].copy()
    sp.tl.embed(adata, labels=["assay"], batch_size=16)
    info = adata.uns["scprint_embed"]["abstention"]["assay"]
    kept = info["n_unknown"] < adata.n_obs
    assert not kept or info["expected_accuracy"] < 0.7


@pytest.fixture(scope="module")
def finetuned_hvg(toy_model, toy_data):
    data = toy_data.copy()
    ft = copy.deepcopy(toy_model).finetune(data, labels_keys="cell_type", context="hvg", heldout_fraction=0.2, **FAST)
    return ft, data


def test_hvg_context_records_the_reference_panel(finetuned_hvg):
    import anndata as ad

    from sc_print.data import hvg_positions, load_counts

    ft, data = finetuned_hvg
    context = ft.metadata_["context"]
    assert context["mode"] == "fixed"
    panel = ft.context_panel()
    assert len(panel) == context["max_len"] == FAST["max_len"]
    # the panel is seurat_v3 on the training cells (the held-out calibration cells excluded)
    held = ft.metadata_["finetune"]["data"]["n_heldout_cells"]
    assert held > 0
    assert ft.module.context == "fixed"
    assert [ft.genes[i] for i in ft.module.context_genes] == panel
    from sc_print.model._finetune import _split

    held_mask = _split(pd.DataFrame({"cell_type": data.obs["cell_type"].astype(str).to_numpy()}), 0.2, 0)
    assert held_mask.sum() == held
    train = data[~held_mask]
    inputs = load_counts(train, ft.vocab, layer=None, chunk_size=64)
    pos = hvg_positions(inputs.X, inputs.mapping, FAST["max_len"], chunk_size=64)
    assert [ft.genes[i] for i in inputs.mapping.mapper.vocab_idx[pos]] == panel
    # embedding uses the panel, whatever other cells are in the object
    one = data[:1].copy()
    sp.tl.embed(one, model=ft, labels=["cell_type"])
    full = ad.AnnData(data.X.copy(), obs=data.obs.copy(), var=data.var.copy())
    sp.tl.embed(full, model=ft, labels=["cell_type"], batch_size=16)
    assert one.uns["scprint_embed"]["context"]["mode"] == "fixed"
    assert len(one.uns["scprint_embed"]["context"]["genes"]) == len(panel)
    np.testing.assert_allclose(one.obsm["X_scprint"][0], full.obsm["X_scprint"][0], rtol=1e-5, atol=1e-5)


def test_hvg_context_survives_save_load(finetuned_hvg, tmp_path):
    ft, data = finetuned_hvg
    ft.save(tmp_path / "ft")
    loaded = sp.model.ScPrint.load(tmp_path / "ft")
    assert loaded.context_panel() == ft.context_panel()
    assert loaded.module.context_genes == ft.module.context_genes
    a, b = data[:10].copy(), data[:10].copy()
    sp.tl.embed(a, model=ft, labels=["cell_type"])
    sp.tl.embed(b, model=loaded, labels=["cell_type"])
    np.testing.assert_allclose(a.obsm["X_scprint"], b.obsm["X_scprint"], rtol=1e-5, atol=1e-5)


def test_hvg_context_query_missing_panel_genes(finetuned_hvg, caplog):
    ft, data = finetuned_hvg
    panel = set(ft.context_panel())
    gene_ids = np.asarray(ft.genes)
    col_ids = data.var_names.astype(str)
    in_panel = np.asarray([g in panel for g in col_ids])
    if not in_panel.any():  # var_names are symbols: map them through the vocabulary
        in_panel = np.isin(gene_ids[ft.vocab.index(col_ids).clip(0)], list(panel)) & (ft.vocab.index(col_ids) >= 0)
    part = data[:10, ~in_panel | (np.cumsum(in_panel) > 5)].copy()
    with caplog.at_level(logging.WARNING, logger="sc_print"):
        sp.tl.embed(part, model=ft, labels=["cell_type"])
    assert "not measured" in caplog.text
    assert len(part.uns["scprint_embed"]["context"]["genes"]) == len(panel) - 5
    none = data[:10, ~in_panel].copy()
    with pytest.raises(ValueError, match="context panel"):
        sp.tl.embed(none, model=ft, labels=["cell_type"])


def test_module_fixed_context_needs_genes(toy_model):
    from sc_print.model import ScPrintModule

    config = toy_model.net.config.to_dict()
    with pytest.raises(ValueError, match="context_genes"):
        ScPrintModule(config, context="fixed")
    with pytest.raises(ValueError, match="context_genes"):
        ScPrintModule(config, context="top_expr", context_genes=[0, 1])


def test_readout_head_is_deeply_supervised(toy_model):
    """With a read-out, the classification loss adds that of the logits without it, times ``deep_scale``."""
    from sc_print.model import ScPrintModule
    from sc_print.ontology import hierarchical_classification_loss

    config = toy_model.net.config.to_dict()
    config.update(labels={"line": 3}, pooled_labels=["line"], readout_labels=["line"])
    torch.manual_seed(0)
    module = ScPrintModule(config, deep_scale=0.0)
    with torch.no_grad():
        module.net.cls_decoders["line"].readout.weight.normal_()
    module._label_lookup = {"line": torch.arange(3)}
    gen = torch.Generator().manual_seed(0)
    gene_idx = torch.randint(config["n_genes"], (6, 16), generator=gen)
    expr = torch.randint(0, 9, (6, 16), generator=gen).float() + 1
    codes = torch.tensor([0, 1, 2, 0, 1, 2])
    out = module.net(gene_idx, expr, expr.sum(-1))
    inputs = {"out": out, "expr": expr, "labels": {"line": codes}}
    without = module.loss({}, inputs, {}).extra_metrics["classification"]
    module.deep_scale = 0.5
    with_deep = module.loss({}, inputs, {}).extra_metrics["classification"]
    parents = torch.zeros((0, 3), dtype=torch.bool)
    deep = hierarchical_classification_loss(out.cls_deep_logits["line"], codes, parents)
    torch.testing.assert_close(with_deep - without, 0.5 * deep)
    assert not torch.allclose(out.cls_deep_logits["line"], out.cls_logits["line"])  # the read-out is left out


def test_deep_scale_is_recorded_and_saved(toy_model, toy_data, tmp_path):
    ft = copy.deepcopy(toy_model).finetune(toy_data, labels_keys="cell_type", deep_scale=0.5, **FAST)
    assert ft.module.deep_scale == 0.5
    assert ft.metadata_["finetune"]["deep_scale"] == 0.5
    assert "cell_type" in ft.net.config.readout_labels  # what deep_scale acts on
    ft.save(tmp_path / "ft")
    assert sp.model.ScPrint.load(tmp_path / "ft").module.deep_scale == 0.5  # a training option, kept for resuming


def test_deep_scale_without_readout_is_reported(toy_model, toy_data, caplog):
    with caplog.at_level(logging.WARNING, logger="sc_print"):
        toy_model.finetune(
            toy_data, labels_keys="cell_type", deep_scale=1.0, expression_readout=False, **{**FAST, "max_steps": 0}
        )
    assert "deep_scale" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sc_print"):
        ft = toy_model.finetune(toy_data, labels_keys="cell_type", expression_readout=False, **{**FAST, "max_steps": 0})
    assert "deep_scale" not in caplog.text  # the default is not the user's choice
    assert ft.metadata_["finetune"]["deep_scale"] == 1.0
