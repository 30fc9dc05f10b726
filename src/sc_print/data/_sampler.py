"""Label-weighted random sampling of cells (rare label combinations are seen more often)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Sequence


def label_weights(labels: pd.DataFrame | Sequence[Sequence], *, scaler: float = 50.0) -> np.ndarray:
    """Per-cell sampling weights from label combinations.

    Cells are grouped by the combination of their labels. A group of size ``n`` is drawn with probability
    proportional to ``s * n / (n + s)`` (``s = scaler``): large groups saturate at ``s``, small groups stay
    near ``n``; cells are uniform within a group, so each cell weighs ``s / (n + s)``.

    Parameters
    ----------
    labels
        One column per label (a DataFrame, or a sequence of equally long label sequences).
    scaler
        Saturation size ``s`` (50 in the paper).

    Returns
    -------
    ``[n_cells]`` float64 weights summing to 1.
    """
    if scaler <= 0:
        msg = f"scaler must be positive, got {scaler}."
        raise ValueError(msg)
    df = labels if isinstance(labels, pd.DataFrame) else pd.DataFrame({i: list(col) for i, col in enumerate(labels)})
    if df.shape[1] == 0 or len(df) == 0:
        return np.full(len(df), 1.0 / max(len(df), 1))
    group = df.astype(str).agg("\x1f".join, axis=1) if df.shape[1] > 1 else df.iloc[:, 0].astype(str)
    sizes = group.map(group.value_counts()).to_numpy(dtype=np.float64)
    w = scaler / (sizes + scaler)
    return w / w.sum()
