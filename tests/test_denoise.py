"""Tests of ``sp.tl.denoise``."""

from __future__ import annotations

import numpy as np
import pytest
from anndata.tests.helpers import assert_equal
from scipy import sparse

import sc_print as sp
from sc_print._keys import Key
from sc_print.data import load_counts

CPU = {"accelerator": "cpu"}
LAYER = Key.layers.denoised


@pytest.fixture(scope="module")
def nb_model(toy_genes):
    """A random-weight model with a negative-binomial (not zero-inflated) decoder over the toy genes."""
    from sc_print.model import ScPrint
    from sc_print.nn import ScPrintConfig

    config = ScPrintConfig.preset("tiny", n_genes=len(toy_genes), expr_decoder="nb")
    return ScPrint.from_net(config=config, state_dict=None, genes=list(toy_genes.index))


class RowCounter:
    """A read-only matrix that records how many rows each read asks for."""

    def __init__(self, X) -> None:
        self.X = X
        self.shape = X.shape
        self.max_rows = 0
        self.rows_read = 0

    def __getitem__(self, key):
        n = len(range(*key.indices(self.shape[0])))
        self.max_rows = max(self.max_rows, n)
        self.rows_read += n
        return self.X[key]


def _denoise(adata, model, **kwargs):
    return sp.tl.denoise(adata, model=model, **{**CPU, **kwargs})


def _dense(X):
    return X.toarray() if sparse.issparse(X) else np.asarray(X)


# --------------------------------------------------------------------------------------------------- slots
def test_sparse_layer_only_context_genes(toy_model, toy_counts_adata, tmp_path):
    adata = toy_counts_adata
    assert _denoise(adata, toy_model, genes="hvg", n_genes=50) is None
    out = adata.layers[LAYER]
    assert sparse.isspmatrix_csr(out) or isinstance(out, sparse.csr_array)
    assert out.shape == adata.shape
    assert out.dtype == np.float32
    record = adata.uns[Key.uns.denoise]
    assert record["gene_set"] == "hvg"
    assert record["n_genes"] == 50
    assert len(record["genes"]) == 50
    assert record["params"]["genes"] == "hvg"
    assert record["layer"] == LAYER
    context = adata.var_names.get_indexer(record["genes"])
    values = _dense(out)
    outside = np.setdiff1d(np.arange(adata.n_vars), context)
    assert (values[:, outside] == 0).all()
    assert (values[:, context] > 0).all()  # every cell is denoised (no cell dropped or resampled)
    assert "highly_variable" not in adata.var.columns  # HVGs computed on a copy
    adata.write_h5ad(tmp_path / "denoised.h5ad")


