"""Pretrain the small scPRINT model embedded in sc_print (the default of every ``sp.tl`` function).

The script assembles the human raw-count sets of ``<repo>/../shared/data``, transfers cell-type pseudo-labels
from the FACS-sorted PBMC reference, trains the ``"small"`` preset on CPU with the full scPRINT recipe, evaluates
it on held-out datasets and writes ``model.pt``, ``card.json`` and ``MODEL_CARD.md`` into
``src/sc_print/_resources/default_model/``.

Steps (each one can be run alone; intermediate files go to the git-ignored ``<repo>/data_cache/``)::

    python scripts/train_default_model.py assemble            # build data_cache/default_model_cells.h5ad
    python scripts/train_default_model.py benchmark --steps 20 # measure seconds per step
    python scripts/train_default_model.py train --max-steps N  # train, checkpoint every --ckpt-every steps
    python scripts/train_default_model.py train --max-steps N --resume  # continue from the last checkpoint
    python scripts/train_default_model.py card                 # evaluate the trained model, ship it, write the card
    python scripts/train_default_model.py render               # MODEL_CARD.md again from card.json

``train`` runs ``card`` at its end unless ``--no-card`` is given. Everything is seeded (``--seed``).

Data
----
Training: 10x frozen PBMCs of donor A (10x 3' v1), PBMCs in three 10x chemistries (3' v2, 3' v3, 5'), the
CellBench CEL-seq2 cell-line sets (``sc_celseq2``, ``sc_celseq2_5cl_p1..p3``) and the celltypist sample.
Held out (never trained on): the FACS-sorted PBMC reference (the zero-shot classification benchmark) and the
CellBench Drop-seq set ``sc_dropseq``. The CellBench 10x sets (``sc_10x``, ``sc_10x_5cl``) have metadata only in
the shared data (no counts) and cannot be used. Gene names are mapped to Ensembl ids with
:func:`sc_print.data.map_gene_names` (duplicates summed) and the sets are outer-joined (missing = 0).

Labels: ``cell_type`` (Cell Ontology ids) on the training PBMC cells are pseudo-labels transferred from the
sorted reference by a k-nearest-neighbour vote on a PCA of log-normalised counts fitted on the reference; a cell
whose vote for one sorted population is below ``--transfer-min-vote`` (or whose population is naive CD4 / naive CD8
T, which the queries confuse) falls back to the most specific Cell Ontology group that reaches it (naive T cell,
CD4-positive alpha-beta T cell, T cell) or to ``"unknown"``; cells far from
every reference cell are ``"unknown"`` too. Cell lines and celltypist cells are ``"unknown"`` (their labels
are not Cell Ontology terms). ``assay`` (EFO ids) comes from each dataset's technology.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"
CACHE_DIR = REPO / "data_cache"
OUT_DIR = REPO / "src" / "sc_print" / "_resources" / "default_model"
CELLS_FILE = "default_model_cells.h5ad"
CKPT_SUBDIR = "default_model_checkpoints"
TRAINED_SUBDIR = "default_model_trained"
RUN_FILE = "default_model_run.json"
BENCH_FILE = "default_model_benchmarks.json"
MAX_FILE_MB = 25.0
#: loss components reported from the scvi-tools history (per epoch)
LOSS_KEYS = (
    "train_loss",
    "denoise_train",
    "generate_train",
    "classification_train",
    "dissimilarity_train",
    "validation_loss",
    "denoise_validation",
    "generate_validation",
    "classification_validation",
    "dissimilarity_validation",
)
#: options of `train` that define the model and its recipe (the card reads them from the run record)
TRAINING_ARGS = ("seed", "min_cells", "max_len", "batch_size", "lr", "warmup_steps", "validation_size")
#: defaults of the recipe options that `train --resume` takes from the resumed run when they are not given
RECIPE_DEFAULTS: dict[str, Any] = {
    "max_len": 512,
    "batch_size": 32,
    "lr": 1e-3,
    "warmup_steps": 200,
    "validation_size": 0.03,
}
#: share of one predicted class above which the card reports a collapsed cell-type head
COLLAPSE_SHARE = 0.9
#: cells with fewer detected genes are dropped
MIN_GENES_PER_CELL = 200
#: training cells scored with the held-out denoising loss (for comparison)
N_TRAIN_EVAL = 500

logger = logging.getLogger("train_default_model")

#: CellBench sets with counts in the shared data: name -> (technology, held out)
CELLBENCH_SETS: dict[str, tuple[str, bool]] = {
    "sc_celseq2": ("CEL-seq2", False),
    "sc_celseq2_5cl_p1": ("CEL-seq2", False),
    "sc_celseq2_5cl_p2": ("CEL-seq2", False),
    "sc_celseq2_5cl_p3": ("CEL-seq2", False),
    "sc_dropseq": ("Drop-seq", True),
}
#: CellBench sets named in the plan whose count matrices are absent from the shared data
CELLBENCH_MISSING = ("sc_10x", "sc_10x_5cl")
#: technology values of the PBMC sets -> exact EFO term names (resolved with sc_print.ontology.to_ontology)
TECHNOLOGY_TERMS: dict[str, str] = {
    "10x_3p_v1": "10x 3' v1",
    "10x_3p_v2_pbmc1k": "10x 3' v2",
    "10x_3p_v3_pbmc1k": "10x 3' v3",
    "10x_5p_pbmc8k_sub1k": "10x 5' v1",
}
#: sorted populations whose transferred label is not trusted across batches: naive CD4 and naive CD8 T cells of
#: the queries vote for each other (naive CD4 cells of the queries land on the naive CD8 reference cells)
UNTRUSTED_POPULATIONS = ("naivet", "naivecytotoxic")
#: ontology groups for cells without a trusted population vote, most specific first: naive T cell, CD4-positive
#: alpha-beta T cell, T cell (members: the sorted populations that descend from the group in the Cell Ontology)
FALLBACK_GROUPS = ("CL:0000898", "CL:0000624", "CL:0000084")


# ---------------------------------------------------------------------------------------------------- data


def to_ensembl(adata: ad.AnnData, dataset: str) -> tuple[ad.AnnData, dict[str, Any]]:
    """Columns renamed to Ensembl ids (unmapped dropped, duplicated ids summed), counts as CSR float32."""
    from sc_print._keys import Key
    from sc_print.data import map_gene_names

    ids, info = map_gene_names(adata.var_names, organism="human")
    keep = np.flatnonzero(ids != "")
    uniq, inverse = np.unique(ids[keep], return_inverse=True)
    collapse = sp.csr_matrix((np.ones(keep.size, dtype=np.float32), (keep, inverse)), shape=(adata.n_vars, uniq.size))
    X = sp.csr_matrix(sp.csr_matrix(adata.X, dtype=np.float32) @ collapse, dtype=np.float32)
    out = ad.AnnData(X=X, obs=adata.obs.copy(), var=pd.DataFrame(index=pd.Index(uniq, name=None)))
    out.var[Key.var.gene_id] = uniq
    out.obs_names = [f"{dataset}:{name}" for name in adata.obs_names]
    report = {
        "genes_in_file": int(adata.n_vars),
        "genes_mapped": int(keep.size),
        "ensembl_ids": int(uniq.size),
        "duplicates_summed": int(keep.size - uniq.size),
    }
    return out, report


def read_cellbench(data_dir: Path, name: str) -> ad.AnnData:
    """One CellBench set: ``count.csv.gz`` is genes x cells (Ensembl ids); ERCC spike-ins dropped, singlets kept."""
    folder = data_dir / "cellbench_sc_mixology"
    counts = pd.read_csv(folder / f"{name}.count.csv.gz", index_col=0)
    meta = pd.read_csv(folder / f"{name}.metadata.csv.gz", index_col=0)
    counts = counts[~counts.index.astype(str).str.startswith("ERCC-")]  # spike-ins
    if not counts.index.astype(str).str.startswith("ENSG").all():
        msg = f"{name}: expected Ensembl gene ids as rows of the count matrix (genes x cells)."
        raise ValueError(msg)
    cells = counts.columns.intersection(meta.index)
    meta = meta.loc[cells]
    if "demuxlet_cls" in meta:
        meta = meta[meta["demuxlet_cls"].astype(str) == "SNG"]
    X = sp.csr_matrix(counts[meta.index].to_numpy(dtype=np.float32).T)
    line = meta["cell_line_demuxlet"] if "cell_line_demuxlet" in meta else meta.get("cell_line")
    obs = pd.DataFrame({"cell_line": np.asarray(line, dtype=str)}, index=meta.index.astype(str))
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=counts.index.astype(str)))


def lognorm(X: sp.csr_matrix) -> sp.csr_matrix:
    """Counts scaled to 10,000 per cell then ``log1p`` (scanpy's normalize_total + log1p)."""
    import scanpy as sc

    tmp = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32, copy=True))
    sc.pp.normalize_total(tmp, target_sum=1e4)
    sc.pp.log1p(tmp)
    return tmp.X


