"""Tests of ``sp.tl.embed`` and the shared helpers of the data path (``sc_print.data``, ``sc_print._runtime``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from anndata.tests.helpers import assert_equal
from scipy import sparse

import sc_print as sp
from sc_print._keys import Key
from sc_print._runtime import resolve_dtype
from sc_print._validation import check_counts
from sc_print.data import DEPTH_DEFINITION, hvg_positions, iter_tokens, load_counts, map_genes
from sc_print.tl._common import params_record

CPU = {"accelerator": "cpu"}
LEAF_NAMES = {"CL:0000236": "B cell", "CL:0000084": "T cell", "CL:0000576": "monocyte"}


class RowCounter:
    """A read-only matrix that records how many rows each read asks for."""

    def __init__(self, X) -> None:
        self.X = X
        self.shape = X.shape
        self.max_rows = 0
        self.rows_read = 0

    def __getitem__(self, key):
        if not isinstance(key, slice):
            msg = f"only row slices are expected, got {key!r}"
            raise TypeError(msg)
        n = len(range(*key.indices(self.shape[0])))
        self.max_rows = max(self.max_rows, n)
        self.rows_read += n
        return self.X[key]


@pytest.fixture(scope="module")
def disjoint_model(toy_genes):
    """A random-weight model whose vocabulary shares no gene with the toy data."""
    from sc_print.data import load_gene_table
    from sc_print.model import ScPrint
    from sc_print.nn import ScPrintConfig

    table = load_gene_table()
    human = table.index[table["organism"] == "NCBITaxon:9606"]
    genes = [g for g in human[1000:1100] if g not in set(toy_genes.index)][:50]
    return ScPrint.from_net(config=ScPrintConfig.preset("tiny", n_genes=len(genes)), state_dict=None, genes=genes)


def _embed(adata, model, **kwargs):
    return sp.tl.embed(adata, model=model, **{**CPU, **kwargs})


# --------------------------------------------------------------------------------------------------- slots
def test_slots_shapes_and_record(toy_model, toy_counts_adata, tmp_path):
    adata = toy_counts_adata
    assert _embed(adata, toy_model) is None
    d = toy_model.net.config.d_model
    assert adata.obsm[Key.obsm.emb()].shape == (adata.n_obs, d)
    assert adata.obsm[Key.obsm.emb()].dtype == np.float32
    assert adata.obsm[Key.obsm.emb(label="cell_type")].shape == (adata.n_obs, d)
    assert np.isfinite(adata.obsm[Key.obsm.emb()]).all()
    for key in (Key.obs.pred("cell_type"), Key.obs.pred_id("cell_type")):
        assert isinstance(adata.obs[key].dtype, pd.CategoricalDtype)
    proba = adata.obsm[Key.obsm.proba("cell_type")]
    assert isinstance(proba, pd.DataFrame)
    assert proba.shape == (adata.n_obs, 3)
    assert proba.index.equals(adata.obs_names)

    record = adata.uns[Key.uns.embed]
    assert record["params"]["mode"] == "random_expr"
    assert record["params"]["rng"] == 0
    assert record["model"]["d_model"] == d
    assert record["labels"] == ["cell_type"]
    assert record["proba_columns"]["cell_type"] == toy_model.hierarchies["cell_type"].leaves
    assert record["proba_names"]["cell_type"] == list(proba.columns)
    assert record["obsm_keys"] == {"embedding": "X_scprint", "cell_type": "X_scprint_cell_type"}
    assert record["gene_ids"] == "var_names"
    assert record["depth"] == DEPTH_DEFINITION
    assert record["n_genes_mapped"] == adata.n_vars

    # everything written can be saved
    import anndata as ad

    adata.write_h5ad(tmp_path / "embedded.h5ad")
    back = ad.read_h5ad(tmp_path / "embedded.h5ad")
    pd.testing.assert_frame_equal(back.obsm[Key.obsm.proba("cell_type")], proba)
    assert back.uns[Key.uns.embed]["params"]["mode"] == "random_expr"


def test_readable_names_match_ids(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    _embed(adata, toy_model)
    names = adata.obs[Key.obs.pred("cell_type")].astype(str)
    ids = adata.obs[Key.obs.pred_id("cell_type")].astype(str)
    assert set(ids) <= set(LEAF_NAMES)
    assert (names == ids.map(LEAF_NAMES)).all()
    assert set(adata.obsm[Key.obsm.proba("cell_type")].columns) == set(LEAF_NAMES.values())


def test_probabilities(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    _embed(adata, toy_model)
    proba = adata.obsm[Key.obsm.proba("cell_type")]
    values = proba.to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    np.testing.assert_allclose(values.sum(1), 1.0, atol=1e-5)
    conf = adata.obs[Key.obs.conf("cell_type")].to_numpy()
    np.testing.assert_allclose(conf, values.max(1), rtol=1e-6)
    picked = proba.columns.get_indexer(adata.obs[Key.obs.pred("cell_type")].astype(str))
    np.testing.assert_allclose(values[np.arange(adata.n_obs), picked], conf, rtol=1e-6)


# --------------------------------------------------------------------------------------------------- determinism
def test_seeded_gene_sampling(toy_model, toy_counts_adata):
    a, b, c = toy_counts_adata, toy_counts_adata.copy(), toy_counts_adata.copy()
    _embed(a, toy_model, max_len=24, rng=3)
    _embed(b, toy_model, max_len=24, rng=3)
    _embed(c, toy_model, max_len=24, rng=4)
    np.testing.assert_array_equal(a.obsm["X_scprint"], b.obsm["X_scprint"])
    assert not np.allclose(a.obsm["X_scprint"], c.obsm["X_scprint"], atol=1e-4)


@pytest.mark.parametrize("mode", ["fixed", "all"])
def test_chunking_invariance(toy_model, toy_counts_adata, mode):
    genes = list(toy_counts_adata.var_names[::3]) if mode == "fixed" else None
    small, large = toy_counts_adata, toy_counts_adata.copy()
    _embed(small, toy_model, mode=mode, genes=genes, batch_size=7)
    _embed(large, toy_model, mode=mode, genes=genes, batch_size=64)
    np.testing.assert_allclose(small.obsm["X_scprint"], large.obsm["X_scprint"], atol=1e-5)
    proba_small = small.obsm[Key.obsm.proba("cell_type")].to_numpy()
    np.testing.assert_allclose(proba_small, large.obsm[Key.obsm.proba("cell_type")].to_numpy(), atol=1e-5)
    if mode == "fixed":
        assert small.uns[Key.uns.embed]["context"]["genes"] == genes


def test_fixed_mode_without_genes_uses_variable_genes(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    _embed(adata, toy_model, mode="fixed", max_len=40)
    context = adata.uns[Key.uns.embed]["context"]
    assert context["n_genes"] == 40
    assert set(context["genes"]) <= set(adata.var_names)
    assert "highly_variable" not in adata.var.columns  # computed on a copy


def test_csr_dense_backed_agree(toy_model, toy_counts_adata, tmp_path):
    csr = toy_counts_adata
    dense = csr.copy()
    dense.X = csr.X.toarray()
    path = tmp_path / "toy.h5ad"
    csr.write_h5ad(path)
    import anndata as ad

    backed = ad.read_h5ad(path, backed="r")
    for adata in (csr, dense, backed):
        _embed(adata, toy_model, max_len=40, rng=1, batch_size=32)
    np.testing.assert_allclose(csr.obsm["X_scprint"], dense.obsm["X_scprint"], atol=1e-6)
    np.testing.assert_allclose(csr.obsm["X_scprint"], backed.obsm["X_scprint"], atol=1e-6)
    assert backed.isbacked
    backed.file.close()


def test_loop_reads_at_most_batch_size_rows(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    inputs = load_counts(adata, toy_model.vocab, chunk_size=16)
    counter = RowCounter(adata.X)
    inputs.X = counter
    batches = list(
        iter_tokens(inputs, mode="all", max_len=2000, genes=None, seed=0, batch_size=16, device=torch.device("cpu"))
    )
    assert sum(stop - start for start, stop, _ in batches) == adata.n_obs
    assert counter.max_rows == 16
    assert counter.rows_read == adata.n_obs
    # the validation pass and the variable-gene selection read in chunks too
    check = RowCounter(adata.X)
    check_counts(check, where="`.X`", columns=inputs.mapping.mapped, chunk_size=16)
    hvg = RowCounter(adata.X)
    hvg_positions(hvg, inputs.mapping, 50, chunk_size=16)
    assert check.max_rows <= 16
    assert hvg.max_rows <= 16
    # the getter and the public function give the same numbers
    latent = toy_model.get_latent_representation(adata, mode="all", batch_size=16, accelerator="cpu")
    _embed(adata, toy_model, mode="all", batch_size=16)
    np.testing.assert_allclose(latent, adata.obsm["X_scprint"], atol=1e-6)


# --------------------------------------------------------------------------------------------------- options
def test_prepare_gene_ids_and_depth_are_used(toy_model, toy_counts_adata):
    """One definition of depth: the same results with and without `prepare`, also when some genes do not map."""
    import anndata as ad
    from scipy import sparse

    base = toy_counts_adata
    extra = sparse.csr_matrix(np.random.default_rng(3).poisson(2.0, size=(base.n_obs, 25)).astype(np.float32))
    adata = ad.concat([base, ad.AnnData(extra, obs=base.obs.copy())], axis=1, merge="first")
    adata.var_names = [*base.var_names, *[f"NOT_A_GENE_{i}" for i in range(25)]]
    plain = adata.copy()
    sp.pp.prepare(adata, model=toy_model, min_genes=10)
    # prepare's depth is the depth the model uses: counts over the vocabulary genes, not over every column
    np.testing.assert_allclose(adata.obs[Key.obs.depth], np.asarray(base.X.sum(1)).ravel())
    assert (np.asarray(adata.X.sum(1)).ravel() > adata.obs[Key.obs.depth]).all()
    _embed(adata, toy_model)
    _embed(plain, toy_model)
    record = adata.uns[Key.uns.embed]
    assert record["gene_ids"] == "prepare"
    assert plain.uns[Key.uns.embed]["gene_ids"] == "var_names"
    assert record["depth"] == DEPTH_DEFINITION
    np.testing.assert_array_equal(adata.obsm["X_scprint"], plain.obsm["X_scprint"])
    sp.tl.denoise(adata, model=toy_model, accelerator="cpu")
    sp.tl.denoise(plain, model=toy_model, accelerator="cpu")
    np.testing.assert_array_equal(
        adata.layers["scprint_denoised"].toarray(), plain.layers["scprint_denoised"].toarray()
    )


def test_obs_depth_column_is_not_an_input(toy_model, toy_counts_adata):
    """Editing `.obs['scprint_depth']` does not change the results: depth is computed from the counts."""
    adata, edited = toy_counts_adata, toy_counts_adata.copy()
    edited.obs[Key.obs.depth] = np.asarray(adata.X.sum(1)).ravel() * 8
    _embed(adata, toy_model, mode="all")
    _embed(edited, toy_model, mode="all")
    np.testing.assert_array_equal(adata.obsm["X_scprint"], edited.obsm["X_scprint"])
    doubled = toy_counts_adata.copy()
    doubled.X = doubled.X * 2  # the same profile at twice the depth: the depth token sees it
    _embed(doubled, toy_model, mode="all")
    assert np.abs(adata.obsm["X_scprint"] - doubled.obsm["X_scprint"]).max() > 1e-4


def test_truth_accuracy_is_hierarchy_aware(toy_model_data):
    model, train = toy_model_data
    adata = train.copy()
    _embed(adata, model, mode="all", truth={"cell_type": "cell_type"})
    acc = adata.uns[Key.uns.embed]["accuracy"]["cell_type"]
    pred = adata.obs[Key.obs.pred_id("cell_type")].astype(str).to_numpy()
    expected = np.mean(pred == adata.obs["cell_type"].astype(str).to_numpy())
    assert acc["column"] == "cell_type"
    assert acc["n_cells"] == adata.n_obs
    assert acc["accuracy"] == pytest.approx(expected)

    # a coarser truth (lymphocyte, CL:0000542) counts B and T cell predictions as correct; unknowns are skipped
    adata.obs["coarse"] = np.where(np.arange(adata.n_obs) % 2 == 0, "CL:0000542", "unknown")
    adata.obs["names"] = adata.obs["cell_type"].astype(str).map(LEAF_NAMES)
    _embed(adata, model, mode="all", truth={"cell_type": "coarse"}, key_added="coarse")
    coarse = adata.uns["coarse_embed"]["accuracy"]["cell_type"]
    lymph = np.isin(pred[::2], ["CL:0000236", "CL:0000084"])
    assert coarse["n_cells"] == len(pred[::2])
    assert coarse["accuracy"] == pytest.approx(lymph.mean())
    _embed(adata, model, mode="all", truth={"cell_type": "names"}, key_added="names")
    assert adata.uns["names_embed"]["accuracy"]["cell_type"]["accuracy"] == pytest.approx(expected)


def test_key_added_and_label_selection(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    _embed(adata, toy_model, key_added="foo", labels=["cell"], embedding_labels="cell", mode="all")
    assert "X_foo" in adata.obsm
    assert "X_foo_cell" in adata.obsm
    assert "foo_pred_cell_type" not in adata.obs.columns
    assert "foo_embed" in adata.uns
    assert Key.uns.embed not in adata.uns
    np.testing.assert_allclose(adata.obsm["X_foo"], adata.obsm["X_foo_cell"], atol=1e-6)


def test_layer_and_mudata(toy_model, toy_counts_adata):
    from mudata import MuData

    adata = toy_counts_adata
    adata.layers["counts"] = adata.X.copy()
    adata.X = sparse.csr_matrix(np.log1p(adata.X.toarray()))
    _embed(adata, toy_model, layer="counts", mode="all")
    assert adata.uns[Key.uns.embed]["counts"] == ".layers['counts']"

    rna = toy_counts_adata.copy()
    mdata = MuData({"rna": rna})
    _embed(mdata, toy_model, layer="counts", mode="all")
    np.testing.assert_allclose(mdata.mod["rna"].obsm["X_scprint"], adata.obsm["X_scprint"], atol=1e-6)


def test_copy_returns_new_object(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    before = adata.copy()
    out = _embed(adata, toy_model, copy=True)
    assert out is not adata
    assert "X_scprint" in out.obsm
    assert_equal(adata, before)


def test_toy_dataset_runs_with_toy_model(toy_model):
    adata = sp.datasets.toy(n_obs=30)
    _embed(adata, toy_model, truth={"cell_type": "cell_type_ontology_term_id"})
    assert adata.obsm["X_scprint"].shape == (30, toy_model.net.config.d_model)
    assert 0.0 <= adata.uns[Key.uns.embed]["accuracy"]["cell_type"]["accuracy"] <= 1.0


# --------------------------------------------------------------------------------------------------- errors
def _not_counts(adata):
    adata.X = sparse.csr_matrix(np.log1p(adata.X.toarray()))


def _nan(adata):
    X = adata.X.tolil()
    X[0, 0] = np.nan
    adata.X = X.tocsr()


def _inf(adata):
    X = adata.X.toarray()
    X[3, 5] = np.inf
    adata.X = X


def _empty_cell(adata):
    X = adata.X.toarray()
    X[4] = 0
    adata.X = sparse.csr_matrix(X)


def _unmapped_names(adata):
    adata.var_names = [f"gene_{i}" for i in range(adata.n_vars)]


@pytest.mark.parametrize(
    ("corrupt", "error", "match"),
    [
        (_not_counts, ValueError, "log-normalised"),
        (_nan, ValueError, "NaN"),
        (_inf, ValueError, "infinite"),
        (_empty_cell, ValueError, "zero counts"),
        (_unmapped_names, ValueError, "maps onto the vocabulary"),
    ],
)
def test_bad_counts_leave_adata_unchanged(toy_model, toy_counts_adata, corrupt, error, match):
    adata = toy_counts_adata
    corrupt(adata)
    before = adata.copy()
    with pytest.raises(error, match=match):
        _embed(adata, toy_model)
    assert_equal(adata, before)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "fixed", "genes": ["not_a_gene"]}, KeyError, "not_a_gene"),
        ({"genes": ["x"]}, ValueError, "mode='fixed'"),
        ({"mode": "most_expr"}, ValueError, "Unknown mode"),
        ({"labels": ["tissue"]}, KeyError, "Unknown labels"),
        ({"embedding_labels": ["tissue"]}, KeyError, "Unknown embedding_labels"),
        ({"truth": {"cell_type": "missing_column"}}, KeyError, "missing_column"),
        ({"truth": {"cell_type": "batch"}}, ValueError, "Cannot compare"),
        ({"layer": "nope"}, KeyError, "nope"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"dtype": "int8"}, ValueError, "dtype"),
        ({"key_added": ""}, ValueError, "key_added"),
    ],
)
def test_bad_options_leave_adata_unchanged(toy_model, toy_counts_adata, kwargs, error, match):
    adata = toy_counts_adata
    before = adata.copy()
    with pytest.raises(error, match=match):
        _embed(adata, toy_model, **kwargs)
    assert_equal(adata, before)


def test_disjoint_vocabulary(disjoint_model, toy_counts_adata):
    adata = toy_counts_adata
    before = adata.copy()
    with pytest.raises(ValueError, match="None of the 300 genes"):
        _embed(adata, disjoint_model)
    assert_equal(adata, before)


def test_mudata_without_rna(toy_model, toy_counts_adata):
    from mudata import MuData

    mdata = MuData({"prot": toy_counts_adata})
    before = mdata.mod["prot"].copy()
    with pytest.raises(KeyError, match="no modality 'rna'"):
        _embed(mdata, toy_model)
    assert_equal(mdata.mod["prot"], before)


# --------------------------------------------------------------------------------------------------- helpers
def test_resolve_dtype_and_params_record():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype(None, cpu) is torch.float32
    assert resolve_dtype("bf16", cpu) is torch.bfloat16
    assert resolve_dtype(torch.float16, cuda) is torch.float16
    record = params_record(a=None, b=(1, 2), c=np.int64(3), d=torch.bfloat16, e={"x": None, "y": "z"})
    assert record == {"b": [1, 2], "c": 3, "d": "bfloat16", "e": {"y": "z"}}


def test_sparse_collapse_and_hvg_paths_agree(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    sp.pp.prepare(adata, model=toy_model)
    ids = adata.var[Key.var.gene_id].to_numpy().copy()
    ids[7] = ids[3]  # a duplicated gene: its columns are summed
    adata.var[Key.var.gene_id] = ids
    mapping = map_genes(adata, toy_model.vocab)
    assert mapping.n_genes == adata.n_vars - 1
    assert mapping.first_col[mapping.mapper.positions(mapping.col_vocab[[3]])[0]] == 3
    np.testing.assert_array_equal(mapping.collapse_sparse(adata.X).toarray(), mapping.mapper.collapse(adata.X))
    dense = RowCounter(adata.X.toarray())
    in_memory = hvg_positions(adata.X, mapping, 40, chunk_size=16)
    np.testing.assert_array_equal(in_memory, hvg_positions(dense, mapping, 40, chunk_size=16))
    assert dense.max_rows == 16
    assert len(in_memory) == 40


# --------------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_gpu_autocast_close_to_cpu(toy_model, toy_counts_adata):
    import copy

    model = copy.deepcopy(toy_model)  # the call moves the weights to the GPU
    gpu = toy_counts_adata.copy()
    sp.tl.embed(gpu, model=model, accelerator="gpu", mode="all")
    assert gpu.uns[Key.uns.embed]["params"]["dtype"] in ("bfloat16", "float16")
    assert gpu.uns[Key.uns.embed]["device"].startswith("cuda")
    _embed(toy_counts_adata, toy_model, mode="all")
    np.testing.assert_allclose(gpu.obsm["X_scprint"], toy_counts_adata.obsm["X_scprint"], atol=0.1)
    gpu_proba = gpu.obsm[Key.obsm.proba("cell_type")].to_numpy()
    np.testing.assert_allclose(gpu_proba, toy_counts_adata.obsm[Key.obsm.proba("cell_type")].to_numpy(), atol=0.05)
