"""Annotation by fine-tuning: ``ScPrint.finetune`` vs PCA + logistic regression and scANVI on the same splits.

Splits (seeded):

- ``cellbench``: fine-tune on the CEL-seq2 plates ``sc_celseq2_5cl_p1`` + ``p2`` and ``sc_celseq2`` (label
  ``cell_line``, demuxlet singlets), predict the held-out plate ``sc_celseq2_5cl_p3`` (same technology, new plate)
  and ``sc_dropseq`` (new technology; 3 of the 5 lines).
- ``pbmc_sorted``: FACS-sorted PBMC reference, fine-tune on a stratified half, predict the other half.

Methods: scPRINT fine-tuned with the default recipe of ``ScPrint.finetune`` (new ``cell_line``/``sorted`` head,
pooled head + expression read-out probed on the frozen base model, then the whole model trained with denoising +
bottleneck, batch = data set for CellBench, with deep supervision: the rest of the head is also trained to
classify without the read-out, so the trunk and the label token learn the labels), the same without deep
supervision (``deep_scale=0``), the same with a frozen trunk (``train="heads", max_steps=0``: the
probe alone), and the frozen trunk without the expression read-out (``expression_readout=False``: the classifier
reads the transformer outputs only, to show what the deep part alone does); PCA +
logistic regression (50 components of log-normalised counts of 2,000 highly variable genes of the reference,
query projected on the reference PCA; what celltypist-style users do); scANVI (scvi-tools: scVI pretrained on
reference + query without query labels, then ``SCANVI.from_scvi_model``, query cells unlabelled). Scores:
accuracy and macro-F1 over the query cells (abstention off, ``min_confidence=0``, for comparability; the
calibrated abstention is reported separately), wall time of each method.

Embedding scores (scib-metrics, not min-max scaled) on the CellBench technology split (``sc_celseq2`` +
``sc_dropseq``, batch = technology): zero-shot scPRINT, the CellBench models whose trunk was fine-tuned (default
and without deep supervision), PCA and scVI, with the code of
``benchmarks/embedding.py``.

Run: ``python benchmarks/annotation.py [--model default] [--max-steps 150]``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from _common import base_parser, data_record, load_cellbench, load_pbmc_sorted, start_run, timed
from sklearn.metrics import accuracy_score, f1_score

import sc_print as sc_print_pkg

logger = logging.getLogger("benchmarks.annotation")
LABEL = "cell_line"
# (row name, finetune options, batch term for CellBench); the first row is the defaults
SCPRINT_VARIANTS: list[tuple[str, dict[str, Any], bool]] = [
    ("scPRINT fine-tuned", {}, True),
    ("scPRINT fine-tuned, no deep supervision", {"deep_scale": 0.0}, True),
    ("scPRINT fine-tuned, frozen trunk", {"train": "heads", "max_steps": 0}, False),
    (
        "scPRINT fine-tuned, frozen trunk, deep head only",
        {"train": "heads", "max_steps": 0, "expression_readout": False},
        False,
    ),
]


def _cellbench(name: str) -> tuple[ad.AnnData, Any]:
    part, path = load_cellbench(name)
    part = part[part.obs["demuxlet_cls"].astype(str) == "SNG"].copy()
    part.obs[LABEL] = part.obs["cell_line_demuxlet"].astype(str)
    part.obs = part.obs[[LABEL, "dataset"]]
    return part, path


def cellbench_split() -> tuple[ad.AnnData, dict[str, ad.AnnData], list[dict[str, Any]]]:
    ref_sets, query_sets = ("sc_celseq2_5cl_p1", "sc_celseq2_5cl_p2", "sc_celseq2"), ("sc_celseq2_5cl_p3", "sc_dropseq")
    loaded = {n: _cellbench(n) for n in (*ref_sets, *query_sets)}
    parts = {n: v[0] for n, v in loaded.items()}
    genes = ad.concat(list(parts.values()), join="outer", fill_value=0).var_names
    records = [
        data_record(path, parts[n], filter="demuxlet singlets", role="reference" if n in ref_sets else "query")
        for n, (_, path) in loaded.items()
    ]
    ref = ad.concat([parts[n] for n in ref_sets], join="outer", fill_value=0)
    queries = {n: _reindex(parts[n], genes) for n in query_sets}
    return _reindex(ref, genes), queries, records


def _reindex(adata: ad.AnnData, genes: pd.Index) -> ad.AnnData:
    """Same columns (``genes``) for every set: missing genes are zero."""
    import scipy.sparse as sp

    X = sp.csr_matrix(adata.X)
    pos = pd.Index(adata.var_names).get_indexer(genes)
    cols = sp.lil_matrix((adata.n_obs, len(genes)), dtype=np.float32)
    have = pos >= 0
    cols[:, np.flatnonzero(have)] = X[:, pos[have]]
    return ad.AnnData(sp.csr_matrix(cols), obs=adata.obs.copy(), var=pd.DataFrame(index=genes))


def pbmc_split(seed: int) -> tuple[ad.AnnData, dict[str, ad.AnnData], list[dict[str, Any]]]:
    adata, path = load_pbmc_sorted()
    adata.obs[LABEL] = adata.obs["cell_type_sorted"].astype(str)
    adata.obs["dataset"] = "pbmc_sorted"
    gen = np.random.default_rng(seed)
    held = np.zeros(adata.n_obs, dtype=bool)
    for value in adata.obs[LABEL].unique():
        idx = np.flatnonzero(adata.obs[LABEL].to_numpy() == value)
        held[gen.choice(idx, len(idx) // 2, replace=False)] = True
    obs_cols = [LABEL, "dataset"]
    ref = ad.AnnData(adata.X[~held], obs=adata.obs.loc[~held, obs_cols].copy(), var=adata.var[[]].copy())
    query = ad.AnnData(adata.X[held], obs=adata.obs.loc[held, obs_cols].copy(), var=adata.var[[]].copy())
    return ref, {"pbmc_sorted_other_half": query}, [data_record(path, adata, split="stratified halves")]


def _scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(truth, pred)),
        "macro_f1": float(f1_score(truth, pred, average="macro", labels=np.unique(truth), zero_division=0)),
    }


def score_rows(
    split: str, ref: ad.AnnData, queries: dict[str, ad.AnnData], method: str, preds: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """One result row per query: accuracy and macro-F1 of ``preds`` against the query's labels."""
    return [
        {
            "split": split,
            "query": name,
            "method": method,
            "n_reference": ref.n_obs,
            "n_query": q.n_obs,
            **_scores(q.obs[LABEL].astype(str).to_numpy(), np.asarray(preds[name]).astype(str)),
        }
        for name, q in queries.items()
    ]