def transfer_labels(
    ref: ad.AnnData,
    queries: list[ad.AnnData],
    *,
    ref_key: str,
    n_neighbors: int,
    min_vote: float,
    max_dist_quantile: float,
    seed: int,
) -> tuple[list[pd.DataFrame], dict[str, Any]]:
    """KNN label transfer from the sorted reference onto the queries (pseudo-labels as Cell Ontology ids).

    The reference and the queries share their Ensembl ids; the PCA (50 components on 2,000 highly variable
    genes of the log-normalised reference) is fitted on the reference and applied to the queries. Returns one
    frame per query with ``cell_type`` (CL id or ``"unknown"``), ``transfer_source`` (the sorted population,
    the fallback group or the reason for ``"unknown"``) and ``transfer_vote``.
    """
    import scanpy as sc
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    from sc_print.ontology import PBMC_SORTED_CELL_TYPES, term_ancestors

    shared = ref.var_names
    for q in queries:
        shared = shared.intersection(q.var_names)
    ref_x = lognorm(ref[:, shared].X)
    hvg = ad.AnnData(X=ref_x)
    sc.pp.highly_variable_genes(hvg, n_top_genes=2000, flavor="seurat")
    genes = np.flatnonzero(hvg.var["highly_variable"].to_numpy())
    pca = PCA(n_components=50, random_state=seed).fit(ref_x[:, genes].toarray())
    ref_pc = pca.transform(ref_x[:, genes].toarray())
    truth = ref.obs[ref_key].astype(str).to_numpy()
    knn = KNeighborsClassifier(n_neighbors=n_neighbors).fit(ref_pc, truth)
    classes = knn.classes_
    groups = {g: [c for c in classes if g in term_ancestors(PBMC_SORTED_CELL_TYPES[c])] for g in FALLBACK_GROUPS}
    # distance scale: each reference cell's mean distance to its k nearest other reference cells
    ref_dist, _ = knn.kneighbors(ref_pc, n_neighbors=n_neighbors + 1)
    max_dist = float(np.quantile(ref_dist[:, 1:].mean(1), max_dist_quantile))
    # leave-one-out accuracy of the vote on the reference itself (how trustworthy the pseudo-labels can be)
    _, ref_idx = knn.kneighbors(ref_pc, n_neighbors=n_neighbors + 1)
    loo = np.array([pd.Series(truth[row[1:]]).mode().iloc[0] for row in ref_idx])
    report: dict[str, Any] = {
        "method": (
            f"kNN vote (k={n_neighbors}) on a 50-component PCA of 2,000 highly variable genes of the "
            f"log-normalised sorted reference ({len(shared)} shared genes); fine label when its vote >= "
            f"{min_vote} (naive CD4 / naive CD8 T never: they vote for each other across batches), else the most "
            f"specific Cell Ontology group (naive T cell, CD4-positive alpha-beta T cell, T cell) whose summed vote "
            f">= {min_vote}, else unknown; cells whose mean distance to their neighbours exceeds the "
            f"{max_dist_quantile:.0%} quantile of the reference's own are unknown"
        ),
        "shared_genes": len(shared),
        "reference_leave_one_out_accuracy": float((loo == truth).mean()),
    }
    out = []
    for q in queries:
        q_pc = pca.transform(lognorm(q[:, shared].X)[:, genes].toarray())
        proba = pd.DataFrame(knn.predict_proba(q_pc), columns=classes)
        dist, _ = knn.kneighbors(q_pc)
        best = proba.idxmax(axis=1).to_numpy()
        vote = proba.max(axis=1).to_numpy()
        label = np.array([PBMC_SORTED_CELL_TYPES[b] for b in best], dtype=object)
        source = best.astype(object)
        weak = (vote < min_vote) | np.isin(best, UNTRUSTED_POPULATIONS)
        label[weak], source[weak] = "unknown", "weak vote"
        for group_id in reversed(FALLBACK_GROUPS):  # the most specific group is written last
            group_vote = proba[groups[group_id]].sum(axis=1).to_numpy()
            take = weak & (group_vote >= min_vote)
            label[take], source[take], vote[take] = group_id, f"group {group_id}", group_vote[take]
        far = dist.mean(1) > max_dist
        label[far], source[far] = "unknown", "far from reference"
        out.append(
            pd.DataFrame({"cell_type": label, "transfer_source": source, "transfer_vote": vote}, index=q.obs_names)
        )
    return out, report


def _pbmc(data_dir: Path, file: str) -> ad.AnnData:
    return ad.read_h5ad(data_dir / "pbmc_10x_small_sets" / file)


