"""Embedding: scib-metrics (bio conservation, batch correction) of scPRINT embeddings against PCA and scVI.

Settings (CellBench, Tian et al. 2019, singlets by demuxlet; label = cell line):

- ``technologies``: ``sc_celseq2`` (CEL-seq2) + ``sc_dropseq`` (Drop-seq), batch = technology. The CellBench
  10x set (``sc_10x``) is named in the plan but its counts are not in the shared data (metadata only).
- ``plates``: the three CEL-seq2 plates of the five-cell-line mixture (``sc_celseq2_5cl_p1..p3``), batch = plate.

Embeddings: scPRINT's default cell embedding (``sp.tl.embed``: ``.obsm["X_scprint"]``) and, for a model with a
cell-type classifier, its cell-type token alone (``.obsm["X_scprint_cell_type"]``); PCA (50 components of
log-normalised counts of 2,000 highly variable genes, also the "unintegrated" reference of the PCR metric);
scVI (``scvi.model.SCVI``, 10 latent dimensions, batch-aware, ``--scvi-epochs`` epochs, seeded) on the same
genes. Scores: ``scib_metrics.benchmark.Benchmarker`` with its default metrics, not min-max scaled, so that
scores are comparable across runs; "Total" = 0.6 x bio conservation + 0.4 x batch correction.

Run: ``python benchmarks/embedding.py [--model default]``.
"""

from __future__ import annotations

import logging
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from _common import (
    base_parser,
    data_record,
    load_cellbench,
    start_run,
    timed,
)

import sc_print as sc_print_pkg
from sc_print._keys import Key

logger = logging.getLogger("benchmarks.embedding")

SETTINGS: dict[str, dict[str, Any]] = {
    "technologies": {"sets": ("sc_celseq2", "sc_dropseq"), "batch": "technology"},
    "plates": {"sets": ("sc_celseq2_5cl_p1", "sc_celseq2_5cl_p2", "sc_celseq2_5cl_p3"), "batch": "dataset"},
}
TECHNOLOGY = {"sc_celseq2": "CEL-seq2", "sc_dropseq": "Drop-seq"}
LABEL = "cell_line"


def load_setting(name: str) -> tuple[ad.AnnData, list[dict[str, Any]]]:
    parts, records = [], []
    for dataset in SETTINGS[name]["sets"]:
        part, path = load_cellbench(dataset)
        part = part[part.obs["demuxlet_cls"].astype(str) == "SNG"].copy()
        part.obs[LABEL] = part.obs["cell_line_demuxlet"].astype(str)
        part.obs["technology"] = TECHNOLOGY.get(dataset, "CEL-seq2")
        records.append(data_record(path, part, filter="demuxlet singlets"))
        parts.append(part)
    adata = ad.concat(parts, join="outer", fill_value=0)
    adata.obs = adata.obs[[LABEL, "technology", "dataset"]].astype("category")
    sc.pp.filter_genes(adata, min_cells=1)
    return adata, records


def add_pca_and_scvi(adata: ad.AnnData, *, batch: str, seed: int, epochs: int, times: dict[str, float]) -> None:
    import scvi

    counts = adata.copy()
    sc.pp.highly_variable_genes(counts, flavor="seurat_v3", n_top_genes=2000, batch_key=batch, span=1.0)
    hvg = counts[:, counts.var["highly_variable"]].copy()
    with timed("PCA", times):
        logn = hvg.copy()
        sc.pp.normalize_total(logn, target_sum=1e4)
        sc.pp.log1p(logn)
        sc.pp.pca(logn, n_comps=50, random_state=seed)
        adata.obsm["X_pca"] = logn.obsm["X_pca"]
    with timed("scVI", times):
        scvi.settings.seed = seed
        scvi.model.SCVI.setup_anndata(hvg, batch_key=batch)
        vae = scvi.model.SCVI(hvg, n_latent=10)
        vae.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False)
        adata.obsm["X_scvi"] = vae.get_latent_representation()


def run_setting(name: str, args: Any, model: Any) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[str, float]]:
    from scib_metrics.benchmark import Benchmarker

    adata, records = load_setting(name)
    batch = SETTINGS[name]["batch"]
    times: dict[str, float] = {}
    sc_print_pkg.pp.prepare(adata, model=model)
    with timed(f"{name}: scPRINT embed", times):
        sc_print_pkg.tl.embed(adata, model=model, max_len=args.max_len, batch_size=args.batch_size, rng=args.seed)
    embeddings = {"scPRINT": Key.obsm.emb()}
    token = Key.obsm.emb(label="cell_type")
    if token in adata.obsm:
        embeddings["scPRINT (cell-type token)"] = token
    add_pca_and_scvi(adata, batch=batch, seed=args.seed, epochs=args.scvi_epochs, times=times)
    embeddings["PCA"] = "X_pca"
    embeddings["scVI"] = "X_scvi"
    for label, key in embeddings.items():
        adata.obsm[label] = np.asarray(adata.obsm[key], dtype=np.float32)
    with timed(f"{name}: scib-metrics", times):
        bm = Benchmarker(
            adata,
            batch_key=batch,
            label_key=LABEL,
            embedding_obsm_keys=list(embeddings),
            pre_integrated_embedding_obsm_key="X_pca",
            n_jobs=args.threads,
            progress_bar=False,
        )
        bm.benchmark()
    table = bm.get_results(min_max_scale=False)
    table = table.loc[table.index != "Metric Type"].astype(float).reset_index().rename(columns={"Embedding": "method"})
    table.insert(0, "setting", name)
    table.insert(1, "n_cells", adata.n_obs)
    table.insert(2, "batch_key", batch)
    for rec in records:
        rec["setting"] = name
    logger.info("%s:\n%s", name, table.to_string())
    return table, records, times


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--max-len", type=int, default=512, help="scPRINT context: random expressed genes per cell")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--scvi-epochs", type=int, default=100)
    args = parser.parse_args()
    run = start_run(args, "embedding")
    model, model_info = run.model, run.model_info
    tables, data, times = [], [], {}
    for name in args.settings:
        table, records, t = run_setting(name, args, model)
        tables.append(table)
        data += records
        times.update(t)
    results = pd.concat(tables, ignore_index=True)
    summary_cols = ["setting", "method", "Bio conservation", "Batch correction", "Total"]
    summary = results[[c for c in summary_cols if c in results]]
    heldout = (model_info.get("card") or {}).get("heldout")
    notes = [
        "CellBench sc_10x counts are absent from the shared data: the technology setting has CEL-seq2 and "
        "Drop-seq only.",
        "scib-metrics scores are not min-max scaled; Total = 0.6 bio conservation + 0.4 batch correction.",
        f"scVI: {args.scvi_epochs} epochs, 10 latent dimensions, seed {args.seed}; PCA: 50 components.",
    ]
    if args.model == "default":
        notes.append(
            "The default model was pretrained on the CellBench CEL-seq2 sets (sc_celseq2, sc_celseq2_5cl_p1..p3) "
            "without their cell-line labels; sc_dropseq was held out."
            + (f" Held-out sets per its card: {heldout}." if heldout else "")
        )
    run.settings["seconds"] = times
    run.write(
        data=data,
        results=results,
        summary=summary,
        notes=notes,
    )


if __name__ == "__main__":
    main()
