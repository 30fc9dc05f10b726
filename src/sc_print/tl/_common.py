"""Private helpers shared by the model-running ``sp.tl`` functions (``embed``, ``denoise``, ``grn``).

The path of a call::

    data = resolve_adata(adata, mod)  # AnnData or the RNA modality of a MuData
    model, device = resolve_run(model, accelerator, device)
    inputs = load_counts(data, model, layer=layer, chunk_size=batch_size)  # every check, nothing written
    with inference_mode(model.net, device, resolve_dtype(dtype, device)):
        for start, stop, tokens in token_batches(inputs.X, inputs.mapping.mapper, inputs.depth, ...):
            out = model.net(tokens.gene_idx, tokens.expr, tokens.depth)
            ...
    target, out = output_target(adata, mod, copy=copy)  # write only after everything succeeded

:func:`output_target` also serves the network tools (``sp.tl.hubs``, ``sp.tl.communities``, ``sp.tl.diff_hubs``).

Nothing here writes to an AnnData: gene ids come from ``.var[Key.var.gene_id]`` when ``sp.pp.prepare`` ran and
are mapped on the fly otherwise; the depth of each cell comes from ``.obs[Key.obs.depth]`` when present and
from the row sums over the mapped genes otherwise. Dense and backed (``read_h5ad(..., backed="r")``) counts are
read ``chunk_size`` rows at a time and in-memory sparse counts are handled through sparse products or row
slices, never densified beyond one chunk of rows over the mapped genes, so memory stays flat in the number of
cells (apart from the outputs themselves).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from sc_print._keys import PREFIX, Key
from sc_print._utils import autocast_context, resolve_device, resolve_model, track
from sc_print._validation import check_counts, get_counts, resolve_adata
from sc_print.data import GeneMapper, map_gene_names, tokenize

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData

    from sc_print.data import Tokens
    from sc_print.model import ScPrint

logger = logging.getLogger(__name__)

#: Below this many distinct genes mapping onto the model vocabulary, a warning is logged.
MIN_MAPPED_GENES = 200
#: LOESS span of the seurat_v3 highly-variable-gene selection (the value scPRINT's ``Denoiser`` uses).
HVG_SPAN = 0.99

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "16": torch.float16,
}


# --------------------------------------------------------------------------------------------------- docstrings
#: docstring text of the inputs of every model-running call (``{counts_input}``)
DOC_COUNTS_INPUT = """\
adata
    Cells x genes AnnData with raw counts (in memory or backed), or a MuData whose ``mod`` modality holds them.
model
    A :class:`~sc_print.model.ScPrint`, a registry name or a path; ``None`` uses the default model.
layer
    Layer with the raw counts; by default ``.X`` when it holds counts, else ``.raw.X``."""

#: docstring text of the run options resolved by :func:`resolve_run` and :func:`resolve_dtype` (``{run_options}``)
DOC_RUN_OPTIONS = """\
batch_size
    Cells per forward pass (and rows read at a time).
accelerator
    ``"auto"``, ``"cpu"``, ``"gpu"``/``"cuda"`` or ``"mps"``.
device
    ``"auto"`` or a device index.
dtype
    Autocast dtype: ``None`` = float32 on CPU, bfloat16 on CUDA; or ``"float32"``, ``"bfloat16"``,
    ``"float16"``, a :class:`torch.dtype`."""

#: docstring text of where the results go, see :func:`output_target` (``{mod_copy}``)
DOC_MOD_COPY = """\
mod
    Modality of a MuData holding the RNA counts.
copy
    Return a copy with the results instead of writing into ``adata``."""


# --------------------------------------------------------------------------------------------------- options
def check_key(value: Any, name: str = "key_added") -> str:
    """Return ``value`` unchanged, raising a ``ValueError`` unless it is a non-empty string."""
    if not isinstance(value, str) or not value:
        msg = f"`{name}` must be a non-empty string, got {value!r}."
        raise ValueError(msg)
    return value


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """Compute dtype of the forward passes.

    Parameters
    ----------
    dtype
        A :class:`torch.dtype`, a name (``"float32"``/``"fp32"``, ``"bfloat16"``/``"bf16"``,
        ``"float16"``/``"fp16"``) or ``None``: float32 on CPU/MPS; bfloat16 on CUDA (float16 on GPUs without
        bfloat16 support).
    device
        The device the model runs on.

    Returns
    -------
    The :class:`torch.dtype` handed to :func:`~sc_print._utils.autocast_context`.
    """
    if dtype is None:
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            msg = f"`dtype` must be float32, bfloat16 or float16, got {dtype}."
            raise ValueError(msg)
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.lower().removeprefix("torch.")]
    msg = f"Unknown `dtype` {dtype!r}; use None, 'float32', 'bfloat16' or 'float16' (or a torch dtype)."
    raise ValueError(msg)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (for the params record)."""
    return str(dtype).removeprefix("torch.")


