"""GENCODE gene table, species-safe gene mapping and model positions frozen against table changes."""

from __future__ import annotations

import json
import warnings
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

import sc_print as sp
from sc_print.data import GeneVocab, load_gene_table, map_gene_names

HUMAN, MOUSE = "NCBITaxon:9606", "NCBITaxon:10090"
TP53, GAPDH_HUMAN = "ENSG00000141510", "ENSG00000111640"
GAPDH_MOUSE, XKR4 = "ENSMUSG00000057666", "ENSMUSG00000051951"
DEFAULT_MODEL = Path(str(files("sc_print") / "_resources" / "default_model"))


def _protein_coding(organism: str, n: int | None = None) -> pd.DataFrame:
    table = load_gene_table()
    rows = table[(table["organism"] == organism) & (table["biotype"] == "protein_coding") & (table["symbol"] != "")]
    rows = rows[~rows["symbol"].duplicated(keep=False)]
    return rows if n is None else rows.iloc[:n]


def _counts_adata(names, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    X = rng.poisson(1.0, size=(20, len(names))).astype(np.float32)
    X[:, 0] += 1
    return ad.AnnData(sparse.csr_matrix(X), var=pd.DataFrame(index=list(names)))


def _vocab_model(*organisms: str) -> SimpleNamespace:
    return SimpleNamespace(genes=GeneVocab.from_gene_table(organisms=organisms), name="gene table")


# --- the table and its provenance -------------------------------------------------------------------------------


def test_gene_table_is_gencode_with_recorded_provenance():
    table = load_gene_table()
    info = table.attrs
    assert info["license"] == "MIT"
    assert info["organisms"][HUMAN]["annotation"] == "GENCODE v48"
    assert info["organisms"][MOUSE]["annotation"] == "GENCODE M37"
    for source in info["sources"]:
        assert source["license"].startswith(("MIT", "BSD"))
        assert "biomart" not in source["file"].lower()
        assert "scprint" not in source["file"].lower()
    assert (table["organism"] == HUMAN).sum() == info["organisms"][HUMAN]["n_genes"] == 78_894
    assert (table["organism"] == MOUSE).sum() == info["organisms"][MOUSE]["n_genes"] == 78_317
    on_disk = json.loads((files("sc_print") / "_resources" / "genes.json").read_text())
    assert on_disk == {key: info[key] for key in on_disk}
    mouse_pc = _protein_coding(MOUSE)
    assert len(mouse_pc) > 20_000  # mouse symbols for (nearly) every protein-coding gene
    assert table.loc[GAPDH_MOUSE, "symbol"] == "Gapdh"


def test_previous_symbols_never_shadow_current_ones():
    table = load_gene_table()
    for organism in (HUMAN, MOUSE):
        rows = table[table["organism"] == organism]
        previous = rows.loc[rows["previous_symbols"] != "", "previous_symbols"].str.split("|").explode()
        assert len(previous) > 20
        assert not previous.isin(set(rows["symbol"])).any()
        assert not previous.duplicated().any()


# --- done-when: protein-coding symbols map to their own ids -----------------------------------------------------


@pytest.mark.parametrize(("organism", "target"), [(HUMAN, 0.97), (MOUSE, 0.95)])
def test_protein_coding_symbols_map_to_their_own_ids(organism, target):
    rows = _protein_coding(organism)
    ids, info = map_gene_names(rows["symbol"])
    assert info["organism"] == organism
    assert (ids == rows.index.to_numpy(dtype=str)).mean() >= target


def test_prepare_maps_a_mouse_symbol_anndata_onto_a_mouse_vocabulary():
    rows = _protein_coding(MOUSE)
    adata = _counts_adata(rows["symbol"])
    sp.pp.prepare(adata, model=_vocab_model(MOUSE))
    got = adata.var["scprint_gene_id"].to_numpy(dtype=str)
    assert (got == rows.index.to_numpy(dtype=str)).mean() >= 0.95
    assert adata.uns["scprint_prepare"]["organism"] == MOUSE
    assert adata.var["scprint_in_vocab"].mean() >= 0.95


# --- versioned ids, retired ids, previous symbols ---------------------------------------------------------------


def test_versioned_and_retired_ids():
    ids, info = map_gene_names(["ENSMUSG00000051951.6", "ENSMUSG00000057666.19", "ENSMUSG99999999999.1"])
    assert ids.tolist() == [XKR4, GAPDH_MOUSE, "ENSMUSG99999999999"]
    assert info["organism"] == MOUSE
    assert info["n_not_in_table"] == 1  # a retired id keeps its identity; it only has no symbol
    assert GeneVocab(["ENSMUSG99999999999"], positions=[3]).symbols.tolist() == [""]


@pytest.mark.parametrize(
    ("names", "organism", "expected"),
    [
        (["C1orf112", "TP53"], "human", "ENSG00000000460"),  # GENCODE v44 name of FIRRM
        (["Tceb1", "Xkr4"], "mouse", "ENSMUSG00000079658"),  # older Ensembl name of Eloc
    ],
)
def test_previous_symbols_map(names, organism, expected):
    ids, info = map_gene_names(names, organism=organism)
    assert ids[0] == expected
    assert info["n_previous_symbols"] == 1


# --- species safety ---------------------------------------------------------------------------------------------


def test_title_case_mouse_symbols_never_map_to_human_genes():
    human = _protein_coding(HUMAN, 200)
    names = [*human["symbol"], "Gapdh", "Actb", "Cd74"]
    for organism in (None, "human"):
        ids, info = map_gene_names(names, organism=organism)
        assert info["organism"] == HUMAN
        assert ids[-3:].tolist() == ["", "", ""]  # not GAPDH / ACTB / CD74
        assert info["other_organisms"] == {MOUSE: 3}
    # a whole mouse object declared human: nothing maps, with a warning naming both organisms
    mouse = _protein_coding(MOUSE, 300)
    with pytest.warns(UserWarning, match=r"(?s)human.*\d+ mouse"):
        ids, info = map_gene_names(mouse["symbol"], organism="human")
    assert not (ids != "").any()


def test_mixed_object_is_refused_or_split_never_merged():
    human = _protein_coding(HUMAN, 300)
    mouse = _protein_coding(MOUSE, 300)
    names = [*human["symbol"], *mouse["symbol"]]
    with pytest.raises(ValueError, match=r"mix organisms: 300 human .* and 300 mouse"):
        map_gene_names(names)
    adata = _counts_adata(names)
    before = adata.copy()
    with pytest.raises(ValueError, match=r"300 human .* and 300 mouse"):
        sp.pp.prepare(adata, model=_vocab_model(HUMAN))
    assert list(adata.var.columns) == list(before.var.columns)  # unchanged
    assert "scprint_prepare" not in adata.uns
    # the user keeps one organism: the other one's genes stay unmapped, with a warning
    with pytest.warns(UserWarning, match=r"300 human .* and 300 mouse"):
        sp.pp.prepare(adata, model=_vocab_model(HUMAN), organism="human")
    got = adata.var["scprint_gene_id"].to_numpy(dtype=str)
    assert (got[:300] == human.index.to_numpy(dtype=str)).all()
    assert (got[300:] == "").all()
    assert adata.uns["scprint_prepare"]["n_other_organism"] == 300
    # the same with Ensembl ids
    with pytest.raises(ValueError, match="mix organisms"):
        map_gene_names([*human.index, *mouse.index])


def test_tl_functions_refuse_a_mixed_object_without_prepare():
    human = _protein_coding(HUMAN, 300)
    mouse = _protein_coding(MOUSE, 300)
    adata = _counts_adata([*human["symbol"], *mouse["symbol"]])
    before = adata.copy()
    with pytest.raises(ValueError, match=r"300 human .* and 300 mouse"):
        sp.tl.embed(adata, accelerator="cpu")
    assert adata.obsm.keys() == before.obsm.keys()
    assert list(adata.obs.columns) == list(before.obs.columns)


def test_upper_case_mouse_genes_map_when_mouse_is_given():
    mouse = _protein_coding(MOUSE, 300)
    upper = [s.upper() for s in mouse["symbol"]]
    ids, info = map_gene_names(upper)
    assert info["organism"] == HUMAN  # they look like human symbols
    with pytest.warns(UserWarning, match="upper-case names are matched to mouse symbols"):
        ids, info = map_gene_names(upper, organism="mouse")
    assert (ids == mouse.index.to_numpy(dtype=str)).mean() > 0.95


def test_prepare_refuses_an_organism_the_model_does_not_cover():
    mouse = _protein_coding(MOUSE, 300)
    adata = _counts_adata(mouse["symbol"])
    with pytest.raises(ValueError, match=r"genes are mouse .* covers human only"):
        sp.pp.prepare(adata, model=_vocab_model(HUMAN))
    assert "scprint_gene_id" not in adata.var


def test_small_pure_lists_are_not_flagged():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids, info = map_gene_names(["TP53", "GAPDH", "ACTB"])
        assert info["other_organisms"] == {}
        ids, info = map_gene_names(["Xkr4", "Gapdh", "Actb"])
        assert info["organism"] == MOUSE
        assert ids[1] == GAPDH_MOUSE


# --- positions frozen per model ---------------------------------------------------------------------------------


def _shuffled_table() -> pd.DataFrame:
    table = load_gene_table().copy()
    rng = np.random.default_rng(0)
    table["pos"] = rng.permutation(table["pos"].to_numpy())
    table["start"] = table["start"] + 12_345
    return table


def test_default_model_ignores_a_changed_gene_table(monkeypatch):
    from sc_print.data import _genes, _mapping, _vocab
    from sc_print.model import ScPrint

    genes = ScPrint.load(DEFAULT_MODEL, accelerator="cpu").genes
    adata = _counts_adata(genes[::40][:300], seed=1)

    def outputs(model):
        """Embeddings and predictions of the public pipeline (name mapping included)."""
        out = sp.tl.embed(adata, model=model, accelerator="cpu", batch_size=8, copy=True)
        return {key: np.asarray(value) for key, value in out.obsm.items()}, out.obs.copy()

    state = torch.load(DEFAULT_MODEL / "model.pt", map_location="cpu", weights_only=True)
    before = ScPrint.load(DEFAULT_MODEL, accelerator="cpu")
    np.testing.assert_array_equal(before.vocab.positions, state["gene_pos"])
    obsm_a, obs_a = outputs(before)

    changed = _shuffled_table()
    for module in (_genes, _vocab):
        monkeypatch.setattr(module, "load_gene_table", lambda: changed)
    _mapping._clear_caches()
    try:
        after = ScPrint.load(DEFAULT_MODEL, accelerator="cpu")
        assert not np.array_equal(GeneVocab(after.genes).positions, after.vocab.positions)  # the table did change
        np.testing.assert_array_equal(after.vocab.positions, state["gene_pos"])
        obsm_b, obs_b = outputs(after)
    finally:
        _mapping._clear_caches()
    assert obsm_a
    assert obsm_a.keys() == obsm_b.keys()
    for key in obsm_a:
        np.testing.assert_array_equal(obsm_a[key], obsm_b[key])  # bit-identical
    pd.testing.assert_frame_equal(obs_a, obs_b)


def test_default_model_vocabulary_is_fully_mappable():
    state = torch.load(DEFAULT_MODEL / "model.pt", map_location="cpu", weights_only=True)
    ids, info = map_gene_names(state["genes"])
    assert (ids == np.asarray(state["genes"])).all()  # every id, also those GENCODE v48 retired
    assert info["n_not_in_table"] < 0.02 * len(ids)
