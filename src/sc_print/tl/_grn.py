"""``sp.tl.grn`` and ``sp.tl.select_heads``: gene networks from scPRINT attention."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from sc_print._keys import Key
from sc_print._utils import RngLike, log_written, make_rng, model_record, seed_record, torch_generator, track
from sc_print._validation import resolve_adata
from sc_print.data import select_genes
from sc_print.get._network import ORIENTATIONS, Orientation
from sc_print.grn import QKAccumulator, attention_network, fit_head_classifier, truth_matrix

from ._common import (
    CountInputs,
    genes_from_names,
    hvg_positions,
    inference_mode,
    iter_row_chunks,
    load_counts,
    output_target,
    params_record,
    resolve_dtype,
    resolve_run,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData
    from mudata import MuData

    from sc_print.data import GeneMapper
    from sc_print.model import ScPrint

logger = logging.getLogger(__name__)

GeneSelection = Literal["hvg", "expressed", "genome_wide"]
#: group name used when ``groupby=None``
ALL = "all"


# ---------------------------------------------------------------------------------------------------- inputs
@dataclass
class _Run:
    """Everything resolved and validated before any computation (nothing written yet)."""

    adata: AnnData
    counts: CountInputs
    model: ScPrint
    device: torch.device
    dtype: torch.dtype

    @property
    def mapper(self) -> GeneMapper:
        return self.counts.mapping.mapper


def _resolve_run(
    adata: AnnData, *, model: Any, layer: str | None, accelerator: str, device: int | str, dtype: Any, batch_size: int
) -> _Run:
    model, dev = resolve_run(model, accelerator, device)
    counts = load_counts(adata, model, layer=layer, chunk_size=max(batch_size, 1024))
    return _Run(adata, counts, model, dev, resolve_dtype(dtype, dev))


def _groups(adata: AnnData, groupby: str | None, groups: Sequence[str] | None) -> dict[str, np.ndarray]:
    if groupby is None:
        if groups is not None:
            msg = "`groups` needs `groupby`."
            raise ValueError(msg)
        return {ALL: np.arange(adata.n_obs)}
    if groupby not in adata.obs:
        msg = f"Column {groupby!r} not found in `adata.obs`; available columns: {list(adata.obs.columns)}."
        raise KeyError(msg)
    values = adata.obs[groupby].astype(str).to_numpy()
    present = list(pd.unique(values))
    wanted = present if groups is None else [str(g) for g in groups]
    unknown = [g for g in wanted if g not in present]
    if unknown:
        msg = f"Groups {unknown} not found in `adata.obs[{groupby!r}]`; available: {sorted(present)}."
        raise KeyError(msg)
    return {g: np.flatnonzero(values == g) for g in wanted}


def _select_cells(
    idx: np.ndarray,
    depth: np.ndarray,
    *,
    group: str,
    n_cells: int | None,
    min_cells: int,
    cell_selection: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Cells of one group: all, the ``n_cells`` deepest (reference), or a seeded random draw."""
    if cell_selection not in ("deepest", "random"):
        msg = f"Unknown cell_selection {cell_selection!r}; use 'deepest' or 'random'."
        raise ValueError(msg)
    if len(idx) < min_cells:
        msg = (
            f"Group {group!r} has {len(idx)} cells, fewer than min_cells={min_cells}. "
            "Exclude it with `groups=` or lower `min_cells`."
        )
        raise ValueError(msg)
    if n_cells is None:
        return idx
    if n_cells > len(idx):
        msg = f"Group {group!r} has {len(idx)} cells but n_cells={n_cells} were requested; lower `n_cells`."
        raise ValueError(msg)
    if cell_selection == "deepest":
        return np.sort(idx[np.argsort(-depth[idx], kind="stable")[:n_cells]])
    return np.sort(rng.choice(idx, size=n_cells, replace=False))


