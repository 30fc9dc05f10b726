"""``sp.tl.embed``: cell embeddings and label predictions from a scPRINT model."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from sc_print._distributed import DOC_PARALLEL, check_parallel
from sc_print._distributed import embed_cells as parallel_embed_cells
from sc_print._keys import PREFIX, check_key, embed_keys
from sc_print._resolve import resolve_run
from sc_print._runtime import dtype_name, resolve_dtype, resolve_seed
from sc_print._utils import doc_params, log_written, model_record
from sc_print._validation import check_positive_int, resolve_adata
from sc_print.data import CONTEXT_MODES
from sc_print.ontology import LabelHierarchy, is_unknown, label_ontology, to_ontology, unknown_mask

from ._common import output_target, params_record
from ._docs import DOC_COUNTS_INPUT, DOC_DETERMINISM, DOC_MOD_COPY, DOC_RUN_OPTIONS

if TYPE_CHECKING:
    import torch
    from anndata import AnnData
    from mudata import MuData

    from sc_print._utils import RngLike
    from sc_print.model import ScPrint

logger = logging.getLogger(__name__)


def _truth_ids(hierarchy: LabelHierarchy, values: pd.Series, column: str) -> np.ndarray:
    """Ground-truth labels as hierarchy classes or ontology ids (readable ontology names are translated)."""
    raw = values.astype(object).to_numpy()
    classes = set(hierarchy.classes)
    known = [v for v in raw if not is_unknown(v)]
    if all(str(v) in classes for v in known) or label_ontology(hierarchy.label) is None:
        return np.asarray([v if is_unknown(v) else str(v) for v in raw], dtype=object)
    try:
        return to_ontology(hierarchy.label, raw)
    except ValueError as err:
        msg = f"Cannot compare `.obs[{column!r}]` with the {hierarchy.label!r} predictions: {err}"
        raise ValueError(msg) from err


def _accuracy(hierarchy: LabelHierarchy, pred: np.ndarray, truth: np.ndarray, column: str) -> dict[str, Any]:
    """Hierarchy-aware accuracy (:meth:`LabelHierarchy.is_correct`) over the cells with a known truth."""
    known = ~unknown_mask(truth)
    n = int(known.sum())
    correct = hierarchy.is_correct(pred[known], truth[known]) if n else np.zeros(0, dtype=bool)
    classes = set(hierarchy.classes)
    unseen = pd.Series([str(v) for v in truth[known] if str(v) not in classes], dtype=object).value_counts()
    if len(unseen) and label_ontology(hierarchy.label) is None:
        logger.warning(
            "%d cell(s) of `.obs[%r]` have labels the %r classifier never saw (counted as wrong): %s.",
            int(unseen.sum()),
            column,
            hierarchy.label,
            dict(unseen.head(10)),
        )
    record = {"column": column, "accuracy": float(correct.mean()) if n else float("nan"), "n_cells": n}
    record["unseen_labels"] = {str(k): int(v) for k, v in unseen.items()}
    return record


def _as_list(value: str | Sequence[str] | None, name: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence | np.ndarray | pd.Index):
        msg = f"`{name}` must be a label name or a list of label names, got {type(value).__name__}."
        raise TypeError(msg)
    return [str(v) for v in value]


@doc_params(
    counts_input=DOC_COUNTS_INPUT,
    run_options=DOC_RUN_OPTIONS,
    mod_copy=DOC_MOD_COPY,
    determinism=DOC_DETERMINISM,
    parallel=DOC_PARALLEL,
)
def embed(
    adata: AnnData | MuData,
    *,
    model: ScPrint | str | None = None,
    layer: str | None = None,
    labels: str | Sequence[str] | None = None,
    embedding_labels: str | Sequence[str] | None = None,
    mode: Literal["random_expr", "top_expr", "fixed", "all"] | None = None,
    max_len: int | None = None,
    genes: Sequence[str] | None = None,
    truth: Mapping[str, str] | None = None,
    min_confidence: float | None = None,
    gene_embeddings: bool = False,
    batch_size: int = 64,
    accelerator: str = "auto",
    device: int | str = "auto",
    dtype: torch.dtype | str | None = None,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    rng: RngLike = 0,
    key_added: str = PREFIX,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Embed cells and predict their labels with a scPRINT model.

    The cells are streamed ``batch_size`` rows at a time from the sparse (or dense, or backed) raw counts:
    only the rows of one batch are ever densified, and only over the genes the model knows, so memory does not
    grow with the number of cells beyond the outputs themselves. Each cell is tokenised like scPRINT does
    (genes in context with their raw counts, plus the depth token) and run through the transformer under
    ``torch.no_grad``, in eval mode and with autocast to ``dtype``. Every check runs before anything is
    written: a failing call leaves ``adata`` unchanged.

    Gene ids come from ``.var['scprint_gene_id']`` when :func:`sc_print.pp.prepare` ran, else ``var_names``
    (Ensembl ids or symbols) are mapped on the fly with the same function, without writing anything. The depth of
    a cell is its total count over the genes that map onto the model vocabulary (the same with or without
    ``prepare``). The computation is :meth:`sc_print.model.ScPrint.embed_cells`; this function writes its result.

    {determinism}

    Parameters
    ----------
    {counts_input}
    labels
        Label tokens whose embeddings are written and, for those with a classifier, whose predictions are
        written; ``None`` = every label the model predicts. ``"cell"`` (the base cell token) is accepted too.
    embedding_labels
        Cell tokens averaged into the main embedding; ``None`` = the model's ``pred_embedding`` (all label
        tokens by default, the cell token for a model without labels).
    mode
        Genes in context: ``"random_expr"`` (up to ``max_len`` expressed genes drawn at random with ``rng``,
        completed with random unexpressed genes when a cell has fewer; scPRINT's default), ``"top_expr"`` (the
        ``max_len`` most expressed genes of each cell, ties broken with ``rng``; what fine-tuned models use),
        ``"fixed"`` (the same genes for every cell: ``genes``, or the ``max_len`` most variable genes of this
        object by scanpy's ``seurat_v3`` when ``genes=None`` — *data-set dependent*, the genes are recorded in
        ``.uns['scprint_embed']['context']['genes']``) or ``"all"`` (every mapped gene). ``None``: the context the
        model records (:meth:`~sc_print.model.ScPrint.embedding_context`: the training context of a fine-tuned
        model, else ``"random_expr"``).
    max_len
        Context length for ``"random_expr"``/``"top_expr"`` and the number of variable genes for ``"fixed"``
        without ``genes``; ``None``: the model's default (2,000 unless the model records another).
    genes
        Gene names (``var_names``) for ``mode="fixed"``.
    truth
        ``{label: .obs column}`` of ground-truth labels (ontology ids, or readable ontology names): the
        hierarchy-aware accuracy is recorded in ``.uns`` (a leaf prediction counts as correct for a coarser true
        label it descends from; unknown truths are skipped).
    min_confidence
        Cells whose predicted leaf has a lower probability are labelled ``"unknown"`` (their confidence and
        probabilities are still written). ``None``: the model's calibrated default
        (:meth:`~sc_print.model.ScPrint.abstain`: a threshold set on held-out cells at fine-tuning, plus a novelty
        test that also sends cells unlike the calibration cells to ``"unknown"``; no abstention for a model
        without calibration). A number uses that threshold alone; ``0`` never abstains.
    gene_embeddings
        Also average the last-layer output of every gene over the cells (``.varm['scprint_gene_emb']``).
    {run_options}
    {parallel}
    rng
        Integer seed of the per-cell gene sampling of ``"random_expr"`` (a :class:`numpy.random.Generator` or
        ``None`` draws one); the seed used is recorded in ``params``.
    key_added
        Prefix of the keys written (see Returns).
    {mod_copy}

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets (in the ``mod`` modality for a MuData; with
    ``key_added="scprint"``):

    ``.obsm['X_scprint']`` : :class:`numpy.ndarray` (``n_obs`` x ``d_model``)
        The cell embedding (mean of the ``embedding_labels`` tokens).
    ``.obsm['X_scprint_<label>']`` : :class:`numpy.ndarray` (``n_obs`` x ``d_model``)
        The output token of each label in ``labels``.
    ``.obs['scprint_pred_<label>']`` : categorical
        Predicted leaf of each label with a classifier, as a readable (ontology) name, or ``"unknown"`` where
        the model abstains (see ``min_confidence``).
    ``.obs['scprint_pred_<label>_id']`` : categorical
        The same prediction as an ontology id.
    ``.obs['scprint_conf_<label>']`` : float
        Probability of the predicted leaf.
    ``.obsm['scprint_proba_<label>']`` : :class:`pandas.DataFrame` (``n_obs`` x leaves)
        Probability of every leaf (softmax of the leaf logits; rows sum to 1), columns named by readable names.
    ``.uns['scprint_embed']`` (``.uns[f'{key_added}_embed']`` for another ``key_added``) : dict
        ``params`` (the call), ``model`` (name, checksum, size), ``embedding_tokens``, ``obsm_keys``,
        ``labels``, ``proba_columns`` (leaf ids of the probability columns) and ``proba_names``, ``context``,
        ``n_genes_mapped``, ``gene_ids``, ``depth``, ``counts``, ``abstention`` (per label: ``min_confidence``,
        its ``source``, ``n_low_confidence``, ``n_novel``, ``n_unknown``) and, with ``truth``, ``accuracy``
        (``{label: {"column", "accuracy", "n_cells", "unseen_labels"}}``; truth labels the classifier does not
        know are counted and, for labels outside an ontology, warned about).
    ``.varm['scprint_gene_emb']`` : :class:`numpy.ndarray` (``n_vars`` x ``d_model``), with ``gene_embeddings``
        Contextual gene embedding: the last-layer output of each gene averaged over the cells whose context
        held it (NaN for genes never in context or not in the vocabulary).

    Raises
    ------
    KeyError
        Unknown ``layer``, label, truth column, MuData modality or gene of ``genes``.
    ValueError
        Counts that are not raw counts (NaN, infinite, negative, non-integer), cells without counts, no gene
        mapping onto the model vocabulary, bad option values.

    Examples
    --------
    >>> import sc_print as sp
    >>> adata = sp.datasets.example()  # doctest: +SKIP
    >>> sp.tl.embed(adata)  # doctest: +SKIP
    >>> adata.obs["scprint_pred_cell_type"].value_counts()  # doctest: +SKIP
    """
    # ---- options (cheap checks first, before any model is loaded)
    if mode is not None and mode not in CONTEXT_MODES:
        msg = f"Unknown mode {mode!r}; choose one of {list(CONTEXT_MODES)}."
        raise ValueError(msg)
    if max_len is not None:
        max_len = check_positive_int(max_len, "max_len")
    batch_size = check_positive_int(batch_size, "batch_size")
    key_added = check_key(key_added)
    if genes is not None and mode != "fixed":
        msg = f"`genes` is only used with mode='fixed' (got mode={mode!r}); pass mode='fixed'."
        raise ValueError(msg)
    if truth is not None and not isinstance(truth, Mapping):
        msg = f"`truth` must be a dict {{label: .obs column}}, got {type(truth).__name__}."
        raise TypeError(msg)
    if min_confidence is not None and (
        isinstance(min_confidence, bool)
        or not isinstance(min_confidence, int | float | np.number)
        or not 0 <= min_confidence <= 1
    ):
        msg = f"`min_confidence` must be a number in [0, 1] or None (calibrated default), got {min_confidence!r}."
        raise ValueError(msg)
    labels_list = _as_list(labels, "labels")
    embedding_list = _as_list(embedding_labels, "embedding_labels")
    seed = resolve_seed(rng)
    data = resolve_adata(adata, mod)
    par = check_parallel(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, device=device
    )

    # ---- model and labels
    model_name = model if isinstance(model, str) else None
    model, torch_device = resolve_run(model, accelerator, device)
    mode, max_len = model.embedding_context(mode, max_len)
    compute_dtype = resolve_dtype(dtype, torch_device)
    classifiers = list(model.net.config.labels)
    pred_labels = [name for name in (classifiers if labels_list is None else labels_list) if name in classifiers]
    truth = dict(truth or {})
    for label, column in truth.items():
        if label not in pred_labels:
            msg = f"`truth` names label {label!r}, which is not predicted here; predicted labels: {pred_labels}."
            raise ValueError(msg)
        if column not in data.obs.columns:
            msg = f"Truth column {column!r} not found in `.obs`; available columns: {list(data.obs.columns)}."
            raise KeyError(msg)
    hierarchies = {label: model.label_hierarchy(label) for label in pred_labels}
    truth_ids = {label: _truth_ids(hierarchies[label], data.obs[column], column) for label, column in truth.items()}

    # ---- one pass of the model over the cells (validates counts and genes; nothing written)
    cells = model.embed_cells if par is None else partial(parallel_embed_cells, par, model)
    result = cells(
        data,
        layer=layer,
        labels=labels_list,
        embedding_labels=embedding_list,
        mode=mode,
        max_len=max_len,
        genes=genes,
        gene_embeddings=gene_embeddings,
        batch_size=batch_size,
        accelerator=accelerator,
        device=device,
        dtype=compute_dtype,
        seed=seed,
    )
    token_labels = list(result.tokens)
    mapping = result.inputs.mapping
    positions = result.context["positions"]

    # ---- summaries computed before writing
    predictions = {label: result.proba[label].argmax(1) for label in pred_labels}
    abstention = {
        label: model.abstain(label, result.proba[label], result.tokens.get(label), min_confidence=min_confidence)
        for label in pred_labels
    }
    accuracy = {
        label: _accuracy(hierarchies[label], predictions[label], truth_ids[label], column)
        for label, column in truth.items()
    }
    context: dict[str, Any] = {"mode": mode, "n_genes": result.context["n_genes"]}
    if mode == "fixed":
        # data-set dependent without `genes`: record them so that a re-run on a subset can pass them back
        context["genes"] = data.var_names[mapping.first_col[positions]].astype(str).tolist()

    # ---- write
    keys = embed_keys(key_added, token_labels, pred_labels)
    target, out = output_target(adata, mod, copy=copy)
    if gene_embeddings:
        gene_emb = np.full((out.n_vars, result.gene_sum.shape[1]), np.nan, dtype=np.float32)
        cols = np.flatnonzero(mapping.mapped)
        pos = mapping.mapper.positions(mapping.col_vocab[cols])
        seen = result.gene_count[pos] > 0
        gene_emb[cols[seen]] = result.gene_sum[pos[seen]] / result.gene_count[pos[seen], None]
        out.varm[keys.gene_emb] = gene_emb
        log_written("varm", keys.gene_emb)
    out.obsm[keys.embedding] = result.embedding
    log_written("obsm", keys.embedding)
    for label in token_labels:
        out.obsm[keys.tokens[label]] = result.tokens[label]
        log_written("obsm", keys.tokens[label])
    for label in pred_labels:
        hierarchy, proba, pred = hierarchies[label], result.proba[label], predictions[label]
        names = model.label_names(label)
        name_values = np.asarray(names, dtype=object)[pred]
        id_values = np.asarray(hierarchy.leaves, dtype=object)[pred]
        unknown = abstention[label][0]
        name_values[unknown] = id_values[unknown] = "unknown"
        name_cats = [*names, "unknown"] if "unknown" not in names else names
        id_cats = [*hierarchy.leaves, "unknown"] if "unknown" not in hierarchy.leaves else hierarchy.leaves
        out.obs[keys.pred[label]] = pd.Categorical(name_values, categories=name_cats).remove_unused_categories()
        out.obs[keys.pred_id[label]] = pd.Categorical(id_values, categories=id_cats).remove_unused_categories()
        out.obs[keys.conf[label]] = proba[np.arange(len(pred)), pred]
        out.obsm[keys.proba[label]] = pd.DataFrame(proba, index=out.obs_names.copy(), columns=names)
        for kind, key in (
            ("obs", keys.pred[label]),
            ("obs", keys.pred_id[label]),
            ("obs", keys.conf[label]),
            ("obsm", keys.proba[label]),
        ):
            log_written(kind, key)
        if label in accuracy:
            logger.info(
                "%s accuracy against `.obs[%r]`: %.3f over %d cells",
                label,
                accuracy[label]["column"],
                accuracy[label]["accuracy"],
                accuracy[label]["n_cells"],
            )
    obsm_keys = {"embedding": keys.embedding, **keys.tokens}

    record: dict[str, Any] = {
        "params": params_record(
            model=model_name,
            layer=layer,
            labels=labels_list,
            embedding_labels=embedding_list,
            mode=mode,
            max_len=max_len,
            genes=None if genes is None else [str(g) for g in genes],
            truth=truth or None,
            min_confidence=min_confidence,
            gene_embeddings=gene_embeddings,
            batch_size=batch_size,
            accelerator=accelerator,
            device=device,
            dtype=dtype_name(compute_dtype),
            devices=None if par is None else devices,
            num_nodes=None if par is None else num_nodes,
            strategy=None if par is None else par.strategy,
            rng=seed,
            key_added=key_added,
            mod=mod,
        ),
        "model": model_record(model),
        "embedding_tokens": list(result.embedding_tokens),
        "obsm_keys": obsm_keys,
        "labels": list(pred_labels),
        "context": context,
        **result.inputs.record(),
        "device": str(torch_device),
    }
    if pred_labels:
        record["proba_columns"] = {label: list(hierarchies[label].leaves) for label in pred_labels}
        record["proba_names"] = {label: model.label_names(label) for label in pred_labels}
        record["abstention"] = {label: info for label, (_, info) in abstention.items()}
    if accuracy:
        record["accuracy"] = accuracy
    out.uns[keys.uns] = record
    log_written("uns", keys.uns)
    return target if copy else None