def assemble(data_dir: Path, cache_dir: Path, *, seed: int, args: argparse.Namespace) -> ad.AnnData:
    """Read, map, label and join every dataset; cache the result as ``data_cache/default_model_cells.h5ad``."""
    from sc_print._keys import Key
    from sc_print.data import load_gene_table
    from sc_print.ontology import PBMC_SORTED_CELL_TYPES, to_ontology

    parts: list[ad.AnnData] = []
    gene_reports: dict[str, dict[str, Any]] = {}

    def add(part: ad.AnnData, dataset: str, *, technology: str, heldout: bool, origin: str) -> None:
        part.obs["dataset"] = dataset
        part.obs["split"] = "heldout" if heldout else "train"
        part.obs["technology"] = technology
        part.obs["assay"] = to_ontology("assay", [technology] * part.n_obs) if technology != "unknown" else "unknown"
        part.obs["label_origin"] = origin
        parts.append(part)

    # FACS-sorted PBMC reference: held out, true labels (the zero-shot classification benchmark)
    ref, gene_reports["pbmc_sorted_reference"] = to_ensembl(
        _pbmc(data_dir, "sorted_pbmc_reference_2140cells_9types_raw.h5ad"), "pbmc_sorted_reference"
    )
    ref.obs["sorted_population"] = ref.obs.pop("cell_type_sorted").astype(str)
    ref.obs["cell_type"] = to_ontology("cell_type", ref.obs["sorted_population"])
    # PBMC training sets: cell-type pseudo-labels transferred from the reference
    donor, gene_reports["pbmc_donorA"] = to_ensembl(
        _pbmc(data_dir, "frozen_pbmc_donorA_2896cells_raw.h5ad"), "pbmc_donorA"
    )
    chem, chem_report = to_ensembl(_pbmc(data_dir, "pbmc_3_10x_chemistries_2860cells_raw.h5ad"), "pbmc_chem")
    frames, transfer = transfer_labels(
        ref,
        [donor, chem],
        ref_key="sorted_population",
        n_neighbors=args.transfer_k,
        min_vote=args.transfer_min_vote,
        max_dist_quantile=args.transfer_max_dist_quantile,
        seed=seed,
    )
    for part, frame in zip((donor, chem), frames, strict=True):
        for column in frame:
            part.obs[column] = frame[column].to_numpy()
    add(
        ref, "pbmc_sorted_reference", technology=TECHNOLOGY_TERMS["10x_3p_v1"], heldout=True, origin="FACS sort (truth)"
    )
    technology = str(donor.obs["technology"].iloc[0])
    donor.obs = donor.obs.drop(columns=["technology", "donor"])
    add(donor, "pbmc_donorA", technology=TECHNOLOGY_TERMS[technology], heldout=False, origin="kNN transfer (pseudo)")
    for batch in chem.obs["batch"].astype(str).unique():
        part = chem[chem.obs["batch"].astype(str) == batch].copy()
        part.obs = part.obs.drop(columns=["batch"])
        name = f"pbmc_{batch}"
        gene_reports[name] = chem_report
        add(part, name, technology=TECHNOLOGY_TERMS[batch], heldout=False, origin="kNN transfer (pseudo)")
    for name, (tech, heldout) in CELLBENCH_SETS.items():
        part, gene_reports[name] = to_ensembl(read_cellbench(data_dir, name), name)
        part.obs["cell_type"] = "unknown"
        add(part, name, technology=tech, heldout=heldout, origin="none (cell line)")
    celltypist, gene_reports["celltypist_sample"] = to_ensembl(
        ad.read_h5ad(data_dir / "celltypist_sample" / "celltypist_sample_559cells_raw.h5ad"), "celltypist_sample"
    )
    celltypist.obs["cell_type"] = "unknown"
    add(celltypist, "celltypist_sample", technology="unknown", heldout=False, origin="none")

    adata = ad.concat(parts, join="outer", merge=None, fill_value=0)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    table = load_gene_table()
    order = table.index[table.index.isin(adata.var_names)]  # gene-table order
    adata = adata[:, order].copy()
    adata.var[Key.var.gene_id] = adata.var_names.to_numpy()
    adata.var["symbol"] = table.loc[adata.var_names, "symbol"].to_numpy()
    for column in ("cell_type", "assay", "transfer_source", "sorted_population", "cell_line", "label_origin"):
        if column in adata.obs:
            adata.obs[column] = adata.obs[column].astype(object).fillna("unknown").astype(str).astype("category")
    for column in ("dataset", "split", "technology"):
        adata.obs[column] = adata.obs[column].astype(str).astype("category")
    adata.obs["transfer_vote"] = adata.obs["transfer_vote"].astype(float)
    adata.obs["total_counts"] = np.asarray(adata.X.sum(1)).ravel()
    adata.obs["n_genes"] = np.diff(adata.X.indptr)
    low = adata.obs["n_genes"] < MIN_GENES_PER_CELL
    adata.uns["qc"] = {
        "min_genes_per_cell": MIN_GENES_PER_CELL,
        "removed": {str(k): int(v) for k, v in adata.obs.loc[low, "dataset"].value_counts().items() if v > 0},
    }
    adata = adata[~low.to_numpy()].copy()
    adata.uns["label_transfer"] = transfer
    adata.uns["gene_mapping"] = gene_reports
    adata.uns["sorted_cell_types"] = dict(PBMC_SORTED_CELL_TYPES)
    cache_dir.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(cache_dir / CELLS_FILE, compression="gzip")
    logger.info("assembled %d cells x %d genes -> %s", adata.n_obs, adata.n_vars, cache_dir / CELLS_FILE)
    return adata


def load_cells(cache_dir: Path, data_dir: Path, args: argparse.Namespace) -> ad.AnnData:
    """The cached assembled data, built first when absent."""
    path = cache_dir / CELLS_FILE
    if path.exists():
        return ad.read_h5ad(path)
    return assemble(data_dir, cache_dir, seed=args.seed, args=args)


def vocabulary(train: ad.AnnData, min_cells: int) -> list[str]:
    """Genes detected in at least ``min_cells`` training cells, in gene-table order (the order of ``train.var``)."""
    detected = np.asarray((train.X > 0).sum(0)).ravel()
    return train.var_names[detected >= min_cells].tolist()


def training_data(cells: ad.AnnData, min_cells: int) -> tuple[ad.AnnData, list[str]]:
    """Training cells restricted to the vocabulary genes, and the vocabulary."""
    train = cells[cells.obs["split"] == "train"].copy()
    genes = vocabulary(train, min_cells)
    train = train[:, genes].copy()
    for column in train.obs.select_dtypes("category"):
        train.obs[column] = train.obs[column].cat.remove_unused_categories()
    return train, genes


# ---------------------------------------------------------------------------------------------------- model


def seed_all(seed: int) -> None:
    """Seed Python, numpy, torch (and scvi-tools' data splitting)."""
    import lightning
    import scvi

    lightning.seed_everything(seed, workers=True, verbose=False)
    scvi.settings.seed = seed


def build_model(train: ad.AnnData, genes: list[str], args: argparse.Namespace) -> Any:
    """The untrained model: the "small" preset with the recipe of the default model (seeded initialisation)."""
    from sc_print.model import ScPrint

    seed_all(args.seed)
    ScPrint.setup_anndata(train, labels_keys=["cell_type", "assay"], batch_key="dataset")
    return ScPrint(
        train,
        size="small",
        genes=genes,
        normalization="log",
        depth_atinput=True,
        expr_decoder="zinb",
        dropout=0.1,
        max_len=args.max_len,
        noise=0.6,
    )