def _rows(X: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` (sorted) of an in-memory or backed matrix."""
    return X[idx]


def _fixed_genes(
    run: _Run, cells: np.ndarray, genes: GeneSelection | Sequence[str], *, n_genes: int
) -> np.ndarray | None:
    """Positions (in the mapped genes) of a fixed context, or ``None`` for genome-wide random contexts."""
    mapping = run.counts.mapping
    if not isinstance(genes, str):
        return genes_from_names(run.adata, genes, mapping)
    if genes == "genome_wide":
        return None
    if genes not in ("hvg", "expressed"):
        msg = f"Unknown gene selection {genes!r}; use 'hvg', 'expressed', 'genome_wide' or a list of var names."
        raise ValueError(msg)
    rows = _rows(run.counts.X, cells)
    if genes == "hvg":
        return hvg_positions(rows, mapping, n_genes, chunk_size=4096)
    detected = np.zeros(mapping.n_genes)
    for _, _, chunk in iter_row_chunks(rows, 4096):
        detected += np.asarray((mapping.collapse_sparse(chunk) > 0).sum(0)).ravel()
    n = min(n_genes, int((detected > 0).sum()))
    return np.sort(np.argsort(-detected, kind="stable")[:n])


def _attention(
    run: _Run,
    cells: np.ndarray,
    genes: GeneSelection | Sequence[str],
    *,
    n_genes: int,
    layers: list[int],
    max_len: int,
    n_repeats: int,
    batch_size: int,
    rng: np.random.Generator,
    description: str,
    **options: Any,
) -> tuple[Any, np.ndarray]:
    """Attention network of ``cells`` from their per-gene mean Q and K.

    Chooses the gene context (:func:`_fixed_genes`), streams ``cells`` through the model accumulating the Q and K
    of ``layers`` per gene, then builds :func:`~sc_print.grn.attention_network` (``options``: its options) from the
    means. Returns the network and the positions (in the mapped genes) of the genes it covers, in its row order.
    """
    context = _fixed_genes(run, cells, genes, n_genes=n_genes)
    net = run.model.net
    cfg = net.config
    acc = QKAccumulator(
        n_tokens=net.n_cell_tokens,
        n_genes=run.mapper.n_genes,
        layers=layers,
        nhead=cfg.nhead,
        head_dim=cfg.d_model // cfg.nhead,
        device=run.device,
    )
    gen = torch_generator(rng)
    vocab_idx = torch.as_tensor(run.mapper.vocab_idx, device=run.device)
    fixed = None if context is None else torch.as_tensor(context, device=run.device)
    starts = range(0, len(cells), batch_size)
    with inference_mode(net, run.device, run.dtype):
        for start in track(starts, total=len(starts), description=description):
            chunk = cells[start : start + batch_size]
            x = torch.as_tensor(run.mapper.collapse(_rows(run.counts.X, chunk)), device=run.device)
            depth = torch.as_tensor(run.counts.depth[chunk], dtype=torch.float32, device=run.device)
            for _ in range(n_repeats if context is None else 1):
                if fixed is None:
                    cols = select_genes(x, mode="random_expr", max_len=max_len, generator=gen)
                else:
                    cols = fixed.expand(x.shape[0], -1)
                acc.set_batch(cols)
                net(
                    vocab_idx[cols],
                    torch.gather(x, 1, cols),
                    depth,
                    qk_hook=acc,
                    qk_layers=layers,
                    decode=False,
                    classify=False,
                )
    q_mean, k_mean, seen = acc.means()
    genes_seen = np.flatnonzero(seen[acc.n_tokens :].cpu().numpy())
    return attention_network(q_mean, k_mean, n_tokens=acc.n_tokens, **options), genes_seen


def _to_var_space(net_genes: sp.csr_matrix, genes_seen: np.ndarray, run: _Run, orientation: str) -> sp.csr_matrix:
    """Place a ``[G, G]`` network over seen genes into an ``n_vars × n_vars`` CSR (rows = source)."""
    coo = net_genes.tocoo()
    var_pos = run.counts.mapping.first_col[genes_seen]
    rows, cols = var_pos[coo.row], var_pos[coo.col]
    if orientation == "key_is_source":
        rows, cols = cols, rows
    n = run.adata.n_vars
    return sp.csr_matrix((coo.data.astype(np.float32), (rows, cols)), shape=(n, n))


def _layer_list(n_layers: int, layers: Sequence[int] | None) -> list[int]:
    if layers is None:
        return list(range(n_layers))
    out = sorted({int(layer) % n_layers for layer in layers})
    bad = [layer for layer in layers if not -n_layers <= int(layer) < n_layers]
    if bad:
        msg = f"Layers {bad} do not exist; the model has {n_layers} layers."
        raise ValueError(msg)
    return out


def _stored_heads(adata: AnnData, key: str) -> tuple[list[tuple[int, int]], list[float]]:
    if key not in adata.uns or "heads" not in adata.uns[key]:
        msg = f"No head selection in `.uns[{key!r}]`; run `sp.tl.select_heads(adata, net=...)` first."
        raise KeyError(msg)
    record = adata.uns[key]
    heads = [(int(layer), int(head)) for layer, head in np.asarray(record["heads"]).reshape(-1, 2)]
    return heads, [float(w) for w in np.asarray(record["weights"]).ravel()]


# ---------------------------------------------------------------------------------------------------- grn
def grn(
    adata: AnnData | MuData,
    *,
    groupby: str | None = None,
    groups: Sequence[str] | None = None,
    model: ScPrint | str | None = None,
    layer: str | None = None,
    n_cells: int | None = None,
    min_cells: int = 10,
    cell_selection: Literal["deepest", "random"] = "deepest",
    genes: GeneSelection | Sequence[str] = "hvg",
    n_genes: int = 2000,
    max_len: int = 2000,
    n_repeats: int = 1,
    layers: Sequence[int] | None = None,
    heads: Sequence[tuple[int, int]] | Literal["selected"] | None = None,
    heads_key: str = Key.uns.heads,
    filtration: Literal["threshold", "top_k", "none"] = "threshold",
    top_k: int = 20,
    orientation: Orientation = "query_is_source",
    batch_size: int = 16,
    accelerator: str = "auto",
    device: int | str = "auto",
    dtype: torch.dtype | None = None,
    rng: RngLike = 0,
    key_added: str = "scprint_grn",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Infer one gene network per group of cells from scPRINT attention.

    For each group, the chosen cells stream through the model in batches; the query and key vectors of
    every gene are averaged over the cells (per layer and head), and the network is
    ``softmax(Q̄ K̄ᵀ / √d)`` over the genes (cell tokens take part in the softmax and are dropped after,
    as in the reference), averaged over the selected heads and filtered. Per-cell attention matrices are
    never built, and the final matrix is built in row blocks.

    Parameters
    ----------
    adata
        AnnData (or MuData, modality ``mod``) with raw counts.
    groupby
        ``.obs`` column: one network per category (``None``: one network for all cells).
    groups
        Categories of ``groupby`` to use (default: all).
    model
        :class:`~sc_print.model.ScPrint`, a registry name or path; ``None`` = the embedded default model.
    layer
        Layer with raw counts (``None``: ``.X``, or ``.raw`` when ``.X`` is not counts).
    n_cells
        Cells per group (``None``: all); a group with fewer cells is an error.
    min_cells
        Smallest group accepted.
    cell_selection
        ``"deepest"``: the ``n_cells`` cells with most counts (reference); ``"random"``: a seeded draw.
    genes
        ``"hvg"``: seurat_v3 highly variable genes of the group (``n_genes``), the same fixed context for
        every cell; ``"expressed"``: the ``n_genes`` most frequently detected genes of the group;
        ``"genome_wide"``: per cell ``max_len`` random expressed genes, ``n_repeats`` draws per cell, the
        network covering every gene seen; or a list of ``var_names``.
    n_genes
        Size of the ``"hvg"`` / ``"expressed"`` gene set.
    max_len, n_repeats
        Context length and draws per cell for ``"genome_wide"``.
    layers
        Transformer layers to use (``None``: all).
    heads
        ``None``: average every head of ``layers``; a list of ``(layer, head)``; or ``"selected"`` to reuse
        the heads chosen by :func:`~sc_print.tl.select_heads` (stored in ``.uns[heads_key]``).
    heads_key
        Where ``"selected"`` heads are read.
    filtration
        ``"threshold"``: keep edges ≥ ``1/N`` (the reference); ``"top_k"``: the ``top_k`` strongest targets of
        each source; ``"none"``: every edge.
    top_k
        Targets kept per source with ``filtration="top_k"``.
    orientation
        ``"query_is_source"`` (rows = the attending gene, the reference's raw matrix) or ``"key_is_source"``.
    batch_size
        Cells per forward pass.
    accelerator, device
        Where the model runs (``"auto"``: CUDA when available).
    dtype
        Autocast dtype (``None``: bfloat16 on CUDA, float32 on CPU).
    rng
        Seed of cell and gene sampling.
    key_added
        Networks go to ``.varp[key_added]`` (``groupby=None``) or ``.varp[f"{key_added}_{group}"]``.
    mod
        Modality of a MuData.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None`` or a copy (``copy=True``), with:

    ``.varp[key_added | f"{key_added}_{group}"]`` : :class:`scipy.sparse.csr_matrix` ``(n_vars, n_vars)``
        Edge weights, row = source gene, column = target gene; genes outside the network have empty rows.
    ``.uns[key_added]`` : dict
        ``params``, ``orientation``, ``varp_keys`` (group → varp key), ``n_cells``, ``n_genes`` and ``model``.
    """
    if orientation not in ORIENTATIONS:
        msg = f"Unknown orientation {orientation!r}; use one of {ORIENTATIONS}."
        raise ValueError(msg)
    if filtration not in ("threshold", "top_k", "none"):
        msg = f"Unknown filtration {filtration!r}; use 'threshold', 'top_k' or 'none'."
        raise ValueError(msg)
    source = resolve_adata(adata, mod)
    gen = make_rng(rng)
    cell_groups = _groups(source, groupby, groups)
    run = _resolve_run(
        source, model=model, layer=layer, accelerator=accelerator, device=device, dtype=dtype, batch_size=batch_size
    )
    n_layers = run.model.net.config.nlayers
    if heads == "selected":
        head_list, head_weights = _stored_heads(source, heads_key)
        layer_list = sorted({h[0] for h in head_list})
    else:
        layer_list = _layer_list(n_layers, layers)
        head_list = None if heads is None else [(int(a) % n_layers, int(b)) for a, b in heads]
        head_weights = None
        if head_list is not None:
            layer_list = sorted(set(layer_list) | {h[0] for h in head_list})
    pos_of_layer = {layer: i for i, layer in enumerate(layer_list)}
    if head_list is not None:
        nhead = run.model.net.config.nhead
        bad = [h for h in head_list if not 0 <= h[1] < nhead]
        if bad:
            msg = f"Heads {bad} do not exist; the model has {nhead} heads per layer."
            raise ValueError(msg)
        head_list = [(pos_of_layer[a], b) for a, b in head_list]
    cells = {
        g: _select_cells(
            idx,
            run.counts.depth,
            group=g,
            n_cells=n_cells,
            min_cells=min_cells,
            cell_selection=cell_selection,
            rng=gen,
        )
        for g, idx in cell_groups.items()
    }
    networks: dict[str, sp.csr_matrix] = {}
    n_genes_out: dict[str, int] = {}
    for g, idx in cells.items():
        net_genes, genes_seen = _attention(
            run,
            idx,
            genes,
            n_genes=n_genes,
            layers=layer_list,
            max_len=max_len,
            n_repeats=n_repeats,
            batch_size=batch_size,
            rng=gen,
            description=f"grn {g}",
            heads=head_list,
            head_weights=head_weights,
            filtration=filtration,
            top_k=top_k,
        )
        networks[g] = _to_var_space(net_genes, genes_seen, run, orientation)
        n_genes_out[g] = len(genes_seen)
    # ---- write (every check passed)
    data, target = output_target(adata, mod, copy=copy)
    varp_keys = {g: Key.varp.grn(key_added, None if groupby is None else g) for g in networks}
    for g, matrix in networks.items():
        target.varp[varp_keys[g]] = matrix
        log_written("varp", varp_keys[g])
    params = params_record(
        groupby=groupby,
        groups=list(networks),
        layer=layer,
        n_cells=n_cells,
        min_cells=min_cells,
        cell_selection=cell_selection,
        genes=genes if isinstance(genes, str) else list(map(str, genes)),
        n_genes=n_genes,
        max_len=max_len,
        n_repeats=n_repeats,
        layers=layer_list,
        heads="all" if heads is None else ("selected" if heads == "selected" else [list(h) for h in heads]),
        filtration=filtration,
        top_k=top_k,
        dtype=run.dtype,
        aggregation="mean over cells of Q and K per gene, softmax(QK^T/sqrt(d)) per head, mean over heads",
        rng=seed_record(rng),
    )
    target.uns[key_added] = {
        "params": params,
        "orientation": orientation,
        "varp_keys": varp_keys,
        "n_cells": {g: len(idx) for g, idx in cells.items()},
        "n_genes": n_genes_out,
        "model": model_record(run.model),
    }
    log_written("uns", key_added)
    return data if copy else None


# ---------------------------------------------------------------------------------------------------- heads
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
    dtype: torch.dtype | None = None,
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
    if isinstance(genes, str) and genes == "genome_wide":
        msg = "select_heads needs a fixed gene set: use genes='hvg', 'expressed' or a list."
        raise ValueError(msg)
    if orientation not in ORIENTATIONS:
        msg = f"Unknown orientation {orientation!r}; use one of {ORIENTATIONS}."
        raise ValueError(msg)
    source = resolve_adata(adata, mod)
    gen = make_rng(rng)
    if gene_symbols is not None and gene_symbols not in source.var:
        msg = f"Column {gene_symbols!r} not found in `adata.var`."
        raise KeyError(msg)
    cell_groups = _groups(source, groupby, None if group is None else [group])
    if groupby is not None and group is None:
        msg = "Pass `group=` (one category of `groupby`) to select heads on."
        raise ValueError(msg)
    ((g, idx),) = cell_groups.items()
    run = _resolve_run(
        source, model=model, layer=layer, accelerator=accelerator, device=device, dtype=dtype, batch_size=batch_size
    )
    layer_list = _layer_list(run.model.net.config.nlayers, layers)
    cells = _select_cells(
        idx,
        run.counts.depth,
        group=g,
        n_cells=min(n_cells or len(idx), len(idx)),
        min_cells=2,
        cell_selection="deepest",
        rng=gen,
    )
    cube, genes_seen = _attention(
        run,
        cells,
        genes,
        n_genes=n_genes,
        layers=layer_list,
        max_len=0,
        n_repeats=1,
        batch_size=batch_size,
        rng=gen,
        description="select_heads",
        per_head=True,
    )
    if orientation == "key_is_source":
        cube = cube.transpose(1, 0, 2)
    names = source.var[gene_symbols] if gene_symbols else pd.Series(source.var_names, index=source.var_names)
    gene_names = names.astype(str).to_numpy()[run.counts.mapping.first_col[genes_seen]]
    truth = truth_matrix(net, gene_names).toarray()
    fit = fit_head_classifier(cube, truth, train_size=train_size, alpha=alpha, positive_weight=positive_weight, rng=gen)
    nhead = run.model.net.config.nhead
    pairs = [(layer_list[j // nhead], j % nhead) for j in range(cube.shape[2])]
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
        "params": params_record(
            groupby=groupby,
            group=group,
            n_cells=len(cells),
            genes=genes if isinstance(genes, str) else list(map(str, genes)),
            layers=layer_list,
            orientation=orientation,
            train_size=train_size,
            alpha=alpha,
            positive_weight=positive_weight,
            rng=seed_record(rng),
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
