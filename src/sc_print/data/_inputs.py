"""From an AnnData to validated model inputs: gene mapping, raw counts, depth, gene contexts, token batches.

The one path from counts to tokens, shared by ``sp.tl.embed``/``denoise``/``grn``, the :class:`~sc_print.ScPrint`
getters and the scripts::

    inputs = load_counts(adata, model.vocab, layer=layer)  # every check, nothing written
    for start, stop, tokens in iter_tokens(inputs, mode=..., max_len=..., seed=..., batch_size=..., device=...):
        out = model.net(tokens.gene_idx, tokens.expr, tokens.depth)

Nothing here writes to an AnnData. Gene ids come from ``.var[Key.var.gene_id]`` when ``sp.pp.prepare`` ran and
are mapped on the fly with the same function otherwise. The depth of a cell is its total count over the columns
that map onto the model vocabulary, computed here from the counts (``.obs`` is not read), so results are the same
with and without ``prepare``. Dense and backed counts are read ``chunk_size`` rows at a time, in-memory sparse
counts through sparse products or row slices: memory stays flat in the number of cells.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from sc_print._keys import Key
from sc_print._utils import track
from sc_print._validation import check_counts, get_counts

from ._tokenize import GeneMapper, Tokens, tokenize
from ._vocab import map_gene_names

if TYPE_CHECKING:
    import torch
    from anndata import AnnData

    from ._vocab import GeneVocab

logger = logging.getLogger(__name__)

#: Below this many distinct genes mapping onto the model vocabulary, a warning is logged.
MIN_MAPPED_GENES = 200
#: LOESS span of the seurat_v3 highly-variable-gene selection (the value scPRINT's ``Denoiser`` uses).
HVG_SPAN = 0.99
#: The fewest cells on which highly variable genes are computed (seurat_v3's LOESS fit needs several).
MIN_HVG_CELLS = 3
#: The fewest genes of non-zero variance for the seurat_v3 LOESS fit (fewer crash it, or the interpreter).
MIN_HVG_VARIABLE_GENES = 10
#: How the depth of a cell is defined (recorded with every result).
DEPTH_DEFINITION = "total counts over the columns mapped onto the model vocabulary"


# --------------------------------------------------------------------------------------------------- genes
@dataclass
class GeneMapping:
    """How the columns of the data map onto the vocabulary of one model.

    Attributes
    ----------
    mapper
        :class:`~sc_print.data.GeneMapper` collapsing row chunks to ``[B, U]`` over the ``U`` mapped genes
        (duplicated columns summed); ``mapper.vocab_idx`` holds their vocabulary indices (sorted).
    col_vocab
        ``[n_vars]`` vocabulary index of each column, ``-1`` when it does not map.
    first_col
        ``[U]`` first column of the data holding each mapped gene (where per-gene outputs are written back).
    source
        ``"prepare"`` when the gene ids come from ``.var[Key.var.gene_id]``, ``"var_names"`` when they were
        mapped on the fly.
    """

    mapper: GeneMapper
    col_vocab: np.ndarray
    first_col: np.ndarray
    source: str

    @property
    def n_genes(self) -> int:
        """Number ``U`` of distinct mapped genes."""
        return self.mapper.n_genes

    @property
    def mapped(self) -> np.ndarray:
        """``[n_vars]`` bool mask of the columns that map onto the vocabulary."""
        return self.col_vocab >= 0

    def collapse_sparse(self, rows: Any) -> sparse.csr_matrix:
        """``[B, n_vars]`` rows → sparse float32 ``[B, U]`` over the mapped genes (duplicates summed, never dense)."""
        return self.mapper.collapse_sparse(rows)

    def column_of_vocab(self, n_vocab: int) -> np.ndarray:
        """``[n_vocab]`` lookup: data column written for each vocabulary index (``-1`` when absent)."""
        out = np.full(n_vocab, -1, dtype=np.int64)
        out[self.mapper.vocab_idx] = self.first_col
        return out


def data_gene_ids(adata: AnnData, organism: str | None = None) -> tuple[np.ndarray, str]:
    """Ensembl id of each column of ``adata`` (``""`` when unknown), without writing anything.

    Parameters
    ----------
    adata
        The AnnData whose columns are identified (``.var[Key.var.gene_id]`` when present, else ``var_names``).
    organism
        Organism of ``var_names`` (``None``: detected); unused when ``sp.pp.prepare`` ran.

    Returns
    -------
    The ids and where they come from: ``"prepare"`` (``.var[Key.var.gene_id]``, written by ``sp.pp.prepare``)
    or ``"var_names"`` (Ensembl ids or symbols of ``var_names`` mapped now with
    :func:`~sc_print.data.map_gene_names`, organism detected).
    """
    if Key.var.gene_id in adata.var.columns:
        ids = adata.var[Key.var.gene_id].astype(object).where(adata.var[Key.var.gene_id].notna(), "")
        return ids.astype(str).to_numpy(dtype=str), "prepare"
    ids, _ = map_gene_names(adata.var_names.astype(str), organism=organism)
    return np.asarray(ids, dtype=str), "var_names"


def map_genes(adata: AnnData, vocab: GeneVocab) -> GeneMapping:
    """Map the columns of ``adata`` onto a model vocabulary.

    Parameters
    ----------
    adata
        The AnnData (gene ids from ``sp.pp.prepare`` when present, else mapped from ``var_names``).
    vocab
        The model's :class:`~sc_print.data.GeneVocab` (token index of each gene).

    Returns
    -------
    The :class:`GeneMapping`.

    Raises
    ------
    ValueError
        When no column maps onto the vocabulary (wrong organism, unknown gene names or a model whose
        vocabulary does not cover the data).
    """
    if adata.n_vars == 0:
        msg = "The data has no genes (0 columns); nothing to compute."
        raise ValueError(msg)
    ids, source = data_gene_ids(adata)
    col_vocab = np.asarray(vocab.index(ids), dtype=np.int64)
    col_vocab[ids == ""] = -1
    mapped = np.flatnonzero(col_vocab >= 0)
    if mapped.size == 0:
        organisms = ", ".join(getattr(vocab, "organisms", ())) or "unknown organism"
        n_known = int(np.count_nonzero(ids != ""))
        how = (
            "the gene ids written by `sp.pp.prepare`"
            if source == "prepare"
            else f"`var_names` (e.g. {adata.var_names[:3].tolist()})"
        )
        msg = (
            f"None of the {adata.n_vars} genes of the data maps onto the vocabulary of the model "
            f"({len(vocab)} genes; {organisms}): {n_known} of them have an Ensembl id from {how}, none of "
            "which the model knows. Use a model trained on this organism and gene set, or map the genes with "
            "`sp.pp.prepare(adata, model=model, gene_id_key=..., organism=...)`."
        )
        raise ValueError(msg)
    mapper = GeneMapper(col_vocab)
    _, first = np.unique(col_vocab[mapped], return_index=True)
    mapping = GeneMapping(mapper=mapper, col_vocab=col_vocab, first_col=mapped[first], source=source)
    if mapping.n_genes < MIN_MAPPED_GENES:
        logger.warning(
            "Only %d distinct genes of the data map onto the model vocabulary (%d genes); results will be poor. "
            "Check the gene names (run `sp.pp.prepare`) and the model's organism.",
            mapping.n_genes,
            len(vocab),
        )
    return mapping


def genes_from_names(adata: AnnData, names: Sequence[str], mapping: GeneMapping, *, param: str = "genes") -> np.ndarray:
    """Positions (in the ``U`` mapped genes, sorted, unique) of the genes named in ``names``.

    Parameters
    ----------
    adata
        The AnnData whose ``var_names`` the names refer to.
    names
        Gene names from ``adata.var_names``.
    mapping
        The gene mapping of ``adata``.
    param
        Name of the user's parameter, for the messages.

    Returns
    -------
    ``int64`` positions into the columns of :meth:`GeneMapper.collapse`, in vocabulary order.

    Raises
    ------
    TypeError
        ``names`` is a single string rather than a list.
    KeyError
        Some names are not in ``var_names`` (all listed, up to 20).
    ValueError
        Some genes do not map onto the model vocabulary, or the list is empty.
    """
    if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray | pd.Index):
        msg = f"`{param}` must be a list of gene names from `var_names`, got {type(names).__name__}."
        raise TypeError(msg)
    names = [str(n) for n in names]
    if not names:
        msg = f"`{param}` is empty; pass at least one gene name from `var_names`."
        raise ValueError(msg)
    var_names = adata.var_names
    if var_names.is_unique:
        cols = var_names.get_indexer(pd.Index(names, dtype=object))
    else:  # get_indexer needs unique labels: take the first column of each name
        first = ~var_names.duplicated()
        cols = pd.Series(np.flatnonzero(first), index=var_names[first]).reindex(names).fillna(-1).to_numpy(np.int64)
    unknown = [n for n, c in zip(names, cols, strict=True) if c < 0]
    if unknown:
        msg = f"{len(unknown)} gene(s) of `{param}` are not in `var_names`: {unknown[:20]}."
        raise KeyError(msg)
    vocab = mapping.col_vocab[cols]
    unmapped = [n for n, v in zip(names, vocab, strict=True) if v < 0]
    if unmapped:
        msg = (
            f"{len(unmapped)} gene(s) of `{param}` do not map onto the model vocabulary: {unmapped[:20]}. "
            "Remove them from the list."
        )
        raise ValueError(msg)
    return np.unique(mapping.mapper.positions(vocab))


def hvg_positions(X: Any, mapping: GeneMapping, n_top: int, *, chunk_size: int) -> np.ndarray:
    """Highly variable genes (scanpy's ``seurat_v3`` on raw counts) among the mapped genes.

    A data-set-level choice: the genes depend on every cell of ``X``. Callers record the chosen genes so that a
    re-run on a subset can pass them back. The counts are collapsed onto the mapped genes (duplicated columns
    summed) into a new sparse matrix, on which :func:`scanpy.pp.highly_variable_genes` runs: the user's object is
    never touched. Memory is that of the sparse counts over the mapped genes.

    Parameters
    ----------
    X
        Cells x genes raw counts (in memory or backed).
    mapping
        The gene mapping.
    n_top
        Number of genes; when it covers every mapped gene, all are returned without computing anything.
    chunk_size
        Rows read at a time.

    Returns
    -------
    ``int64`` positions of the selected genes in the ``U`` mapped genes, sorted (vocabulary order).

    Raises
    ------
    ValueError
        With fewer than :data:`MIN_HVG_CELLS` cells (the variance fit is undefined); pass genes explicitly.
    """
    import anndata as ad
    import scanpy as sc

    if n_top >= mapping.n_genes:
        return np.arange(mapping.n_genes, dtype=np.int64)
    n_obs = int(X.shape[0])
    if n_obs < MIN_HVG_CELLS:
        msg = (
            f"Highly variable genes need at least {MIN_HVG_CELLS} cells, got {n_obs}; pass the genes explicitly "
            "(e.g. the genes recorded by a run on the full object) or use a per-cell gene context."
        )
        raise ValueError(msg)
    if sparse.issparse(X):
        collapsed = mapping.collapse_sparse(X)
    else:
        blocks = [mapping.collapse_sparse(rows) for _, _, rows in iter_row_chunks(X, chunk_size)]
        collapsed = sparse.vstack(blocks, format="csr")
    mean = np.asarray(collapsed.mean(0)).ravel()
    n_variable = int(np.count_nonzero(np.asarray(collapsed.multiply(collapsed).mean(0)).ravel() - mean**2 > 1e-12))
    if n_variable < MIN_HVG_VARIABLE_GENES:
        msg = (
            f"Highly variable genes need at least {MIN_HVG_VARIABLE_GENES} genes whose counts vary across the "
            f"{n_obs} cells; {n_variable} do (identical or too few cells?). Pass the genes explicitly or use a "
            "per-cell gene context."
        )
        raise ValueError(msg)
    counts = ad.AnnData(collapsed)
    try:
        sc.pp.highly_variable_genes(counts, flavor="seurat_v3", n_top_genes=int(n_top), span=HVG_SPAN, subset=False)
    except ValueError as err:  # the LOESS fit of skmisc on degenerate data
        msg = f"The highly-variable-gene fit failed on these {n_obs} cells ({err}); pass the genes explicitly."
        raise ValueError(msg) from err
    rank = counts.var["highly_variable_rank"].to_numpy(dtype=np.float64)
    rank = np.where(np.isnan(rank), np.inf, rank)
    top = np.argsort(rank, kind="stable")[: int(n_top)]
    return np.sort(top).astype(np.int64)


# --------------------------------------------------------------------------------------------------- counts
def iter_row_chunks(X: Any, chunk_size: int, rows: np.ndarray | None = None) -> Iterator[tuple[int, int, Any]]:
    """Read ``X`` by rows, at most ``chunk_size`` rows per read.

    Parameters
    ----------
    X
        Anything with ``.shape`` and row slicing: numpy arrays, scipy sparse matrices, backed datasets of a
        ``read_h5ad(..., backed="r")`` AnnData.
    chunk_size
        Rows per read.
    rows
        Sorted row indices to read (``None``: every row).

    Yields
    ------
    ``(start, stop, block)``: rows ``start:stop`` (of ``rows`` when given) as a scipy sparse matrix or numpy array.
    """
    n = int(X.shape[0]) if rows is None else len(rows)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        block = X[start:stop] if rows is None else X[np.asarray(rows[start:stop])]
        yield start, stop, block if sparse.issparse(block) else np.asarray(block)


def n_chunks(n_rows: int, chunk_size: int) -> int:
    """Number of chunks of :func:`iter_row_chunks`."""
    return math.ceil(n_rows / chunk_size)


def is_sparse_matrix(X: Any) -> bool:
    """Whether ``X`` is a scipy sparse matrix or a backed sparse dataset."""
    if sparse.issparse(X):
        return True
    from anndata.abc import CSCDataset, CSRDataset

    return isinstance(X, CSRDataset | CSCDataset)


@dataclass
class CountInputs:
    """Validated inputs of a model-running call.

    Attributes
    ----------
    X
        Cells x genes raw counts (``layer``, ``.X`` or ``.raw.X``; possibly backed). Read it with
        :func:`iter_row_chunks`.
    where
        Where the counts come from (``"`.X`"``...).
    mapping
        Gene mapping onto the model vocabulary.
    depth
        ``[n_obs]`` float64 total counts of each cell over the mapped columns (:data:`DEPTH_DEFINITION`).
    """

    X: Any
    where: str
    mapping: GeneMapping
    depth: np.ndarray

    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return int(self.X.shape[0])

    def record(self) -> dict[str, Any]:
        """How the inputs were read, for the ``.uns`` record of a call.

        Returns
        -------
        ``n_genes_mapped`` (distinct genes mapped onto the vocabulary), ``gene_ids`` (their source, see
        :class:`GeneMapping`), ``depth`` (its definition) and ``counts`` (where the counts were found, e.g.
        ``".X"``).
        """
        return {
            "n_genes_mapped": int(self.mapping.n_genes),
            "gene_ids": self.mapping.source,
            "depth": DEPTH_DEFINITION,
            "counts": self.where.strip("`"),
        }


def load_counts(adata: AnnData, vocab: GeneVocab, *, layer: str | None = None, chunk_size: int) -> CountInputs:
    """Find, check and map the raw counts of ``adata`` for a model vocabulary; writes nothing.

    One pass over the counts (``chunk_size`` rows at a time; in-memory sparse matrices through their stored
    values) rejects NaN/inf, negative and non-integer values and cells without counts over the mapped genes, and
    computes the depth of each cell.

    Parameters
    ----------
    adata
        The AnnData (not a MuData: pass its RNA modality).
    vocab
        The model's gene vocabulary.
    layer
        Layer with the raw counts (``None``: ``.X``, else ``.raw.X``).
    chunk_size
        Rows read at a time.

    Returns
    -------
    The :class:`CountInputs`.

    Raises
    ------
    KeyError
        Unknown ``layer``.
    ValueError
        No cells, not raw counts, no gene mapping onto the vocabulary, empty cells.
    """
    if adata.n_obs == 0:
        msg = "The data has no cells (0 rows); nothing to compute."
        raise ValueError(msg)
    X, where = get_counts(adata, layer)
    mapping = map_genes(adata, vocab)
    depth = check_counts(X, where=where, columns=mapping.mapped, adata=adata, chunk_size=chunk_size)
    return CountInputs(X=X, where=where, mapping=mapping, depth=depth)


def iter_tokens(
    inputs: CountInputs,
    *,
    mode: str,
    max_len: int,
    genes: np.ndarray | None,
    seed: int,
    stream: int = 0,
    batch_size: int,
    device: torch.device,
    rows: np.ndarray | None = None,
    description: str = "",
) -> Iterator[tuple[int, int, Tokens]]:
    """Tokenise the cells of ``inputs``, ``batch_size`` rows at a time, behind a progress bar.

    Each chunk of rows is collapsed onto the mapped genes and tokenised with :func:`~sc_print.data.tokenize`
    (per-cell random contexts from ``seed``/``stream`` and each cell's counts), so at most one chunk is ever dense.

    Parameters
    ----------
    inputs
        The validated counts.
    mode, max_len, genes
        Gene context, see :func:`~sc_print.data.select_genes` (``genes``: positions in the mapped genes).
    seed, stream
        Seed and stream of the per-cell random contexts (see :func:`~sc_print.data.cell_seeds`).
    batch_size
        Rows per batch.
    device
        Device the tokens are moved to.
    rows
        Sorted row indices to tokenise (``None``: every cell).
    description
        Label of the progress bar.

    Yields
    ------
    ``(start, stop, tokens)``: the :class:`~sc_print.data.Tokens` of rows ``start:stop`` (of ``rows`` when given).
    """
    mapper = inputs.mapping.mapper
    n = inputs.n_obs if rows is None else len(rows)
    chunks = iter_row_chunks(inputs.X, batch_size, rows)
    for start, stop, block in track(chunks, total=n_chunks(n, batch_size), description=description):
        tokens = tokenize(
            mapper.collapse(block),
            mapper.vocab_idx,
            mode=mode,  # type: ignore[arg-type]
            max_len=max_len,
            genes=genes,
            seed=seed,
            stream=stream,
        )
        yield start, stop, tokens.to(device)
