"""``sp.tl.perturb``: in-silico gene knock-out and over-expression with a scPRINT model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from sc_print._keys import check_key, perturb_keys
from sc_print._resolve import resolve_run
from sc_print._runtime import dtype_name, resolve_dtype, resolve_seed
from sc_print._utils import doc_params, log_written, model_record
from sc_print._validation import resolve_adata
from sc_print.model import parse_perturbations

from ._common import output_target, params_record
from ._docs import DOC_COUNTS_INPUT, DOC_MOD_COPY, DOC_RUN_OPTIONS

if TYPE_CHECKING:
    import torch
    from anndata import AnnData
    from mudata import MuData

    from sc_print._utils import RngLike
    from sc_print.model import ScPrint

DEFAULT_KEY = "scprint_perturb"


def _label_changes(model: ScPrint, label: str, before: np.ndarray, after: np.ndarray) -> pd.DataFrame:
    """Long table of predicted-label transitions ``baseline -> perturbed`` (pairs with at least one cell)."""
    names = np.asarray(model.label_names(label), dtype=object)
    frame = pd.DataFrame({"baseline": names[before], "perturbed": names[after]})
    counts = frame.value_counts().rename("n_cells").reset_index()
    counts.insert(0, "label", label)
    counts["changed"] = counts["baseline"] != counts["perturbed"]
    counts.index = counts.index.astype(str)
    return counts


@doc_params(counts_input=DOC_COUNTS_INPUT, run_options=DOC_RUN_OPTIONS, mod_copy=DOC_MOD_COPY)
def perturb(
    adata: AnnData | MuData,
    *,
    genes: str | Sequence[str] | Sequence[Sequence[str]] | Mapping[str, str | Sequence[str]],
    kind: Literal["knockout", "overexpress"] = "knockout",
    factor: float | None = None,
    quantile: float | None = None,
    knockout: Literal["zero", "remove"] = "zero",
    depth: Literal["recompute", "keep"] = "recompute",
    force_context: bool = True,
    readout_genes: Sequence[str] | None = None,
    groupby: str | None = None,
    min_group_size: int = 5,
    model: ScPrint | str | None = None,
    layer: str | None = None,
    mode: Literal["random_expr", "all"] = "random_expr",
    max_len: int = 2000,
    embedding_labels: str | Sequence[str] | None = None,
    batch_size: int = 32,
    accelerator: str = "auto",
    device: int | str = "auto",
    dtype: torch.dtype | str | None = None,
    rng: RngLike = 0,
    key_added: str = DEFAULT_KEY,
    overwrite: bool = False,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Knock out or over-express genes in silico and record how cells and the other genes respond.

    Every cell is run through the model twice, unperturbed and perturbed, with the **same gene context and the
    same random draws** (seeded from the unperturbed counts): the two passes differ only in the counts of the
    perturbed genes and, with ``depth="recompute"``, in the depth. A cell whose counts the perturbation does not
    change (a knock-out of a gene it does not express, ``factor=1``) keeps its unperturbed outputs exactly. The
    effects on the other genes compare the decoded expression (negative-binomial mean) of the genes in each
    cell's context, renormalised to 10,000 over the genes that were not perturbed, so that a compositional
    decoder does not raise every gene when one is removed. The computation is
    :meth:`sc_print.model.ScPrint.perturb_cells`; every check runs before anything is written.

    Parameters
    ----------
    {counts_input}
    genes
        The perturbation(s): one gene, a list of genes perturbed together, a list of such lists (several
        perturbations) or ``{name: genes}``. Names: var names; default perturbation names join the genes with
        ``+`` and append ``_ko`` / ``_oe``.
    kind
        ``"knockout"`` or ``"overexpress"``.
    factor
        Over-expression: counts multiplied by ``factor`` (> 0).
    quantile
        Over-expression: counts raised to this quantile of the gene's non-zero counts in ``adata`` (in
        ``(0, 1]``; *data-set dependent*, the values are recorded), cells above it left unchanged.
    knockout
        ``"zero"`` (default): count set to 0, the gene stays in the context as an unexpressed gene (the inputs
        the model saw in training). ``"remove"``: the gene's token is dropped from the context of the cells
        expressing it.
    depth
        ``"recompute"`` (default): the perturbed cell's depth is the total of its perturbed counts over the mapped
        genes (the package's one definition of depth); ``"keep"``: the unperturbed depth.
    force_context
        With ``mode="random_expr"``, always put the perturbed genes in the context of both passes (else a cell
        with more than ``max_len`` expressed genes may not have them in context).
    readout_genes
        Genes (var names) always put in the context of both passes (``mode="random_expr"``), expressed or not,
        so that their response is measured in every cell: e.g. the expected targets of a regulator, which the
        perturbed cells may not express (effects are only measured on genes in context).
    groupby
        ``.obs`` column: effects also per category.
    min_group_size
        Fewest cells per category of ``groupby``; a smaller category is an error.
    mode
        Context: ``"random_expr"`` (as ``sp.tl.embed``) or ``"all"`` (every mapped gene).
    max_len
        Context length for ``"random_expr"``.
    embedding_labels
        Cell tokens averaged into the embedding (``None``: the model's default, as ``X_scprint``).
    {run_options}
    rng
        Integer seed of the per-cell contexts (shared by both passes); the seed used is recorded.
    key_added
        Prefix of the keys written.
    overwrite
        Replace the results of a perturbation of the same name stored under ``key_added``; otherwise they are
        an error and nothing is written.
    {mod_copy}

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets, for each perturbation ``<name>``
    (``k = key_added``):

    ``.obsm['<k>_<name>']`` : :class:`numpy.ndarray` (``n_obs`` x ``d_model``)
        Perturbed cell embedding, in the basis of ``X_scprint``.
    ``.obs['<k>_<name>_shift']`` : float
        Cosine distance between the perturbed and the unperturbed embedding of each cell.
    ``.obs['<k>_<name>_pred_<label>']`` : categorical
        Predicted label after the perturbation, for each classifier of the model.
    ``.uns['<k>']['<name>']`` : dict
        ``effects`` (DataFrame over the other genes: ``n_cells``, ``mean_baseline``, ``mean_perturbed``,
        ``mean_change``, ``log2fc``, ``frac_up``, ``frac_down``, ``t``, ``pval``, ``pval_adj``), with ``groupby``
        ``effects_by_group`` (``{group: DataFrame}``) and ``group_names``, with classifiers ``label_changes``
        (transitions of the predicted labels), and ``summary``, ``genes``, ``values`` (quantile counts),
        ``keys``, ``params``, ``model``, ``context``.

    Raises
    ------
    KeyError
        A gene not in ``var_names``, an unknown ``groupby`` column, layer or modality.
    ValueError
        A gene that does not map onto the model vocabulary, an empty gene list, ``factor`` <= 0 or not finite, a
        group smaller than ``min_group_size``, names whose keys collide or exist already (without
        ``overwrite``), bad counts or options.

    Examples
    --------
    >>> import sc_print as sp
    >>> adata = sp.datasets.example()  # doctest: +SKIP
    >>> sp.tl.perturb(adata, genes="SPI1", groupby="cell_line")  # doctest: +SKIP
    >>> sp.get.perturb(adata, "SPI1_ko").head()  # doctest: +SKIP
    """
    specs = parse_perturbations(genes, kind=kind, factor=factor, quantile=quantile)
    key_added = check_key(key_added)
    seed = resolve_seed(rng)
    data = resolve_adata(adata, mod)
    model_name = model if isinstance(model, str) else None
    model, torch_device = resolve_run(model, accelerator, device)
    compute_dtype = resolve_dtype(dtype, torch_device)
    pred_labels = list(model.net.config.labels)
    keys = perturb_keys(key_added, [s.name for s in specs], pred_labels)
    stored = data.uns.get(keys.uns, {})
    if not isinstance(stored, Mapping):
        msg = f"`.uns[{keys.uns!r}]` holds a {type(stored).__name__}, not perturbation results; pick another key_added."
        raise ValueError(msg)
    if not overwrite:
        taken = [f"uns[{keys.uns!r}][{s.name!r}]" for s in specs if s.name in stored]
        taken += [f"obsm[{keys.embedding[s.name]!r}]" for s in specs if keys.embedding[s.name] in data.obsm]
        obs_keys = [keys.shift[s.name] for s in specs] + [k for s in specs for k in keys.pred[s.name].values()]
        taken += [f"obs[{k!r}]" for k in obs_keys if k in data.obs.columns]
        if taken:
            msg = f"Results already stored at {taken}; pass overwrite=True or other names / key_added."
            raise ValueError(msg)

    out_all = model.perturb_cells(
        data,
        genes={s.name: list(s.genes) for s in specs},
        kind=kind,
        factor=factor,
        quantile=quantile,
        knockout=knockout,
        depth=depth,
        force_context=force_context,
        readout_genes=readout_genes,
        groupby=groupby,
        min_group_size=min_group_size,
        layer=layer,
        mode=mode,
        max_len=max_len,
        embedding_labels=embedding_labels,
        batch_size=batch_size,
        accelerator=accelerator,
        device=device,
        dtype=compute_dtype,
        seed=seed,
    )

    params = params_record(
        kind=kind,
        factor=factor,
        quantile=quantile,
        knockout=knockout if kind == "knockout" else None,
        depth=depth,
        force_context=force_context,
        readout_genes=None if readout_genes is None else [str(g) for g in readout_genes],
        groupby=groupby,
        min_group_size=min_group_size,
        model=model_name,
        layer=layer,
        mode=mode,
        max_len=max_len,
        embedding_labels=embedding_labels,
        batch_size=batch_size,
        accelerator=accelerator,
        device=device,
        dtype=dtype_name(compute_dtype),
        rng=seed,
        key_added=key_added,
        mod=mod,
    )
    records: dict[str, dict[str, Any]] = {}
    for s in specs:
        res = out_all.results[s.name]
        record: dict[str, Any] = {
            "genes": list(s.genes),
            "effects": res.effects,
            "summary": {
                "n_cells": int(res.changed.size),
                "n_cells_changed": int(res.changed.sum()),
                "mean_shift": float(res.shift.mean()),
                "mean_shift_changed": float(res.shift[res.changed].mean()) if res.changed.any() else 0.0,
            },
            "keys": {"obsm": keys.embedding[s.name], "shift": keys.shift[s.name], **dict(keys.pred[s.name])},
            "params": params,
            "model": model_record(model),
            "context": {k: v for k, v in out_all.context.items() if v is not None},
            **out_all.inputs.record(),
        }
        if res.values:
            record["values"] = res.values
        if out_all.groups:
            record["effects_by_group"] = dict(res.group_effects)
            record["group_names"] = {g: str(c) for g, c in zip(out_all.groups, _categories(data, groupby), strict=True)}
        if pred_labels:
            changes = [
                _label_changes(model, lab, res.proba_baseline[lab].argmax(1), res.proba[lab].argmax(1))
                for lab in pred_labels
            ]
            table = pd.concat(changes, ignore_index=True)
            table.index = table.index.astype(str)
            record["label_changes"] = table
            for lab in pred_labels:
                before, after = res.proba_baseline[lab].argmax(1), res.proba[lab].argmax(1)
                record["summary"][f"frac_label_changed_{lab}"] = float((before != after).mean())
        records[s.name] = record

    # ---- write (everything above succeeded)
    target, out = output_target(adata, mod, copy=copy)
    for s in specs:
        res = out_all.results[s.name]
        out.obsm[keys.embedding[s.name]] = res.embedding
        out.obs[keys.shift[s.name]] = res.shift
        log_written("obsm", keys.embedding[s.name])
        log_written("obs", keys.shift[s.name])
        for lab in pred_labels:
            names = model.label_names(lab)
            values = np.asarray(names, dtype=object)[res.proba[lab].argmax(1)]
            out.obs[keys.pred[s.name][lab]] = pd.Categorical(values, categories=names).remove_unused_categories()
            log_written("obs", keys.pred[s.name][lab])
    container = dict(out.uns.get(keys.uns, {}))
    container.update(records)
    out.uns[keys.uns] = container
    log_written("uns", keys.uns)
    return target if copy else None


def _categories(adata: AnnData, groupby: str | None) -> list[Any]:
    return list(pd.Categorical(adata.obs[groupby]).remove_unused_categories().categories)
