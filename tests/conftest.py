"""Shared pytest fixtures and marker handling for the sc_print test suite.

sc_print itself is imported lazily inside fixtures, so collecting tests never depends on every submodule
importing cleanly.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd
    from anndata import AnnData

# Headless plotting everywhere; set before anything imports matplotlib.pyplot.
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
#: the development data next to the repository (``<repo>/../shared/data``); never read by the package itself
SHARED_DATA = REPO.parent / "shared" / "data"
#: the gene table shipped in the wheel
SHIPPED_GENES = REPO / "src" / "sc_print" / "_resources" / "genes.parquet"
#: the reference scPRINT gene table in the shared data (fallback when the shipped one is not built yet)
#: environment variable naming the python of the reference scPRINT environment (see docs/installation.md)
REFERENCE_ENV = "SC_PRINT_REFERENCE_PYTHON"

TOY_N_OBS = 200
TOY_N_VARS = 300
TOY_CELL_TYPES = ("B cell", "T cell", "monocyte")
TOY_BATCHES = ("batch_a", "batch_b")


# ---------------------------------------------------------------------------------------------------- markers


def _reference_python() -> str | None:
    """The reference environment's python when ``$SC_PRINT_REFERENCE_PYTHON`` names an executable."""
    value = os.environ.get(REFERENCE_ENV)
    if not value:
        return None
    return value if Path(value).is_file() or shutil.which(value) else None


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``reference``, ``gpu`` and ``shared_data`` tests whose requirement is missing."""
    reasons: dict[str, str | None] = {}
    if any("reference" in item.keywords for item in items) and _reference_python() is None:
        reasons["reference"] = f"needs the reference scPRINT environment: set {REFERENCE_ENV} to its python"
    if any("gpu" in item.keywords for item in items) and not _cuda_available():
        reasons["gpu"] = "needs a CUDA device"
    if any("shared_data" in item.keywords for item in items) and not SHARED_DATA.is_dir():
        reasons["shared_data"] = f"needs the development data in {SHARED_DATA}"
    for item in items:
        for marker, reason in reasons.items():
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


# ---------------------------------------------------------------------------------------------------- autouse


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread for the whole session, restored at the end.

    The test models are tiny: on a few shared cores, OpenMP threads waiting on each other cost far more than they
    bring (5-20x slower forward passes and training under load). Session-scoped, so it is in place before any
    module- or session-scoped fixture trains or runs a model.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolate_global_state() -> Iterator[None]:
    """Restore ``sc_print.settings`` and the ``sc_print`` logger after each test; close open figures."""
    import sc_print

    settings = sc_print.settings
    saved_settings = dict(vars(settings))
    logger = logging.getLogger("sc_print")
    saved_logger = (logger.level, logger.propagate, list(logger.handlers))
    yield
    vars(settings).clear()
    vars(settings).update(saved_settings)
    logger.setLevel(saved_logger[0])
    logger.propagate = saved_logger[1]
    logger.handlers[:] = saved_logger[2]
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        plt.close("all")


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``<repo>/../shared/data``; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the development data in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    """A seeded generator shared by the whole session (draws depend on test order: use it for noise only)."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def toy_genes() -> pd.DataFrame:
    """The first 300 human genes (index: Ensembl id; column ``symbol``) of the shipped gene table."""
    import pandas as pd

    if SHIPPED_GENES.is_file():
        table = pd.read_parquet(SHIPPED_GENES)
        if "organism" in table.columns:
            table = table[table["organism"] == "NCBITaxon:9606"]
        symbols = table["symbol"] if "symbol" in table.columns else pd.Series(table.index, index=table.index)
    else:
        pytest.skip(f"needs the shipped gene table {SHIPPED_GENES}")
    symbols = symbols[symbols.index.str.startswith("ENSG")].iloc[:TOY_N_VARS]
    if len(symbols) < TOY_N_VARS:
        pytest.skip(f"the gene table has fewer than {TOY_N_VARS} human genes")
    ids = symbols.index.astype(str)
    names = [str(s) if isinstance(s, str) and s else gene for s, gene in zip(symbols, ids, strict=True)]
    return pd.DataFrame({"symbol": names}, index=pd.Index(ids, name="gene_id"))


