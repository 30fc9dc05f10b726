"""Example data: a bundled PBMC subset, a synthetic toy set and PBMC sets fetched with pooch.

The PBMC sets are small raw-count AnnData files assembled for sc_print from public 10x Genomics data (see each
function). sc_print does not host them at a public address yet, so their download location is configured with
the environment variable ``SC_PRINT_DATA_URL``: a base URL (``https://...``, ``http://...`` or ``file://...``)
under which the files of :data:`REGISTRY` are found. Every download is checked against the sha256 recorded in
:data:`REGISTRY` and cached in ``sc_print.settings.cache_dir / "datasets"``.
"""

from __future__ import annotations

import logging
import os
from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sc_print._io import file_downloader
from sc_print._settings import settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anndata import AnnData

logger = logging.getLogger(__name__)

#: Environment variable holding the base URL of the PBMC files (``https://``, ``http://`` or ``file://``).
DATA_URL_ENV = "SC_PRINT_DATA_URL"

#: File name -> sha256 of every file fetched by :mod:`sc_print.datasets`.
REGISTRY: dict[str, str] = {
    "sorted_pbmc_reference_2140cells_9types_raw.h5ad": (
        "sha256:e4a43588d973e39a33e15a50ca7ea1e58198e936832ad6a4321efffa6132ff74"
    ),
    "pbmc_3_10x_chemistries_2860cells_raw.h5ad": (
        "sha256:4a358d49d95d6cd888c57357bd20845b88623d28c4c10990a08704ab1fb10bda"
    ),
    "frozen_pbmc_donorA_2896cells_raw.h5ad": "sha256:015a1ea4be5641f21746a1bfd616ee15e1347cbddb6b5b83f8d3d7fcbb23fec7",
}

#: The example dataset shipped inside the package (built by ``scripts/build_example_data.py``).
EXAMPLE_FILE = "example_cellbench.h5ad"

#: Labels of the FACS-sorted populations -> Cell Ontology id (Zheng et al. 2017 sorting panel).
SORTED_CELL_TYPES: dict[str, str] = {
    "nk": "CL:0000623",
    "bcells": "CL:0000236",
    "memoryt": "CL:0000813",
    "regulatoryt": "CL:0000815",
    "thelper": "CL:0000492",
    "cytotoxict": "CL:0000794",
    "monocytes": "CL:0001054",
    "naivet": "CL:0000895",
    "naivecytotoxic": "CL:0000900",
}

#: Cell types of :func:`toy`: Cell Ontology id -> name.
TOY_CELL_TYPES: dict[str, str] = {"CL:0000236": "B cell", "CL:0000084": "T cell", "CL:0000576": "monocyte"}

_HUMAN = "NCBITaxon:9606"


# --------------------------------------------------------------------------------------------------- fetching
def _base_url(base_url: str | None = None) -> str:
    url = base_url if base_url is not None else os.environ.get(DATA_URL_ENV, "")
    if not url:
        msg = (
            f"The sc_print PBMC datasets are not hosted at a public address: set the environment variable "
            f"{DATA_URL_ENV} to the base URL (https://..., http://... or file:///path/to/folder) of a copy of "
            f"the files {sorted(REGISTRY)}. Downloads are checked against their sha256. Offline alternatives: "
            "`sp.datasets.example()` (bundled) and `sp.datasets.toy()` (synthetic)."
        )
        raise RuntimeError(msg)
    return url if url.endswith("/") else url + "/"


def _fetch(fname: str, *, registry: Mapping[str, str] | None = None, base_url: str | None = None) -> Path:
    """Download ``fname`` (or find it in the cache) and check its sha256.

    Parameters
    ----------
    fname
        File name, a key of ``registry``.
    registry
        ``{file name: "sha256:<hex>"}``; :data:`REGISTRY` when ``None``.
    base_url
        Base URL; ``$SC_PRINT_DATA_URL`` when ``None``.

    Returns
    -------
    Path of the checked file in ``settings.cache_dir / "datasets"``.
    """
    import pooch

    registry = dict(REGISTRY if registry is None else registry)
    if fname not in registry:
        msg = f"Unknown dataset file {fname!r}; known files: {sorted(registry)}."
        raise KeyError(msg)
    url = _base_url(base_url)
    fetcher = pooch.create(path=Path(settings.cache_dir) / "datasets", base_url=url, registry=registry)
    downloader = file_downloader if url.startswith("file:") else None
    try:
        # pooch downloads to a temporary file and moves it into its cache: nothing half-written stays
        return Path(fetcher.fetch(fname, downloader=downloader, progressbar=settings.show_progress))
    except FileNotFoundError as err:
        msg = f"{err} Check {DATA_URL_ENV} (currently {url!r})."
        raise FileNotFoundError(msg) from err