def _callbacks() -> tuple[type, type]:
    """Two Lightning callbacks: per-step wall-clock timer and loss log (defined lazily: lightning import)."""
    from lightning.pytorch.callbacks import Callback

    class StepTimer(Callback):
        """Wall-clock time of every optimiser step."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self._start = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.times.append(time.perf_counter() - self._start)

    class LossLog(Callback):
        """Append ``step,loss`` of the training batches to a CSV file (survives resumed runs)."""

        def __init__(self, path: Path) -> None:
            self.path = path

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            new = not self.path.exists()
            with self.path.open("a") as fh:
                if new:
                    fh.write("step,loss\n")
                fh.write(f"{trainer.global_step},{float(loss):.6f}\n")

    return StepTimer, LossLog


def _step_checkpoint() -> type:
    """A Lightning ``ModelCheckpoint`` saving every N steps that scvi-tools' trainer accepts.

    scvi-tools adds its own ``SaveCheckpoint`` (monitoring the validation loss) whenever checkpointing is on and
    none is given, and its ``SaveCheckpoint`` replaces ``on_train_batch_end`` (so ``every_n_train_steps`` never
    fires). This subclass restores Lightning's step-based saving; each save writes the resumable ``.ckpt`` and,
    through scvi-tools, a loadable ``ScPrint.save`` folder next to it.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint
    from scvi.train import SaveCheckpoint

    class StepCheckpoint(SaveCheckpoint):
        on_train_batch_end = ModelCheckpoint.on_train_batch_end

    return StepCheckpoint


def _train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
        "weighted_sampling": True,
        "validation_size": args.validation_size,
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "log_every_n_steps": 10,
    }


def benchmark(args: argparse.Namespace) -> float:
    """Train a fresh model for ``--steps`` steps (no checkpoint) and report the median seconds per step."""
    cells = load_cells(args.cache_dir, args.data_dir, args)
    train, genes = training_data(cells, args.min_cells)
    model = build_model(train, genes, args)
    StepTimer, _ = _callbacks()
    timer = StepTimer()
    start = time.perf_counter()
    model.train(max_steps=args.steps, callbacks=[timer], **{**_train_kwargs(args), "validation_size": None})
    wall = time.perf_counter() - start
    per_step = float(np.median(timer.times[min(3, len(timer.times) - 1) :]))
    logger.info(
        "%d steps in %.1f s (median %.2f s/step after 3 warm-up steps; %d cells, %d genes)",
        args.steps,
        wall,
        per_step,
        train.n_obs,
        len(genes),
    )
    budget = args.budget_min * 60
    logger.info("budget %.0f min -> about %d steps", args.budget_min, int(budget / per_step))
    path = args.cache_dir / BENCH_FILE
    records = json.loads(path.read_text()) if path.exists() else []
    records.append(
        {
            "max_len": args.max_len,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "wall_s": round(wall, 1),
            "median_s_per_step": round(per_step, 3),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
    )
    path.write_text(json.dumps(records, indent=1))
    return per_step


def _last_checkpoint(ckpt_dir: Path) -> Path | None:
    files = sorted(ckpt_dir.glob("step*.ckpt"))
    return files[-1] if files else None


def train_model(args: argparse.Namespace) -> None:
    """Train (or resume), checkpoint every ``--ckpt-every`` steps, save to ``data_cache/default_model_trained``."""
    cells = load_cells(args.cache_dir, args.data_dir, args)
    train, genes = training_data(cells, args.min_cells)
    model = build_model(train, genes, args)
    ckpt_dir = args.cache_dir / CKPT_SUBDIR
    run_path = args.cache_dir / RUN_FILE
    loss_csv = args.cache_dir / "default_model_losses.csv"
    ckpt_path = None
    if args.resume:
        ckpt_path = _last_checkpoint(ckpt_dir)
        if ckpt_path is None:
            msg = f"--resume: no checkpoint in {ckpt_dir}; run without --resume to start a new training."
            raise FileNotFoundError(msg)
        logger.info("resuming from %s", ckpt_path)
        run = json.loads(run_path.read_text()) if run_path.exists() else {"segments": []}
    else:
        for stale in (ckpt_dir, loss_csv, run_path):
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        run = {"segments": []}
    checkpoint = _step_checkpoint()(
        dirpath=str(ckpt_dir),
        filename="step{step:06d}",
        monitor=None,
        every_n_train_steps=args.ckpt_every,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    StepTimer, LossLog = _callbacks()
    timer = StepTimer()
    start = time.perf_counter()
    model.train(
        max_steps=args.max_steps,
        callbacks=[checkpoint, timer, LossLog(loss_csv)],
        ckpt_path=None if ckpt_path is None else str(ckpt_path),
        **_train_kwargs(args),
    )
    wall = time.perf_counter() - start
    # a final checkpoint, so that `train --resume --max-steps M` extends this run exactly where it stopped
    final = ckpt_dir / f"step{model.trainer.global_step:06d}.ckpt"
    if not final.exists():
        model.trainer.save_checkpoint(final)
        model.module.eval()  # scvi-tools' checkpoint hook leaves the module in training mode
        model.is_trained_ = True
    history = {k: [float(v) for v in np.asarray(f).ravel()] for k, f in (model.history or {}).items()}
    run["segments"].append(
        {
            "resumed_from": None if ckpt_path is None else ckpt_path.name,
            "wall_s": wall,
            "steps": len(timer.times),
            "median_s_per_step": float(np.median(timer.times)) if timer.times else None,
            "end_step": int(model.trainer.global_step),
            "epochs": int(model.trainer.current_epoch),
            "args": {k: getattr(args, k) for k in TRAINING_ARGS},
            "history": history,
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - wall)),
            "load_average_at_end": list(os.getloadavg()),
        }
    )
    run["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"}
    run["n_train_cells"] = int(train.n_obs)
    run["n_validation_cells"] = len(model.validation_indices) if model.validation_indices is not None else 0
    model.metadata_ = default_metadata(args)
    model.save(args.cache_dir / TRAINED_SUBDIR, overwrite=True)
    run_path.write_text(json.dumps(run, indent=1))
    logger.info("trained to step %d in %.1f s -> %s", model.trainer.global_step, wall, args.cache_dir / TRAINED_SUBDIR)


def default_metadata(args: argparse.Namespace) -> dict[str, Any]:
    """``model.metadata_`` of the shipped model (``.uns[...]['model']['name']`` is ``"default"``)."""
    return {
        "name": "default",
        "description": (
            "Small scPRINT (d=128, 4 layers) pretrained on CPU on ~7.5k human cells by sc_print's "
            "scripts/train_default_model.py; learned gene tokens; for demonstrations and tests, not science."
        ),
        "card": "MODEL_CARD.md",
        "seed": args.seed,
    }


