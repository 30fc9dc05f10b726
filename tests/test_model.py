"""Tests of the scvi-tools model: registration, training, save/load, resuming, weighted sampling, bad input."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from scipy import sparse

from sc_print.model import REGISTRY_KEYS, ScPrint, ScPrintDataSplitter

TINY = {"size": "tiny", "max_len": 64, "dropout": 0.0}
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def _tokens(model: ScPrint, n_cells: int = 4, n_genes: int = 20, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    gene_idx = torch.stack([torch.randperm(len(model.genes), generator=gen)[:n_genes] for _ in range(n_cells)])
    expr = torch.poisson(torch.full((n_cells, n_genes), 2.0), generator=gen) + 1.0
    return gene_idx, expr, expr.sum(1) * 3


def _outputs(model: ScPrint, tokens: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    net = model.net.eval()
    with torch.no_grad():
        out = net(*tokens)
    return {
        "cell_tokens": out.cell_tokens,
        "mu": out.mu,
        "theta": out.theta,
        "pi_logits": out.pi_logits,
        **{f"logits/{k}": v for k, v in out.cls_logits.items()},
    }


# ---------------------------------------------------------------------------------------------------- train / save / load


def test_train_save_load(toy_counts_adata: ad.AnnData, tmp_path: Path) -> None:
    adata = toy_counts_adata
    ScPrint.setup_anndata(adata, labels_keys=["cell_type"], batch_key="batch")
    torch.manual_seed(0)
    model = ScPrint(adata, **TINY)
    assert len(model.genes) == adata.n_vars
    assert model.genes == sorted(adata.var_names)
    assert model.net.token_names == ["depth", "cell", "cell_type"]
    assert model.net.config.labels == {"cell_type": 3}
    model.train(max_steps=4, batch_size=50, warmup_steps=2, **QUIET)
    assert model.is_trained_
    assert not model.module.training  # back in eval mode after training
    assert model.trainer.global_step == 4
    for key in ("train_loss", "denoise_train", "generate_train", "classification_train", "dissimilarity_train"):
        assert key in model.history
        assert np.isfinite(np.asarray(model.history[key], dtype=float)).all()

    model.save(tmp_path / "model")
    file = tmp_path / "model" / "model.pt"
    assert file.is_file()
    state = torch.load(file, map_location="cpu", weights_only=True)  # plain containers and tensors only
    assert state["genes"] == model.genes
    assert state["config"] == model.module.config.to_dict()
    saved = set(state["state_dict"])
    assert saved <= set(model.net.state_dict())
    assert set(model.net.state_dict()) - saved <= {"pos_encoder.pe"}  # may be rebuilt from gene_pos on load
    assert state["setup_args"]["labels_keys"] == ["cell_type"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(tmp_path / "model")
    model.save(tmp_path / "model", overwrite=True)

    tokens = _tokens(model)
    before = _outputs(model, tokens)
    for source in (tmp_path / "model", file):
        loaded = ScPrint.load(source, accelerator="cpu")
        assert loaded.genes == model.genes
        assert loaded.module.config == model.module.config
        assert list(loaded.hierarchies) == ["cell_type"]
        assert loaded.label_columns == {"cell_type": "cell_type"}
        assert loaded.module.max_len == 64
        after = _outputs(loaded, tokens)
        assert set(after) == set(before)
        for key, value in before.items():
            torch.testing.assert_close(after[key], value, rtol=0, atol=0, msg=key)
    with pytest.raises(FileNotFoundError, match="No saved sc_print model"):
        ScPrint.load(tmp_path / "nothing_here")


def test_load_with_adata_trains_further(toy_counts_adata: ad.AnnData, tmp_path: Path) -> None:
    adata = toy_counts_adata
    ScPrint.setup_anndata(adata, labels_keys=["cell_type"])
    torch.manual_seed(0)
    model = ScPrint(adata, **TINY)
    model.train(max_steps=2, batch_size=50, warmup_steps=1, **QUIET)
    model.save(tmp_path / "m")
    fresh = adata.copy()
    loaded = ScPrint.load(tmp_path / "m", adata=fresh, accelerator="cpu")
    # the data mapping of the attached AnnData is the one of the original model
    torch.testing.assert_close(loaded.module._u_vocab, model.module._u_vocab)
    torch.testing.assert_close(loaded.module._col_to_u, model.module._col_to_u)
    assert not loaded.module.training

    modes: list[bool] = []

    class _Mode(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            modes.append(pl_module.module.net.training)

    before = {k: v.clone() for k, v in loaded.net.state_dict().items()}
    loaded.train(max_steps=2, batch_size=50, warmup_steps=1, callbacks=[_Mode()], **QUIET)
    assert modes == [True, True]  # a loaded model (eval mode) trains in training mode
    changed = [k for k, v in loaded.net.state_dict().items() if not torch.equal(v, before[k])]
    assert "transformer.blocks.0.mixer.Wqkv.weight" in changed


def test_saved_model_outputs_are_identical(toy_model: ScPrint, tmp_path: Path) -> None:
    toy_model.save(tmp_path / "toy")
    loaded = ScPrint.load(tmp_path / "toy", accelerator="cpu")
    tokens = _tokens(toy_model, n_cells=6, n_genes=40, seed=3)
    before, after = _outputs(toy_model, tokens), _outputs(loaded, tokens)
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0, msg=key)
    for key, value in toy_model.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[key], value), key


# ---------------------------------------------------------------------------------------------------- no data loss on save


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_save_never_overwrites_without_overwrite(toy_counts_adata: ad.AnnData, tmp_path: Path) -> None:
    adata = toy_counts_adata
    ScPrint.setup_anndata(adata, labels_keys=["cell_type"])
    model = ScPrint(adata, **TINY)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "adata.h5ad").write_bytes(b"the user's own data")  # written by someone else
    with pytest.raises(FileExistsError, match=r"adata.h5ad already exists; pass overwrite=True"):
        model.save(folder, save_anndata=True)
    # every target is checked before any is written: model.pt was not created either
    assert _files(folder) == {"adata.h5ad": b"the user's own data"}
    model.save(folder)  # without save_anndata only model.pt is written, next to the user's file
    assert _files(folder)["adata.h5ad"] == b"the user's own data"
    before = _files(folder)
    with pytest.raises(FileExistsError, match="model.pt"):
        model.save(folder)
    with pytest.raises(FileExistsError, match=r"model.pt, .*adata.h5ad already exist"):
        model.save(folder, save_anndata=True)
    assert _files(folder) == before
    model.save(folder, save_anndata=True, overwrite=True)
    assert ad.read_h5ad(folder / "adata.h5ad").shape == adata.shape
    assert sorted(p.name for p in folder.iterdir()) == ["adata.h5ad", "model.pt"]  # no temporary files left
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "model.pt").stat().st_mode & 0o777 == 0o666 & ~umask  # the usual permissions, not private


def test_failed_save_leaves_nothing_behind(
    toy_counts_adata: ad.AnnData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adata = toy_counts_adata
    ScPrint.setup_anndata(adata)
    model = ScPrint(adata, **TINY)

    def broken(self: ad.AnnData, filename: object, **kwargs: object) -> None:
        Path(str(filename)).write_bytes(b"half")
        msg = "disk full"
        raise OSError(msg)

    monkeypatch.setattr(ad.AnnData, "write_h5ad", broken)
    fresh = tmp_path / "new"
    with pytest.raises(OSError, match="disk full"):
        model.save(fresh, save_anndata=True)
    assert not fresh.exists()  # the folder it created is removed again
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "model.pt").write_bytes(b"old model")
    (kept / "adata.h5ad").write_bytes(b"old data")
    with pytest.raises(OSError, match="disk full"):
        model.save(kept, save_anndata=True, overwrite=True)
    assert _files(kept) == {"adata.h5ad": b"old data", "model.pt": b"old model"}  # untouched, no temp files


def test_save_rejects_bad_targets_and_options(toy_model: ScPrint, tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        toy_model.save(a_file)
    with pytest.raises(ValueError, match="save_anndata=True too"):
        toy_model.save(tmp_path / "m", compression="gzip")
    toy_model.save(tmp_path / "m")
    bare = ScPrint.load(tmp_path / "m", accelerator="cpu")  # no AnnData attached
    with pytest.raises(ValueError, match="no AnnData attached"):
        bare.save(tmp_path / "m2", save_anndata=True)
    assert not (tmp_path / "m2").exists()
    with pytest.raises(TypeError, match="does not support"):
        ScPrint.load(tmp_path / "m", prefix="run1_")


# ---------------------------------------------------------------------------------------------------- trained or not


def test_random_weights_say_they_are_untrained(toy_counts_adata: ad.AnnData, tmp_path: Path) -> None:
    from sc_print.nn import ScPrintConfig

    genes = sorted(toy_counts_adata.var_names)
    config = ScPrintConfig.preset("tiny", n_genes=len(genes))
    random = ScPrint.from_net(config=config, state_dict=None, genes=genes)
    assert random.is_trained_ is False
    with pytest.warns(UserWarning, match="random weights"):
        random._check_if_trained(warn=True)
    with pytest.raises(RuntimeError, match="random weights"):
        random._check_if_trained(warn=False)
    random.save(tmp_path / "random")
    assert ScPrint.load(tmp_path / "random", accelerator="cpu").is_trained_ is False  # the flag is saved
    weights = ScPrint.from_net(config=config, state_dict=random.net.state_dict(), genes=genes)
    assert weights.is_trained_ is True  # given weights count as trained
    assert ScPrint.from_net(config=config, state_dict=None, genes=genes, is_trained=True).is_trained_
    # a model built on data and saved before training stays untrained; after training it is trained
    ScPrint.setup_anndata(toy_counts_adata)
    model = ScPrint(toy_counts_adata, **TINY)
    model.save(tmp_path / "before")
    assert ScPrint.load(tmp_path / "before", accelerator="cpu").is_trained_ is False
    # files of sc_print 0.1.0 have no flag: they hold trained weights
    state = torch.load(tmp_path / "before" / "model.pt", weights_only=True)
    del state["is_trained"]
    torch.save(state, tmp_path / "old.pt")
    assert ScPrint.load(tmp_path / "old.pt", accelerator="cpu").is_trained_ is True


def test_size_presets_come_from_one_place(toy_counts_adata: ad.AnnData) -> None:
    from sc_print.nn import PRESETS, ScPrintConfig

    ScPrint.setup_anndata(toy_counts_adata)
    for size in PRESETS:
        model = ScPrint(toy_counts_adata, size=size, max_len=64) if size != "large" else None
        if model is not None:
            expected = ScPrintConfig.preset(size, n_genes=toy_counts_adata.n_vars)
            assert {k: getattr(model.module.config, k) for k in PRESETS[size]} == PRESETS[size]
            assert model.module.config.layers_cls == expected.layers_cls
    wider = ScPrint(toy_counts_adata, size="tiny", d_model=48, max_len=64)
    assert (wider.module.config.d_model, wider.module.config.layers_cls) == (48, [48])
    assert ScPrintConfig.preset("tiny", n_genes=3, d_model=48).layers_cls == [48]
    assert ScPrintConfig.preset("tiny", n_genes=3, d_model=None).d_model == 32
    with pytest.raises(ValueError, match="Unknown size preset 'huge'"):
        ScPrint(toy_counts_adata, size="huge")


# ---------------------------------------------------------------------------------------------------- devices


def test_load_uses_the_device_policy(toy_model: ScPrint, tmp_path: Path) -> None:
    toy_model.save(tmp_path / "m")
    model = ScPrint.load(tmp_path / "m", accelerator="cpu", device=0)
    assert next(model.net.parameters()).device == torch.device("cpu")
    assert next(ScPrint.load(tmp_path / "m", device="cpu").net.parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="no device index 3"):
        ScPrint.load(tmp_path / "m", accelerator="cpu", device=3)
    with pytest.raises(ValueError, match="contradicts"):
        ScPrint.load(tmp_path / "m", accelerator="cpu", device="cuda:0")
    with pytest.raises(ValueError, match="Unknown accelerator"):
        ScPrint.load(tmp_path / "m", accelerator="tpu")
    # the device is checked before the file is looked at
    with pytest.raises(ValueError, match="no device index 3"):
        ScPrint.load(tmp_path / "absent", accelerator="cpu", device=3)


# ---------------------------------------------------------------------------------------------------- resume


class _StepRecorder(Callback):
    """Record the global step and a weight when training starts, and the number of optimiser steps run."""

    def __init__(self) -> None:
        self.start_step: int | None = None
        self.start_weight: torch.Tensor | None = None
        self.n_batches = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_step = trainer.global_step
        self.start_weight = pl_module.module.net.transformer.blocks[0].mixer.Wqkv.weight.detach().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.n_batches += 1


def test_resume_from_a_lightning_checkpoint(
    toy_counts_adata: ad.AnnData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scvi

    # with checkpointing on, scvi-tools adds its own SaveCheckpoint under logging_dir: keep it in tmp_path
    monkeypatch.setattr(scvi.settings, "logging_dir", tmp_path / "scvi_log")
    adata = toy_counts_adata
    ScPrint.setup_anndata(adata, labels_keys=["cell_type"])
    torch.manual_seed(0)
    model = ScPrint(adata, **TINY)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=3, save_top_k=-1)
    model.train(max_steps=3, batch_size=50, warmup_steps=1, callbacks=[checkpoint], **QUIET)
    file = tmp_path / "ckpt" / "step=3.ckpt"
    assert file.is_file()
    # our Lightning checkpoints hold plain containers only: Lightning's default torch.load(weights_only=True) reads them
    raw = torch.load(file, map_location="cpu", weights_only=True)
    assert raw["global_step"] == 3
    saved_weight = raw["state_dict"]["module.net.transformer.blocks.0.mixer.Wqkv.weight"]
    torch.testing.assert_close(saved_weight, model.net.transformer.blocks[0].mixer.Wqkv.weight.detach())

    torch.manual_seed(1)  # a different initialisation: the checkpoint must replace it
    resumed = ScPrint(adata, **TINY)
    assert not torch.equal(resumed.net.transformer.blocks[0].mixer.Wqkv.weight.detach(), saved_weight)
    recorder = _StepRecorder()
    resumed.train(max_steps=5, batch_size=50, warmup_steps=1, ckpt_path=str(file), callbacks=[recorder], **QUIET)
    assert recorder.start_step == 3
    torch.testing.assert_close(recorder.start_weight, saved_weight)
    assert recorder.n_batches == 2  # only the missing steps were run
    assert resumed.trainer.global_step == 5


# ---------------------------------------------------------------------------------------------------- weighted sampling


def test_weighted_sampler_draws_only_weighted_cells(toy_counts_adata: ad.AnnData) -> None:
    adata = toy_counts_adata
    ScPrint.setup_anndata(adata, labels_keys=["cell_type"])
    model = ScPrint(adata, **TINY)
    weights = np.zeros(adata.n_obs)
    chosen = [3, 10, 57, 120]
    weights[chosen] = [1.0, 1.0, 2.0, 4.0]
    splitter = ScPrintDataSplitter(model.adata_manager, train_size=1.0, batch_size=16, cell_weights=weights)
    splitter.setup()
    batches = list(splitter.train_dataloader())
    assert len(batches) == int(np.ceil(adata.n_obs / 16))  # one epoch = as many cells as the training split
    x = np.asarray(adata.X.toarray())
    allowed = {x[i].tobytes() for i in chosen}
    drawn = []
    for batch in batches:
        xb = np.asarray(batch[REGISTRY_KEYS.X_KEY], dtype=np.float32)
        assert xb.shape[1] == adata.n_vars
        assert xb.shape[0] <= 16
        drawn += [row.tobytes() for row in xb]
    assert set(drawn) <= allowed
    assert len(drawn) == adata.n_obs
    # the most weighted cell is drawn most often
    counts = pd.Series(drawn).value_counts()
    assert counts.index[0] == x[120].tobytes()
    # without weights: the usual shuffled loader over every cell
    plain = ScPrintDataSplitter(model.adata_manager, train_size=1.0, batch_size=16)
    plain.setup()
    rows = np.concatenate([np.asarray(b[REGISTRY_KEYS.X_KEY]) for b in plain.train_dataloader()])
    assert rows.shape == x.shape


def test_train_uses_label_weights(toy_counts_adata: ad.AnnData, monkeypatch: pytest.MonkeyPatch) -> None:
    import sc_print.model._model as model_module

    calls: list[tuple[pd.DataFrame, float]] = []
    original = model_module.label_weights

    def spy(labels: pd.DataFrame, *, scaler: float) -> np.ndarray:
        calls.append((labels, scaler))
        return original(labels, scaler=scaler)

    monkeypatch.setattr(model_module, "label_weights", spy)
    adata = toy_counts_adata
    ScPrint.setup_anndata(adata, labels_keys=["cell_type"])
    model = ScPrint(adata, **TINY)
    model.train(max_steps=2, batch_size=50, warmup_steps=1, weight_scaler=20.0, **QUIET)
    assert len(calls) == 1
    labels, scaler = calls[0]
    assert scaler == 20.0
    assert list(labels.columns) == ["cell_type"]
    np.testing.assert_array_equal(labels["cell_type"].to_numpy(), adata.obs["cell_type"].astype(str).to_numpy())
    assert model.trainer.global_step == 2
    model.train(max_steps=1, batch_size=50, warmup_steps=1, weighted_sampling=False, **QUIET)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("options", "labelled", "expected"),
    [
        ({}, True, {"denoise", "generate", "classification", "dissimilarity"}),
        (
            {"generate_scale": 0.0, "contrastive_scale": 0.5},
            True,
            {"denoise", "classification", "dissimilarity", "contrastive"},
        ),
        ({}, False, {"denoise", "generate"}),
    ],
)
def test_module_loss_components(toy_counts_adata: ad.AnnData, options: dict, *, labelled: bool, expected: set) -> None:
    from scvi.dataloaders import AnnDataLoader

    adata = toy_counts_adata
    # official column name, ontology ids and an "unknown" class ignored by the loss
    ids = {"B cell": "CL:0000236", "T cell": "CL:0000084", "monocyte": "unknown"}
    adata.obs["cell_type_ontology_term_id"] = adata.obs["cell_type"].map(ids).astype("category")
    ScPrint.setup_anndata(adata, labels_keys=["cell_type_ontology_term_id"] if labelled else None)
    torch.manual_seed(0)
    model = ScPrint(adata, **TINY, **options)
    if labelled:
        assert model.label_columns == {"cell_type": "cell_type_ontology_term_id"}
    batch = next(iter(AnnDataLoader(model.adata_manager, batch_size=64)))
    model.module.train()
    _, _, loss = model.module(batch)
    metrics = {k: v.item() for k, v in loss.extra_metrics.items()}
    assert set(metrics) == expected
    m = model.module
    total = metrics["denoise"] + m.generate_scale * metrics.get("generate", 0.0)
    total += m.class_scale * metrics.get("classification", 0.0) + m.dissimilarity_scale * metrics.get(
        "dissimilarity", 0.0
    )
    total += m.contrastive_scale * metrics.get("contrastive", 0.0)
    assert loss.loss.item() == pytest.approx(total, rel=1e-5)
    if labelled:
        assert metrics["classification"] > 0
    assert loss.reconstruction_loss["reconstruction_loss"].shape == (64,)
    loss.loss.backward()
    grads = {name: p.grad for name, p in model.net.named_parameters()}
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    assert grads["transformer.blocks.0.mixer.Wqkv.weight"].abs().sum() > 0
    if labelled:
        assert grads["cls_decoders.cell_type.out_layer.weight"].abs().sum() > 0


def test_warmup_then_plateau_schedule(toy_counts_adata: ad.AnnData) -> None:
    """Linear warmup over ``warmup_steps``; plateau reductions then persist (the warmup never resets them)."""
    from sc_print.model import ScPrintTrainingPlan

    ScPrint.setup_anndata(toy_counts_adata)
    model = ScPrint(toy_counts_adata, **TINY)
    plan = ScPrintTrainingPlan(model.module, lr=1e-3, warmup_steps=3, lr_factor=0.5, lr_patience=0)
    [optimizer], [warmup, plateau] = plan.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert warmup["interval"] == "step"
    assert plateau["interval"] == "epoch"
    assert plateau["monitor"] == "train_loss"
    rates = []
    for epoch_loss in (1.0, 2.0, 3.0):  # the loss rises: every epoch after the first reduces the rate
        for _ in range(4):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            warmup["scheduler"].step()
        plateau["scheduler"].step(epoch_loss)
    np.testing.assert_allclose(rates[:4], [1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3])
    np.testing.assert_allclose(rates[4:8], [1e-3] * 4)
    np.testing.assert_allclose(rates[8:], [5e-4] * 4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)


# ---------------------------------------------------------------------------------------------------- bad input


def _dense(m) -> np.ndarray:
    return np.asarray(m.toarray() if sparse.issparse(m) else m)


def _snapshot(adata: ad.AnnData) -> dict:
    return {
        "X": _dense(adata.X).copy(),
        "obs": adata.obs.copy(deep=True),
        "var": adata.var.copy(deep=True),
        "uns": copy.deepcopy(dict(adata.uns)),
        "layers": {k: _dense(v).copy() for k, v in adata.layers.items()},
        "obsm": {k: np.asarray(v).copy() for k, v in adata.obsm.items()},
        "raw": None if adata.raw is None else _dense(adata.raw.X).copy(),
    }


def _assert_unchanged(adata: ad.AnnData, snap: dict) -> None:
    np.testing.assert_array_equal(_dense(adata.X), snap["X"])
    pd.testing.assert_frame_equal(adata.obs, snap["obs"])
    pd.testing.assert_frame_equal(adata.var, snap["var"])
    assert set(adata.uns) == set(snap["uns"])
    for key, value in snap["uns"].items():
        assert adata.uns[key] == value
    assert set(adata.layers) == set(snap["layers"])
    for key, value in snap["layers"].items():
        np.testing.assert_array_equal(_dense(adata.layers[key]), value)
    assert set(adata.obsm) == set(snap["obsm"])
    if snap["raw"] is None:
        assert adata.raw is None
    else:
        np.testing.assert_array_equal(_dense(adata.raw.X), snap["raw"])


def _with_x(adata: ad.AnnData, fn) -> None:
    x = _dense(adata.X).astype(np.float32)
    adata.X = sparse.csr_matrix(fn(x))


def _set(x: np.ndarray, value: float) -> np.ndarray:
    x[0, 0] = value
    return x


def _log1p(adata: ad.AnnData) -> dict:
    _with_x(adata, np.log1p)
    return {}


def _negative(adata: ad.AnnData) -> dict:
    _with_x(adata, lambda x: _set(x, -1.0))
    return {}


def _nan(adata: ad.AnnData) -> dict:
    _with_x(adata, lambda x: _set(x, np.nan))
    return {}


def _random_genes(adata: ad.AnnData) -> dict:
    gen = np.random.default_rng(0)
    adata.var_names = ["".join(gen.choice(list("qwxz"), size=12)) for _ in range(adata.n_vars)]
    return {}


def _missing_label_column(adata: ad.AnnData) -> dict:
    return {"labels_keys": ["cell_type_ontology_term_id"]}


def _missing_batch_column(adata: ad.AnnData) -> dict:
    return {"batch_key": "donor"}


def _missing_label_values(adata: ad.AnnData) -> dict:
    adata.obs.loc[adata.obs_names[:5], "cell_type"] = np.nan
    return {"labels_keys": ["cell_type"]}


def _missing_layer(adata: ad.AnnData) -> dict:
    return {"layer": "counts"}


def _counts_only_in_raw(adata: ad.AnnData) -> dict:
    adata.raw = adata.copy()
    _with_x(adata, np.log1p)
    return {}


BAD_INPUTS = {
    "log1p": (_log1p, ValueError, "log-normalised"),
    "negative": (_negative, ValueError, "negative values"),
    "nan": (_nan, ValueError, "NaN"),
    "no_gene_in_vocabulary": (_random_genes, ValueError, "No gene of `adata.var_names` maps"),
    "missing_label_column": (_missing_label_column, KeyError, "'cell_type_ontology_term_id' not found"),
    "missing_batch_column": (_missing_batch_column, KeyError, "'donor' not found"),
    "missing_label_values": (_missing_label_values, ValueError, "has missing values"),
    "missing_layer": (_missing_layer, KeyError, "Layer 'counts' not found"),
    "counts_only_in_raw": (_counts_only_in_raw, ValueError, r"does not hold raw counts but `\.raw\.X` does"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_setup_anndata_rejects_bad_input(toy_counts_adata: ad.AnnData, case: str) -> None:
    corrupt, error, message = BAD_INPUTS[case]
    adata = toy_counts_adata
    kwargs = corrupt(adata)
    snap = _snapshot(adata)
    with pytest.raises(error, match=message):
        ScPrint.setup_anndata(adata, **kwargs)
    _assert_unchanged(adata, snap)
    assert not any(key.startswith("_scvi") for key in adata.uns)
    assert not any(col.startswith("_scvi") for col in adata.obs.columns)


def test_setup_anndata_accepts_a_count_layer(toy_counts_adata: ad.AnnData) -> None:
    adata = toy_counts_adata
    adata.layers["counts"] = adata.X.copy()
    adata.X = adata.X.copy()
    adata.X.data = np.log1p(adata.X.data)
    ScPrint.setup_anndata(adata, layer="counts")
    model = ScPrint(adata, **TINY)
    registered = model.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
    np.testing.assert_array_equal(_dense(registered), _dense(adata.layers["counts"]))


def test_explicit_organism_maps_the_data(toy_counts_adata: ad.AnnData) -> None:
    """Upper-case mouse symbols look human; ``organism="mouse"`` must reach the model's column mapping."""
    from sc_print.data import load_gene_table

    table = load_gene_table()
    mouse = table[(table["organism"] == "NCBITaxon:10090") & (table["symbol"] != "")]
    symbols = mouse["symbol"][~mouse["symbol"].str.upper().duplicated(keep=False)].iloc[: toy_counts_adata.n_vars]
    adata = ad.AnnData(toy_counts_adata.X.copy(), obs=toy_counts_adata.obs.copy())
    adata.var_names = symbols.str.upper().to_numpy()
    ScPrint.setup_anndata(adata, organism="mouse")
    model = ScPrint(adata, **TINY)
    assert all(g.startswith("ENSMUSG") for g in model.genes)
    assert len(model.genes) == adata.n_vars
    assert model.module._u_vocab.numel() == adata.n_vars  # every column maps onto the vocabulary
    model.train(max_steps=1, batch_size=50, warmup_steps=1, **QUIET)
    assert np.isfinite(np.asarray(model.history["denoise_train"], dtype=float)).all()


