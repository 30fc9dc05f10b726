"""``sp.pp.prepare``: validate the raw counts and map the genes onto the model vocabulary."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from sc_print._keys import Key
from sc_print._validation import check_counts, get_counts, resolve_adata
from sc_print.data import ORGANISMS, GeneVocab, map_gene_names

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData

logger = logging.getLogger(__name__)

# Failures meaning "the default model cannot be read" (its file is missing or unreadable, e.g. a build of the
# package without its resources): `prepare(model=None)` then maps onto the whole gene table and says so. Other
# errors (bugs) propagate.
_NO_DEFAULT_MODEL = (OSError, LookupError)


def _model_genes(model: Any) -> tuple[Any, str]:
    """Vocabulary of ``model`` and a description of where it comes from.

    ``model.genes`` for an object that has it; for ``None`` the genes of the default model
    (``sc_print._resolve.resolve_model(None).genes``). Returns ``(None, "gene table")`` when no default model is
    available, so that the caller falls back to the shipped gene table.
    """
    if model is not None and not isinstance(model, str):
        if not hasattr(model, "genes"):
            msg = f"`model` must be a sc_print model (with a `genes` vocabulary) or None, got {type(model).__name__}."
            raise TypeError(msg)
        return model.genes, str(getattr(model, "name", None) or type(model).__name__)
    try:
        from sc_print._resolve import resolve_model

        resolved = resolve_model(model)
        genes = resolved.genes
    except _NO_DEFAULT_MODEL as err:
        if model is not None:
            raise
        logger.warning("No default model available (%s); mapping genes onto the shipped gene table.", err)
        return None, "gene table"
    return genes, str(getattr(resolved, "name", None) or model or "default model")


def _as_vocab(genes: Any) -> GeneVocab:
    return genes if isinstance(genes, GeneVocab) else GeneVocab(np.asarray(list(genes), dtype=str))


def prepare(
    adata: AnnData | MuData,
    *,
    layer: str | None = None,
    model: Any = None,
    organism: str | None = None,
    gene_id_key: str | None = None,
    min_genes: int = 200,
    min_fraction: float | None = None,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Validate the raw counts and map the genes onto the vocabulary of a scPRINT model.

    Nothing is reordered, renamed or dropped: the genes that do not map are only marked. Every check runs
    before anything is written, so a failing call leaves ``adata`` unchanged.

    Steps: find the raw counts (``layer``, else ``.X``, else ``.raw.X``); map the gene names (``var_names`` or
    ``.var[gene_id_key]``, Ensembl ids with or without version, or symbols) onto Ensembl ids of one organism
    with :func:`~sc_print.data.map_gene_names` (the organism is detected from the names; a mix of organisms
    is refused, genes are never mapped across organisms); mark the genes in the model vocabulary; check that
    the counts are finite non-negative integers, that enough genes map and that no cell is empty over the
    mapped genes; compute the depth of each cell.

    Several columns that map to the same Ensembl id (e.g. a symbol and its alias) are all kept and marked;
    the ``tl`` functions sum their counts. Their number is recorded in ``.uns``.

    Parameters
    ----------
    adata
        Cells x genes AnnData with raw counts, or a MuData whose ``mod`` modality holds them.
    layer
        Layer with the raw counts. By default ``.X`` is used when it holds counts, else ``.raw.X``.
    model
        Model whose vocabulary (``model.genes``) the genes are mapped onto; ``None`` uses the default model,
        or the whole gene table of the organism when no default model is available.
    organism
        NCBITaxon id (``"NCBITaxon:9606"``, ``"NCBITaxon:10090"``) or ``"human"`` / ``"mouse"``. Detected from
        the gene names when ``None``.
    gene_id_key
        Column of ``.var`` with the gene ids or symbols to map; ``var_names`` when ``None``.
    min_genes
        Raise when fewer distinct genes map onto the vocabulary.
    min_fraction
        Raise when a smaller fraction of the genes maps onto the vocabulary (not checked when ``None``).
    mod
        Modality of a MuData holding the RNA counts.
    copy
        Return a prepared copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or a prepared copy when ``copy=True``. Sets (in the ``mod`` modality for a MuData):

    ``.var['scprint_gene_id']``
        Ensembl id of each gene in the gene table (``""`` when it does not map).
    ``.var['scprint_in_vocab']``
        Whether the gene is in the model vocabulary.
    ``.obs['scprint_depth']``
        Total raw counts of each cell over the genes in the model vocabulary: the depth the ``sp.tl`` functions
        and training use (they compute it from the counts in the same way, so their results are the same with
        and without ``prepare``; this column is for the user).
    ``.uns['scprint_prepare']``
        ``{"params", "organism", "id_kind", "counts_source", "n_genes", "n_in_gene_table", "n_mapped",
        "fraction_mapped", "n_duplicates", "n_other_organism", "vocabulary", "vocabulary_size"}``: ``n_mapped``
        counts the genes in the vocabulary, ``n_duplicates`` the mapped columns that repeat an id of an earlier
        column, ``n_other_organism`` the genes of another organism (left unmapped).

    Raises
    ------
    KeyError
        Missing ``layer``, ``gene_id_key`` or MuData modality.
    ValueError
        Values that are not raw counts (NaN, infinite, negative, non-integer), unknown organism, genes of several
        organisms (with ``organism=None``; with ``organism`` given, the other organism's genes stay unmapped and
        a warning names both organisms and counts), genes of an organism the model does not cover, too few genes
        mapping, cells with no counts over the mapped genes.

    Examples
    --------
    >>> import scanpy as sc
    >>> import sc_print as sp
    >>> adata = sc.read_10x_h5("filtered_feature_bc_matrix.h5")  # doctest: +SKIP
    >>> sp.pp.prepare(adata)  # doctest: +SKIP
    >>> adata.uns["scprint_prepare"]["fraction_mapped"]  # doctest: +SKIP
    """
    data = resolve_adata(adata, mod)
    counts, counts_source = get_counts(data, layer)

    if gene_id_key is None:
        names = data.var_names.to_numpy(dtype=str)
    else:
        if gene_id_key not in data.var.columns:
            msg = f"Column {gene_id_key!r} not found in `.var`; available columns: {list(data.var.columns)}."
            raise KeyError(msg)
        names = data.var[gene_id_key].astype(str).to_numpy(dtype=str)
    gene_ids, info = map_gene_names(names, organism=organism)
    in_table = gene_ids != ""
    if not in_table.any():
        where = "`var_names`" if gene_id_key is None else f"`.var[{gene_id_key!r}]`"
        msg = (
            f"None of the {len(names)} genes in {where} (e.g. {names[:3].tolist()}) maps to a "
            f"{info['organism']} Ensembl id or symbol. Pass the column holding gene ids or symbols with "
            "`gene_id_key=`, or the right `organism=`."
        )
        raise ValueError(msg)

    genes, vocabulary = _model_genes(model)
    vocab = GeneVocab.from_gene_table(organisms=(info["organism"],)) if genes is None else _as_vocab(genes)
    if vocab.organisms and info["organism"] not in vocab.organisms:
        org = ORGANISMS[info["organism"]]
        covered = ", ".join(ORGANISMS.get(o, o) for o in vocab.organisms)
        msg = (
            f"The genes are {org} ({int(in_table.sum())} of {len(names)} names map to {org} genes), but the "
            f"{vocabulary} vocabulary covers {covered} only; genes of another organism are never mapped onto it. "
            f"Pass a model trained on {org} genes as `model=`, or `organism=` if the detected organism is wrong."
        )
        raise ValueError(msg)
    in_vocab = in_table & (vocab.index(gene_ids) >= 0)
    n_vocab_genes = len(np.unique(gene_ids[in_vocab]))
    n_mapped = int(in_vocab.sum())
    fraction = n_mapped / len(names) if len(names) else 0.0
    if n_vocab_genes < min_genes:
        covered = ", ".join(vocab.organisms) or "no known organism"
        msg = (
            f"Only {n_vocab_genes} distinct genes map onto the {vocabulary} vocabulary ({len(vocab)} genes; "
            f"{covered}); at least min_genes={min_genes} are needed ({int(in_table.sum())} of {len(names)} genes "
            f"map to {info['organism']} Ensembl ids). Check `organism=` and `gene_id_key=`, or lower `min_genes`."
        )
        raise ValueError(msg)
    if min_fraction is not None and fraction < min_fraction:
        msg = (
            f"Only {fraction:.1%} of the genes ({n_mapped} of {len(names)}) map onto the {vocabulary} vocabulary, "
            f"below min_fraction={min_fraction}."
        )
        raise ValueError(msg)

    # the one definition of depth (sc_print.data.DEPTH_DEFINITION): total counts over the vocabulary genes
    depth = check_counts(counts, where=counts_source, columns=in_vocab, adata=data)

    result = {
        "params": {
            "layer": layer,
            "model": vocabulary,
            "organism": organism,
            "gene_id_key": gene_id_key,
            "min_genes": min_genes,
            "min_fraction": min_fraction,
            "mod": mod,
        },
        "organism": info["organism"],
        "id_kind": info["kind"],
        "counts_source": counts_source.strip("`"),
        "n_genes": len(names),
        "n_in_gene_table": int(in_table.sum()),
        "n_mapped": n_mapped,
        "fraction_mapped": float(fraction),
        "n_duplicates": int(info["n_duplicates"]),
        "n_other_organism": int(sum(info["other_organisms"].values())),
        "vocabulary": vocabulary,
        "vocabulary_size": len(vocab),
    }
    result["params"] = {key: value for key, value in result["params"].items() if value is not None}

    if not copy:
        target = adata
    elif getattr(adata, "isbacked", False):
        target = adata.to_memory()  # a backed object can only be copied to a file
    else:
        target = adata.copy()
    out = resolve_adata(target, mod)
    out.var[Key.var.gene_id] = gene_ids
    out.var[Key.var.in_vocab] = in_vocab
    out.obs[Key.obs.depth] = depth
    out.uns[Key.uns.prepare] = result
    logger.info(
        "%d of %d genes (%.1f%%) map onto the %s vocabulary (%s, %s ids; counts from %s); %d duplicated ids.",
        n_mapped,
        len(names),
        100 * fraction,
        vocabulary,
        info["organism"],
        info["kind"],
        result["counts_source"],
        info["n_duplicates"],
    )
    return target if copy else None
