"""Spatial: scPRINT denoising of ST spots, and niches against the pathologist regions (her2st).

Data: ``her2st_breast_st/her2st_8sections_3481spots_raw.h5ad`` (Andersson et al. 2021, HER2+ breast cancer,
Spatial Transcriptomics, raw counts, 7 pathologist regions per spot), sections ``--sections`` (default H1 and B1,
the two shallowest: median 778 and 931 genes per spot), each section processed on its own.

Denoising (scPRINT's protocol, as ``denoise.py``):

1. Downsample the raw counts with ``sc_print.data.downsample_profile(X, 0.7)`` (seeded).
2. Genes: the ``--n-genes`` most variable vocabulary genes of the noisy counts (scanpy ``seurat_v3``).
3. Methods on the noisy counts of those genes: scPRINT (``sp.tl.denoise``, each spot alone, depth x the average
   ratio lost), MAGIC (``magic-impute``, library size + sqrt, defaults), KNN-smoothing in expression space
   (``_common.knn_smoothing``, ``k=15``), and **spatial smoothing**: the sum of the noisy counts of a spot and of its
   spatial neighbours (squidpy ``spatial_neighbors``, 6 nearest spots: the natural ST baseline).
4. Per spot, Spearman correlation with the original counts over the genes the original spot expresses, against
   the noisy input's.

Niches (ARI and NMI against ``obs.label``, all spots and without "undetermined"; ``k`` = number of regions of the
section; mean over ``--n-seeds`` seeds of each Gaussian mixture):

- ``PCA``: Gaussian mixture on the 50-PC PCA of the log-normalised HVGs (no space);
- ``PCA + space``: ``sp.tl.niches(use_rep="X_pca")`` (squidpy CellCharter flavour: the PCA and its 1..3-hop
  spatial means, PCA, Gaussian mixture);
- ``scPRINT``: Gaussian mixture on the PCA of ``X_scprint`` (``sp.tl.embed``, default model; no space);
- ``scPRINT niches``: ``sp.tl.niches`` on ``X_scprint`` (the package's default).

Run: ``python benchmarks/spatial.py [--sections H1 B1]``.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
import torch
from _common import (
    base_parser,
    data_file,
    data_record,
    knn_smoothing,
    magic_impute,
    seurat_v3_genes,
    spearman_per_cell,
    start_run,
    timed,
    to_dense,
)
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.mixture import GaussianMixture

import sc_print as sc_print_pkg
from sc_print._keys import Key
from sc_print.data import downsample_profile

logger = logging.getLogger("benchmarks.spatial")

DROP = 0.7
FILE = ("her2st_breast_st", "her2st_8sections_3481spots_raw.h5ad")


def spatial_smoothing(noisy: np.ndarray, coords: np.ndarray, n_neighs: int) -> np.ndarray:
    """Sum of the counts of each spot and of its ``n_neighs`` nearest spots (squidpy's spatial graph)."""
    import squidpy as sq

    scratch = ad.AnnData(sp.csr_matrix(noisy), obsm={"spatial": coords})
    sq.gr.spatial_neighbors_knn(scratch, n_neighs=n_neighs)
    A = (scratch.obsp["spatial_connectivities"] > 0).astype(np.float64) + sp.identity(len(noisy))
    return np.asarray(A @ noisy)


def denoise_section(
    section: ad.AnnData, model, *, n_genes: int, seed: int, threads: int, batch_size: int, times: dict
) -> pd.DataFrame:
    X = to_dense(section.X).astype(np.float32)
    gen = torch.Generator().manual_seed(seed)
    noisy = downsample_profile(torch.from_numpy(X), DROP, generator=gen).numpy()
    mapped = section.var[Key.var.in_vocab].to_numpy()
    keep = noisy[:, mapped].sum(1) > 0
    X, noisy = X[keep], noisy[keep]
    depth_ratio = float(X[:, mapped].sum() / noisy[:, mapped].sum())
    ids = section.var[Key.var.gene_id].astype(str)
    candidates = np.flatnonzero(mapped & ~ids.duplicated().to_numpy() & ((noisy > 0).sum(0) >= 3))
    genes = seurat_v3_genes(noisy, n_genes, candidates)
    truth, noisy_g = X[:, genes].astype(np.float64), noisy[:, genes].astype(np.float64)
    name = str(section.obs["section"].iloc[0])
    outputs = {"noisy input": noisy_g}
    noisy_ad = ad.AnnData(sp.csr_matrix(noisy), obs=section.obs.loc[keep].copy(), var=section.var[[]].copy())
    sc_print_pkg.pp.prepare(noisy_ad, model=model)
    with timed(f"{name} scPRINT denoise", times):
        sc_print_pkg.tl.denoise(
            noisy_ad,
            model=model,
            genes=list(section.var_names[genes]),
            depth_mult=depth_ratio,
            batch_size=batch_size,
            rng=seed,
        )
    outputs["scPRINT"] = to_dense(noisy_ad.layers[Key.layers.denoised][:, genes])
    with timed(f"{name} MAGIC", times):
        outputs["MAGIC"] = magic_impute(noisy_g, seed=seed, n_jobs=threads)
    with timed(f"{name} KNN-smoothing", times):
        outputs["KNN-smoothing (expression)"] = knn_smoothing(noisy_g, k=15, seed=seed)
    coords = np.asarray(section.obsm["spatial"], dtype=np.float64)[keep]
    outputs["spatial smoothing (6 neighbours)"] = spatial_smoothing(noisy_g, coords, 6)
    noisy_rho = spearman_per_cell(truth, noisy_g)
    rows = []
    for method, out in outputs.items():
        rho = spearman_per_cell(truth, out)
        ok = ~np.isnan(rho) & ~np.isnan(noisy_rho)
        gain = rho[ok] - noisy_rho[ok]
        rows.append(
            {
                "section": name,
                "method": method,
                "n_spots": int(ok.sum()),
                "n_genes": len(genes),
                "spearman_mean": float(np.mean(rho[ok])),
                "gain_vs_noisy_mean": float(np.mean(gain)),
                "fraction_spots_improved": float(np.mean(gain > 0)),
            }
        )
    return pd.DataFrame(rows)


def _gmm(rep: np.ndarray, k: int, seed: int) -> np.ndarray | None:
    """Squidpy's CellCharter clustering without the spatial part: PCA (scanpy defaults) then a Gaussian mixture."""
    scratch = ad.AnnData(np.asarray(rep, dtype=np.float64))
    sc.tl.pca(scratch)
    gmm = GaussianMixture(n_components=k, random_state=seed, init_params="random_from_data")
    try:
        return gmm.fit(scratch.obsm["X_pca"]).predict(scratch.obsm["X_pca"])
    except ValueError as err:  # collapsed component, as in sp.tl.niches: a failed seed
        logger.warning("Gaussian mixture failed (seed %d): %s", seed, err)
        return None


def niche_section(section: ad.AnnData, model, *, n_seeds: int, seed: int, times: dict) -> pd.DataFrame:
    name = str(section.obs["section"].iloc[0])
    norm = section.copy()
    sc.pp.normalize_total(norm, target_sum=1e4)
    sc.pp.log1p(norm)
    sc.pp.highly_variable_genes(norm, n_top_genes=2000)
    sc.tl.pca(norm, n_comps=50, mask_var="highly_variable", random_state=seed)
    section.obsm["X_pca"] = norm.obsm["X_pca"]
    sc_print_pkg.pp.prepare(section, model=model)
    with timed(f"{name} scPRINT embed", times):
        sc_print_pkg.tl.embed(section, model=model, max_len=1000, rng=seed)
    labels = section.obs["label"].astype(str).to_numpy()
    k = len(np.unique(labels))
    determined = labels != "undetermined"
    rows = []
    for s in range(seed, seed + n_seeds):
        found = {
            "PCA": _gmm(section.obsm["X_pca"], k, s),
            "scPRINT embedding": _gmm(section.obsm["X_scprint"], k, s),
        }
        for method, rep in (("PCA + space (sp.tl.niches)", "X_pca"), ("scPRINT niches (sp.tl.niches)", "X_scprint")):
            try:
                out = sc_print_pkg.tl.niches(section, use_rep=rep, n_niches=k, min_spots=1, seed=s, copy=True)
            except ValueError as err:  # a collapsed mixture component: recorded as a failed run
                logger.warning("%s %s seed %d failed: %s", name, method, s, err)
                found[method] = None
                continue
            found[method] = out.obs["scprint_niche"].to_numpy()
        for method, pred in found.items():
            if pred is None:
                rows.append({"section": name, "method": method, "seed": s, "n_niches": k, "failed": True})
                continue
            rows.append(
                {
                    "section": name,
                    "method": method,
                    "seed": s,
                    "n_niches": k,
                    "ARI": adjusted_rand_score(labels, pred),
                    "NMI": normalized_mutual_info_score(labels, pred),
                    "ARI_determined": adjusted_rand_score(labels[determined], pred[determined]),
                    "NMI_determined": normalized_mutual_info_score(labels[determined], pred[determined]),
                    "failed": False,
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", default=["H1", "B1"])
    parser.add_argument("--n-genes", type=int, default=500, help="variable genes denoised and scored")
    parser.add_argument("--n-seeds", type=int, default=3, help="seeds of each Gaussian mixture")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    run = start_run(args, "spatial")
    path = data_file(*FILE)
    full = ad.read_h5ad(path)
    times: dict[str, float] = {}
    den, nic, data = [], [], []
    for name in args.sections:
        section = full[full.obs["section"] == name].copy()
        if section.n_obs == 0:
            msg = f"Section {name!r} not in {path}; choose among {sorted(full.obs['section'].unique())}."
            raise SystemExit(msg)
        sc.pp.filter_genes(section, min_cells=1)
        sc_print_pkg.pp.prepare(section, model=run.model)
        data.append(data_record(path, section, section=name))
        den.append(
            denoise_section(
                section,
                run.model,
                n_genes=args.n_genes,
                seed=args.seed,
                threads=args.threads,
                batch_size=args.batch_size,
                times=times,
            )
        )
        nic.append(niche_section(section, run.model, n_seeds=args.n_seeds, seed=args.seed, times=times))
    den_df, nic_df = pd.concat(den, ignore_index=True), pd.concat(nic, ignore_index=True)
    metrics = ["ARI", "NMI", "ARI_determined", "NMI_determined"]
    nic_mean = nic_df.groupby(["section", "method"], sort=False)[metrics].agg(["mean", "std"])
    nic_mean.columns = [f"{m}_{s}" for m, s in nic_mean.columns]
    nic_mean["failed_seeds"] = nic_df.groupby(["section", "method"], sort=False)["failed"].sum()
    nic_mean = nic_mean.reset_index()
    for _, row in den_df.iterrows():
        logger.info(
            "denoise %s | %s: Spearman %.3f (gain %+.3f)",
            row["section"],
            row["method"],
            row["spearman_mean"],
            row["gain_vs_noisy_mean"],
        )
    for _, row in nic_mean.iterrows():
        logger.info(
            "niches %s | %s: ARI %.3f NMI %.3f", row["section"], row["method"], row["ARI_mean"], row["NMI_mean"]
        )
    summary = pd.concat(
        [den_df.assign(task="denoising"), nic_mean.assign(task="niches")], ignore_index=True, sort=False
    )
    run.settings.update({"drop": DROP, "seconds": times})
    notes = [
        f"Sections {', '.join(args.sections)} of her2st, each on its own; downsampling level {DROP}; the "
        f"{args.n_genes} most variable vocabulary genes of the noisy counts are denoised and scored.",
        "MAGIC, KNN-smoothing and spatial smoothing see every spot of the section; scPRINT denoises each spot alone.",
        "Niches: k = number of pathologist regions of the section ('undetermined' counted as a region in ARI/NMI; "
        "the *_determined columns drop those spots); mean (std) over "
        f"{args.n_seeds} Gaussian-mixture seeds; a seed whose mixture collapsed (sp.tl.niches raises) is counted in "
        "failed_seeds and left out of the mean. scPRINT embeddings with max_len=1000 (H1 median 778 genes per spot).",
    ]
    run.write(data=data, results=nic_df, summary=summary, notes=notes)


if __name__ == "__main__":
    main()
