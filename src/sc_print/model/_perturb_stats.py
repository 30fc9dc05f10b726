"""Streaming per-gene statistics of an in-silico perturbation, overall and per group (see ``_perturb.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats as sstats

from sc_print._keys import group_name_map

if TYPE_CHECKING:
    from anndata import AnnData

#: pseudocount (in units of the expression renormalised to 10,000) of the log2 fold changes
PSEUDOCOUNT = 0.1
#: columns of an effects table
EFFECT_COLUMNS: tuple[str, ...] = (
    "n_cells",
    "mean_baseline",
    "mean_perturbed",
    "mean_change",
    "log2fc",
    "frac_up",
    "frac_down",
    "t",
    "pval",
    "pval_adj",
)


def group_codes(adata: AnnData, groupby: str | None, min_group_size: int) -> tuple[np.ndarray | None, list[str] | None]:
    """``[n_obs]`` group index of each cell and the stored (safe) group names; ``(None, None)`` without groups."""
    if groupby is None:
        return None, None
    if not isinstance(groupby, str) or groupby not in adata.obs.columns:
        msg = f"`groupby`={groupby!r} is not a column of `.obs`; available columns: {list(adata.obs.columns)}."
        raise KeyError(msg)
    column = adata.obs[groupby]
    if column.isna().any():
        msg = f"`.obs[{groupby!r}]` has {int(column.isna().sum())} missing values; fill or drop those cells first."
        raise ValueError(msg)
    cat = pd.Categorical(column).remove_unused_categories()
    names = group_name_map(cat.categories, groupby=groupby)
    sizes = np.bincount(cat.codes, minlength=len(cat.categories))
    small = {str(c): int(n) for c, n in zip(cat.categories, sizes, strict=True) if n < min_group_size}
    if small:
        msg = (
            f"Groups of `{groupby}` with fewer than min_group_size={min_group_size} cells: {small}. Merge or drop "
            "them, or lower `min_group_size`."
        )
        raise ValueError(msg)
    return np.asarray(cat.codes, dtype=np.int64), [names[str(c)] for c in cat.categories]


class EffectStats:
    """Sums over the cells of the per-gene changes, for all cells (row 0) and each group (rows 1..)."""

    _FIELDS = ("n", "base", "pert", "lfc", "lfc2", "up", "down")

    def __init__(self, n_groups: int, n_genes: int) -> None:
        self.n_genes = n_genes
        self.sums = {f: np.zeros((n_groups + 1) * n_genes, dtype=np.float64) for f in self._FIELDS}

    def add(
        self, cols: np.ndarray, mask: np.ndarray, base: np.ndarray, pert: np.ndarray, codes: np.ndarray | None
    ) -> None:
        """Add the ``[B, S]`` values at context columns ``cols`` (positions in the mapped genes) where ``mask``."""
        r, c = np.nonzero(mask)
        gene, b, p = cols[r, c], base[r, c], pert[r, c]
        lfc = np.log2((p + PSEUDOCOUNT) / (b + PSEUDOCOUNT))
        values = {
            "n": np.ones_like(b),
            "base": b,
            "pert": p,
            "lfc": lfc,
            "lfc2": lfc * lfc,
            "up": (p > b).astype(np.float64),
            "down": (p < b).astype(np.float64),
        }
        size = self.sums["n"].size
        flat = [gene] if codes is None else [gene, (codes[r] + 1) * self.n_genes + gene]
        for index in flat:
            for name, value in values.items():
                self.sums[name] += np.bincount(index, weights=value, minlength=size)

    def table(self, row: int, var_names: pd.Index, excluded: np.ndarray) -> pd.DataFrame:
        """Effects of group ``row`` (0: all cells) per gene seen in a context, perturbed genes excluded.

        Columns: ``n_cells`` (cells with the gene in context), ``mean_baseline``/``mean_perturbed`` (mean decoded
        expression, renormalised to 10,000 over the other genes in context), ``mean_change``, ``log2fc``
        (of the means, pseudocount :data:`PSEUDOCOUNT`), ``frac_up``/``frac_down`` (fraction of those cells where
        it rose / fell), ``t``/``pval`` (one-sample t-test of the per-cell log2 fold changes against 0) and
        ``pval_adj`` (Benjamini-Hochberg). Sorted by ``pval``, then by decreasing ``|log2fc|``.
        """
        sl = slice(row * self.n_genes, (row + 1) * self.n_genes)
        s = {k: v[sl] for k, v in self.sums.items()}
        keep = (s["n"] > 0) & ~excluded
        n = s["n"][keep]
        mean_b, mean_p = s["base"][keep] / n, s["pert"][keep] / n
        mean_l = s["lfc"][keep] / n
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.maximum(s["lfc2"][keep] - n * mean_l**2, 0.0) / (n - 1)
            se = np.sqrt(var / n)
            t = np.where(se > 1e-12, mean_l / se, np.where(np.abs(mean_l) > 1e-12, np.sign(mean_l) * np.inf, 0.0))
        t = np.where(n >= 2, t, np.nan)
        pval = np.where(
            np.isfinite(t), 2 * sstats.t.sf(np.abs(t), np.maximum(n - 1, 1)), np.where(np.isnan(t), np.nan, 0.0)
        )
        frame = pd.DataFrame(
            {
                "n_cells": n.astype(np.int64),
                "mean_baseline": mean_b,
                "mean_perturbed": mean_p,
                "mean_change": mean_p - mean_b,
                "log2fc": np.log2((mean_p + PSEUDOCOUNT) / (mean_b + PSEUDOCOUNT)),
                "frac_up": s["up"][keep] / n,
                "frac_down": s["down"][keep] / n,
                "t": t,
                "pval": pval,
                "pval_adj": _bh(pval),
            },
            index=pd.Index(np.asarray(var_names)[keep], name="gene", dtype=object),
        )
        order = np.lexsort((-np.abs(frame["log2fc"].to_numpy()), np.nan_to_num(frame["pval"].to_numpy(), nan=2.0)))
        return frame.iloc[order]


def _bh(pval: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN kept)."""
    out = np.full_like(pval, np.nan)
    ok = np.flatnonzero(~np.isnan(pval))
    if ok.size == 0:
        return out
    p = pval[ok]
    order = np.argsort(p)
    ranked = p[order] * ok.size / np.arange(1, ok.size + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    res = np.empty_like(p)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out
