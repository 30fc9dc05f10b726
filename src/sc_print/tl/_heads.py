"""``sp.tl.select_heads``: the attention heads whose scores predict a ground-truth network."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sc_print._keys import Key, check_key
from sc_print._networks import ORIENTATIONS, Orientation
from sc_print._runtime import dtype_name, resolve_seed
from sc_print._utils import log_written, model_record
from sc_print._validation import check_positive_int, resolve_adata
from sc_print.grn import fit_head_classifier, select_cells, truth_matrix

from ._common import output_target, params_record
from ._grn import GeneSelection, attention_of, cell_groups, check_gene_selection, layer_list, resolve

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from anndata import AnnData
    from mudata import MuData

    from sc_print._utils import RngLike
    from sc_print.model import ScPrint

logger = logging.getLogger(__name__)


def select_heads(
    adata: AnnData | MuData,
    net: pd.DataFrame,
    *,
    groupby: str | None = None,
    group: str | None = None,
    model: ScPrint | str | None = None,
    layer: str | None = None,
    n_cells: int | None = 256,
    genes: GeneSelection | Sequence[str] = "hvg",
    n_genes: int = 1000,
    layers: Sequence[int] | None = None,
    gene_symbols: str | None = None,
    orientation: Orientation = "query_is_source",
    train_size: float = 0.9,
    alpha: float = 1.0,
    positive_weight: float = 800.0,
    batch_size: int = 16,
    accelerator: str = "auto",
    device: int | str = "auto",
    dtype: torch.dtype | str | None = None,
    rng: RngLike = 0,
    key_added: str = Key.uns.heads,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Choose the attention heads whose scores predict a ground-truth network.

    The per-head networks of one group (each ``softmax(Q̄K̄ᵀ/√d)`` over the chosen genes) are the features
    of a non-negative ridge classifier of gene pairs (true edge or not), fitted on ``train_size`` of the
    pairs: the reference's ``RidgeClassifier(alpha=1, positive=True, fit_intercept=False,
    class_weight={1: 800})``. Heads with a positive coefficient are kept; ``sp.tl.grn(..., heads="selected")``
    reuses them with their coefficients as weights.

    Parameters
    ----------
    adata
        AnnData (or MuData) with raw counts.
    net
        Ground truth as a ``source, target`` table (decoupler / OmniPath style), gene names matching
        ``var_names`` or ``.var[gene_symbols]``.
    groupby, group
        Cells to use (``None``: all cells).
    model, layer, n_cells, genes, n_genes, layers, batch_size, accelerator, device, dtype, rng, mod
        As in :func:`~sc_print.tl.grn` (``genes="genome_wide"`` is not available here).
    gene_symbols
        ``.var`` column holding the names used in ``net`` (``None``: ``var_names``).
    orientation
        How the attention matrix is oriented against ``net`` (rows = source).
    train_size, alpha, positive_weight
        Split of the gene pairs and classifier settings.
    key_added
        ``.uns`` key of the selection.
    copy
        Return a modified copy.

    Returns
    -------
    ``None`` or a copy, with ``.uns[key_added]`` : dict
        ``heads`` (``[n_selected, 2]`` layer/head), ``weights`` (coefficients), ``coef`` (all heads),
        ``auprc_test`` (held-out average precision of the weighted heads), ``auprc_test_mean_heads`` (the same
        for the plain mean of all heads), ``prevalence_test`` and ``params``.
    """
    # ---- options (all checked before any model is loaded)
    check_gene_selection(genes, allow_genome_wide=False)
    if orientation not in ORIENTATIONS:
        msg = f"Unknown orientation {orientation!r}; use one of {list(ORIENTATIONS)}."
        raise ValueError(msg)
    n_cells = check_positive_int(n_cells, "n_cells", allow_none=True)
    n_genes = check_positive_int(n_genes, "n_genes")
    batch_size = check_positive_int(batch_size, "batch_size")
    key_added = check_key(key_added)
    for name, value in (("train_size", train_size), ("alpha", alpha), ("positive_weight", positive_weight)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
            msg = f"`{name}` must be a positive number, got {value!r}."
            raise ValueError(msg)
    if not 0 < train_size < 1:
        msg = f"`train_size` must be in (0, 1), got {train_size!r}."
        raise ValueError(msg)
    if not isinstance(net, pd.DataFrame) or not {"source", "target"} <= set(net.columns):
        msg = "`net` must be a DataFrame with 'source' and 'target' columns (decoupler / OmniPath style)."
        raise ValueError(msg)
    if net.empty:
        msg = "`net` has no edges; pass a ground-truth network with at least one edge."
        raise ValueError(msg)
    seed = resolve_seed(rng)
    source = resolve_adata(adata, mod)
    if gene_symbols is not None and gene_symbols not in source.var:
        msg = f"Column {gene_symbols!r} not found in `adata.var`."
        raise KeyError(msg)
    if groupby is not None and group is None:
        msg = "Pass `group=` (one category of `groupby`) to select heads on."
        raise ValueError(msg)
    if group is not None and groupby is None:
        msg = "`group` needs `groupby`."
        raise ValueError(msg)
    ((g, idx),) = cell_groups(source, groupby, None if group is None else [group]).items()
    if len(idx) < 2:
        msg = f"Head selection needs at least 2 cells; group {g!r} has {len(idx)}."
        raise ValueError(msg)

    # ---- model, counts, per-head networks
    run = resolve(source, model=model, layer=layer, accelerator=accelerator, device=device, dtype=dtype, seed=seed)
    layers_used = layer_list(run.model.net.config.nlayers, layers)
    cells = select_cells(run.counts, idx, n_cells=n_cells, cell_selection="deepest", seed=seed)
    cube, genes_seen, _ = attention_of(
        run,
        cells,
        genes,
        n_genes=n_genes,
        layers=layers_used,
        max_len=n_genes,
        n_repeats=1,
        batch_size=batch_size,
        description="sc_print select_heads",
        per_head=True,
    )
    if orientation == "key_is_source":
        cube = cube.transpose(1, 0, 2)
    names = source.var[gene_symbols] if gene_symbols else pd.Series(source.var_names, index=source.var_names)
    gene_names = names.astype(str).to_numpy()[run.counts.mapping.first_col[genes_seen]]
    truth = truth_matrix(net, gene_names).toarray()
    if truth.sum() == 0:
        msg = (
            "No edge of `net` joins two genes of the context; check that its names match "
            f"{'`.var[' + repr(gene_symbols) + ']`' if gene_symbols else '`var_names`'} (or pass `gene_symbols=`)."
        )
        raise ValueError(msg)
    fit = fit_head_classifier(
        cube,
        truth,
        train_size=train_size,
        alpha=alpha,
        positive_weight=positive_weight,
        rng=np.random.default_rng(seed),
    )
    nhead = run.model.net.config.nhead
    pairs = [(layers_used[j // nhead], j % nhead) for j in range(cube.shape[2])]
    selected = [pairs[j] for j in fit["selected"]]
    if not selected:
        msg = "No head has a positive coefficient against this ground truth; no selection stored."
        raise ValueError(msg)
    record: dict[str, Any] = {
        "heads": np.asarray(selected, dtype=np.int64),
        "weights": np.asarray(fit["coef"][fit["selected"]], dtype=np.float64),
        "coef": np.asarray(fit["coef"], dtype=np.float64),
        "n_true_edges": int(truth.sum()),
        "n_genes": len(genes_seen),
        "n_cells": len(cells),
        "params": params_record(
            groupby=groupby,
            group=group,
            model=model if isinstance(model, str) else None,
            layer=layer,
            n_cells=n_cells,
            genes=genes if isinstance(genes, str) else [str(g) for g in genes],
            n_genes=n_genes,
            layers=layers_used,
            gene_symbols=gene_symbols,
            orientation=orientation,
            train_size=train_size,
            alpha=alpha,
            positive_weight=positive_weight,
            batch_size=batch_size,
            accelerator=accelerator,
            device=device,
            dtype=dtype_name(run.dtype),
            rng=seed,
            key_added=key_added,
            mod=mod,
        ),
        "model": model_record(run.model),
    }
    for key in ("auprc_test", "auprc_test_mean_heads", "prevalence_test"):
        if key in fit:
            record[key] = fit[key]
    data, target = output_target(adata, mod, copy=copy)
    target.uns[key_added] = record
    log_written("uns", key_added)
    logger.info(
        "selected %d/%d heads; held-out AUPRC %.4f (mean of all heads %.4f, prevalence %.4f)",
        len(selected),
        len(pairs),
        record.get("auprc_test", float("nan")),
        record.get("auprc_test_mean_heads", float("nan")),
        record.get("prevalence_test", float("nan")),
    )
    return data if copy else None
