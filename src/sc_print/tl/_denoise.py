"""``sp.tl.denoise``: expected counts at a requested depth from a scPRINT model."""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from sc_print._distributed import DOC_PARALLEL, check_parallel
from sc_print._distributed import denoise_cells as parallel_denoise_cells
from sc_print._keys import Key, denoise_keys
from sc_print._resolve import resolve_run
from sc_print._runtime import dtype_name, resolve_dtype, resolve_seed
from sc_print._utils import doc_params, log_written, model_record
from sc_print._validation import check_positive_int, resolve_adata
from sc_print.data import HVG_SPAN
from sc_print.model import DENOISE_EXPECTATIONS, DENOISE_GENE_SETS

from ._common import output_target, params_record
from ._docs import DOC_COUNTS_INPUT, DOC_DETERMINISM, DOC_MOD_COPY, DOC_RUN_OPTIONS

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from anndata import AnnData
    from mudata import MuData

    from sc_print._utils import RngLike
    from sc_print.model import ScPrint

logger = logging.getLogger(__name__)


@doc_params(
    counts_input=DOC_COUNTS_INPUT,
    run_options=DOC_RUN_OPTIONS,
    mod_copy=DOC_MOD_COPY,
    determinism=DOC_DETERMINISM,
    parallel=DOC_PARALLEL,
)
def denoise(
    adata: AnnData | MuData,
    *,
    model: ScPrint | str | None = None,
    layer: str | None = None,
    genes: Literal["expressed", "hvg", "all"] | Sequence[str] = "expressed",
    n_genes: int = 2000,
    depth_mult: float = 4.0,
    target_depth: float | None = None,
    mode: Literal["nb_mean", "zinb_mean"] = "nb_mean",
    batch_size: int = 32,
    accelerator: str = "auto",
    device: int | str = "auto",
    dtype: torch.dtype | str | None = None,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
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
    before anything is written: a failing call leaves ``adata`` unchanged. The computation is
    :meth:`sc_print.model.ScPrint.denoise_cells`; this function writes its result.

    {determinism}

    Parameters
    ----------
    {counts_input}
    genes
        Genes in context: ``"expressed"`` (the default: per cell, up to ``n_genes`` expressed genes drawn with
        ``rng`` from the cell's own counts, completed with unexpressed genes when fewer are expressed — a
        function of each cell alone), ``"hvg"`` (the ``n_genes`` most variable mapped genes of this object,
        scanpy's ``seurat_v3`` on a copy of the raw counts, the same genes for every cell; scPRINT's default —
        *data-set dependent*, the genes are recorded in ``.uns``), ``"all"`` (every mapped gene) or a list of
        gene names from ``var_names`` (e.g. the genes recorded by an earlier ``"hvg"`` run).
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
    {parallel}
    rng
        Integer seed of the per-cell draws of ``genes="expressed"`` (a :class:`numpy.random.Generator` or
        ``None`` draws one); the seed used is recorded in ``params``.
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
    # ---- options (cheap checks first, before any model is loaded)
    if isinstance(genes, str) and genes not in DENOISE_GENE_SETS:
        msg = f"Unknown gene set {genes!r}; use one of {list(DENOISE_GENE_SETS)} or a list of gene names."
        raise ValueError(msg)
    gene_set = genes if isinstance(genes, str) else "list"
    n_genes = check_positive_int(n_genes, "n_genes")
    batch_size = check_positive_int(batch_size, "batch_size")
    keys = denoise_keys(key_added)
    if mode not in DENOISE_EXPECTATIONS:
        msg = f"Unknown mode {mode!r}; choose one of {list(DENOISE_EXPECTATIONS)}."
        raise ValueError(msg)
    for name, value in (("depth_mult", depth_mult), ("target_depth", target_depth)):
        if value is None and name == "target_depth":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            msg = f"`{name}` must be a positive finite number, got {value!r}."
            raise ValueError(msg)
    seed = resolve_seed(rng)
    data = resolve_adata(adata, mod)
    par = check_parallel(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, device=device
    )

    # ---- model
    model_name = model if isinstance(model, str) else None
    model, torch_device = resolve_run(model, accelerator, device)
    compute_dtype = resolve_dtype(dtype, torch_device)
    if model.net.config.expr_decoder == "mse":
        logger.warning("The model has an MSE expression decoder: the denoised values are its predicted means.")

    # ---- the computation (validates counts and genes; nothing written)
    cells = model.denoise_cells if par is None else partial(parallel_denoise_cells, par, model)
    result = cells(
        data,
        layer=layer,
        genes=genes,
        n_genes=n_genes,
        depth_mult=depth_mult,
        target_depth=target_depth,
        expectation=mode,
        batch_size=batch_size,
        accelerator=accelerator,
        device=device,
        dtype=compute_dtype,
        seed=seed,
    )
    mapping, positions = result.inputs.mapping, result.context["positions"]
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
            devices=None if par is None else devices,
            num_nodes=None if par is None else num_nodes,
            strategy=None if par is None else par.strategy,
            rng=seed,
            key_added=keys.layer,
            mod=mod,
        ),
        "model": model_record(model),
        "layer": keys.layer,
        "gene_set": gene_set,
        "n_genes": result.context["n_genes"],
        "expectation": mode,
        **result.inputs.record(),
        "device": str(torch_device),
    }
    if target_depth is None:
        record["depth_mult"] = float(depth_mult)
    else:
        record["target_depth"] = float(target_depth)
    if positions is not None:
        # for "hvg" a data-set-level choice: recorded so that a re-run on a subset can pass the genes back
        record["genes"] = data.var_names[mapping.first_col[positions]].astype(str).tolist()
    if gene_set == "hvg":
        record["hvg_span"] = HVG_SPAN

    # ---- write
    target, out = output_target(adata, mod, copy=copy)
    out.layers[keys.layer] = result.values
    log_written("layers", keys.layer)
    out.uns[keys.uns] = record
    log_written("uns", keys.uns)
    return target if copy else None
