"""Scores of a predicted gene network against a ground truth (EPR, AUPRC, prevalence)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.metrics import average_precision_score

if TYPE_CHECKING:
    from collections.abc import Sequence


def truth_matrix(
    truth: pd.DataFrame, genes: Sequence[str], *, source: str = "source", target: str = "target"
) -> sp.csr_matrix:
    """Boolean ``[G, G]`` adjacency (rows = source) of a ``source,target`` table over ``genes``.

    Edges whose source or target is not in ``genes`` are dropped; self loops are dropped.
    """
    missing = [c for c in (source, target) if c not in truth.columns]
    if missing:
        msg = f"The ground-truth table needs columns {source!r} and {target!r}; missing {missing}."
        raise KeyError(msg)
    index = pd.Index(np.asarray(genes, dtype=str))
    s = index.get_indexer(truth[source].astype(str))
    t = index.get_indexer(truth[target].astype(str))
    keep = (s >= 0) & (t >= 0) & (s != t)
    m = sp.csr_matrix((np.ones(int(keep.sum()), dtype=bool), (s[keep], t[keep])), shape=(len(index), len(index)))
    m.sum_duplicates()
    m.data[:] = True
    return m


def network_scores(
    pred: sp.spmatrix | np.ndarray, truth: sp.spmatrix | np.ndarray, *, mask: np.ndarray | None = None
) -> dict[str, float]:
    """EPR, AUPRC and related scores of a weighted network against a boolean truth (same shape).

    Parameters
    ----------
    pred
        Predicted weights ``[G, G]`` (missing entries count as 0).
    truth
        Boolean ground truth ``[G, G]``.
    mask
        Boolean ``[G, G]`` of the gene pairs to score (default: every off-diagonal pair). Restricting the
        sources to genes with at least one true target (the TFs of the truth) is the usual choice.

    Returns
    -------
    ``{"auprc", "prevalence", "auprc_ratio", "epr", "n_true", "n_pairs"}``: average precision, its
    random baseline (the fraction of true pairs), their ratio, and the early-precision ratio = precision
    among the top-``n_true`` predicted pairs divided by the prevalence.
    """
    pred = pred.toarray() if sp.issparse(pred) else np.asarray(pred)
    truth = truth.toarray() if sp.issparse(truth) else np.asarray(truth)
    if pred.shape != truth.shape:
        msg = f"Prediction {pred.shape} and truth {truth.shape} differ in shape."
        raise ValueError(msg)
    if mask is None:
        mask = ~np.eye(pred.shape[0], dtype=bool)
    y, s = truth[mask].astype(bool), pred[mask].astype(np.float64)
    n_true = int(y.sum())
    if n_true == 0 or n_true == y.size:
        msg = "The ground truth has no positive (or no negative) pair among the scored genes."
        raise ValueError(msg)
    prevalence = n_true / y.size
    auprc = float(average_precision_score(y, s))
    order = np.argsort(-s, kind="stable")[:n_true]
    epr = float(y[order].mean() / prevalence)
    return {
        "auprc": auprc,
        "prevalence": prevalence,
        "auprc_ratio": auprc / prevalence,
        "epr": epr,
        "n_true": n_true,
        "n_pairs": int(y.size),
    }
