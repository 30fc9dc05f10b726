"""Calibration of abstention: reliability bins, confidence threshold and Mahalanobis novelty test of a label."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

#: confidence grid searched by the calibration
_GRID = np.round(np.arange(0.0, 1.0, 0.05), 2)
#: quantile of the held-out novelty scores kept as "known" (1% of in-distribution cells abstain)
NOVELTY_QUANTILE = 0.99


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = 10) -> list[dict[str, Any]]:
    """Accuracy of the cells in equal-width confidence bins (a reliability table).

    Parameters
    ----------
    confidence
        ``[n]`` probability of the predicted class.
    correct
        ``[n]`` whether the prediction is right.
    n_bins
        Number of bins over ``[0, 1]``.

    Returns
    -------
    One dict per non-empty bin: ``low``, ``high``, ``n_cells``, ``mean_confidence``, ``accuracy``.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = which == b
        if sel.any():
            rows.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "n_cells": int(sel.sum()),
                    "mean_confidence": float(confidence[sel].mean()),
                    "accuracy": float(correct[sel].mean()),
                }
            )
    return rows


def binned_accuracy(bins: list[Mapping[str, Any]], confidence: np.ndarray) -> np.ndarray:
    """Held-out accuracy of the reliability bin of each confidence (histogram binning, Zadrozny & Elkan 2001).

    Parameters
    ----------
    bins
        The reliability table of :func:`calibration_bins` (bins without held-out cells are skipped).
    confidence
        ``[n]`` probabilities of the predicted leaves.

    Returns
    -------
    ``[n]`` float: the accuracy the held-out cells of the same confidence bin reached (the nearest filled bin
    for a confidence outside them); NaN everywhere for an empty table.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    filled = [b for b in bins if b.get("n_cells", 0) > 0 and b.get("accuracy") is not None]
    if not filled:
        return np.full(confidence.shape, np.nan)
    centres = np.array([(b["low"] + b["high"]) / 2 for b in filled])
    accuracy = np.array([b["accuracy"] for b in filled], dtype=np.float64)
    low = np.array([b["low"] for b in filled])[None, :]
    high = np.array([b["high"] for b in filled])[None, :]
    c = confidence[:, None]
    inside = (c >= low) & ((c < high) | ((high >= 1.0) & (c >= 1.0)))
    nearest = np.abs(c - centres[None, :]).argmin(1)
    return accuracy[np.where(inside.any(1), inside.argmax(1), nearest)]


def fit_novelty(tokens: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Class means and a shared shrunk precision of label tokens (Mahalanobis novelty score, Lee et al. 2018).

    Parameters
    ----------
    tokens
        ``[n, d]`` label-token outputs of in-distribution cells.
    pred
        ``[n]`` predicted class of each cell.
    n_classes
        Number of leaves of the label.

    Returns
    -------
    ``{"means": [n_classes][d] (None for classes never predicted), "precision": [d][d]}``.
    """
    from sklearn.covariance import LedoitWolf

    tokens = np.asarray(tokens, dtype=np.float64)
    means: list[list[float] | None] = []
    centred = []
    for k in range(n_classes):
        sel = pred == k
        if sel.sum() == 0:
            means.append(None)
            continue
        mu = tokens[sel].mean(0)
        means.append(mu.tolist())
        centred.append(tokens[sel] - mu)
    precision = LedoitWolf().fit(np.concatenate(centred)).precision_
    return {"means": means, "precision": precision.tolist()}


def novelty_score(tokens: np.ndarray, pred: np.ndarray, novelty: Mapping[str, Any]) -> np.ndarray:
    """Squared Mahalanobis distance of each cell's label token to the mean of its predicted class.

    Parameters
    ----------
    tokens
        ``[n, d]`` label tokens.
    pred
        ``[n]`` predicted classes.
    novelty
        The record of :func:`fit_novelty`.

    Returns
    -------
    ``[n]`` scores (``inf`` for a class without a mean).
    """
    precision = np.asarray(novelty["precision"], dtype=np.float64)
    out = np.full(len(pred), np.inf)
    for k, mu in enumerate(novelty["means"]):
        sel = pred == k
        if mu is None or not sel.any():
            continue
        diff = np.asarray(tokens, dtype=np.float64)[sel] - np.asarray(mu)
        out[sel] = np.einsum("nd,de,ne->n", diff, precision, diff)
    return out


def calibrate_label(
    proba: np.ndarray,
    tokens: np.ndarray,
    correct: np.ndarray,
    *,
    target_accuracy: float = 0.9,
    novelty_quantile: float = NOVELTY_QUANTILE,
) -> dict[str, Any]:
    """Calibration record of one label from held-out cells.

    ``min_confidence`` is the smallest threshold of a 0.05 grid whose kept cells reach ``target_accuracy``
    (the last grid point when none does); ``max_novelty`` is the ``novelty_quantile`` quantile of the held-out
    novelty scores, so that cells unlike every class seen at calibration abstain too (a softmax is confident
    far from its training data, a distance is not).

    Parameters
    ----------
    proba
        ``[n, n_leaves]`` leaf probabilities of the held-out cells.
    tokens
        ``[n, d]`` their label tokens.
    correct
        ``[n]`` whether each prediction is right.
    target_accuracy
        Accuracy the kept cells should reach.
    novelty_quantile
        Quantile of the novelty scores kept.

    Returns
    -------
    ``min_confidence``, ``target_accuracy``, ``n_cells``, ``accuracy``, ``bins`` (:func:`calibration_bins`),
    ``coverage`` and ``kept_accuracy`` at the threshold, ``novelty`` (:func:`fit_novelty`), ``max_novelty``.
    """
    conf, pred = proba.max(1), proba.argmax(1)
    threshold, met = None, True
    for t in _GRID:
        kept = conf >= t
        if kept.any() and correct[kept].mean() >= target_accuracy:
            threshold = float(t)
            break
    if threshold is None:  # never reached: the most accurate threshold that keeps at least half of the cells
        met = False
        options = [(correct[conf >= t].mean(), -t) for t in _GRID if (conf >= t).mean() >= 0.5]
        threshold = float(-max(options)[1]) if options else 0.0
        logger.warning(
            "Held-out accuracy %.3f: no confidence threshold reaches target_accuracy=%.2f; min_confidence=%.2f "
            "(the most accurate threshold keeping at least half of the held-out cells). Train longer or on more "
            "cells.",
            correct.mean(),
            target_accuracy,
            threshold,
        )
    novelty = fit_novelty(tokens, pred, proba.shape[1])
    scores = novelty_score(tokens, pred, novelty)
    max_novelty = float(np.quantile(scores[np.isfinite(scores)], novelty_quantile))
    kept = (conf >= threshold) & (scores <= max_novelty)
    return {
        "min_confidence": threshold,
        "target_accuracy": float(target_accuracy),
        "target_met": met,
        "n_cells": len(conf),
        "accuracy": float(correct.mean()),
        "bins": calibration_bins(conf, correct),
        "coverage": float(kept.mean()),
        "kept_accuracy": float(correct[kept].mean()) if kept.any() else float("nan"),
        "novelty": novelty,
        "max_novelty": max_novelty,
        "novelty_quantile": float(novelty_quantile),
    }
