"""Calibrated abstention of a fine-tuned :class:`~sc_print.model.ScPrint`: which cells get ``"unknown"``.

The calibration record is written by :meth:`ScPrint.finetune <sc_print.model.ScPrint.finetune>` in
``model.metadata_["calibration"]`` (see ``sc_print.model._calibration``) and read here, by ``sp.tl.embed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._calibration import binned_accuracy, novelty_score


class AbstentionMixin:
    """``abstain`` and ``calibration`` of :class:`~sc_print.model.ScPrint` (mixed into the class)."""

    def calibration(self, label: str) -> dict[str, Any] | None:
        """The calibration record of ``label`` (``None`` when the model has none).

        Parameters
        ----------
        label
            A label the model predicts.

        Returns
        -------
        The dict written by :meth:`~sc_print.model.ScPrint.finetune` (``min_confidence``, ``max_novelty``,
        ``bins``, ...).
        """
        return ((getattr(self, "metadata_", None) or {}).get("calibration") or {}).get(label)

    def abstain(
        self,
        label: str,
        proba: np.ndarray,
        tokens: np.ndarray | None = None,
        *,
        min_confidence: float | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Which cells should be labelled ``"unknown"`` rather than given the most probable class.

        A cell abstains when the probability of its predicted leaf is below ``min_confidence`` or, when the
        model has a calibration with a novelty test and ``tokens`` are given, when its label token is farther
        from its predicted class than the held-out cells were (squared Mahalanobis distance above
        ``max_novelty``): a softmax can be confident about cells unlike anything it was trained on.

        Parameters
        ----------
        label
            A label the model predicts.
        proba
            ``[n, n_leaves]`` leaf probabilities.
        tokens
            ``[n, d]`` output tokens of ``label`` (the novelty test needs them).
        min_confidence
            Threshold on the probability; ``None``: the calibrated one (``0`` without calibration).

        Returns
        -------
        ``[n]`` bool mask of the cells that abstain, and a record (``min_confidence``, ``source``,
        ``n_low_confidence``, ``n_novel``, ``n_unknown`` and ``expected_accuracy``: the mean, over the cells
        that do not abstain, of the held-out accuracy at their confidence in the calibration's reliability
        table — what a confidence of 0.99 was worth on held-out cells; ``None`` without calibration or when
        every cell abstains).
        """
        record = self.calibration(label) or {}
        if min_confidence is None:
            threshold = float(record.get("min_confidence", 0.0))
            source = "calibrated" if record else "none"
        else:
            threshold = float(min_confidence)
            source = "user"
        conf = proba.max(1)
        low = conf < threshold
        novel = np.zeros(len(conf), dtype=bool)
        if tokens is not None and record.get("novelty") and min_confidence is None:
            novel = novelty_score(tokens, proba.argmax(1), record["novelty"]) > float(record["max_novelty"])
        mask = low | novel
        expected = None
        if record.get("bins") and (~mask).any():
            expected = round(float(binned_accuracy(record["bins"], conf[~mask]).mean()), 4)
        info = {
            "min_confidence": threshold,
            "source": source,
            "novelty_test": bool(tokens is not None and record.get("novelty") and min_confidence is None),
            "n_low_confidence": int(low.sum()),
            "n_novel": int((novel & ~low).sum()),
            "n_unknown": int(mask.sum()),
            "expected_accuracy": expected,
        }
        return mask, info