@pytest.fixture
def toy_counts_adata(toy_genes: pd.DataFrame) -> AnnData:
    """200 cells x 300 genes of raw counts (float32 CSR) with human Ensembl ids as ``var_names``.

    Counts are negative-binomial around cell-type-specific gene means, scaled by a per-cell depth, so that
    the three cell types are separable. ``.obs`` has categorical ``cell_type`` (3 types) and ``batch``
    (2 batches); ``.var["symbol"]`` holds the gene symbols. Built afresh for every test from a fixed seed.
    """
    import anndata as ad
    import pandas as pd
    from scipy import sparse

    gen = np.random.default_rng(42)
    cell_type = gen.integers(len(TOY_CELL_TYPES), size=TOY_N_OBS)
    batch = gen.integers(len(TOY_BATCHES), size=TOY_N_OBS)
    # per-type gene means: a shared log-normal profile, with 30 marker genes up-regulated in each type
    base = gen.lognormal(mean=-1.0, sigma=1.2, size=TOY_N_VARS)
    means = np.tile(base, (len(TOY_CELL_TYPES), 1))
    for t in range(len(TOY_CELL_TYPES)):
        means[t, t * 30 : (t + 1) * 30] *= 8.0
    depth_scale = gen.lognormal(mean=0.0, sigma=0.4, size=TOY_N_OBS)
    mu = means[cell_type] * depth_scale[:, None] * (1.0 + 0.3 * batch[:, None])
    dispersion = 2.0
    counts = gen.negative_binomial(dispersion, dispersion / (dispersion + mu)).astype(np.float32)
    empty = counts.sum(axis=1) == 0
    counts[empty, 0] = 1.0  # no empty cells

    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(cell_type, categories=list(TOY_CELL_TYPES)),
            "batch": pd.Categorical.from_codes(batch, categories=list(TOY_BATCHES)),
        },
        index=pd.Index([f"cell_{i:03d}" for i in range(TOY_N_OBS)]),
    )
    var = toy_genes.copy()
    var.index.name = None
    return ad.AnnData(X=sparse.csr_matrix(counts), obs=obs, var=var)


@pytest.fixture(scope="session")
def toy_model_data(toy_genes: pd.DataFrame) -> tuple:
    """A tiny ``ScPrint`` (d=32, 2 layers) trained for a few steps on toy counts, and its training AnnData.

    Session-scoped: tests must not train it further or change its weights (use ``copy.deepcopy``).
    """
    import anndata as ad
    import pandas as pd
    import torch
    from scipy import sparse

    from sc_print.model import ScPrint

    gen = np.random.default_rng(7)
    n = 120
    cell_type = gen.integers(3, size=n)
    means = np.tile(gen.lognormal(-1.0, 1.2, size=TOY_N_VARS), (3, 1))
    for t in range(3):
        means[t, t * 30 : (t + 1) * 30] *= 8.0
    counts = gen.poisson(means[cell_type] * gen.lognormal(0, 0.4, size=n)[:, None]).astype(np.float32)
    counts[counts.sum(1) == 0, 0] = 1.0
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical.from_codes(cell_type, categories=["CL:0000236", "CL:0000084", "CL:0000576"])},
        index=[f"c{i}" for i in range(n)],
    )
    adata = ad.AnnData(sparse.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=toy_genes.index.astype(str)))
    torch.manual_seed(0)
    ScPrint.setup_anndata(adata, labels_keys=["cell_type"])
    model = ScPrint(adata, size="tiny", max_len=128, dropout=0.0)
    model.train(max_steps=6, batch_size=32, warmup_steps=2, enable_progress_bar=False)
    model.module.eval()
    return model, adata


@pytest.fixture(scope="session")
def toy_model(toy_model_data: tuple):
    """The tiny trained ``ScPrint`` of ``toy_model_data``."""
    return toy_model_data[0]
