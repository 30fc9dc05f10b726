"""Shared by ``sp.tl`` and ``sp.pl`` spatial functions: the lazy squidpy import and spot coordinates."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from types import ModuleType

    from anndata import AnnData


def squidpy_module() -> ModuleType:
    """squidpy, or an ImportError saying how to install it."""
    try:
        import squidpy
    except ImportError as err:
        msg = f'The spatial functions need squidpy: pip install "sc-print[spatial]" ({err}).'
        raise ImportError(msg) from err
    return squidpy


def spot_coordinates(adata: AnnData, spatial_key: str) -> np.ndarray:
    """Spot coordinates ``.obsm[spatial_key]`` as a finite float array (n_obs x 2 or 3); a clear error otherwise."""
    if spatial_key not in adata.obsm:
        msg = (
            f"No spot coordinates: `.obsm[{spatial_key!r}]` is missing (available: {list(adata.obsm)}). Store the "
            "x/y coordinates of each spot there (squidpy's convention) or pass `spatial_key=`."
        )
        raise KeyError(msg)
    coords = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        msg = f"`.obsm[{spatial_key!r}]` must be n_obs x 2 (or 3) coordinates, got shape {coords.shape}."
        raise ValueError(msg)
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():
        msg = (
            f"{int(bad.sum())} of {adata.n_obs} spots have missing (NaN) or infinite coordinates in "
            f"`.obsm[{spatial_key!r}]` (first: {list(adata.obs_names[bad][:3])}); drop them first, e.g. "
            f"`adata = adata[np.isfinite(adata.obsm[{spatial_key!r}]).all(axis=1)].copy()`."
        )
        raise ValueError(msg)
    return coords
