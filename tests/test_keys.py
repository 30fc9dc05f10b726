"""Key rules of ``sc_print._keys``: names that survive ``write_h5ad``/``write_zarr`` and group labels."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from sc_print._keys import (
    Key,
    check_key,
    community_keys,
    diff_hubs_keys,
    group_name_map,
    hub_keys,
    safe_group_name,
)


def _roundtrip(adata: ad.AnnData, path, fmt: str) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's/zarr's format notices, not ours
        getattr(adata, f"write_{fmt}")(path)
        return ad.read_h5ad(path) if fmt == "h5ad" else ad.read_zarr(path)


@pytest.mark.parametrize("value", ["scprint", "my key", "a.b", "CD4+ T", "é"])
def test_check_key_accepts_storable_names(value):
    assert check_key(value) == value


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("", "it is empty"),
        ("a/b", "contains '/'"),
        ("a\\b", r"contains '\\\\'"),
        ("a\x00b", "contains"),
        (".", "reserved path name"),
        ("..", "reserved path name"),
        (None, "must be a non-empty string, got NoneType"),
        (3, "must be a non-empty string, got int"),
    ],
)
def test_check_key_refuses_names_that_do_not_survive_writing(value, match):
    with pytest.raises(ValueError, match=match) as info:
        check_key(value, name="key_added")
    assert "`key_added`" in str(info.value)


@pytest.mark.parametrize("value", ["a/b", "a\\b", "", "."])
def test_refused_names_really_break_a_roundtrip(tmp_path, value):
    """The refusal is not arbitrary: in h5ad or zarr, anndata cannot write the key and read it back."""
    broken = []
    for fmt in ("h5ad", "zarr"):
        adata = ad.AnnData(np.ones((2, 2), dtype=np.float32))
        adata.uns[value] = 1
        try:
            back = _roundtrip(adata, tmp_path / f"x.{fmt}", fmt)
        except Exception:  # noqa: BLE001 - any failure to write or read is what check_key prevents
            broken.append(fmt)
            continue
        if back.uns.get(value) != 1:
            broken.append(fmt)
    assert broken


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_safe_group_names_survive_a_roundtrip(tmp_path, fmt):
    labels = ["NK/T", "CD14+\\CD16+", "..", "B cell", 3]
    mapping = group_name_map(labels, groupby="cell_type")
    assert mapping == {"NK/T": "NK_T", "CD14+\\CD16+": "CD14+_CD16+", "..": "_..", "B cell": "B cell", "3": "3"}
    adata = ad.AnnData(np.ones((2, 2), dtype=np.float32))
    record = {"varp_keys": {safe: f"grn_{safe}" for safe in mapping.values()}}
    record["group_names"] = {safe: label for label, safe in mapping.items()}
    adata.uns["grn"] = record
    back = _roundtrip(adata, tmp_path / f"g.{fmt}", fmt)
    assert back.uns["grn"]["varp_keys"] == record["varp_keys"]
    assert back.uns["grn"]["group_names"] == record["group_names"]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (["a/b", "a_b"], r"'a_b' and 'a/b'|'a/b' and 'a_b'"),
        (["1", 1], "would both be stored as '1'"),
        (["x", np.nan], "missing"),
        (["x", None], "missing"),
        (["x", pd.NA], "missing"),
        (["x", "  "], "empty"),
    ],
)
def test_group_name_map_refuses_missing_empty_and_colliding_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        group_name_map(labels, groupby="cell_type")


def test_safe_group_name():
    assert safe_group_name("T cell") == "T cell"
    assert safe_group_name("a/b\\c\x00d") == "a_b_c_d"
    assert safe_group_name(".") == "_."
    assert safe_group_name(7) == "7"


def test_per_call_keys_are_frozen_and_checked():
    keys = hub_keys("net", ["degree", "pagerank"])
    assert keys.uns == Key.uns.hubs("net") == "net_hubs"
    assert dict(keys.var) == {"degree": "net_degree", "pagerank": "net_pagerank"}
    with pytest.raises(TypeError):
        keys.var["degree"] = "other"  # read-only mapping
    with pytest.raises(AttributeError):
        keys.uns = "x"  # frozen
    assert community_keys("net") == type(community_keys("net"))(uns="net_communities", var="net_community")
    assert diff_hubs_keys("a", "b") == Key.uns.diff_hubs("a", "b") == "a_vs_b_diff_hubs"
    for build in (lambda: hub_keys("a/b", ["degree"]), lambda: community_keys("a/b"), lambda: diff_hubs_keys("a", "/")):
        with pytest.raises(ValueError, match="contains '/'"):
            build()


def test_existing_key_strings_are_unchanged():
    """embed/denoise/grn and stored objects rely on these exact names."""
    assert Key.obsm.emb() == "X_scprint"
    assert Key.obsm.emb("mine", "cell_type") == "X_mine_cell_type"
    assert Key.obs.pred("cell_type") == "scprint_pred_cell_type"
    assert Key.obs.conf("cell_type") == "scprint_conf_cell_type"
    assert Key.obs.pred_id("cell_type") == "scprint_pred_cell_type_id"
    assert Key.obsm.proba("cell_type") == "scprint_proba_cell_type"
    assert Key.layers.denoised == "scprint_denoised"
    assert Key.varp.grn() == "scprint_grn"
    assert Key.varp.grn("scprint_grn", "B cell") == "scprint_grn_B cell"
    assert (Key.uns.prepare, Key.uns.embed, Key.uns.denoise, Key.uns.grn) == (
        "scprint_prepare",
        "scprint_embed",
        "scprint_denoise",
        "scprint_grn",
    )
    assert Key.var.hub_score("n", "degree") == "n_degree"
    assert Key.var.community("n") == "n_community"
    assert Key.uns.communities("n") == "n_communities"
