"""Selection of attention heads against a ground-truth network (non-negative ridge classifier)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import RidgeClassifier
from sklearn.metrics import average_precision_score


def fit_head_classifier(
    cube: np.ndarray,
    truth: np.ndarray,
    *,
    pair_mask: np.ndarray | None = None,
    train_size: float = 0.9,
    alpha: float = 1.0,
    positive_weight: float = 800.0,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Fit the reference's head classifier: ``RidgeClassifier(alpha, positive=True, no intercept)``.

    Rows are gene pairs, features the per-head attention scores; the pairs are split at random into a
    train part (``train_size``) and a held-out part scored by average precision.

    Parameters
    ----------
    cube
        ``[G, G, n_heads]`` per-head scores.
    truth
        ``[G, G]`` boolean ground truth (rows = source).
    pair_mask
        ``[G, G]`` pairs to use (default: off-diagonal pairs).
    train_size
        Fraction of pairs used to fit.
    alpha
        Ridge penalty.
    positive_weight
        Class weight of true edges (800 for OmniPath in the paper).
    rng
        Seeded generator for the split.

    Returns
    -------
    ``{"coef", "selected", "auprc_test", "auprc_test_mean_heads", "prevalence_test", "n_train", "n_test"}``;
    ``selected`` are the indices of heads with a positive coefficient.
    """
    rng = np.random.default_rng(rng)
    g = cube.shape[0]
    if pair_mask is None:
        pair_mask = ~np.eye(g, dtype=bool)
    X = cube[pair_mask].astype(np.float64)
    y = truth[pair_mask].astype(int)
    if y.sum() < 2 or y.sum() == y.size:
        msg = "The ground truth has too few true edges among these genes to select heads (need at least 2)."
        raise ValueError(msg)
    perm = rng.permutation(len(y))
    n_train = int(round(train_size * len(y)))
    train, test = perm[:n_train], perm[n_train:]
    if y[train].sum() == 0 or (len(test) and y[test].sum() == 0):
        msg = "The random split left no true edge in the train or test part; use more genes or another seed."
        raise ValueError(msg)
    clf = RidgeClassifier(alpha=alpha, fit_intercept=False, positive=True, class_weight={1: positive_weight, 0: 1})
    clf.fit(X[train], y[train])
    coef = np.asarray(clf.coef_).ravel()
    selected = np.flatnonzero(coef > 0)
    out: dict[str, Any] = {"coef": coef, "selected": selected, "n_train": len(train), "n_test": len(test)}
    if len(test):
        out["auprc_test"] = float(average_precision_score(y[test], X[test] @ coef))
        out["auprc_test_mean_heads"] = float(average_precision_score(y[test], X[test].mean(1)))
        out["prevalence_test"] = float(y[test].mean())
    return out