def pca_logreg(ref: ad.AnnData, queries: dict[str, ad.AnnData], seed: int) -> tuple[dict[str, np.ndarray], float]:
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    r = ref.copy()
    sc.pp.highly_variable_genes(r, flavor="seurat_v3", n_top_genes=2000, span=1.0)
    genes = r.var_names[r.var["highly_variable"]]

    def logn(a: ad.AnnData) -> ad.AnnData:
        a = a[:, genes].copy()
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
        return a

    lr = logn(ref)
    sc.pp.pca(lr, n_comps=50, random_state=seed)
    loadings, mean = lr.varm["PCs"], np.asarray(lr.X.mean(0)).ravel()
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(lr.obsm["X_pca"], ref.obs[LABEL].to_numpy())
    preds = {}
    for name, q in queries.items():
        x = logn(q).X
        x = np.asarray(x.todense() if hasattr(x, "todense") else x)
        preds[name] = clf.predict((x - mean) @ loadings)
    return preds, time.perf_counter() - t0


def scanvi(
    ref: ad.AnnData, queries: dict[str, ad.AnnData], seed: int, epochs: int
) -> tuple[dict[str, np.ndarray], float]:
    import scvi

    t0 = time.perf_counter()
    both = ad.concat([ref, *queries.values()], keys=["reference", *queries], label="split", index_unique="-")
    both.obs["label_or_unknown"] = np.where(both.obs["split"] == "reference", both.obs[LABEL].astype(str), "Unknown")
    sc.pp.highly_variable_genes(both, flavor="seurat_v3", n_top_genes=2000, span=1.0)
    hvg = both[:, both.var["highly_variable"]].copy()
    scvi.settings.seed = seed
    scvi.model.SCVI.setup_anndata(hvg, batch_key="dataset")
    vae = scvi.model.SCVI(hvg, n_latent=10)
    vae.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False)
    model = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="Unknown", labels_key="label_or_unknown")
    model.train(max_epochs=max(epochs // 5, 10), accelerator="cpu", enable_progress_bar=False)
    pred = np.asarray(model.predict())
    split = hvg.obs["split"].to_numpy()
    return {name: pred[split == name] for name in queries}, time.perf_counter() - t0


def scprint(
    base: Any,
    ref: ad.AnnData,
    queries: dict[str, ad.AnnData],
    args: Any,
    batch_key: str | None,
    **options: Any,
) -> tuple[dict[str, np.ndarray], dict[str, Any], Any, float, float]:
    t0 = time.perf_counter()
    options = {"batch_key": batch_key, "max_steps": args.max_steps, **options}
    ft = base.finetune(ref, labels_keys=LABEL, seed=args.seed, accelerator="cpu", **options)
    ft_s = time.perf_counter() - t0
    preds, abst = {}, {}
    t1 = time.perf_counter()
    for name, q in queries.items():
        q = q.copy()
        sc_print_pkg.tl.embed(q, model=ft, labels=[LABEL], rng=args.seed, min_confidence=0)
        proba = q.obsm[f"scprint_proba_{LABEL}"]
        preds[name] = proba.columns.to_numpy()[proba.to_numpy().argmax(1)]
        mask, info = ft.abstain(LABEL, proba.to_numpy(), q.obsm[f"X_scprint_{LABEL}"])
        correct = preds[name] == q.obs[LABEL].to_numpy()
        info["kept_accuracy"] = float(correct[~mask].mean()) if (~mask).any() else None
        info["coverage"] = float((~mask).mean())
        abst[name] = info
    return preds, abst, ft, ft_s, time.perf_counter() - t1


def embedding_scores(base: Any, tuned: dict[str, Any], args: Any) -> pd.DataFrame:
    """scib-metrics of the zero-shot model, each fine-tuned model of ``tuned`` (``{method: model}``), PCA, scVI."""
    from embedding import add_pca_and_scvi, load_setting
    from scib_metrics.benchmark import Benchmarker

    adata, _ = load_setting("technologies")
    times: dict[str, float] = {}
    zs = adata.copy()
    sc_print_pkg.tl.embed(zs, model=base, max_len=args.max_len, rng=args.seed, min_confidence=0)
    adata.obsm["scPRINT zero-shot"] = zs.obsm["X_scprint"]
    for method, ft in tuned.items():
        part = adata.copy()
        sc_print_pkg.tl.embed(part, model=ft, rng=args.seed, min_confidence=0)  # the model's context
        adata.obsm[method] = part.obsm["X_scprint"]
    add_pca_and_scvi(adata, batch="technology", seed=args.seed, epochs=args.scvi_epochs, times=times)
    adata.obsm["PCA"] = adata.obsm["X_pca"]
    adata.obsm["scVI"] = adata.obsm["X_scvi"]
    bm = Benchmarker(
        adata,
        batch_key="technology",
        label_key=LABEL,
        embedding_obsm_keys=["scPRINT zero-shot", *tuned, "PCA", "scVI"],
        pre_integrated_embedding_obsm_key="X_pca",
        n_jobs=args.threads,
        progress_bar=False,
    )
    bm.benchmark()
    table = bm.get_results(min_max_scale=False)
    table = table.loc[table.index != "Metric Type"].astype(float).reset_index().rename(columns={"Embedding": "method"})
    table.insert(0, "setting", "technologies")
    table.insert(1, "n_cells", adata.n_obs)
    return table


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=150, help="fine-tuning steps (ScPrint.finetune default)")
    parser.add_argument("--max-len", type=int, default=1024, help="genes per cell of the zero-shot embedding")
    parser.add_argument("--scvi-epochs", type=int, default=100)
    parser.add_argument("--skip-embedding", action="store_true", help="skip the scib-metrics part")
    args = parser.parse_args()
    run = start_run(args, "annotation")
    base = run.model
    rows, data, extra = [], [], {}
    tuned_cellbench: dict[str, Any] = {}  # CellBench models whose embedding was fine-tuned (for scib-metrics)
    for split, loader, batch_key in (
        ("cellbench", cellbench_split, "dataset"),
        ("pbmc_sorted", lambda: pbmc_split(args.seed), None),
    ):
        ref, queries, records = loader()
        data += [{**r, "split": split} for r in records]
        logger.info("%s: reference %d cells, queries %s", split, ref.n_obs, {k: v.n_obs for k, v in queries.items()})
        methods = {}
        for method, options, uses_batch in SCPRINT_VARIANTS:
            with timed(f"{split}: {method}"):
                preds, abst, ft, ft_s, pred_s = scprint(
                    base, ref, queries, args, batch_key if uses_batch else None, **options
                )
            methods[method] = (preds, ft_s + pred_s, ft_s)
            if not options:  # the defaults
                extra[split] = {
                    "finetune": ft.metadata_["finetune"],
                    "abstention": abst,
                    "calibration": {
                        k: {kk: vv for kk, vv in v.items() if kk != "novelty"}
                        for k, v in ft.metadata_["calibration"].items()
                    },
                }
            else:
                extra[split][method] = {"finetune": ft.metadata_["finetune"], "abstention": abst}
            if split == "cellbench" and options.get("train", "all") != "heads":  # the trunk was trained
                tuned_cellbench[method] = ft
        with timed(f"{split}: PCA + logistic regression"):
            methods["PCA + logistic regression"] = (*pca_logreg(ref, queries, args.seed), None)
        with timed(f"{split}: scANVI"):
            p, s = scanvi(ref, queries, args.seed, args.scvi_epochs)
            methods["scANVI"] = (p, s, None)
        for method, (p, seconds, train_s) in methods.items():
            for row in score_rows(split, ref, queries, method, p):
                row.update(wall_time_s=round(seconds, 1), finetune_s=None if train_s is None else round(train_s, 1))
                rows.append(row)
    results = pd.DataFrame(rows)
    logger.info("\n%s", results.to_string())
    notes = [
        "Timings on a 2-core CPU machine shared with other jobs; wall time per method covers training and "
        "prediction of all queries of the split (scPRINT: fine-tuning + calibration + prediction).",
        f"scPRINT fine-tuned: ScPrint.finetune defaults ({args.max_steps} steps, train='all', lr 3e-4, noise 0.3, "
        "batch 32, head='pooled' (label token + attention pool of the output gene tokens) with the expression "
        "read-out (a logistic regression on the context expression, fitted first by L-BFGS, then frozen), the rest "
        "of the head deeply supervised (deep_scale=1) and probed for 1,500 steps on the frozen base model, "
        "context = the 256 most expressed genes of each cell in training, calibration and prediction), "
        "min_confidence=0 for the scores (calibrated abstention "
        f"reported separately); the zero-shot embedding uses {args.max_len} random expressed genes per cell.",
        "no deep supervision: the defaults with deep_scale=0 (the default deep_scale=1 also trains the rest of the "
        "head to classify without the read-out, which trains the label token, part of the cell embedding, and the "
        "trunk on the labels).",
        "frozen trunk: the same call with train='heads', max_steps=0 (the probe alone: only the new head is "
        "trained, on the base model's outputs; no batch term). deep head only: the same with expression_readout=False.",
        "finetune_s: ScPrint.finetune alone (probe, training, calibration); wall_time_s adds the prediction.",
        f"scANVI: scVI {args.scvi_epochs} epochs (10 latent dims, batch = data set) then SCANVI "
        f"{max(args.scvi_epochs // 5, 10)} epochs; PCA + LR: 50 PCs of 2,000 HVGs of the reference.",
        "Drop-seq holds 3 of the 5 cell lines of the CEL-seq2 plates; macro-F1 averages over the query's classes.",
    ]
    summary = pd.DataFrame()
    import importlib.util

    if importlib.util.find_spec("scib_metrics") is None and not args.skip_embedding:
        notes.append("Embedding scores skipped: scib-metrics is not installed (pip install scib-metrics).")
        args.skip_embedding = True
    if not args.skip_embedding and tuned_cellbench:
        with timed("scib-metrics on the technology split"):
            summary = embedding_scores(base, tuned_cellbench, args)
        notes.append(
            "Embedding scores (summary rows): scib-metrics Benchmarker defaults, not min-max scaled; the fine-tuned "
            "models are the CellBench ones (their reference includes sc_celseq2, the CEL-seq2 half of this split)."
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "annotation_details.json").write_text(json.dumps(extra, indent=1, default=str) + "\n")
    run.write(data=data, results=results, summary=summary, notes=notes)


if __name__ == "__main__":
    main()