def _read(fname: str) -> AnnData:
    import anndata as ad

    return ad.read_h5ad(_fetch(fname))


def _add_cell_types(adata: AnnData, column: str) -> None:
    """Add ``cell_type`` (Cell Ontology names) and ``cell_type_ontology_term_id`` from the sorted labels."""
    from sc_print.ontology import term_name

    labels = adata.obs[column].astype(str)
    unknown = sorted(set(labels) - set(SORTED_CELL_TYPES))
    if unknown:
        msg = f"Unexpected sorted cell-type labels {unknown}; the file does not match the registry."
        raise ValueError(msg)
    ids = labels.map(SORTED_CELL_TYPES)
    names = {term: term_name(term) for term in SORTED_CELL_TYPES.values()}
    adata.obs["cell_type"] = pd.Categorical(ids.map(names))
    adata.obs["cell_type_ontology_term_id"] = pd.Categorical(ids)


# --------------------------------------------------------------------------------------------------- datasets
def pbmc_sorted() -> AnnData:
    """FACS-sorted human PBMC populations: 2,140 cells x 8,863 genes, raw UMI counts, 9 cell types.

    Purified populations of Zheng et al. 2017 (10x Genomics, 3' v1), as assembled in the MUDAN R package
    (``referenceCounts``/``referenceAnnot``). The sorting labels are a high-quality ground truth for
    classification. Genes are named by symbol.

    Fetched with pooch from ``$SC_PRINT_DATA_URL`` (see the module docstring) and checked against its sha256.

    Licence: 10x Genomics data, CC BY 4.0 (cite Zheng et al. 2017, Nat Commun 8:14049); the MUDAN repository
    that packaged them is GPL-3.

    Returns
    -------
    AnnData with ``.X`` raw counts (CSR float32) and ``.obs``: ``cell_type_sorted`` (sorting label),
    ``cell_type`` (Cell Ontology name), ``cell_type_ontology_term_id``.
    """
    adata = _read("sorted_pbmc_reference_2140cells_9types_raw.h5ad")
    _add_cell_types(adata, "cell_type_sorted")
    return adata


def pbmc_chemistries() -> AnnData:
    """Human PBMC from three 10x chemistries: 2,860 cells x 19,974 genes, raw UMI counts, no cell types.

    10x Genomics "1k PBMCs" 3' v2 (954 cells) and 3' v3 (906 cells) and 1,000 cells of the 5' PBMC set, as
    packaged in the scWGParis repository; genes are the union of the three filtered gene sets (missing = 0),
    named by symbol. For batch-effect and denoising evaluations.

    Fetched with pooch from ``$SC_PRINT_DATA_URL`` (see the module docstring) and checked against its sha256.

    Licence: 10x Genomics data, CC BY 4.0; the scWGParis repository that packaged them is GPL-2.

    Returns
    -------
    AnnData with ``.X`` raw counts (CSR float32) and ``.obs["batch"]`` (the chemistry).
    """
    return _read("pbmc_3_10x_chemistries_2860cells_raw.h5ad")


def pbmc_donor_a() -> AnnData:
    """Frozen human PBMC of donor A: 2,896 cells x 13,939 genes, raw UMI counts, no cell types.

    10x Genomics "Frozen PBMCs (Donor A)" of Zheng et al. 2017, as packaged in the MUDAN R package
    (``pbmcA``); genes are named by symbol.

    Fetched with pooch from ``$SC_PRINT_DATA_URL`` (see the module docstring) and checked against its sha256.

    Licence: 10x Genomics data, CC BY 4.0 (cite Zheng et al. 2017, Nat Commun 8:14049); the MUDAN repository
    that packaged them is GPL-3.

    Returns
    -------
    AnnData with ``.X`` raw counts (CSR float32) and ``.obs``: ``donor``, ``technology``.
    """
    return _read("frozen_pbmc_donorA_2896cells_raw.h5ad")


