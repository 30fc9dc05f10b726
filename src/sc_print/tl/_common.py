"""Private helpers of the model-running ``sp.tl`` functions: where results go and how calls are recorded.

The path of a call::

    data = resolve_adata(adata, mod)  # AnnData or the RNA modality of a MuData; options validated first
    model, device = resolve_run(model, accelerator, device)  # sc_print._resolve
    result = model.embed_cells(data, ...)  # the getters of ScPrint, over sc_print.data's one data path
    target, out = output_target(adata, mod, copy=copy)  # write only after everything succeeded

:func:`output_target` also serves the network tools (``sp.tl.hubs``, ``sp.tl.communities``, ``sp.tl.diff_hubs``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from sc_print._runtime import dtype_name
from sc_print._validation import resolve_adata

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData


def params_record(**params: Any) -> dict[str, Any]:
    """Call parameters as plain, h5ad-writable values for ``.uns[...]['params']``; ``None`` values are dropped.

    Tuples and arrays become lists, numpy scalars Python scalars, torch dtypes their name, dicts are converted
    recursively.
    """

    def plain(value: Any) -> Any:
        if isinstance(value, torch.dtype):
            return dtype_name(value)
        if isinstance(value, torch.device):
            return str(value)
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray | pd.Index | tuple | list):
            return [plain(v) for v in list(value)]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items() if v is not None}
        return value

    return {key: plain(value) for key, value in params.items() if value is not None}


def output_target(adata: AnnData | MuData, mod: str = "rna", *, copy: bool = False) -> tuple[Any, AnnData]:
    """Object to return and AnnData to write into; call it only once every check has passed.

    Parameters
    ----------
    adata
        The user's AnnData or MuData.
    mod
        Modality of a MuData holding the RNA counts.
    copy
        Write into an in-memory copy (a backed object is loaded with ``to_memory``).

    Returns
    -------
    ``(target, out)``: ``target`` is ``adata`` or its copy (returned to the user when ``copy=True``), ``out`` the
    AnnData (modality) of ``target`` to write into.
    """
    if not copy:
        target = adata
    elif getattr(adata, "isbacked", False) and hasattr(adata, "to_memory"):
        target = adata.to_memory()
    else:
        target = adata.copy()
    return target, resolve_adata(target, mod)