# ---------------------------------------------------------------------------------------------------- evaluation


def _mapper(model: Any, adata: ad.AnnData) -> Any:
    from sc_print._keys import Key
    from sc_print.data import GeneMapper

    return GeneMapper(model.vocab.index(adata.var[Key.var.gene_id].astype(str).to_numpy()))


def denoising_loss(model: Any, adata: ad.AnnData, *, seed: int, batch_size: int = 64) -> float:
    """Mean ZINB loss of the denoising pass on ``adata`` (same contexts and noise for every model: seeded).

    Mirrors one pretraining step without the gradient: ``max_len`` random expressed genes per cell, their
    counts downsampled with the model's noise level, the original counts scored under the predicted ZINB.
    """
    import torch

    from sc_print.data import downsample_profile, tokenize_rows
    from sc_print.nn import expression_loss

    net = model.net.eval()
    mapper = _mapper(model, adata)
    gen = torch.Generator().manual_seed(seed)
    total, n = 0.0, 0
    with torch.no_grad():
        for start in range(0, adata.n_obs, batch_size):
            rows = adata.X[start : start + batch_size]
            tok = tokenize_rows(rows, mapper, mode="random_expr", max_len=model.module.max_len, seed=seed)
            noisy = downsample_profile(tok.expr, model.module.noise, generator=gen)
            out = net(tok.gene_idx, noisy, tok.depth, depth_mult=tok.expr.sum(1), req_depth=tok.depth, classify=False)
            loss = expression_loss(tok.expr, out.mu, out.theta, out.pi_logits)
            total += float(loss) * rows.shape[0]
            n += rows.shape[0]
    return total / n


def predict_leaves(model: Any, adata: ad.AnnData, *, seed: int, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Argmax leaf of every classifier for every cell (no noise, seeded random expressed context)."""
    import torch

    from sc_print.data import tokenize_rows

    net = model.net.eval()
    mapper = _mapper(model, adata)
    codes: dict[str, list[np.ndarray]] = {label: [] for label in model.hierarchies}
    with torch.no_grad():
        for start in range(0, adata.n_obs, batch_size):
            rows = adata.X[start : start + batch_size]
            tok = tokenize_rows(rows, mapper, mode="random_expr", max_len=model.module.max_len, seed=seed)
            out = net(tok.gene_idx, tok.expr, tok.depth, decode=False)
            for label in codes:
                codes[label].append(out.cls_logits[label].argmax(1).numpy())
    return {label: np.concatenate(parts) for label, parts in codes.items()}


def classification_metrics(model: Any, label: str, pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Hierarchy-aware accuracy and macro-F1 (a prediction is right when it is the truth or descends from it)."""
    from sklearn.metrics import f1_score

    from sc_print.ontology import term_name

    hierarchy = model.hierarchies[label]
    correct = hierarchy.is_correct(pred, truth)
    leaves = np.asarray(hierarchy.leaves, dtype=object)[pred]
    effective = np.where(correct, truth, leaves)  # a correct prediction counts as the true class
    classes = sorted(set(truth))
    per_class = {
        term_name(c): {"n": int((truth == c).sum()), "accuracy": float(correct[truth == c].mean())} for c in classes
    }
    predicted = pd.Series([term_name(x) for x in leaves]).value_counts().to_dict()
    return {
        "n_cells": len(truth),
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1_score(truth, effective, labels=classes, average="macro", zero_division=0)),
        "per_class": per_class,
        "predicted_counts": {k: int(v) for k, v in predicted.items()},
    }


def evaluate(model: Any, cells: ad.AnnData, args: argparse.Namespace) -> dict[str, Any]:
    """Held-out denoising loss per held-out dataset, zero-shot cell-type and assay classification."""
    results: dict[str, Any] = {"denoising_zinb_loss": {}}
    heldout = sorted(cells.obs.loc[cells.obs["split"] == "heldout", "dataset"].unique())
    for dataset in heldout:
        part = cells[cells.obs["dataset"] == dataset]
        results["denoising_zinb_loss"][dataset] = denoising_loss(model, part, seed=args.seed)
    ref = cells[cells.obs["dataset"] == "pbmc_sorted_reference"]
    pred = predict_leaves(model, ref, seed=args.seed)
    results["cell_type_pbmc_sorted_reference"] = classification_metrics(
        model, "cell_type", pred["cell_type"], ref.obs["cell_type"].astype(str).to_numpy()
    )
    # assay of the held-out sets whose technology the classifier knows (Drop-seq is not among its classes)
    truth = ref.obs["assay"].astype(str).to_numpy()
    metrics = classification_metrics(model, "assay", pred["assay"], truth)
    metrics.pop("per_class")
    results["assay_heldout"] = {"pbmc_sorted_reference": {**metrics, "truth": truth[0]}}
    # the same denoising loss on training cells (how much of the gain is generalisation)
    train = cells[cells.obs["split"] == "train"]
    sample = np.sort(
        np.random.default_rng(args.seed).choice(train.n_obs, size=min(N_TRAIN_EVAL, train.n_obs), replace=False)
    )
    results["denoising_zinb_loss_train_sample"] = denoising_loss(model, train[sample], seed=args.seed)
    return results


# ---------------------------------------------------------------------------------------------------- card


def machine() -> dict[str, Any]:
    """CPU count, CPU model, memory and library versions of this machine."""
    import lightning
    import scvi
    import torch

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "scvi_tools": scvi.__version__,
        "accelerator": "cpu",
        "note": "CPU shared with other jobs during training (see load averages)",
    }


def _loss_summary(run: dict[str, Any], loss_csv: Path) -> dict[str, Any]:
    """First and last epoch value of every loss component logged by scvi-tools, and the per-step total loss."""
    segments = run["segments"]
    first, last = segments[0]["history"], segments[-1]["history"]
    components = {}
    for key in sorted(set(first) | set(last)):
        if key not in LOSS_KEYS:
            continue
        values_first, values_last = first.get(key, []), last.get(key, [])
        if values_first or values_last:
            components[key] = {
                "first_epoch": values_first[0] if values_first else None,
                "last_epoch": values_last[-1] if values_last else None,
            }
    steps = pd.read_csv(loss_csv) if loss_csv.exists() else pd.DataFrame({"step": [], "loss": []})
    steps = steps.drop_duplicates("step", keep="last").sort_values("step")
    per_step = {}
    if len(steps):
        per_step = {
            "mean_first_50_steps": float(steps["loss"].iloc[:50].mean()),
            "mean_last_50_steps": float(steps["loss"].iloc[-50:].mean()),
            "every_100_steps": {
                int(s): float(v) for s, v in zip(steps["step"], steps["loss"], strict=True) if s % 100 == 0
            },
        }
    return {"epoch_components": components, "total_loss_per_step": per_step}