def resolve_run(model: Any, accelerator: str = "auto", device: int | str = "auto") -> tuple[ScPrint, torch.device]:
    """Resolve the device, then the model, and move the model's weights there.

    Parameters
    ----------
    model
        ``None`` (the default model), a :class:`~sc_print.model.ScPrint`, a registry name or a path.
    accelerator, device
        See :func:`~sc_print._utils.resolve_device`.

    Returns
    -------
    The model and the :class:`torch.device` its weights are on.
    """
    torch_device = resolve_device(accelerator, device)
    return resolve_model(model, device=torch_device), torch_device


@contextlib.contextmanager
def inference_mode(net: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Eval mode, ``torch.no_grad`` and autocast to ``dtype``; the module's train/eval flag is restored after."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), autocast_context(device, dtype):
            yield
    finally:
        net.train(was_training)


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


def uns_key(default: str, key_added: str, *, default_key_added: str = PREFIX, suffix: str) -> str:
    """``.uns`` key of a call: ``default`` for the default ``key_added``, else ``f"{key_added}_{suffix}"``."""
    return default if key_added == default_key_added else f"{key_added}_{suffix}"


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


def data_gene_ids(adata: AnnData) -> tuple[np.ndarray, str]:
    """Ensembl id of each column of ``adata`` (``""`` when unknown), without writing anything.

    Parameters
    ----------
    adata
        The AnnData whose columns are identified (``.var[Key.var.gene_id]`` when present, else ``var_names``).

    Returns
    -------
    The ids and where they come from: ``"prepare"`` (``.var[Key.var.gene_id]``, written by ``sp.pp.prepare``)
    or ``"var_names"`` (Ensembl ids or symbols of ``var_names`` mapped now with
    :func:`~sc_print.data.map_gene_names`, organism detected).
    """
    if Key.var.gene_id in adata.var.columns:
        ids = adata.var[Key.var.gene_id].astype(object).where(adata.var[Key.var.gene_id].notna(), "")
        return ids.astype(str).to_numpy(dtype=str), "prepare"
    ids, _ = map_gene_names(adata.var_names.astype(str))
    return np.asarray(ids, dtype=str), "var_names"


def map_genes(adata: AnnData, model: ScPrint) -> GeneMapping:
    """Map the columns of ``adata`` onto the vocabulary of ``model``.

    Parameters
    ----------
    adata
        The AnnData (gene ids from ``sp.pp.prepare`` when present, else mapped from ``var_names``).
    model
        The model; its ``vocab`` (:class:`~sc_print.data.GeneVocab`) gives the token index of each gene.

    Returns
    -------
    The :class:`GeneMapping`.

    Raises
    ------
    ValueError
        When no column maps onto the vocabulary (wrong organism, unknown gene names or a model whose
        vocabulary does not cover the data).
    """
    ids, source = data_gene_ids(adata)
    col_vocab = np.asarray(model.vocab.index(ids), dtype=np.int64)
    col_vocab[ids == ""] = -1
    mapped = np.flatnonzero(col_vocab >= 0)
    if mapped.size == 0:
        organisms = ", ".join(getattr(model.vocab, "organisms", ())) or "unknown organism"
        n_known = int(np.count_nonzero(ids != ""))
        how = (
            "the gene ids written by `sp.pp.prepare`"
            if source == "prepare"
            else f"`var_names` (e.g. {adata.var_names[:3].tolist()})"
        )
        msg = (
            f"None of the {adata.n_vars} genes of the data maps onto the vocabulary of the model "
            f"({len(model.vocab)} genes; {organisms}): {n_known} of them have an Ensembl id from {how}, none of "
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
            len(model.vocab),
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

    The counts are collapsed onto the mapped genes (duplicated columns summed) into a new sparse matrix, on
    which :func:`scanpy.pp.highly_variable_genes` runs: the user's object is never touched. An in-memory sparse
    matrix is collapsed in one sparse product; other matrices (dense, backed) are read ``chunk_size`` rows at a
    time. Memory is that of the sparse counts over the mapped genes.

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
    """
    import anndata as ad
    import scanpy as sc

    if n_top >= mapping.n_genes:
        return np.arange(mapping.n_genes, dtype=np.int64)
    if sparse.issparse(X):
        collapsed = mapping.collapse_sparse(X)
    else:
        blocks = [mapping.collapse_sparse(rows) for _, _, rows in iter_row_chunks(X, chunk_size)]
        collapsed = sparse.vstack(blocks, format="csr")
    counts = ad.AnnData(collapsed)
    sc.pp.highly_variable_genes(counts, flavor="seurat_v3", n_top_genes=int(n_top), span=HVG_SPAN, subset=False)
    rank = counts.var["highly_variable_rank"].to_numpy(dtype=np.float64)
    rank = np.where(np.isnan(rank), np.inf, rank)
    top = np.argsort(rank, kind="stable")[: int(n_top)]
    return np.sort(top).astype(np.int64)


# --------------------------------------------------------------------------------------------------- counts
def iter_row_chunks(X: Any, chunk_size: int) -> Iterator[tuple[int, int, Any]]:
    """Read ``X`` by rows, at most ``chunk_size`` rows per read.

    Parameters
    ----------
    X
        Anything with ``.shape`` and row slicing: numpy arrays, scipy sparse matrices, backed datasets of a
        ``read_h5ad(..., backed="r")`` AnnData.

    Yields
    ------
    ``(start, stop, rows)``: the rows ``start:stop`` as a scipy sparse matrix or a numpy array.
    """
    n = int(X.shape[0])
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        rows = X[start:stop]
        yield start, stop, rows if sparse.issparse(rows) else np.asarray(rows)


def token_batches(
    X: Any,
    mapper: GeneMapper,
    depth: np.ndarray,
    *,
    mode: str,
    max_len: int,
    genes: np.ndarray | None,
    generator: torch.Generator | None,
    batch_size: int,
    device: torch.device,
    description: str,
) -> Iterator[tuple[int, int, Tokens]]:
    """Tokenise the rows of ``X``, ``batch_size`` rows at a time, behind a progress bar.

    Each chunk of rows (:func:`iter_row_chunks`) is collapsed onto the mapped genes and tokenised with
    :func:`~sc_print.data.tokenize`, so at most one chunk is ever dense.

    Parameters
    ----------
    X
        Cells x genes raw counts (in memory or backed; anything :func:`iter_row_chunks` reads).
    mapper
        Gene mapping onto the model vocabulary.
    depth
        ``[n_obs]`` total counts of each cell.
    mode, max_len, genes, generator
        Gene context, see :func:`~sc_print.data.select_genes` (``genes``: positions in the mapped genes).
    batch_size
        Rows per batch.
    device
        Device the tokens are moved to.
    description
        Label of the progress bar.

    Yields
    ------
    ``(start, stop, tokens)``: the :class:`~sc_print.data.Tokens` of the rows ``start:stop``.
    """
    chunks = iter_row_chunks(X, batch_size)
    for start, stop, rows in track(chunks, total=n_chunks(int(X.shape[0]), batch_size), description=description):
        tokens = tokenize(
            mapper.collapse(rows),
            mapper.vocab_idx,
            depth=depth[start:stop],
            mode=mode,  # type: ignore[arg-type]
            max_len=max_len,
            genes=genes,
            generator=generator,
        )
        yield start, stop, tokens.to(device)


def is_sparse_matrix(X: Any) -> bool:
    """Whether ``X`` is a scipy sparse matrix or a backed sparse dataset."""
    if sparse.issparse(X):
        return True
    from anndata.abc import CSCDataset, CSRDataset

    return isinstance(X, CSRDataset | CSCDataset)


def n_chunks(n_rows: int, chunk_size: int) -> int:
    """Number of chunks of :func:`iter_row_chunks`."""
    return math.ceil(n_rows / chunk_size)


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
        ``[n_obs]`` float64 total counts of each cell.
    depth_source
        ``"obs"`` (``.obs[Key.obs.depth]``, from ``sp.pp.prepare``) or ``"mapped genes"`` (row sums now).
    """

    X: Any
    where: str
    mapping: GeneMapping
    depth: np.ndarray
    depth_source: str

    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return int(self.X.shape[0])

    def record(self) -> dict[str, Any]:
        """How the inputs were read, for the ``.uns`` record of a call.

        Returns
        -------
        ``n_genes_mapped`` (distinct genes mapped onto the vocabulary), ``gene_ids`` (their source, see
        :class:`GeneMapping`), ``depth`` (source of the cell depths) and ``counts`` (where the counts were found,
        e.g. ``".X"``).
        """
        return {
            "n_genes_mapped": int(self.mapping.n_genes),
            "gene_ids": self.mapping.source,
            "depth": self.depth_source,
            "counts": self.where.strip("`"),
        }


def load_counts(adata: AnnData, model: ScPrint, *, layer: str | None = None, chunk_size: int) -> CountInputs:
    """Find, check and map the raw counts of ``adata`` for ``model``; writes nothing.

    One pass over the counts (``chunk_size`` rows at a time; in-memory sparse matrices through their stored
    values) rejects NaN/inf, negative and non-integer values and cells without counts over the mapped genes.

    Parameters
    ----------
    adata
        The AnnData (not a MuData: resolve it first with :func:`~sc_print._validation.resolve_adata`).
    model
        The model.
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
        Not raw counts, no gene mapping onto the vocabulary, empty cells.
    """
    X, where = get_counts(adata, layer)
    mapping = map_genes(adata, model)
    sums = check_counts(X, where=where, columns=mapping.mapped, adata=adata, chunk_size=chunk_size)
    depth, depth_source = sums, "mapped genes"
    if Key.obs.depth in adata.obs.columns:
        stored = pd.to_numeric(adata.obs[Key.obs.depth], errors="coerce").to_numpy(dtype=np.float64)
        if np.all(np.isfinite(stored)) and np.all(stored > 0):
            depth, depth_source = stored, "obs"
        else:
            logger.warning(
                "`.obs[%r]` has missing, infinite or non-positive values; using the row sums over the mapped genes "
                "instead (re-run `sp.pp.prepare`).",
                Key.obs.depth,
            )
    return CountInputs(X=X, where=where, mapping=mapping, depth=depth, depth_source=depth_source)
