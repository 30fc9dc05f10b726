from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sc_print as sp
from sc_print._keys import Key
from sc_print._validation import check_counts, get_counts, resolve_adata
from sc_print.data import GeneVocab, load_gene_table

DATA = Path(__file__).parents[2] / "shared" / "data"
N_CELLS, N_GENES = 40, 260


def _human_genes(n: int) -> pd.DataFrame:
    table = load_gene_table()
    rows = table[(table["organism"] == "NCBITaxon:9606") & (table["biotype"] == "protein_coding")]
    rows = rows[rows["symbol"] != ""]
    return rows.iloc[:n]


@pytest.fixture
def genes() -> pd.DataFrame:
    return _human_genes(N_GENES)


@pytest.fixture
def toy_model(genes):
    """Stand-in for a model: only its vocabulary matters here (the first 250 genes of the fixture)."""
    return SimpleNamespace(genes=GeneVocab(genes.index[:250].to_numpy(dtype=str)), name="toy")


@pytest.fixture
def adata(genes) -> ad.AnnData:
    rng = np.random.default_rng(0)
    X = rng.poisson(1.0, size=(N_CELLS, N_GENES + 5)).astype(np.float32)
    X[:, 0] += 1  # no empty cell
    names = [*genes["symbol"], *(f"NOT_A_GENE_{i}" for i in range(5))]
    obs = pd.DataFrame({"batch": ["a", "b"] * (N_CELLS // 2)}, index=[f"cell{i}" for i in range(N_CELLS)])
    out = ad.AnnData(sparse.csr_matrix(X), obs=obs, var=pd.DataFrame(index=names))
    out.var["ensembl"] = [*genes.index, *(f"x{i}" for i in range(5))]
    out.uns["note"] = "user data"
    return out


def _assert_same(a: ad.AnnData, b: ad.AnnData) -> None:
    """Deep comparison of the slots prepare may touch."""

    def dense(m):
        return m.toarray() if sparse.issparse(m) else np.asarray(m)

    assert type(a.X) is type(b.X)
    np.testing.assert_array_equal(dense(a.X), dense(b.X))
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert a.obs_names.equals(b.obs_names)
    assert a.var_names.equals(b.var_names)
    assert a.uns.keys() == b.uns.keys()
    for key in a.uns:
        assert a.uns[key] == b.uns[key]
    assert a.layers.keys() == b.layers.keys()
    for key in a.layers:
        np.testing.assert_array_equal(dense(a.layers[key]), dense(b.layers[key]))


# --- success ----------------------------------------------------------------------------------------------------


def test_prepare_writes_slots(adata, toy_model, genes):
    X = adata.X.toarray()
    assert sp.pp.prepare(adata, model=toy_model) is None
    gene_id = adata.var[Key.var.gene_id].to_numpy()
    assert gene_id[:N_GENES].tolist() == genes.index.tolist()
    assert (gene_id[N_GENES:] == "").all()
    in_vocab = adata.var[Key.var.in_vocab].to_numpy()
    assert in_vocab.dtype == bool
    assert in_vocab[:250].all()
    assert not in_vocab[250:].any()
    # depth = counts over the genes of the model vocabulary (the depth the model uses), not the whole gene table
    np.testing.assert_allclose(adata.obs[Key.obs.depth].to_numpy(), X[:, in_vocab].sum(1))
    assert (X[:, :N_GENES].sum(1) > adata.obs[Key.obs.depth].to_numpy()).all()
    rec = adata.uns[Key.uns.prepare]
    assert rec["organism"] == "NCBITaxon:9606"
    assert rec["id_kind"] == "symbol"
    assert rec["counts_source"] == ".X"
    assert rec["n_genes"] == N_GENES + 5
    assert rec["n_in_gene_table"] == N_GENES
    assert rec["n_mapped"] == 250
    assert rec["fraction_mapped"] == pytest.approx(250 / (N_GENES + 5))
    assert rec["n_duplicates"] == 0
    assert rec["vocabulary"] == "toy"
    assert rec["params"]["min_genes"] == 200
    # nothing reordered or dropped
    assert adata.shape == (N_CELLS, N_GENES + 5)
    np.testing.assert_array_equal(adata.X.toarray(), X)


def test_prepare_copy_returns_new_object(adata, toy_model):
    before = adata.copy()
    out = sp.pp.prepare(adata, model=toy_model, copy=True)
    assert isinstance(out, ad.AnnData)
    assert out is not adata
    assert Key.uns.prepare in out.uns
    assert Key.obs.depth in out.obs
    _assert_same(adata, before)


def test_prepare_result_writes_to_h5ad(adata, toy_model, tmp_path):
    sp.pp.prepare(adata, model=toy_model)
    adata.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad")
    assert back.uns[Key.uns.prepare]["n_mapped"] == 250


@pytest.mark.parametrize("fmt", ["dense", "csc", "int", "backed", "backed-dense", "backed-csc"])
def test_prepare_formats_same_depth(adata, toy_model, fmt, tmp_path):
    expected = sp.pp.prepare(adata, model=toy_model, copy=True).obs[Key.obs.depth].to_numpy()
    if fmt.endswith("dense"):
        adata.X = adata.X.toarray()
    elif fmt.endswith("csc"):
        adata.X = adata.X.tocsc()
    elif fmt == "int":
        adata.X = adata.X.astype(np.int32)
    if fmt.startswith("backed"):
        adata.write_h5ad(tmp_path / "b.h5ad")
        adata = ad.read_h5ad(tmp_path / "b.h5ad", backed="r")
        copied = sp.pp.prepare(adata, model=toy_model, copy=True)
        assert not copied.isbacked
        assert Key.obs.depth not in adata.obs
    sp.pp.prepare(adata, model=toy_model)
    np.testing.assert_allclose(adata.obs[Key.obs.depth].to_numpy(), expected)


def test_prepare_ensembl_ids_from_var_column_and_duplicates(adata, toy_model):
    adata.var.iloc[1, adata.var.columns.get_loc("ensembl")] = adata.var["ensembl"].iloc[0] + ".7"
    sp.pp.prepare(adata, model=toy_model, gene_id_key="ensembl")
    rec = adata.uns[Key.uns.prepare]
    assert rec["id_kind"] == "ensembl"
    assert rec["n_duplicates"] == 1
    ids = adata.var[Key.var.gene_id]
    assert ids.iloc[0] == ids.iloc[1]
    assert adata.var[Key.var.in_vocab].iloc[:2].all()  # both columns kept and marked


def test_prepare_uses_layer_and_raw(adata, toy_model):
    counts = adata.X.copy()
    adata.layers["counts"] = counts
    adata.X = sparse.csr_matrix(np.log1p(counts.toarray() / 3))
    sp.pp.prepare(adata, model=toy_model, layer="counts")
    assert adata.uns[Key.uns.prepare]["counts_source"] == ".layers['counts']"

    # .raw with the counts of a superset of the genes (e.g. after selecting highly variable genes)
    full = ad.AnnData(counts, var=adata.var[[]].copy(), obs=adata.obs[[]].copy())
    subset = ad.AnnData(adata.X[:, ::-1][:, :200], obs=adata.obs[[]].copy(), var=adata.var.iloc[::-1][:200][[]])
    subset.raw = full
    sp.pp.prepare(subset, model=toy_model, min_genes=100)
    assert subset.uns[Key.uns.prepare]["counts_source"] == ".raw.X"
    raw_sub = full[:, subset.var_names].X.toarray()
    np.testing.assert_allclose(
        subset.obs[Key.obs.depth].to_numpy(), raw_sub[:, subset.var[Key.var.in_vocab].to_numpy()].sum(1)
    )


@pytest.mark.filterwarnings("ignore:From 0.4 .update:FutureWarning")
def test_prepare_mudata_writes_into_rna(adata, toy_model):
    prot = ad.AnnData(np.ones((N_CELLS, 3), dtype=np.float32), obs=adata.obs[[]].copy())
    mdata = md.MuData({"rna": adata, "prot": prot})
    sp.pp.prepare(mdata, model=toy_model)
    assert Key.var.gene_id in mdata.mod["rna"].var
    assert Key.uns.prepare in mdata.mod["rna"].uns
    assert Key.var.gene_id not in mdata.mod["prot"].var


def test_default_model_is_used(adata, genes, monkeypatch):
    model_module = importlib.import_module("sc_print._resolve")
    vocab = GeneVocab(genes.index[:220].to_numpy(dtype=str))

    def resolve_model(model=None):
        return SimpleNamespace(genes=vocab, name="default-toy")

    monkeypatch.setattr(model_module, "resolve_model", resolve_model, raising=False)
    sp.pp.prepare(adata)
    rec = adata.uns[Key.uns.prepare]
    assert rec["vocabulary"] == "default-toy"
    assert rec["n_mapped"] == 220


def test_fallback_to_gene_table_without_default_model(adata, monkeypatch, caplog):
    model_module = importlib.import_module("sc_print._resolve")

    def resolve_model(model=None):
        msg = "no default model shipped"
        raise FileNotFoundError(msg)

    monkeypatch.setattr(model_module, "resolve_model", resolve_model, raising=False)
    with caplog.at_level("WARNING", logger="sc_print"):
        sp.pp.prepare(adata)
    rec = adata.uns[Key.uns.prepare]
    assert rec["vocabulary"] == "gene table"
    assert rec["n_mapped"] == N_GENES
    assert "gene table" in caplog.text


def test_model_without_genes_is_rejected(adata):
    with pytest.raises(TypeError, match="genes"):
        sp.pp.prepare(adata, model=object())


# --- failures leave the AnnData unchanged ---------------------------------------------------------------------


def _lognorm(a):
    a.layers["counts"] = a.X.copy()
    a.X = sparse.csr_matrix(np.log1p(a.X.toarray() / a.X.toarray().sum(1, keepdims=True) * 1e4))


def _set_value(value):
    def corrupt(a):
        X = a.X.toarray()
        X[3, 7] = value
        a.X = sparse.csr_matrix(X)

    return corrupt


def _nonint(a):
    a.X = sparse.csr_matrix(a.X.toarray() * 100.5)


def _no_mapped_genes(a):
    a.var_names = [f"gene{i}" for i in range(a.n_vars)]


def _empty_cells(a):
    X = a.X.toarray()
    X[[2, 5], :N_GENES] = 0  # counts left only in unmapped genes
    a.X = sparse.csr_matrix(X)


def _nothing(a):
    pass


BAD_INPUTS = {
    "log-normalised": (_lognorm, {}, ValueError, r"`\.X` looks log-normalised \(max .*layer='counts'"),
    "negative": (_set_value(-1.0), {}, ValueError, "negative values"),
    "nan": (_set_value(np.nan), {}, ValueError, "1 NaN"),
    "inf": (_set_value(np.inf), {}, ValueError, "1 infinite"),
    "non-integer": (_nonint, {}, ValueError, r"looks normalised \(max .*non-integer"),
    "no mapped genes": (_no_mapped_genes, {}, ValueError, "None of the .* genes"),
    "unknown organism": (_nothing, {"organism": "zebrafish"}, ValueError, "Unknown organism 'zebrafish'"),
    "empty cells": (_empty_cells, {}, ValueError, r"2 of 40 cells have zero counts.*filter_cells"),
    "too few genes": (_nothing, {"min_genes": 1000}, ValueError, "min_genes=1000"),
    "min fraction": (_nothing, {"min_fraction": 0.99}, ValueError, "min_fraction=0.99"),
    "missing layer": (_nothing, {"layer": "counts"}, KeyError, "Layer 'counts' not found"),
    "missing var column": (_nothing, {"gene_id_key": "gene_ids"}, KeyError, "'gene_ids' not found in `.var`"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_and_leaves_adata_unchanged(adata, toy_model, case):
    corrupt, kwargs, error, match = BAD_INPUTS[case]
    corrupt(adata)
    before = adata.copy()
    with pytest.raises(error, match=match):
        sp.pp.prepare(adata, model=toy_model, **kwargs)
    _assert_same(adata, before)


@pytest.mark.filterwarnings("ignore:From 0.4 .update:FutureWarning")
def test_mudata_without_rna_raises_and_is_unchanged(adata, toy_model):
    mdata = md.MuData({"gex": adata})
    with pytest.raises(KeyError, match=r"no modality 'rna'.*\['gex'\]"):
        sp.pp.prepare(mdata, model=toy_model)
    assert Key.uns.prepare not in adata.uns
    assert Key.var.gene_id not in adata.var


# --- validation helpers ---------------------------------------------------------------------------------------


def test_resolve_adata_rejects_other_types():
    with pytest.raises(TypeError, match="AnnData or a MuData"):
        resolve_adata(np.zeros((2, 2)))


def test_get_counts_error_lists_count_layers(adata):
    _lognorm(adata)
    adata.layers["scaled"] = adata.X.toarray() - 1
    with pytest.raises(ValueError, match=r"layers holding counts: 'counts'\)"):
        get_counts(adata)
    X, where = get_counts(adata, layer="counts")
    assert where == "`.layers['counts']`"
    assert X is adata.layers["counts"]


@pytest.mark.parametrize("to_matrix", [np.asarray, sparse.csr_matrix, sparse.csc_matrix])
def test_check_counts_chunks(to_matrix):
    rng = np.random.default_rng(1)
    X = rng.poisson(2.0, size=(25, 6)).astype(np.float64)
    X[:, 0] += 1
    cols = np.array([True, True, False, True, False, True])
    depth = check_counts(to_matrix(X), where="X", columns=cols, chunk_size=4)
    np.testing.assert_allclose(depth, X[:, cols].sum(1))
    X[24, 5] = 0.5  # a problem in the last chunk only
    with pytest.raises(ValueError, match="non-integer"):
        check_counts(to_matrix(X), where="X", chunk_size=4)
    with pytest.raises(ValueError, match="one entry per gene"):
        check_counts(to_matrix(X), where="X", columns=cols[:3])


# --- real data ------------------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_pbmc_symbols():
    path = DATA / "pbmc_10x_small_sets" / "sorted_pbmc_reference_2140cells_9types_raw.h5ad"
    if not path.exists():
        pytest.skip("shared data not available")
    adata = ad.read_h5ad(path)
    model = SimpleNamespace(genes=GeneVocab.from_gene_table(organisms=("human",)), name="human table")
    sp.pp.prepare(adata, model=model)
    rec = adata.uns[Key.uns.prepare]
    assert rec["organism"] == "NCBITaxon:9606"
    assert rec["id_kind"] == "symbol"
    assert rec["fraction_mapped"] > 0.85
    depth = adata.obs[Key.obs.depth].to_numpy()
    total = np.asarray(adata.X.sum(1)).ravel()
    assert (depth > 0).all()
    assert (depth <= total).all()
    assert depth.sum() > 0.9 * total.sum()


@pytest.mark.shared_data
def test_real_mouse_ensembl():
    path = DATA / "scmerge_mesc_example" / "scmerge_example_sce_mesc.h5ad"
    if not path.exists():
        pytest.skip("shared data not available")
    adata = ad.read_h5ad(path)
    model = SimpleNamespace(genes=GeneVocab.from_gene_table(organisms=("mouse",)), name="mouse table")
    sp.pp.prepare(adata, model=model)
    rec = adata.uns[Key.uns.prepare]
    assert rec["organism"] == "NCBITaxon:10090"
    assert rec["id_kind"] == "ensembl"
    assert rec["n_mapped"] > 900
    # a human-only vocabulary has no mouse gene: clear error, nothing written
    human = SimpleNamespace(genes=GeneVocab.from_gene_table(organisms=("human",)), name="human table")
    fresh = ad.read_h5ad(path)
    with pytest.raises(ValueError, match=r"genes are mouse .* covers human only"):
        sp.pp.prepare(fresh, model=human)
    assert Key.uns.prepare not in fresh.uns


def test_get_counts_without_x_names_layers(adata):
    empty = ad.AnnData(obs=adata.obs[[]].copy(), var=adata.var[[]].copy())
    empty.layers["umi"] = adata.X.copy()
    with pytest.raises(ValueError, match=r"`\.X` is empty.*layer='umi'"):
        get_counts(empty)
