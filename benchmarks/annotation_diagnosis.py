"""Where a fine-tuned classifier can lose accuracy: the information in the cells' context vs what the model keeps of it.

Without its expression read-out (``expression_readout=False``, the "deep head only" rows of
``benchmarks/annotation.py``) the fine-tuned embedded model falls behind PCA + logistic regression on the sorted
PBMC split. This script asks why, on the same splits (same seed, same reference and query cells), by fitting one
and the same classifier (scikit-learn logistic regression, ``C=1``) to different views of the cells:

- ``expression: 2,000 HVGs, 50 PCs`` - the baseline of ``annotation.py`` (log-normalised counts of the reference's
  highly variable genes, query projected on the reference PCA);
- ``expression: the model's context`` - log-normalised counts (CP10k, ``log1p``) of exactly the genes the model is
  shown for each cell (its 256 most expressed mapped genes, ``mode="top_expr"``, the context of ``finetune``),
  every other gene zero: what the transformer could know;
- ``frozen scPRINT: cell tokens`` - the zero-shot model's output cell tokens (cell, depth and label tokens,
  concatenated, standardised) in that same context;
- ``frozen scPRINT: cell tokens + mean gene outputs`` - the same plus the mean of the model's output gene tokens.

If the first two views score alike and the frozen model's views score lower, the information needed is in each
cell's context and is lost in the model's representation, which is what fine-tuning has to recover. The
fine-tuned model's scores of the last ``annotation.py`` run (``benchmarks/results/annotation.csv``, when present)
are copied next to them, labelled as such.

Run: ``python benchmarks/annotation_diagnosis.py [--model default] [--max-len 256]``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from _common import RESULTS, base_parser, start_run, timed
from annotation import LABEL, cellbench_split, pbmc_split, pca_logreg, score_rows
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger("benchmarks.annotation_diagnosis")


def model_views(model: Any, adata: ad.AnnData, max_len: int, seed: int) -> dict[str, Any]:
    """One zero-shot pass: output cell tokens, mean output gene token and the context's expression per cell."""
    net = model.net
    n_tokens = net.n_cell_tokens
    contexts: list[sp.csr_matrix] = []
    gene_means: list[np.ndarray] = []

    def grab_inputs(_module: Any, args: tuple, _kwargs: dict) -> None:
        gene_idx, expr, depth = (a.detach().cpu() for a in args[:3])
        values = torch.log1p(expr.float() / depth.float().clamp(min=1)[:, None] * 1e4)
        rows = np.repeat(np.arange(gene_idx.shape[0]), gene_idx.shape[1])
        contexts.append(
            sp.csr_matrix(
                (values.numpy().ravel(), (rows, gene_idx.numpy().ravel())), shape=(gene_idx.shape[0], net.n_genes)
            )
        )

    def grab_outputs(_module: Any, _args: tuple, _kwargs: dict, out: torch.Tensor) -> None:
        gene_means.append(out[:, n_tokens:].float().mean(1).detach().cpu().numpy())

    hooks = [
        net.register_forward_pre_hook(grab_inputs, with_kwargs=True),
        net.transformer.register_forward_hook(grab_outputs, with_kwargs=True),
    ]
    try:
        out = model.embed_cells(adata, mode="top_expr", max_len=max_len, seed=seed, gene_embeddings=True)
    finally:
        for hook in hooks:
            hook.remove()
    tokens = np.concatenate([out.tokens[name] for name in out.tokens], axis=1)
    return {
        "context": sp.vstack(contexts).tocsr(),
        "tokens": tokens,
        "tokens_genes": np.concatenate([tokens, np.concatenate(gene_means)], axis=1),
    }


def fit_predict(train: Any, y: np.ndarray, tests: dict[str, Any], *, scale: bool, seed: int) -> dict[str, np.ndarray]:
    """Logistic regression on ``train``; predictions for each of ``tests``."""
    scaler = StandardScaler().fit(train) if scale else None

    def prep(x: Any) -> Any:
        return scaler.transform(x) if scaler is not None else x

    clf = LogisticRegression(max_iter=3000, random_state=seed).fit(prep(train), y)
    return {name: clf.predict(prep(x)) for name, x in tests.items()}


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--max-len", type=int, default=256, help="genes per cell (finetune's default context)")
    args = parser.parse_args()
    run = start_run(args, "annotation_diagnosis")
    model = run.model
    rows, data = [], []
    for split, loader in (("cellbench", cellbench_split), ("pbmc_sorted", lambda: pbmc_split(args.seed))):
        ref, queries, records = loader()
        data += [{**r, "split": split} for r in records]
        y = ref.obs[LABEL].astype(str).to_numpy()
        methods: dict[str, dict[str, np.ndarray]] = {}
        with timed(f"{split}: PCA + LR"):
            methods["expression: 2,000 HVGs, 50 PCs"] = pca_logreg(ref, queries, args.seed)[0]
        with timed(f"{split}: zero-shot passes"):
            views = {"reference": model_views(model, ref, args.max_len, args.seed)}
            views.update({name: model_views(model, q, args.max_len, args.seed) for name, q in queries.items()})
        for method, key, scale in (
            ("expression: the model's context", "context", False),
            ("frozen scPRINT: cell tokens", "tokens", True),
            ("frozen scPRINT: cell tokens + mean gene outputs", "tokens_genes", True),
        ):
            with timed(f"{split}: {method}"):
                tests = {name: views[name][key] for name in queries}
                methods[method] = fit_predict(views["reference"][key], y, tests, scale=scale, seed=args.seed)
        for method, preds in methods.items():
            rows += score_rows(split, ref, queries, method, preds)
    notes = [
        "Same splits and seed as benchmarks/annotation.py; every view gets the same classifier (logistic "
        f"regression, C=1, max_iter 3000); context = each cell's {args.max_len} most expressed mapped genes "
        "(finetune's default). Frozen = the zero-shot model, no training.",
    ]
    previous = RESULTS / "annotation.csv"
    if previous.exists():
        tuned = pd.read_csv(previous)
        tuned = tuned[tuned["method"].str.startswith("scPRINT")]
        for _, r in tuned.iterrows():
            rows.append(
                {
                    "split": r["split"],
                    "query": r["query"],
                    "method": f"{r['method']} (copied from annotation.csv)",
                    "n_reference": int(r["n_reference"]),
                    "n_query": int(r["n_query"]),
                    "accuracy": float(r["accuracy"]),
                    "macro_f1": float(r["macro_f1"]),
                }
            )
        notes.append("The 'scPRINT' rows are copied from the last benchmarks/annotation.py run, not rerun.")
    results = pd.DataFrame(rows).sort_values(["split", "query"], kind="stable").reset_index(drop=True)
    logger.info("\n%s", results.to_string())
    run.write(data=data, results=results, summary=pd.DataFrame(), notes=notes)


if __name__ == "__main__":
    main()