def example() -> AnnData:
    """Bundled example: 210 cells of three lung-adenocarcinoma cell lines (Drop-seq), raw UMI counts (no download).

    CellBench ``sc_dropseq`` (Tian et al. 2019, Nat Methods 16:479; GEO GSE118767): the cells demuxlet calls
    singlets and that pass the dataset's QC, all 15,127 genes except ERCC spike-ins (Ensembl ids as
    ``var_names``), counts as CSR float32. Shipped inside the package for the README demo and the tutorials
    (built by ``scripts/build_example_data.py``); it is held out from the training of the embedded default model.

    Licence: the ``LuyiTian/sc_mixology`` repository it comes from is MIT-licensed.

    Returns
    -------
    AnnData with ``.X`` raw counts and ``.obs``: ``cell_line`` (H1975, H2228, HCC827), ``technology`` and
    ``assay_ontology_term_id``.
    """
    import anndata as ad

    resource = files("sc_print") / "_resources" / EXAMPLE_FILE
    with as_file(resource) as path:
        if not Path(path).is_file():
            msg = f"The bundled example data {EXAMPLE_FILE} is missing; build it with scripts/build_example_data.py."
            raise FileNotFoundError(msg)
        return ad.read_h5ad(path)


def toy(n_obs: int = 200, n_vars: int = 300, seed: int = 0) -> AnnData:
    """Synthetic raw counts with human Ensembl ids, built offline (for tests and quick checks).

    The genes are the first ``n_vars`` human genes of the shipped gene table (sorted Ensembl ids). Each cell
    belongs to one of three cell types (B cell, T cell, monocyte) whose negative-binomial mean profiles share a
    log-normal base and up-regulate their own marker genes eight-fold; a per-cell depth factor and a two-level
    batch factor scale the means. Every cell has at least one count.

    Parameters
    ----------
    n_obs
        Number of cells.
    n_vars
        Number of genes.
    seed
        Seed of the random generator: the same arguments always give the same data.

    Returns
    -------
    AnnData with ``.X`` raw counts (CSR float32), ``var_names`` Ensembl ids, ``.var["symbol"]``, and ``.obs``:
    ``cell_type`` (names), ``cell_type_ontology_term_id``, ``batch``.
    """
    import anndata as ad
    from scipy import sparse

    from sc_print.data import load_gene_table

    table = load_gene_table()
    human = table[table["organism"] == _HUMAN]
    for name, value, high in (("n_obs", n_obs, None), ("n_vars", n_vars, len(human))):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            msg = f"`{name}` must be a positive integer, got {value!r}."
            raise ValueError(msg)
        if high is not None and value > high:
            msg = f"`{name}` must be at most {high} (human genes in the gene table), got {value}."
            raise ValueError(msg)
    genes = human.iloc[: int(n_vars)]
    gen = np.random.default_rng(seed)
    ids, names = list(TOY_CELL_TYPES), list(TOY_CELL_TYPES.values())
    cell_type = gen.integers(len(ids), size=n_obs)
    batch = gen.integers(2, size=n_obs)
    means = np.tile(gen.lognormal(mean=-1.0, sigma=1.2, size=n_vars), (len(ids), 1))
    n_markers = max(1, n_vars // (3 * len(ids)))
    for t in range(len(ids)):
        means[t, t * n_markers : (t + 1) * n_markers] *= 8.0
    depth = gen.lognormal(mean=0.0, sigma=0.4, size=n_obs)
    mu = means[cell_type] * depth[:, None] * (1.0 + 0.3 * batch[:, None])
    dispersion = 2.0
    counts = gen.negative_binomial(dispersion, dispersion / (dispersion + mu)).astype(np.float32)
    empty = np.flatnonzero(counts.sum(axis=1) == 0)
    counts[empty, gen.integers(n_vars, size=empty.size)] = 1.0
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(cell_type, categories=names),
            "cell_type_ontology_term_id": pd.Categorical.from_codes(cell_type, categories=ids),
            "batch": pd.Categorical.from_codes(batch, categories=["batch_a", "batch_b"]),
        },
        index=pd.Index([f"cell_{i:05d}" for i in range(n_obs)]),
    )
    var = pd.DataFrame({"symbol": genes["symbol"].astype(str).to_numpy()}, index=genes.index.astype(str).to_numpy())
    return ad.AnnData(X=sparse.csr_matrix(counts), obs=obs, var=var)
