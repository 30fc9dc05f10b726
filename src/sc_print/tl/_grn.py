"""``sp.tl.grn``: gene networks from scPRINT attention, one per group of cells."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from sc_print._distributed import DOC_PARALLEL, Parallel, check_parallel
from sc_print._distributed import accumulate_qk as parallel_accumulate_qk
from sc_print._keys import Key, check_key, grn_keys, group_name_map
from sc_print._networks import ORIENTATIONS, Orientation
from sc_print._resolve import resolve_run
from sc_print._runtime import dtype_name, resolve_dtype, resolve_seed
from sc_print._utils import doc_params, log_written, model_record
from sc_print._validation import check_positive_int, resolve_adata
from sc_print.data import genes_from_names, hvg_positions, iter_row_chunks, load_counts
from sc_print.grn import (
    accumulate_attention,
    accumulate_qk,
    attention_network,
    mean_attention_network,
    place_network,
    select_cells,
)

from ._common import output_target, params_record

if TYPE_CHECKING:
    import scipy.sparse as sp
    import torch
    from anndata import AnnData
    from mudata import MuData

    from sc_print._utils import RngLike
    from sc_print.data import CountInputs
    from sc_print.model import ScPrint

logger = logging.getLogger(__name__)

GeneSelection = Literal["hvg", "expressed", "genome_wide"]
GENE_SELECTIONS: tuple[str, ...] = ("hvg", "expressed", "genome_wide")
FILTRATIONS: tuple[str, ...] = ("threshold", "top_k", "none")
CELL_SELECTIONS: tuple[str, ...] = ("deepest", "random")
AGGREGATIONS: tuple[str, ...] = ("mean_qk", "mean_attention")
#: group name used when ``groupby=None``
ALL = "all"


# ---------------------------------------------------------------------------------------------------- inputs
@dataclass
class Run:
    """Everything resolved and validated before any computation (nothing written yet)."""

    adata: AnnData
    counts: CountInputs
    model: ScPrint
    device: torch.device
    dtype: torch.dtype
    seed: int
    parallel: Parallel | None = None


def resolve(
    adata: AnnData, *, model: Any, layer: str | None, accelerator: str, device: int | str, dtype: Any, seed: int
) -> Run:
    """Resolve the model and device, and validate the counts (the second stage of every network call)."""
    model, dev = resolve_run(model, accelerator, device)
    counts = load_counts(adata, model.vocab, layer=layer, chunk_size=4096)
    return Run(adata, counts, model, dev, resolve_dtype(dtype, dev), seed)


def check_gene_selection(genes: Any, *, allow_genome_wide: bool = True) -> str:
    """``genes`` as ``"hvg"``/``"expressed"``/``"genome_wide"`` or ``"list"``; a clear error otherwise."""
    if isinstance(genes, str):
        if genes == "genome_wide" and not allow_genome_wide:
            msg = "select_heads needs a fixed gene set: use genes='hvg', 'expressed' or a list of var names."
            raise ValueError(msg)
        allowed = GENE_SELECTIONS if allow_genome_wide else GENE_SELECTIONS[:2]
        if genes not in allowed:
            msg = f"Unknown gene selection {genes!r}; use one of {list(allowed)} or a list of var names."
            raise ValueError(msg)
        return genes
    if not isinstance(genes, Sequence | np.ndarray | pd.Index) or len(genes) == 0:
        msg = f"`genes` must be one of {list(GENE_SELECTIONS)} or a non-empty list of var names, got {genes!r}."
        raise ValueError(msg)
    return "list"


def cell_groups(adata: AnnData, groupby: str | None, groups: Sequence[str] | None) -> dict[str, np.ndarray]:
    """Row positions of each requested group, keyed by the group's label (as a string).

    Cells whose label is missing (NaN) are excluded with a warning; the labels must be storable (see
    :func:`~sc_print._keys.group_name_map`).
    """
    if adata.n_obs == 0 or adata.n_vars == 0:
        what = "no cells (0 rows)" if adata.n_obs == 0 else "no genes (0 columns)"
        msg = f"The data has {what}; nothing to compute."
        raise ValueError(msg)
    if groupby is None:
        if groups is not None:
            msg = "`groups` needs `groupby`."
            raise ValueError(msg)
        return {ALL: np.arange(adata.n_obs)}
    if not isinstance(groupby, str) or groupby not in adata.obs:
        msg = f"Column {groupby!r} not found in `adata.obs`; available columns: {list(adata.obs.columns)}."
        raise KeyError(msg)
    column = adata.obs[groupby]
    missing = column.isna().to_numpy()
    if missing.all():
        msg = f"Every value of `adata.obs[{groupby!r}]` is missing (NaN); nothing to group by."
        raise ValueError(msg)
    if missing.any():
        logger.warning(
            "%d of %d cells have a missing `%s` label (NaN) and are left out of every network.",
            int(missing.sum()),
            len(missing),
            groupby,
        )
    values = column.astype(object).where(~missing, None).to_numpy()
    labels = np.array([str(v) for v in values[~missing]], dtype=object)
    present = list(pd.unique(labels))
    if groups is not None and (isinstance(groups, str) or not isinstance(groups, Sequence | np.ndarray | pd.Index)):
        msg = f"`groups` must be a list of categories of `{groupby}`, got {groups!r}."
        raise TypeError(msg)
    wanted = present if groups is None else [str(g) for g in groups]
    unknown = [g for g in wanted if g not in present]
    if unknown:
        msg = f"Groups {unknown} not found in `adata.obs[{groupby!r}]`; available: {sorted(present)}."
        raise KeyError(msg)
    rows = np.flatnonzero(~missing)
    return {g: rows[labels == g] for g in wanted}


def fixed_context(run: Run, cells: np.ndarray, genes: Any, *, n_genes: int) -> np.ndarray | None:
    """Positions (in the mapped genes) of a fixed context, or ``None`` for genome-wide random contexts.

    ``"hvg"`` and ``"expressed"`` are computed on the group's cells (a function of the group, not of its order).
    """
    mapping = run.counts.mapping
    if not isinstance(genes, str):
        return genes_from_names(run.adata, genes, mapping)
    if genes == "genome_wide":
        return None
    rows = run.counts.X[cells]
    if genes == "hvg":
        return hvg_positions(rows, mapping, n_genes, chunk_size=4096)
    detected = np.zeros(mapping.n_genes)
    for _, _, chunk in iter_row_chunks(rows, 4096):
        detected += np.asarray((mapping.collapse_sparse(chunk) > 0).sum(0)).ravel()
    n = min(n_genes, int((detected > 0).sum()))
    return np.sort(np.argsort(-detected, kind="stable")[:n])


def layer_list(n_layers: int, layers: Sequence[int] | None) -> list[int]:
    """Sorted layers (negative indices counted from the end), a clear error for layers that do not exist."""
    if layers is None:
        return list(range(n_layers))
    if isinstance(layers, int | np.integer):
        layers = [int(layers)]
    bad = [layer for layer in layers if isinstance(layer, bool) or not isinstance(layer, int | np.integer)]
    bad += [layer for layer in layers if layer not in bad and not -n_layers <= int(layer) < n_layers]
    if bad or len(layers) == 0:
        msg = f"Layers {list(layers)} are not valid; the model has {n_layers} layers (0..{n_layers - 1})."
        raise ValueError(msg)
    return sorted({int(layer) % n_layers for layer in layers})


def to_var_space(net_genes: sp.csr_matrix, genes_seen: np.ndarray, run: Run, orientation: str) -> sp.csr_matrix:
    """Place a ``[G, G]`` network over seen genes into an ``n_vars × n_vars`` CSR (rows = source)."""
    if orientation == "key_is_source":
        net_genes = net_genes.T.tocsr()
    return place_network(net_genes, run.counts.mapping.first_col[genes_seen], run.adata.n_vars)


def attention_of(
    run: Run,
    cells: np.ndarray,
    genes: Any,
    *,
    n_genes: int,
    layers: list[int],
    max_len: int,
    n_repeats: int,
    batch_size: int,
    description: str,
    aggregation: str = "mean_qk",
    **options: Any,
) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """Attention network of ``cells`` from their per-gene mean Q and K (or their mean attention).

    Returns the network (:func:`~sc_print.grn.attention_network` with ``options``, or
    :func:`~sc_print.grn.mean_attention_network` for ``aggregation="mean_attention"``), the positions (in the mapped
    genes) of the genes it covers, in its row order, and the fixed context (``None`` for genome-wide).
    """
    context = fixed_context(run, cells, genes, n_genes=n_genes)
    stream = {
        "positions": context,
        "layers": layers,
        "max_len": max_len,
        "n_repeats": n_repeats,
        "seed": run.seed,
        "batch_size": batch_size,
        "device": run.device,
        "dtype": run.dtype,
        "description": description,
    }
    if aggregation == "mean_attention":
        att = accumulate_attention(
            run.model.net,
            run.counts,
            cells,
            heads=options.pop("heads", None),
            head_weights=options.pop("head_weights", None),
            **stream,
        )
        return mean_attention_network(att, **options), att.seen, context
    accumulate = accumulate_qk if run.parallel is None else partial(parallel_accumulate_qk, run.parallel)
    acc = accumulate(run.model.net, run.counts, cells, **stream)
    q_mean, k_mean, seen = acc.means()
    genes_seen = np.flatnonzero(seen[acc.n_tokens :].cpu().numpy())
    return attention_network(q_mean, k_mean, n_tokens=acc.n_tokens, **options), genes_seen, context


# ---------------------------------------------------------------------------------------------------- grn
@doc_params(parallel=DOC_PARALLEL)
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
    aggregation: Literal["mean_qk", "mean_attention"] = "mean_qk",
    orientation: Orientation = "query_is_source",
    batch_size: int = 16,
    accelerator: str = "auto",
    device: int | str = "auto",
    dtype: torch.dtype | str | None = None,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
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
        Cells per group (``None``: all); a group with fewer cells is an error. Which cells are kept depends on
        the group's cells only, not on their order (see ``cell_selection``).
    min_cells
        Smallest group accepted.
    cell_selection
        ``"deepest"``: the ``n_cells`` cells with most counts (reference; ties broken by the cells' content, not
        their row); ``"random"``: a seeded draw keyed on each cell's counts.
    genes
        ``"hvg"``: seurat_v3 highly variable genes of the group (``n_genes``), the same fixed context for
        every cell; ``"expressed"``: the ``n_genes`` most frequently detected genes of the group (both computed
        on the group's cells and recorded in ``.uns[key_added]["genes"]``);
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
    aggregation
        ``"mean_qk"`` (the reference): ``softmax(Q̄ K̄ᵀ/√d)`` of the per-gene mean queries and keys;
        ``"mean_attention"``: the exact mean over the group's cells of each cell's attention
        ``softmax(q_c k_cᵀ/√d)`` (head-averaged while streaming; memory one dense ``(T + G)²`` float32 matrix,
        ``G`` the context genes, or every mapped gene for ``"genome_wide"``). On CUDA both run as Triton
        kernels when ``triton`` is installed (see :doc:`/gpu`), else in torch.
    orientation
        ``"query_is_source"`` (rows = the attending gene, the reference's raw matrix) or ``"key_is_source"``.
    batch_size
        Cells per forward pass.
    accelerator, device
        Where the model runs (``"auto"``: CUDA when available).
    dtype
        Autocast dtype (``None``: bfloat16 on CUDA, float32 on CPU).
    {parallel}
    rng
        Integer seed of the cell and gene sampling (a Generator or ``None`` draws one; the seed used is
        recorded).
    key_added
        Networks go to ``.varp[key_added]`` (``groupby=None``) or ``.varp[f"{key_added}_{group}"]``. A group label
        that h5ad/zarr cannot store (with ``/``) is stored under a safe name (``/`` → ``_``), recorded in
        ``.uns[key_added]["group_names"]``; cells with a missing label are left out with a warning.
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
        ``params`` (every option), ``orientation``, ``varp_keys`` (group → varp key), ``group_names`` (stored
        name → label), ``n_cells``, ``n_genes``, ``genes`` (the fixed context of each group, as var names) and
        ``model``.
    """
    # ---- options (all checked before any model is loaded)
    if orientation not in ORIENTATIONS:
        msg = f"Unknown orientation {orientation!r}; use one of {list(ORIENTATIONS)}."
        raise ValueError(msg)
    if filtration not in FILTRATIONS:
        msg = f"Unknown filtration {filtration!r}; use one of {list(FILTRATIONS)}."
        raise ValueError(msg)
    if cell_selection not in CELL_SELECTIONS:
        msg = f"Unknown cell_selection {cell_selection!r}; use one of {list(CELL_SELECTIONS)}."
        raise ValueError(msg)
    if aggregation not in AGGREGATIONS:
        msg = f"Unknown aggregation {aggregation!r}; use one of {list(AGGREGATIONS)}."
        raise ValueError(msg)
    gene_selection = check_gene_selection(genes)
    n_cells = check_positive_int(n_cells, "n_cells", allow_none=True)
    min_cells = check_positive_int(min_cells, "min_cells")
    n_genes = check_positive_int(n_genes, "n_genes")
    max_len = check_positive_int(max_len, "max_len")
    n_repeats = check_positive_int(n_repeats, "n_repeats")
    top_k = check_positive_int(top_k, "top_k")
    batch_size = check_positive_int(batch_size, "batch_size")
    key_added = check_key(key_added)
    check_key(heads_key, "heads_key")
    if heads is not None and heads != "selected":
        if isinstance(heads, str) or not isinstance(heads, Sequence) or not heads:
            msg = f"`heads` must be None, 'selected' or a non-empty list of (layer, head) pairs, got {heads!r}."
            raise ValueError(msg)
        if any(np.shape(h) != (2,) for h in heads):
            msg = f"`heads` must be a list of (layer, head) pairs, got {heads!r}."
            raise ValueError(msg)
    seed = resolve_seed(rng)
    par = check_parallel(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, device=device
    )
    if par is not None and aggregation != "mean_qk":
        msg = f"Several processes (devices={devices}) need aggregation='mean_qk', got {aggregation!r}."
        raise ValueError(msg)
    source = resolve_adata(adata, mod)
    groups_rows = cell_groups(source, groupby, groups)
    stored = {g: g for g in groups_rows} if groupby is None else group_name_map(groups_rows, groupby=groupby)
    keys = grn_keys(key_added, None if groupby is None else list(stored.values()))
    for g, idx in groups_rows.items():
        if len(idx) < min_cells:
            msg = (
                f"Group {g!r} has {len(idx)} cells, fewer than min_cells={min_cells}. "
                "Exclude it with `groups=` or lower `min_cells`."
            )
            raise ValueError(msg)
        if n_cells is not None and n_cells > len(idx):
            msg = f"Group {g!r} has {len(idx)} cells but n_cells={n_cells} were requested; lower `n_cells`."
            raise ValueError(msg)

    # ---- model, counts, heads
    run = resolve(source, model=model, layer=layer, accelerator=accelerator, device=device, dtype=dtype, seed=seed)
    run.parallel = par
    n_layers, nhead = run.model.net.config.nlayers, run.model.net.config.nhead
    if heads == "selected":
        head_list, head_weights = stored_heads(source, heads_key)
        layers_used = sorted({h[0] for h in head_list})
    else:
        layers_used = layer_list(n_layers, layers)
        head_list = None if heads is None else [(int(a), int(b)) for a, b in heads]
        head_weights = None
        if head_list is not None:
            bad = [h for h in head_list if not (-n_layers <= h[0] < n_layers and 0 <= h[1] < nhead)]
            if bad:
                msg = f"Heads {bad} do not exist; the model has {n_layers} layers of {nhead} heads."
                raise ValueError(msg)
            head_list = [(a % n_layers, b) for a, b in head_list]
            layers_used = sorted(set(layers_used) | {h[0] for h in head_list})
    pos_of_layer = {layer: i for i, layer in enumerate(layers_used)}
    if head_list is not None:
        head_list = [(pos_of_layer[a], b) for a, b in head_list]
    cells = {
        g: select_cells(run.counts, idx, n_cells=n_cells, cell_selection=cell_selection, seed=seed)
        for g, idx in groups_rows.items()
    }

    # ---- one network per group
    networks: dict[str, sp.csr_matrix] = {}
    n_genes_out: dict[str, int] = {}
    contexts: dict[str, list[str]] = {}
    var_names = source.var_names.astype(str)
    for g, idx in cells.items():
        net_genes, genes_seen, context = attention_of(
            run,
            idx,
            genes,
            n_genes=n_genes,
            layers=layers_used,
            max_len=max_len,
            n_repeats=n_repeats,
            batch_size=batch_size,
            description=f"sc_print grn {g}",
            heads=head_list,
            head_weights=head_weights,
            filtration=filtration,
            top_k=top_k,
            aggregation=aggregation,
        )
        networks[g] = to_var_space(net_genes, genes_seen, run, orientation)
        n_genes_out[g] = len(genes_seen)
        if context is not None:
            contexts[stored[g]] = var_names[run.counts.mapping.first_col[context]].tolist()

    # ---- write (every check passed)
    data, target = output_target(adata, mod, copy=copy)
    varp_keys = {}
    for g, matrix in networks.items():
        key = keys.varp[stored[g]] if groupby is not None else keys.varp[ALL]
        target.varp[key] = matrix
        varp_keys[stored[g]] = key
        log_written("varp", key)
    params = params_record(
        groupby=groupby,
        groups=None if groups is None else [str(g) for g in groups],
        model=model if isinstance(model, str) else None,
        layer=layer,
        n_cells=n_cells,
        min_cells=min_cells,
        cell_selection=cell_selection,
        genes=genes if isinstance(genes, str) else [str(g) for g in genes],
        n_genes=n_genes,
        max_len=max_len,
        n_repeats=n_repeats,
        layers=layers_used,
        heads="all" if heads is None else ("selected" if heads == "selected" else [list(h) for h in heads]),
        heads_key=heads_key if heads == "selected" else None,
        filtration=filtration,
        top_k=top_k,
        orientation=orientation,
        batch_size=batch_size,
        accelerator=accelerator,
        device=device,
        dtype=dtype_name(run.dtype),
        devices=None if par is None else devices,
        num_nodes=None if par is None else num_nodes,
        strategy=None if par is None else par.strategy,
        aggregation=aggregation,
        rng=seed,
        key_added=key_added,
        mod=mod,
    )
    record: dict[str, Any] = {
        "params": params,
        "orientation": orientation,
        "varp_keys": varp_keys,
        "n_cells": {stored[g]: len(idx) for g, idx in cells.items()},
        "n_genes": {stored[g]: n for g, n in n_genes_out.items()},
        "gene_selection": gene_selection,
        "model": model_record(run.model),
        **run.counts.record(),
        "device": str(run.device),
    }
    if groupby is not None:
        record["group_names"] = {safe: label for label, safe in stored.items()}
    if contexts:
        record["genes"] = contexts
    target.uns[keys.uns] = record
    log_written("uns", keys.uns)
    return data if copy else None


def stored_heads(adata: AnnData, key: str) -> tuple[list[tuple[int, int]], list[float]]:
    """Heads and weights chosen by :func:`~sc_print.tl.select_heads`, stored in ``.uns[key]``."""
    if key not in adata.uns or "heads" not in adata.uns[key]:
        msg = f"No head selection in `.uns[{key!r}]`; run `sp.tl.select_heads(adata, net=...)` first."
        raise KeyError(msg)
    record = adata.uns[key]
    heads = [(int(layer), int(head)) for layer, head in np.asarray(record["heads"]).reshape(-1, 2)]
    return heads, [float(w) for w in np.asarray(record["weights"]).ravel()]
