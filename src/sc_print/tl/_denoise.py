"""``sp.tl.denoise``: expected counts at a requested depth from a scPRINT model."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from scipy import sparse

from sc_print._keys import Key
from sc_print._utils import doc_params, log_written, make_rng, model_record, seed_record, torch_generator
from sc_print._validation import check_positive_int, resolve_adata

from ._common import (
    DOC_COUNTS_INPUT,
    DOC_MOD_COPY,
    DOC_RUN_OPTIONS,
    HVG_SPAN,
    check_key,
    dtype_name,
    genes_from_names,
    hvg_positions,
    inference_mode,
    is_sparse_matrix,
    load_counts,
    output_target,
    params_record,
    resolve_dtype,
    resolve_run,
    token_batches,
    uns_key,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData
    from mudata import MuData

    from sc_print._utils import RngLike
    from sc_print.data import GeneMapper
    from sc_print.model import ScPrint
    from sc_print.nn import ScPrintNet

logger = logging.getLogger(__name__)

GENE_SETS: tuple[str, ...] = ("hvg", "expressed", "all")
EXPECTATIONS: tuple[str, ...] = ("nb_mean", "zinb_mean")


def _denoise_matrix(
    X: Any,
    mapper: GeneMapper,
    depth: np.ndarray,
    net: ScPrintNet,
    *,
    out_columns: np.ndarray,
    n_vars: int,
    positions: np.ndarray | None,
    n_genes: int,
    depth_mult: float,
    target_depth: float | None,
    expectation: str,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    generator: torch.Generator | None,
    as_sparse: bool,
) -> sparse.csr_matrix | np.ndarray:
    """Predict the expected counts of the rows of ``X``, ``batch_size`` rows at a time (the loop of ``denoise``).

    ``positions=None`` draws up to ``n_genes`` expressed genes per cell (``generator``); otherwise every cell
    gets the mapped genes at ``positions``. The depth shown to the model is ``depth * m`` and the decoded mean
    sums to ``context_sum * m`` over the context, with ``m = depth_mult`` or ``target_depth / depth``.
    ``out_columns`` maps vocabulary indices to output columns. Returns a CSR matrix (values only at the genes
    in context, built chunk by chunk) when ``as_sparse``, else a dense array.
    """
    n_obs = int(X.shape[0])
    dense_out = None if as_sparse else np.zeros((n_obs, n_vars), dtype=np.float32)
    blocks: list[sparse.csr_matrix] = []
    batches = token_batches(
        X,
        mapper,
        depth,
        mode="random_expr" if positions is None else "fixed",
        max_len=n_genes,
        genes=positions,
        generator=generator,
        batch_size=batch_size,
        device=device,
        description="sc_print denoise",
    )
    with inference_mode(net, device, dtype):
        for start, stop, tokens in batches:
            if target_depth is None:
                mult = torch.full_like(tokens.depth, float(depth_mult))
            else:
                mult = float(target_depth) / tokens.depth
            out = net(
                tokens.gene_idx,
                tokens.expr,
                tokens.depth,
                depth_mult=tokens.expr.sum(1) * mult,
                req_depth=tokens.depth * mult,
                classify=False,
            )
            mean = out.mu.float()
            if expectation == "zinb_mean":
                mean = mean * (1.0 - torch.sigmoid(out.pi_logits.float()))
            values = mean.cpu().numpy()
            cols = out_columns[tokens.gene_idx.cpu().numpy()]
            rows_idx = np.broadcast_to(np.arange(stop - start)[:, None], cols.shape)
            if dense_out is not None:
                dense_out[start + rows_idx, cols] = values
            else:
                block = sparse.csr_matrix(
                    (values.ravel(), (rows_idx.ravel(), cols.ravel())), shape=(stop - start, n_vars), dtype=np.float32
                )
                block.eliminate_zeros()
                block.sort_indices()
                blocks.append(block)
    if dense_out is not None:
        return dense_out
    if not blocks:
        return sparse.csr_matrix((n_obs, n_vars), dtype=np.float32)
    return sparse.vstack(blocks, format="csr", dtype=np.float32)


@doc_params(counts_input=DOC_COUNTS_INPUT, run_options=DOC_RUN_OPTIONS, mod_copy=DOC_MOD_COPY)
def denoise(
    adata: AnnData | MuData,
    *,
    model: ScPrint | str | None = None,
    layer: str | None = None,
    genes: Literal["hvg", "expressed", "all"] | Sequence[str] = "hvg",
    n_genes: int = 5000,
    depth_mult: float = 4.0,
    target_depth: float | None = None,
    mode: Literal["nb_mean", "zinb_mean"] = "nb_mean",
    batch_size: int = 32,
    accelerator: str = "auto",
    device: int | str = "auto",
    dtype: torch.dtype | str | None = None,
    rng: RngLike = 0,
    key_added: str = Key.layers.denoised,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Denoise raw counts: the model's expected counts of each cell at a requested sequencing depth.

    As in scPRINT's ``Denoiser``, each cell is shown to the model with its genes in context and asked for a depth
    ``m`` times its own: the depth token sees ``depth * m`` and the decoded mean over the context genes sums to
    ``m`` times their observed total. ``target_depth`` asks instead for the same total ``T`` for every cell
    (``m = T / depth``). The output is the negative-binomial mean ``mu`` (scPRINT's denoised expression) or,
    with ``mode="zinb_mean"``, the expectation of the zero-inflated distribution ``mu * (1 - sigmoid(pi))``.
    Only the genes in context get values.

    Cells are streamed ``batch_size`` rows at a time (never densified beyond one batch) and none is dropped or
    resampled: every cell is denoised once (the reference draws cells with replacement). Every check runs
    before anything is written: a failing call leaves ``adata`` unchanged.

    Parameters
    ----------
    {counts_input}
    genes
        Genes in context: ``"hvg"`` (the ``n_genes`` most variable mapped genes, scanpy's ``seurat_v3`` on a
        copy of the raw counts, the same genes for every cell; scPRINT's default), ``"expressed"`` (per cell, up
        to ``n_genes`` expressed genes drawn with ``rng``, completed with unexpressed genes when fewer are
        expressed), ``"all"`` (every mapped gene) or a list of gene names from ``var_names``.
    n_genes
        Number of variable genes for ``"hvg"``, context length for ``"expressed"``.
    depth_mult
        Requested depth as a multiple ``m`` of each cell's depth.
    target_depth
        Requested depth as a fixed total per cell (overrides ``depth_mult``).
    mode
        ``"nb_mean"``: the negative-binomial mean ``mu``; ``"zinb_mean"``: ``mu * (1 - sigmoid(pi))`` (needs a
        ZINB decoder).
    {run_options}
    rng
        Seed or :class:`numpy.random.Generator` for ``genes="expressed"``.
    key_added
        Layer written.
    {mod_copy}

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets (in the ``mod`` modality for a MuData):

    ``.layers['scprint_denoised' | key_added]`` : :class:`scipy.sparse.csr_matrix` or :class:`numpy.ndarray`
        Expected counts (float32, ``n_obs`` x ``n_vars``), sparse CSR when the counts are sparse (dense
        otherwise), zero outside the genes in context. A gene present in several columns (duplicated ids)
        is written to its first column.
    ``.uns['scprint_denoise']`` (``.uns[f'{key_added}_denoise']`` for another ``key_added``) : dict
        ``params`` (the call), ``model`` (name, checksum, size), ``layer`` (the key written), ``genes``
        (``var_names`` of the genes in context, absent for ``"expressed"``), ``n_genes`` (context length),
        ``gene_set``, ``expectation``, ``depth_mult`` or ``target_depth``, ``n_genes_mapped``, ``gene_ids``,
        ``depth``, ``counts``.

    Raises
    ------
    KeyError
        Unknown ``layer``, MuData modality or gene of ``genes``.
    ValueError
        Counts that are not raw counts (NaN, infinite, negative, non-integer), cells without counts, no gene
        mapping onto the model vocabulary, ``mode="zinb_mean"`` with a model without a ZINB decoder, bad option
        values.

    Examples
    --------
    >>> import sc_print as sp
    >>> adata = sp.datasets.example()  # doctest: +SKIP
    >>> sp.tl.denoise(adata, genes="hvg", n_genes=2000)  # doctest: +SKIP
    >>> adata.layers["scprint_denoised"]  # doctest: +SKIP
    """
    # ---- options (cheap checks first)
    if isinstance(genes, str):
        if genes not in GENE_SETS:
            msg = f"Unknown gene set {genes!r}; use one of {list(GENE_SETS)} or a list of gene names."
            raise ValueError(msg)
        gene_set = genes
    else:
        gene_set = "list"
    n_genes = check_positive_int(n_genes, "n_genes")
    batch_size = check_positive_int(batch_size, "batch_size")
    key_added = check_key(key_added)
    if mode not in EXPECTATIONS:
        msg = f"Unknown mode {mode!r}; choose one of {list(EXPECTATIONS)}."
        raise ValueError(msg)
    for name, value in (("depth_mult", depth_mult), ("target_depth", target_depth)):
        if value is None and name == "target_depth":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            msg = f"`{name}` must be a positive finite number, got {value!r}."
            raise ValueError(msg)
    data = resolve_adata(adata, mod)

    # ---- model
    model_name = model if isinstance(model, str) else None
    model, torch_device = resolve_run(model, accelerator, device)
    compute_dtype = resolve_dtype(dtype, torch_device)
    net = model.net
    if mode == "zinb_mean" and net.config.expr_decoder != "zinb":
        msg = (
            f"mode='zinb_mean' needs a model with a ZINB expression decoder; this one has "
            f"{net.config.expr_decoder!r}. Use mode='nb_mean'."
        )
        raise ValueError(msg)
    if net.config.expr_decoder == "mse":
        logger.warning("The model has an MSE expression decoder: the denoised values are its predicted means.")

    # ---- counts, genes, depth (validated; nothing written)
    inputs = load_counts(data, model, layer=layer, chunk_size=batch_size)
    mapping = inputs.mapping
    if gene_set == "list":
        positions = genes_from_names(data, genes, mapping)  # type: ignore[arg-type]
    elif gene_set == "all":
        positions = np.arange(mapping.n_genes, dtype=np.int64)
    elif gene_set == "hvg":
        positions = hvg_positions(inputs.X, mapping, n_genes, chunk_size=batch_size)
    else:
        positions = None
    generator = torch_generator(make_rng(rng)) if positions is None else None
    out_columns = mapping.column_of_vocab(int(net.config.n_genes))
    as_sparse = is_sparse_matrix(inputs.X)

    layer_values = _denoise_matrix(
        inputs.X,
        mapping.mapper,
        inputs.depth,
        net,
        out_columns=out_columns,
        n_vars=data.n_vars,
        positions=positions,
        n_genes=n_genes,
        depth_mult=float(depth_mult),
        target_depth=None if target_depth is None else float(target_depth),
        expectation=mode,
        batch_size=batch_size,
        device=torch_device,
        dtype=compute_dtype,
        generator=generator,
        as_sparse=as_sparse,
    )

    record: dict[str, Any] = {
        "params": params_record(
            model=model_name,
            layer=layer,
            genes=genes if isinstance(genes, str) else [str(g) for g in genes],
            n_genes=n_genes,
            depth_mult=float(depth_mult) if target_depth is None else None,
            target_depth=target_depth,
            mode=mode,
            batch_size=batch_size,
            accelerator=accelerator,
            device=device,
            dtype=dtype_name(compute_dtype),
            rng=seed_record(rng),
            key_added=key_added,
            mod=mod,
        ),
        "model": model_record(model),
        "layer": key_added,
        "gene_set": gene_set,
        "n_genes": int(min(n_genes, mapping.n_genes) if positions is None else len(positions)),
        "expectation": mode,
        **inputs.record(),
        "device": str(torch_device),
    }
    if target_depth is None:
        record["depth_mult"] = float(depth_mult)
    else:
        record["target_depth"] = float(target_depth)
    if positions is not None:
        record["genes"] = data.var_names[mapping.first_col[positions]].astype(str).tolist()
    if gene_set == "hvg":
        record["hvg_span"] = HVG_SPAN

    # ---- write
    target, out = output_target(adata, mod, copy=copy)
    out.layers[key_added] = layer_values
    log_written("layers", key_added)
    key = uns_key(Key.uns.denoise, key_added, default_key_added=Key.layers.denoised, suffix="denoise")
    out.uns[key] = record
    log_written("uns", key)
    return target if copy else None