def _dataset_table(cells: ad.AnnData) -> list[dict[str, Any]]:
    from sc_print.ontology import is_unknown

    rows = []
    for dataset, obs in cells.obs.groupby("dataset", observed=True):
        rows.append(
            {
                "dataset": str(dataset),
                "split": str(obs["split"].iloc[0]),
                "cells": len(obs),
                "technology": str(obs["technology"].iloc[0]),
                "assay": str(obs["assay"].iloc[0]),
                "cell_type_labelled": int((~obs["cell_type"].astype(str).map(is_unknown)).sum()),
                "cell_type_labels": str(obs["label_origin"].iloc[0]),
                "median_genes_per_cell": float(obs["n_genes"].median()),
            }
        )
    return sorted(rows, key=lambda r: (r["split"] != "train", r["dataset"]))


def write_card(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate the trained model against its untrained initialisation, ship it and write the model card."""
    import hashlib

    from sc_print.model import ScPrint
    from sc_print.ontology import term_name

    run = json.loads((args.cache_dir / RUN_FILE).read_text())
    # the recipe is the one the model was trained with, whatever this command line says
    args = argparse.Namespace(**{**vars(args), **{k: run["args"][k] for k in TRAINING_ARGS}})
    cells = load_cells(args.cache_dir, args.data_dir, args)
    trained = ScPrint.load(args.cache_dir / TRAINED_SUBDIR, accelerator="cpu")
    train, genes = training_data(cells, args.min_cells)
    if trained.genes != genes:
        msg = "The trained model's vocabulary differs from the cached data; retrain (`train`) with the same options."
        raise ValueError(msg)
    fresh = build_model(train, genes, args)
    fresh.module.eval()
    t0 = time.perf_counter()
    metrics = {"step_0": evaluate(fresh, cells, args), "trained": evaluate(trained, cells, args)}
    eval_s = time.perf_counter() - t0
    del fresh

    # ship: model.pt written by ScPrint.save (weights_only-safe), then the card next to it
    trained.metadata_ = default_metadata(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    trained.save(args.out_dir, overwrite=True)
    model_file = args.out_dir / "model.pt"
    size_mb = model_file.stat().st_size / 2**20
    if size_mb >= MAX_FILE_MB:
        msg = f"{model_file} is {size_mb:.1f} MB (limit {MAX_FILE_MB} MB); retrain with a larger --min-cells."
        raise ValueError(msg)
    sha256 = hashlib.sha256(model_file.read_bytes()).hexdigest()
    config = trained.module.config.to_dict()
    n_params = sum(int(p.numel()) for p in trained.net.parameters())
    n_params_saved = sum(int(v.numel()) for k, v in trained.net.state_dict().items() if k != "pos_encoder.pe")
    segments = run["segments"]
    steps_done = segments[-1]["end_step"]
    wall = float(sum(s["wall_s"] for s in segments))
    step_times = [s["median_s_per_step"] for s in segments if s["median_s_per_step"]]
    obs = cells.obs
    train_obs = obs[obs["split"] == "train"]
    transferred = train_obs[train_obs["label_origin"].astype(str).str.startswith("kNN")]
    card = {
        "name": "default",
        "file": {"path": "model.pt", "size_mb": round(size_mb, 2), "sha256": sha256, "format": "ScPrint.save"},
        "data": {
            "datasets": _dataset_table(cells),
            "n_train_cells": int(len(train_obs)),
            "n_validation_cells": int(run.get("n_validation_cells", 0)),
            "n_heldout_cells": int((obs["split"] == "heldout").sum()),
            "not_available": dict.fromkeys(CELLBENCH_MISSING, "metadata only in the shared data (no count matrix)"),
            "doublets_removed": "CellBench cells whose demuxlet call is not SNG; cells with fewer than "
            f"{cells.uns['qc']['min_genes_per_cell']} detected genes ({cells.uns['qc']['removed']})",
            "gene_mapping": dict(cells.uns["gene_mapping"]),
            "label_transfer": {
                **dict(cells.uns["label_transfer"]),
                "pseudo_labels": True,
                "n_cells": int(len(transferred)),
                "labelled": int((transferred["cell_type"].astype(str) != "unknown").sum()),
                "label_counts": {
                    term_name(k): int(v)
                    for k, v in transferred["cell_type"].astype(str).value_counts().items()
                    if v > 0
                },
            },
        },
        "vocabulary": {"n_genes": len(genes), "rule": f"Ensembl ids detected in >= {args.min_cells} training cells"},
        "labels": {
            name: {
                "n_leaves": h.n_leaves,
                "n_parents": h.n_parents,
                "leaves": [f"{c} ({term_name(c)})" for c in h.leaves],
            }
            for name, h in trained.hierarchies.items()
        },
        "architecture": {
            "preset": "small",
            **{
                k: config[k]
                for k in (
                    "d_model",
                    "nlayers",
                    "nhead",
                    "layers_cls",
                    "normalization",
                    "depth_atinput",
                    "expr_decoder",
                    "dropout",
                )
            },
            "gene_tokens": "learned embedding table (no ESM2 protein embeddings available offline)",
            "n_parameters": n_params_saved,
            "n_parameters_with_position_table": n_params,
        },
        "training": {
            "seed": args.seed,
            "steps": int(steps_done),
            "epochs": int(segments[-1]["epochs"]),
            "batch_size": args.batch_size,
            "optimizer": "AdamW (betas 0.9/0.999, weight decay 0.01)",
            "lr": args.lr,
            # the warm-up happens in the first run (a resumed run past it keeps the full learning rate)
            "warmup_steps": (segments[0].get("args") or {}).get("warmup_steps", args.warmup_steps),
            "lr_schedule": "linear warmup, then ReduceLROnPlateau(factor 0.6, patience 1) on the validation loss per epoch",
            "max_len": args.max_len,
            "noise": 0.6,
            "losses": "ZINB denoising + bottleneck reconstruction + 1.5 x hierarchical classification "
            "(cell_type, assay) + 0.2 x cell-token dissimilarity",
            "weighted_sampling": "label-combination weights s*n/(n+s), s=50 (cell_type x assay)",
            "validation_size": args.validation_size,
            "wall_time_s": round(wall, 1),
            "s_per_step_median": round(float(np.median(step_times)), 3) if step_times else None,
            "benchmarks": json.loads(bench.read_text()) if (bench := args.cache_dir / BENCH_FILE).exists() else [],
            "segments": [{k: v for k, v in s.items() if k != "history"} for s in segments],
            "machine": machine(),
        },
        "loss_history": _loss_summary(run, args.cache_dir / "default_model_losses.csv"),
        "heldout_metrics": metrics,
        "evaluation_wall_s": round(eval_s, 1),
        "created": time.strftime("%Y-%m-%d"),
    }
    (args.out_dir / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    (args.out_dir / "MODEL_CARD.md").write_text(render_card(card))
    logger.info("shipped %s (%.2f MB) with its card", model_file, size_mb)
    return card


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _segment_lines(segments: list[dict[str, Any]]) -> list[str]:
    """One card line per resumed training run (where it started, how long it took, steps it repeated)."""
    if len(segments) < 2:
        return []
    parts, previous_end = [], 0
    for seg in segments:
        start = seg["end_step"] - seg["steps"]
        text = f"steps {start}-{seg['end_step']} in {seg['wall_s'] / 60:.1f} min"
        if seg.get("args"):
            a = seg["args"]
            text += f" ({a['max_len']} genes per cell, batch {a['batch_size']}, lr {a['lr']}, {a['warmup_steps']} warm-up steps)"
        if seg["resumed_from"] is not None:
            text += f" (resumed from `{seg['resumed_from']}`"
            if start < previous_end:
                text += f"; steps {start}-{previous_end} of the previous run were discarded and trained again"
            text += ")"
        parts.append(text)
        previous_end = seg["end_step"]
    return [f"- trained in {len(segments)} runs: " + "; ".join(parts) + " (the wall time above sums them)"]


def render_card(card: dict[str, Any]) -> str:
    """``MODEL_CARD.md`` from the numbers of ``card.json``."""
    data, train, arch, metrics = card["data"], card["training"], card["architecture"], card["heldout_metrics"]
    m = train["machine"]
    lines = [
        "# sc_print default model (embedded)",
        "",
        "The small scPRINT model shipped inside the sc_print wheel and used by every `sp.tl` function when no",
        '`model=` is given (`sp.load_model("default")`). It exists so that the package works offline, in',
        "tutorials and in tests. **It is not a substitute for the published scPRINT weights**: use",
        '`sp.load_model("medium")` (or another published model) for any scientific analysis.',
        "",
        f"- file: `{card['file']['path']}` ({card['file']['size_mb']} MB, sha256 `{card['file']['sha256']}`),",
        "  written by `ScPrint.save`, loads with `torch.load(weights_only=True)`",
        "- produced by `scripts/train_default_model.py` (seeded, resumable); numbers below are in `card.json`",
        f"- created {card['created']}",
        "",
        "## Data",
        "",
        "Human raw UMI/read counts from `../shared/data` (never read by the package at run time). Gene names were",
        "mapped to Ensembl ids with `sc_print.data.map_gene_names` (duplicates summed) and the sets outer-joined.",
        "",
        "| dataset | split | cells | technology | assay (EFO) | cell-type labels | labelled cells | median genes/cell |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in data["datasets"]:
        lines.append(
            f"| {row['dataset']} | {row['split']} | {row['cells']:,} | {row['technology']} | {row['assay']} | "
            f"{row['cell_type_labels']} | {row['cell_type_labelled']:,} | {row['median_genes_per_cell']:.0f} |"
        )
    transfer = data["label_transfer"]
    lines += [
        "",
        f"Training cells: {data['n_train_cells']:,} (of which {data['n_validation_cells']:,} form the random validation "
        f"split used by the learning-rate schedule); held out: {data['n_heldout_cells']:,} cells in whole datasets "
        "(`pbmc_sorted_reference`, `sc_dropseq`) never seen in training. "
        f"CellBench `{'`, `'.join(data['not_available'])}` could not be used: the shared data holds their metadata only. "
        f"Dropped: {data['doublets_removed']}.",
        "",
        "**Cell-type labels of the training PBMC cells are transferred pseudo-labels, not annotations.** "
        f"Method: {transfer['method']}. Leave-one-out accuracy of this vote on the sorted reference itself: "
        f"{transfer['reference_leave_one_out_accuracy']:.3f}. "
        f"{transfer['labelled']:,} of {transfer['n_cells']:,} PBMC training cells received a label:",
        "",
    ]
    lines += [f"- {name}: {count:,}" for name, count in transfer["label_counts"].items()]
    lines += [
        "",
        'CellBench cell lines and celltypist cells have `cell_type = "unknown"` (their own labels are not Cell '
        "Ontology terms). The sorted reference supplied the pseudo-labels, so its zero-shot accuracy below measures "
        "how well the model learned and generalises the transferred labels to unseen cells of another batch, not "
        "an independent annotation.",
        "",
        "## Model",
        "",
        f"- vocabulary: {card['vocabulary']['n_genes']:,} human genes ({card['vocabulary']['rule']}, gene-table order)",
        f"- gene tokens: {arch['gene_tokens']}",
        f"- architecture: preset `{arch['preset']}`, d_model {arch['d_model']}, {arch['nlayers']} layers, "
        f"{arch['nhead']} heads, classifier hidden layers {arch['layers_cls']}, {arch['normalization']} normalisation, "
        f"depth token {arch['depth_atinput']}, {arch['expr_decoder'].upper()} decoder, dropout {arch['dropout']}",
        f"- parameters: {arch['n_parameters']:,} saved (the genomic-position table is rebuilt at load time)",
    ]
    for name, h in card["labels"].items():
        lines.append(
            f"- `{name}` classifier: {h['n_leaves']} leaves ({', '.join(h['leaves'])}), {h['n_parents']} ontology parents"
        )
    lines += [
        "",
        "## Training",
        "",
        f"- recipe: {train['losses']}; context of {train['max_len']} random expressed genes per cell"
        + (" in the last run (each run's settings below)" if len(train.get("segments", [])) > 1 else "")
        + ", "
        f"downsampling noise {train['noise']}",
        f"- {train['steps']:,} steps ({train['epochs']} epochs of label-weighted sampling: {train['weighted_sampling']}), "
        f"batch size {train['batch_size']}, {train['optimizer']}, lr {train['lr']} with {train['warmup_steps']} "
        f"warm-up steps; {train['lr_schedule']}; seed {train['seed']}",
        f"- wall time {train['wall_time_s'] / 60:.1f} min of training, median {_fmt(train['s_per_step_median'], 2)} "
        f"s/step; evaluation {card['evaluation_wall_s'] / 60:.1f} min",
        *_segment_lines(train.get("segments", [])),
        f"- machine: {m['nproc']} CPU cores ({m['cpu_model']}), {m['torch_threads']} torch threads, no GPU, "
        f"torch {m['torch']}, lightning {m['lightning']}, scvi-tools {m['scvi_tools']}, Python {m['python']}; "
        f"{m['note']}",
    ]
    if train["benchmarks"]:
        lines += [
            "- timing runs before training (20 steps each, batch "
            f"{train['batch_size']}, fresh model): "
            + "; ".join(
                f"max_len {b['max_len']}: {b['median_s_per_step']:.2f} s/step (load average {b['load_average'][0]:.1f})"
                for b in train["benchmarks"]
            )
            + ". The context length and the step count of each run were chosen from these timings to fit its time "
            "budget on this machine.",
        ]
    lines += [
        "",
        "### Loss history",
        "",
        "| component (scvi-tools history) | first epoch | last epoch |",
        "|---|---|---|",
    ]
    for key, value in card["loss_history"]["epoch_components"].items():
        lines.append(f"| {key} | {_fmt(value['first_epoch'])} | {_fmt(value['last_epoch'])} |")
    per_step = card["loss_history"]["total_loss_per_step"]
    if per_step:
        lines += [
            "",
            f"Total training loss: mean {per_step['mean_first_50_steps']:.3f} over the first 50 steps, "
            f"{per_step['mean_last_50_steps']:.3f} over the last 50.",
        ]
    step0, done = metrics["step_0"], metrics["trained"]
    lines += [
        "",
        "## Held-out evaluation",
        "",
        "Untrained = the same architecture and seed before the first step. Denoising: mean ZINB loss of the",
        "original counts given a noised context (same random contexts and noise for both models; lower is better).",
        "",
        "| metric | untrained (step 0) | trained |",
        "|---|---|---|",
    ]
    for dataset, value in done["denoising_zinb_loss"].items():
        lines.append(f"| denoising ZINB loss, {dataset} | {step0['denoising_zinb_loss'][dataset]:.4f} | {value:.4f} |")
    lines.append(
        f"| denoising ZINB loss, {N_TRAIN_EVAL} random training cells | {step0['denoising_zinb_loss_train_sample']:.4f} | "
        f"{done['denoising_zinb_loss_train_sample']:.4f} |"
    )
    ct0, ct = step0["cell_type_pbmc_sorted_reference"], done["cell_type_pbmc_sorted_reference"]
    lines += [
        f"| cell-type accuracy, pbmc_sorted_reference ({ct['n_cells']:,} cells) | {ct0['accuracy']:.3f} | {ct['accuracy']:.3f} |",
        f"| cell-type macro-F1, pbmc_sorted_reference | {ct0['macro_f1']:.3f} | {ct['macro_f1']:.3f} |",
    ]
    for dataset, value in done["assay_heldout"].items():
        lines.append(
            f"| assay accuracy ({value['truth']}), {dataset} | {step0['assay_heldout'][dataset]['accuracy']:.3f} | "
            f"{value['accuracy']:.3f} |"
        )
    lines += [
        "",
        "A prediction is correct when it is the true Cell Ontology term or descends from it "
        "(`LabelHierarchy.is_correct`); macro-F1 averages the F1 of the nine sorted populations (a correct prediction "
        "counts as the true class). For reference, always answering the largest population scores "
        f"{max(v['n'] for v in ct['per_class'].values()) / ct['n_cells']:.3f} accuracy. Per population (trained model):",
        "",
        "| sorted population | cells | accuracy |",
        "|---|---|---|",
    ]
    for name, value in ct["per_class"].items():
        lines.append(f"| {name} | {value['n']} | {value['accuracy']:.3f} |")
    top_name, top_count = max(ct["predicted_counts"].items(), key=lambda kv: kv[1])
    if top_count / ct["n_cells"] > COLLAPSE_SHARE:
        lines += [
            "",
            f"**The cell-type head has not learned to separate cell types**: it answers '{top_name}' for "
            f"{top_count:,} of {ct['n_cells']:,} cells, so its accuracy is that population's share and lies below the "
            f"majority baseline. {train['steps']} CPU steps were enough for the denoiser and the assay head (see "
            "above) but not for the cell-type head. Training longer (`train --resume --max-steps N` continues from the "
            "last checkpoint) is the fix; until then, do not use this model's cell-type predictions.",
        ]
    lines += [
        "",
        "## Limits",
        "",
        f"This is a tiny model ({arch['n_parameters'] / 1e6:.1f} M parameters) trained for {train['steps']} steps "
        f"({train['wall_time_s'] / 60:.0f} minutes) on {m['nproc']} shared CPU cores on about {data['n_train_cells'] / 1000:.1f}k cells of a few "
        "PBMC and lung-adenocarcinoma cell-line datasets. Its gene tokens are learned from these cells instead of "
        "the ESM2 protein embeddings of scPRINT, so genes rarely seen here have poor embeddings and genes outside "
        "the vocabulary are ignored. Its cell-type classifier knows only the populations above, learned from kNN "
        "pseudo-labels (naive CD4 and naive CD8 T cells could not be told apart and share the parent label "
        "'naive T cell'; the reference has no dendritic cells, platelets or CD16 monocytes). Its assay classifier "
        "knows only the technologies of the training sets. Embeddings, denoised counts and gene networks from it "
        "show that the pipeline runs; they are not biological results. Use the published scPRINT weights "
        '(`sp.load_model("medium")`, trained on 50M+ CELLxGENE cells) for science.',
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["assemble", "benchmark", "train", "card", "render"])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--min-cells", type=int, default=3, help="vocabulary: genes detected in >= this many cells")
    # recipe options: default None = the previous run's value under `train --resume`, else RECIPE_DEFAULTS
    parser.add_argument("--max-len", type=int, default=None, help="genes in context per cell (512)")
    parser.add_argument("--batch-size", type=int, default=None, help="cells per step (32)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (1e-3)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (200)")
    parser.add_argument("--validation-size", type=float, default=None, help="validation share (0.03)")
    parser.add_argument("--steps", type=int, default=20, help="benchmark: steps to time")
    parser.add_argument("--budget-min", type=float, default=30.0, help="benchmark: training budget to fit")
    parser.add_argument("--max-steps", type=int, default=2000, help="train: total optimiser steps")
    parser.add_argument("--ckpt-every", type=int, default=200, help="train: checkpoint every N steps")
    parser.add_argument("--resume", action="store_true", help="train: continue from the last checkpoint")
    parser.add_argument("--no-card", action="store_true", help="train: do not evaluate and ship at the end")
    parser.add_argument("--transfer-k", type=int, default=15, help="label transfer: neighbours")
    parser.add_argument("--transfer-min-vote", type=float, default=0.6, help="label transfer: minimum vote")
    parser.add_argument("--transfer-max-dist-quantile", type=float, default=0.99, help="label transfer: distance cut")
    return fill_recipe(parser.parse_args(argv))


def fill_recipe(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the recipe options left unset: from the run being resumed (``train --resume``), else the defaults.

    A resumed run thus keeps its context length, batch size and schedule unless an option is given again on
    the command line; whatever each run used is recorded in its segment of the run record (and in the card).
    """
    previous: dict[str, Any] = {}
    run_path = args.cache_dir / RUN_FILE
    if args.command == "train" and args.resume and run_path.exists():
        run = json.loads(run_path.read_text())
        segments = run.get("segments") or []
        previous = (segments[-1].get("args") if segments else None) or run.get("args") or {}
    for key, default in RECIPE_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, previous.get(key, default))
    return args


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.command == "assemble":
        assemble(args.data_dir, args.cache_dir, seed=args.seed, args=args)
    elif args.command == "benchmark":
        benchmark(args)
    elif args.command == "train":
        train_model(args)
        if not args.no_card:
            write_card(args)
    elif args.command == "render":  # MODEL_CARD.md again from card.json (no evaluation)
        card = json.loads((args.out_dir / "card.json").read_text())
        (args.out_dir / "MODEL_CARD.md").write_text(render_card(card))
    else:
        write_card(args)


if __name__ == "__main__":
    main()