def test_dense_input_gives_dense_layer(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    dense = adata.copy()
    dense.X = adata.X.toarray()
    _denoise(adata, toy_model, genes="all")
    _denoise(dense, toy_model, genes="all")
    assert isinstance(dense.layers[LAYER], np.ndarray)
    np.testing.assert_allclose(dense.layers[LAYER], _dense(adata.layers[LAYER]), rtol=1e-5)


def test_depth_scaling(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    genes = list(adata.var_names[10:90])
    cols = adata.var_names.get_indexer(genes)
    context_sum = np.asarray(adata.X[:, cols].sum(1)).ravel()
    results = {}
    for mult in (2.0, 4.0):
        _denoise(adata, toy_model, genes=genes, depth_mult=mult, key_added=f"den_{mult}")
        results[mult] = _dense(adata.layers[f"den_{mult}"])
        np.testing.assert_allclose(results[mult].sum(1), context_sum * mult, rtol=1e-4)
        assert adata.uns[f"den_{mult}_denoise"]["depth_mult"] == mult
    assert sorted(adata.uns["den_2.0_denoise"]["genes"]) == sorted(genes)


def test_target_depth(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    _denoise(adata, toy_model, genes="all", target_depth=10_000)
    # every gene is in context and the depth is the total over the mapped genes: rows sum to the target
    np.testing.assert_allclose(_dense(adata.layers[LAYER]).sum(1), 10_000, rtol=1e-4)
    record = adata.uns[Key.uns.denoise]
    assert record["target_depth"] == 10_000
    assert "depth_mult" not in record


def test_zinb_mean_below_nb_mean(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    _denoise(adata, toy_model, genes="all", mode="nb_mean", key_added="nb")
    _denoise(adata, toy_model, genes="all", mode="zinb_mean", key_added="zinb")
    nb, zinb = _dense(adata.layers["nb"]), _dense(adata.layers["zinb"])
    assert (zinb <= nb + 1e-6).all()
    assert (zinb < nb).any()
    assert adata.uns["zinb_denoise"]["expectation"] == "zinb_mean"


def test_expressed_genes_seeded(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    _denoise(adata, toy_model, genes="expressed", n_genes=20, rng=1, key_added="a")
    _denoise(adata, toy_model, genes="expressed", n_genes=20, rng=1, key_added="b")
    _denoise(adata, toy_model, genes="expressed", n_genes=20, rng=2, key_added="c")
    a, b, c = (_dense(adata.layers[k]) for k in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    counts = adata.X.toarray()
    n_expressed = (counts > 0).sum(1)
    n_out = (a > 0).sum(1)
    np.testing.assert_array_equal(n_out, 20)
    many = n_expressed >= 20  # these cells only get expressed genes in context
    assert ((a[many] > 0) <= (counts[many] > 0)).all()
    assert "genes" not in adata.uns["a_denoise"]


def test_backed_input(toy_model, toy_counts_adata, tmp_path):
    import anndata as ad

    adata = toy_counts_adata
    adata.write_h5ad(tmp_path / "toy.h5ad")
    backed = ad.read_h5ad(tmp_path / "toy.h5ad", backed="r")
    _denoise(adata, toy_model, genes="hvg", n_genes=60, batch_size=16)
    _denoise(backed, toy_model, genes="hvg", n_genes=60, batch_size=16)
    assert sparse.issparse(backed.layers[LAYER])
    np.testing.assert_allclose(_dense(backed.layers[LAYER]), _dense(adata.layers[LAYER]), rtol=1e-5)
    assert backed.uns[Key.uns.denoise]["genes"] == adata.uns[Key.uns.denoise]["genes"]
    backed.file.close()


def test_loop_reads_at_most_batch_size_rows(toy_model, toy_counts_adata, monkeypatch):
    import sc_print.model._inference as inference

    adata = toy_counts_adata
    counters = []

    def counting_load_counts(*args, **kwargs):
        inputs = load_counts(*args, **kwargs)
        inputs.X = RowCounter(inputs.X)
        counters.append(inputs.X)
        return inputs

    monkeypatch.setattr(inference, "load_counts", counting_load_counts)
    out = toy_model.get_normalized_expression(adata, genes="all", batch_size=8, accelerator="cpu", return_numpy=True)
    (counter,) = counters
    assert counter.max_rows == 8
    assert counter.rows_read == adata.n_obs
    _denoise(adata, toy_model, genes="all", batch_size=8)
    np.testing.assert_allclose(_dense(out), _dense(adata.layers[LAYER]), rtol=1e-6)
    frame = toy_model.get_normalized_expression(adata, genes="all", batch_size=8, accelerator="cpu")
    assert list(frame.columns) == list(adata.var_names)
    assert list(frame.index) == list(adata.obs_names)
    np.testing.assert_allclose(frame.to_numpy(), _dense(out), rtol=1e-6)


def test_duplicated_gene_written_to_first_column(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    sp.pp.prepare(adata, model=toy_model)
    ids = adata.var[Key.var.gene_id].to_numpy().copy()
    ids[5] = ids[4]  # columns 4 and 5 now hold the same gene
    adata.var[Key.var.gene_id] = ids
    _denoise(adata, toy_model, genes="all")
    values = _dense(adata.layers[LAYER])
    assert (values[:, 4] > 0).all()
    assert (values[:, 5] == 0).all()
    assert adata.uns[Key.uns.denoise]["gene_ids"] == "prepare"
    assert adata.uns[Key.uns.denoise]["n_genes"] == adata.n_vars - 1


def test_copy_and_mudata(toy_model, toy_counts_adata):
    from mudata import MuData

    adata = toy_counts_adata
    before = adata.copy()
    out = _denoise(adata, toy_model, genes="all", copy=True)
    assert out is not adata
    assert LAYER in out.layers
    assert_equal(adata, before)

    mdata = MuData({"rna": adata.copy()})
    _denoise(mdata, toy_model, genes="all")
    np.testing.assert_allclose(_dense(mdata.mod["rna"].layers[LAYER]), _dense(out.layers[LAYER]), rtol=1e-6)


# --------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"genes": ["not_a_gene", "also_missing"]}, KeyError, "not_a_gene"),
        ({"genes": "most_var"}, ValueError, "Unknown gene set"),
        ({"mode": "mean"}, ValueError, "Unknown mode"),
        ({"depth_mult": 0}, ValueError, "depth_mult"),
        ({"target_depth": -5.0}, ValueError, "target_depth"),
        ({"n_genes": 0}, ValueError, "n_genes"),
        ({"layer": "counts"}, KeyError, "counts"),
    ],
)
def test_bad_options_leave_adata_unchanged(toy_model, toy_counts_adata, kwargs, error, match):
    adata = toy_counts_adata
    before = adata.copy()
    with pytest.raises(error, match=match):
        _denoise(adata, toy_model, **kwargs)
    assert_equal(adata, before)


def test_bad_counts_leave_adata_unchanged(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    adata.X = sparse.csr_matrix(np.log1p(adata.X.toarray()))
    before = adata.copy()
    with pytest.raises(ValueError, match="log-normalised"):
        _denoise(adata, toy_model)
    assert_equal(adata, before)


def test_gene_outside_vocabulary(toy_model, toy_counts_adata):
    adata = toy_counts_adata
    adata.var_names = [*adata.var_names[:-1], "my_custom_gene"]
    before = adata.copy()
    with pytest.raises(ValueError, match="my_custom_gene"):
        _denoise(adata, toy_model, genes=["my_custom_gene", adata.var_names[0]])
    assert_equal(adata, before)


def test_zinb_mean_needs_zinb_decoder(nb_model, toy_counts_adata):
    adata = toy_counts_adata
    before = adata.copy()
    with pytest.raises(ValueError, match="ZINB"):
        _denoise(adata, nb_model, mode="zinb_mean")
    assert_equal(adata, before)
    _denoise(adata, nb_model, genes="all")  # the NB mean works
    assert np.isfinite(_dense(adata.layers[LAYER])).all()


@pytest.mark.gpu
def test_gpu_depth_scaling(toy_model, toy_counts_adata):
    import copy

    model = copy.deepcopy(toy_model)  # the call moves the weights to the GPU
    adata = toy_counts_adata
    _denoise(adata, toy_model, genes="all", key_added="cpu")
    sp.tl.denoise(adata, model=model, accelerator="gpu", genes="all", key_added="gpu")
    gpu = _dense(adata.layers["gpu"])
    depth = np.asarray(adata.X.sum(1)).ravel()
    np.testing.assert_allclose(gpu.sum(1), depth * 4.0, rtol=1e-3)
    np.testing.assert_allclose(gpu, _dense(adata.layers["cpu"]), rtol=0.1, atol=0.05)