# ---------------------------------------------------------------------------------------------------- real data


@pytest.mark.shared_data
def test_denoising_loss_falls_on_pbmc(shared_data: Path) -> None:
    """A tiny model trained for 40 steps on 1,000 PBMC cells denoises held-out cells better than at init."""
    path = shared_data / "pbmc_10x_small_sets" / "sorted_pbmc_reference_2140cells_9types_raw.h5ad"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    full = ad.read_h5ad(path)
    order = np.random.default_rng(0).permutation(full.n_obs)
    train = full[order[:1000]].copy()
    held_out = torch.as_tensor(_dense(full[order[1000:1128]].X), dtype=torch.float32)
    ScPrint.setup_anndata(train)
    torch.manual_seed(0)
    model = ScPrint(train, size="tiny", max_len=256)

    def held_out_loss() -> float:
        model.module.eval()
        torch.manual_seed(123)  # same genes in context and same noise before and after
        with torch.no_grad():
            _, _, loss = model.module({REGISTRY_KEYS.X_KEY: held_out})
        return float(loss.extra_metrics["denoise"])

    before = held_out_loss()
    model.train(max_steps=40, batch_size=32, warmup_steps=5, lr=3e-3, **QUIET)
    after = held_out_loss()
    assert after < 0.8 * before
    history = np.asarray(model.history["denoise_train"], dtype=float).ravel()
    assert len(history) == 2  # 32 steps per epoch: a full epoch, then 8 steps of the next
    assert history[-1] < history[0]
