"""The front door of the model-running functions: every option checked before any model loads or anything is
written, tiny objects handled, group labels that h5ad/zarr cannot store handled, NaN groups excluded."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _network_fixtures import assert_unchanged

import sc_print as sp

CPU = {"accelerator": "cpu"}


@pytest.fixture
def grouped(toy_counts_adata):
    adata = toy_counts_adata
    adata.obs["group"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 2 == 0, "T/NK", "B"))
    return adata


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"n_cells": -3}, "n_cells"),
        ({"n_cells": 0}, "n_cells"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -1}, "batch_size"),
        ({"n_repeats": 0}, "n_repeats"),
        ({"n_genes": 0}, "n_genes"),
        ({"max_len": -5}, "max_len"),
        ({"top_k": 0, "filtration": "top_k"}, "top_k"),
        ({"min_cells": 0}, "min_cells"),
        ({"filtration": "magic"}, "filtration"),
        ({"orientation": "up"}, "orientation"),
        ({"cell_selection": "best"}, "cell_selection"),
        ({"genes": "everything"}, "gene selection"),
        ({"genes": []}, "genes"),
        ({"key_added": "a/b"}, "cannot be used"),
        ({"key_added": ""}, "key_added"),
        ({"heads": [(0,)]}, "heads"),
        ({"heads": [(0, 99)]}, "do not exist"),
        ({"layers": [7]}, "Layers"),
        ({"rng": -1}, "seed"),
        ({"dtype": "float8"}, "dtype"),
    ],
)
def test_grn_rejects_bad_options(toy_model, grouped, options, match):
    before = grouped.copy()
    with pytest.raises(ValueError, match=match):
        sp.tl.grn(grouped, model=toy_model, groupby="group", n_genes=options.pop("n_genes", 30), **CPU, **options)
    assert_unchanged(grouped, before)


def test_bad_options_are_refused_before_the_model_loads(toy_counts_adata, monkeypatch):
    import sc_print._resolve as resolve

    def no_model(*args, **kwargs):
        msg = "the model must not be loaded for a bad option"
        raise AssertionError(msg)

    monkeypatch.setattr(resolve, "resolve_model", no_model)
    for call, options in (
        (sp.tl.grn, {"n_cells": -1}),
        (sp.tl.embed, {"batch_size": 0}),
        (sp.tl.embed, {"key_added": "x/y"}),
        (sp.tl.denoise, {"n_genes": 0}),
        (sp.tl.denoise, {"key_added": "x/y"}),
        (sp.tl.denoise, {"depth_mult": float("nan")}),
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - the message is tested elsewhere
            call(toy_counts_adata, **options)


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_group_label_with_slash_round_trips(toy_model, grouped, tmp_path, fmt):
    sp.tl.grn(grouped, model=toy_model, groupby="group", n_genes=30, **CPU)
    record = grouped.uns["scprint_grn"]
    assert record["group_names"] == {"T_NK": "T/NK", "B": "B"}
    assert set(record["varp_keys"].values()) == {"scprint_grn_T_NK", "scprint_grn_B"}
    path = tmp_path / f"grn.{fmt}"
    getattr(grouped, f"write_{fmt}")(path)
    back = getattr(ad, f"read_{fmt}")(path)
    assert set(back.varp) == {"scprint_grn_T_NK", "scprint_grn_B"}
    np.testing.assert_array_equal(back.varp["scprint_grn_T_NK"].toarray(), grouped.varp["scprint_grn_T_NK"].toarray())
    assert dict(back.uns["scprint_grn"]["group_names"]) == {"T_NK": "T/NK", "B": "B"}
    # the readers find the network by its stored name
    assert len(sp.get.network(back, key="scprint_grn_T_NK")) > 0


def test_colliding_group_labels_are_refused(toy_model, grouped):
    grouped.obs["group"] = pd.Categorical(np.where(np.arange(grouped.n_obs) % 2 == 0, "T/NK", "T_NK"))
    before = grouped.copy()
    with pytest.raises(ValueError, match="would both be stored"):
        sp.tl.grn(grouped, model=toy_model, groupby="group", n_genes=30, **CPU)
    assert_unchanged(grouped, before)


def test_nan_group_labels_are_excluded_with_a_warning(toy_model, grouped, caplog):
    labels = grouped.obs["group"].astype(object).to_numpy()
    labels[:20] = np.nan
    grouped.obs["group"] = pd.Categorical(labels)
    with caplog.at_level("WARNING"):
        sp.tl.grn(grouped, model=toy_model, groupby="group", n_genes=30, **CPU)
    assert "20 of 200 cells have a missing" in caplog.text
    assert set(grouped.uns["scprint_grn"]["varp_keys"]) == {"T_NK", "B"}  # no group called 'nan'
    assert sum(grouped.uns["scprint_grn"]["n_cells"].values()) == 180
    grouped.obs["group"] = pd.Categorical([np.nan] * grouped.n_obs, categories=["a"])
    with pytest.raises(ValueError, match="missing"):
        sp.tl.grn(grouped, model=toy_model, groupby="group", n_genes=30, **CPU)


@pytest.mark.parametrize("call", ["embed", "denoise", "grn"])
def test_no_cells_or_no_genes(toy_model, toy_counts_adata, call):
    for data in (toy_counts_adata[:0].copy(), toy_counts_adata[:, :0].copy()):
        before = data.copy()
        with pytest.raises(ValueError, match="no cells|no genes"):
            getattr(sp.tl, call)(data, model=toy_model, **CPU)
        assert_unchanged(data, before)


def test_one_and_few_cells(toy_model, toy_counts_adata):
    """A single cell is embedded/denoised like inside the full object; data-set-level choices need enough cells."""
    one = toy_counts_adata[[7]].copy()
    sp.tl.embed(one, model=toy_model, **CPU)
    full = sp.tl.embed(toy_counts_adata, model=toy_model, copy=True, **CPU)
    np.testing.assert_allclose(one.obsm["X_scprint"][0], full.obsm["X_scprint"][7], atol=1e-5)
    sp.tl.denoise(one, model=toy_model, **CPU)
    assert one.layers["scprint_denoised"].shape == (1, toy_counts_adata.n_vars)
    for n in (1, 2):
        few = toy_counts_adata[:n].copy()
        before = few.copy()
        with pytest.raises(ValueError, match="at least 3 cells"):
            sp.tl.denoise(few, model=toy_model, genes="hvg", n_genes=20, **CPU)
        with pytest.raises(ValueError, match="at least 3 cells"):
            sp.tl.embed(few, model=toy_model, mode="fixed", max_len=20, **CPU)
        with pytest.raises(ValueError, match="min_cells"):
            sp.tl.grn(few, model=toy_model, **CPU)
        assert_unchanged(few, before)
    # identical cells: the seurat_v3 fit would crash the interpreter (0.1.0); now a clear error
    twins = toy_counts_adata[[3, 3, 3, 3]].copy()
    twins.obs_names_make_unique()
    with pytest.raises(ValueError, match="genes whose counts vary"):
        sp.tl.denoise(twins, model=toy_model, genes="hvg", n_genes=20, **CPU)
    sp.tl.grn(toy_counts_adata[:3].copy(), model=toy_model, min_cells=3, genes="expressed", n_genes=20, **CPU)


def test_select_heads_rejects_bad_options(toy_model, grouped):
    truth = pd.DataFrame({"source": grouped.var_names[:5], "target": grouped.var_names[5:10]})
    before = grouped.copy()
    for options, match in (
        ({"n_cells": -1}, "n_cells"),
        ({"train_size": 1.5}, "train_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"key_added": "a/b"}, "cannot be used"),
        ({"group": "B"}, "needs `groupby`"),
    ):
        with pytest.raises(ValueError, match=match):
            sp.tl.select_heads(grouped, truth, model=toy_model, **CPU, **options)
    with pytest.raises(ValueError, match="no edges"):
        sp.tl.select_heads(grouped, truth.iloc[:0], model=toy_model, **CPU)
    with pytest.raises(ValueError, match="'source' and 'target'"):
        sp.tl.select_heads(grouped, truth.rename(columns={"source": "tf"}), model=toy_model, **CPU)
    assert_unchanged(grouped, before)


def test_embed_and_denoise_keys_are_checked(toy_model, toy_counts_adata):
    before = toy_counts_adata.copy()
    for call in (sp.tl.embed, sp.tl.denoise):
        for bad in ("a/b", "", ".", 3):
            with pytest.raises(ValueError, match="key_added"):
                call(toy_counts_adata, model=toy_model, key_added=bad, **CPU)
    assert_unchanged(toy_counts_adata, before)
