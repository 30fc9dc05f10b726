"""Tests of ``sp.datasets``: the synthetic toy set, the bundled example and pooch fetching."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

import sc_print as sp
from sc_print.datasets import _datasets

RESOURCES = Path(__file__).resolve().parents[1] / "src" / "sc_print" / "_resources"


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path):
    """Fetch into a fresh cache (``settings`` is restored after each test by conftest)."""
    sp.settings.cache_dir = tmp_path / "cache"
    return tmp_path / "cache" / "datasets"


@pytest.fixture
def serve():
    """Serve a folder over HTTP on 127.0.0.1 from a thread; yields a function folder -> base URL."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def hosted(tmp_path):
    """A folder holding one small h5ad file and its registry entry."""
    folder = tmp_path / "hosted"
    folder.mkdir()
    path = folder / "toy.h5ad"
    sp.datasets.toy(n_obs=20, n_vars=30).write_h5ad(path)
    return folder, {"toy.h5ad": _sha256(path)}


# --------------------------------------------------------------------------------------------------- toy
def test_toy_is_raw_counts_with_ensembl_ids():
    from sc_print.data import load_gene_table

    adata = sp.datasets.toy()
    assert adata.shape == (200, 300)
    assert sparse.issparse(adata.X)
    assert adata.X.dtype == np.float32
    values = adata.X.data
    assert (values >= 0).all()
    assert (values == np.round(values)).all()
    assert (np.asarray(adata.X.sum(1)).ravel() > 0).all()
    table = load_gene_table()
    assert adata.var_names.isin(table.index).all()
    assert (table.loc[adata.var_names, "organism"] == "NCBITaxon:9606").all()
    assert (adata.var["symbol"] == table.loc[adata.var_names, "symbol"].to_numpy()).all()
    assert set(adata.obs["cell_type"]) == {"B cell", "T cell", "monocyte"}
    assert set(adata.obs["cell_type_ontology_term_id"]) == {"CL:0000236", "CL:0000084", "CL:0000576"}
    sp.pp.prepare(adata)  # prepare accepts it (every gene is in the gene table)
    assert adata.uns["scprint_prepare"]["n_in_gene_table"] == 300


def test_toy_is_seeded():
    a, b, c = sp.datasets.toy(seed=1), sp.datasets.toy(seed=1), sp.datasets.toy(seed=2)
    assert (a.X != b.X).nnz == 0
    assert (a.X != c.X).nnz > 0
    small = sp.datasets.toy(n_obs=5, n_vars=12)
    assert small.shape == (5, 12)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"n_obs": 0}, "n_obs"), ({"n_vars": 10**7}, "at most"), ({"n_vars": 2.5}, "n_vars")]
)
def test_toy_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sp.datasets.toy(**kwargs)


# --------------------------------------------------------------------------------------------------- example
def test_example_is_small_and_labelled():
    path = RESOURCES / _datasets.EXAMPLE_FILE
    assert path.stat().st_size < 4 * 1024 * 1024
    adata = sp.datasets.example()
    assert adata.n_obs == 210
    assert sparse.isspmatrix_csr(adata.X) or isinstance(adata.X, sparse.csr_array)
    assert adata.X.dtype == np.float32
    assert (adata.X.data == np.round(adata.X.data)).all()
    assert adata.var_names.str.startswith("ENSG").all()
    counts = adata.obs["cell_line"].value_counts()
    assert set(counts.index) == {"H1975", "H2228", "HCC827"}
    assert counts.min() >= 60
    assert set(adata.obs["assay_ontology_term_id"]) == {"EFO:0008722"}


@pytest.mark.shared_data
def test_example_matches_its_source(shared_data):
    import pandas as pd

    counts = pd.read_csv(shared_data / "cellbench_sc_mixology" / "sc_dropseq.count.csv.gz", index_col=0)
    adata = sp.datasets.example()
    assert adata.var_names.isin(counts.index).all()
    source = counts.loc[adata.var_names, adata.obs_names].to_numpy(dtype=np.float32).T
    np.testing.assert_array_equal(adata.X.toarray(), source)


# --------------------------------------------------------------------------------------------------- fetching
def test_fetch_over_http(hosted, serve, cache, monkeypatch):
    folder, registry = hosted
    monkeypatch.setenv(_datasets.DATA_URL_ENV, serve(folder))
    path = _datasets._fetch("toy.h5ad", registry=registry)
    assert path.parent == cache
    assert _sha256(path) == registry["toy.h5ad"]
    # a second call is served from the cache, even with the server gone
    monkeypatch.setenv(_datasets.DATA_URL_ENV, "http://127.0.0.1:9/")
    assert _datasets._fetch("toy.h5ad", registry=registry) == path


def test_fetch_from_file_url(hosted, cache, monkeypatch):
    import anndata as ad

    folder, registry = hosted
    monkeypatch.setenv(_datasets.DATA_URL_ENV, folder.as_uri())  # no trailing slash: added
    path = _datasets._fetch("toy.h5ad", registry=registry)
    assert path.parent == cache
    assert ad.read_h5ad(path).shape == (20, 30)


def test_fetch_rejects_a_wrong_checksum(hosted, serve, cache, monkeypatch):
    folder, _ = hosted
    monkeypatch.setenv(_datasets.DATA_URL_ENV, serve(folder))
    with pytest.raises(ValueError, match="hash"):
        _datasets._fetch("toy.h5ad", registry={"toy.h5ad": "sha256:" + "0" * 64})
    assert not (cache / "toy.h5ad").exists()


def test_fetch_needs_a_base_url(cache, monkeypatch):
    monkeypatch.delenv(_datasets.DATA_URL_ENV, raising=False)
    with pytest.raises(RuntimeError, match=_datasets.DATA_URL_ENV):
        sp.datasets.pbmc_sorted()
    with pytest.raises(KeyError, match="Unknown dataset file"):
        _datasets._fetch("other.h5ad")


def test_registry_entries_are_sha256():
    assert set(_datasets.REGISTRY) == {
        "sorted_pbmc_reference_2140cells_9types_raw.h5ad",
        "pbmc_3_10x_chemistries_2860cells_raw.h5ad",
        "frozen_pbmc_donorA_2896cells_raw.h5ad",
    }
    for value in _datasets.REGISTRY.values():
        algorithm, digest = value.split(":")
        assert algorithm == "sha256"
        assert len(digest) == 64
        int(digest, 16)


@pytest.mark.shared_data
def test_pbmc_sets_from_a_local_copy(shared_data, serve, cache, monkeypatch):
    folder = shared_data / "pbmc_10x_small_sets"
    monkeypatch.setenv(_datasets.DATA_URL_ENV, serve(folder))
    sorted_pbmc = sp.datasets.pbmc_sorted()
    assert sorted_pbmc.shape == (2140, 8863)
    assert sorted_pbmc.obs["cell_type"].nunique() == 9
    assert set(sorted_pbmc.obs["cell_type_ontology_term_id"]) == set(_datasets.SORTED_CELL_TYPES.values())

    monkeypatch.setenv(_datasets.DATA_URL_ENV, folder.as_uri())
    chemistries = sp.datasets.pbmc_chemistries()
    assert chemistries.shape == (2860, 19974)
    assert chemistries.obs["batch"].nunique() == 3
    donor = sp.datasets.pbmc_donor_a()
    assert donor.shape == (2896, 13939)
    assert sorted(p.name for p in cache.iterdir()) == sorted(_datasets.REGISTRY)
