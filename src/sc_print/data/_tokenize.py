"""Turn rows of a count matrix into model inputs (gene indices + counts), straight from sparse rows.

The path of a cell: ``GeneMapper.collapse`` gathers the columns that map onto the model vocabulary
(duplicated genes summed) → ``select_genes`` picks the context (random expressed genes with zero
filler, a fixed list, or all genes) → :class:`Tokens` (``gene_idx``, ``expr``, ``depth``) that
:class:`~sc_print.nn.ScPrintNet` consumes. Only the rows of one batch are ever densified, and only over
the mapped genes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

ContextMode = Literal["random_expr", "fixed", "all"]
CONTEXT_MODES: tuple[str, ...] = ("random_expr", "fixed", "all")


@dataclass
class Tokens:
    """A tokenised batch.

    Attributes
    ----------
    gene_idx
        ``[B, S]`` long, vocabulary index of each gene in context.
    expr
        ``[B, S]`` float, raw counts of those genes.
    depth
        ``[B]`` float, total counts of each cell over all of its mapped genes.
    """

    gene_idx: torch.Tensor
    expr: torch.Tensor
    depth: torch.Tensor

    def to(self, device: torch.device | str) -> Tokens:
        """Move to ``device``."""
        return Tokens(self.gene_idx.to(device), self.expr.to(device), self.depth.to(device))


class GeneMapper:
    """Map the columns of a data matrix onto a model vocabulary.

    Parameters
    ----------
    col_vocab
        ``[n_vars]`` vocabulary index of each column of the data, ``-1`` for unmapped columns. Several
        columns may map to the same gene: their counts are summed.
    """

    def __init__(self, col_vocab: np.ndarray) -> None:
        col_vocab = np.asarray(col_vocab, dtype=np.int64)
        #: vocabulary index of each data column (-1 unmapped)
        self.col_vocab = col_vocab
        mapped = np.flatnonzero(col_vocab >= 0)
        if mapped.size == 0:
            msg = "No column of the data maps onto the model vocabulary; run `sp.pp.prepare(adata)` and check gene ids."
            raise ValueError(msg)
        #: sorted unique vocabulary indices present in the data (the "mapped genes")
        self.vocab_idx, inverse = np.unique(col_vocab[mapped], return_inverse=True)
        self.n_vars = len(col_vocab)
        self.n_duplicates = int(mapped.size - self.vocab_idx.size)
        # sparse [n_vars, U] 0/1 matrix: X @ P sums duplicated columns into one mapped gene
        self._P = sp.csr_matrix(
            (np.ones(mapped.size, dtype=np.float32), (mapped, inverse)), shape=(self.n_vars, self.vocab_idx.size)
        )
        self._pos = {int(v): i for i, v in enumerate(self.vocab_idx)}

    @property
    def n_genes(self) -> int:
        """Number of distinct mapped genes ``U``."""
        return int(self.vocab_idx.size)

    def positions(self, vocab_idx: np.ndarray) -> np.ndarray:
        """Column in the collapsed matrix of each vocabulary index (``-1`` when not in the data)."""
        return np.array([self._pos.get(int(v), -1) for v in np.asarray(vocab_idx)], dtype=np.int64)

    def collapse_sparse(self, rows: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
        """``[B, n_vars]`` rows → sparse float32 ``[B, U]`` over the mapped genes (duplicates summed)."""
        return sp.csr_matrix(sp.csr_matrix(rows, dtype=np.float32) @ self._P)

    def collapse(self, rows: sp.spmatrix | np.ndarray) -> np.ndarray:
        """``[B, n_vars]`` rows (sparse or dense) → dense float32 ``[B, U]`` over the mapped genes."""
        if sp.issparse(rows):
            out = (sp.csr_matrix(rows, dtype=np.float32) @ self._P).toarray()
        else:
            out = np.asarray(rows, dtype=np.float32) @ self._P
        return np.asarray(out, dtype=np.float32)


def select_genes(
    x: torch.Tensor,
    *,
    mode: ContextMode = "random_expr",
    max_len: int = 2200,
    genes: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose the context of each cell.

    Parameters
    ----------
    x
        ``[B, U]`` counts over the mapped genes.
    mode
        ``"random_expr"``: up to ``max_len`` expressed genes drawn without replacement, completed with
        random unexpressed genes when a cell has fewer (the reference collator); ``"fixed"``: the columns
        in ``genes`` for every cell; ``"all"``: every mapped gene.
    max_len
        Context length for ``"random_expr"`` (capped at ``U``).
    genes
        ``[S]`` column positions for ``"fixed"``.
    generator
        Seeded generator for ``"random_expr"``.

    Returns
    -------
    ``[B, S]`` long column positions into ``x``.
    """
    b, u = x.shape
    if mode == "all":
        return torch.arange(u, device=x.device).expand(b, u)
    if mode == "fixed":
        if genes is None:
            msg = "mode='fixed' needs `genes`."
            raise ValueError(msg)
        return torch.as_tensor(genes, device=x.device).long().expand(b, -1)
    if mode != "random_expr":
        msg = f"Unknown context mode {mode!r}; choose one of {CONTEXT_MODES}."
        raise ValueError(msg)
    s = min(max_len, u)
    # expressed genes get keys in [1, 2), the rest in [0, 1): top-s keeps every expressed gene first
    keys = torch.rand(b, u, generator=generator, device="cpu").to(x.device) + (x > 0).float()
    return keys.topk(s, dim=1).indices


def tokenize(
    x: np.ndarray | torch.Tensor,
    vocab_idx: np.ndarray | torch.Tensor,
    *,
    depth: np.ndarray | torch.Tensor | None = None,
    mode: ContextMode = "random_expr",
    max_len: int = 2200,
    genes: np.ndarray | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tokens:
    """Tokenise collapsed counts ``x`` ``[B, U]`` whose columns are the vocabulary genes ``vocab_idx`` ``[U]``.

    ``depth`` defaults to the row sums of ``x``; see :func:`select_genes` for the other parameters.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    vocab_idx = torch.as_tensor(vocab_idx, dtype=torch.long, device=x.device)
    cols = select_genes(x, mode=mode, max_len=max_len, genes=genes, generator=generator)
    expr = torch.gather(x, 1, cols)
    depth = x.sum(1) if depth is None else torch.as_tensor(depth, dtype=torch.float32, device=x.device)
    return Tokens(gene_idx=vocab_idx[cols], expr=expr, depth=depth)


def tokenize_rows(
    rows: sp.spmatrix | np.ndarray,
    mapper: GeneMapper,
    *,
    depth: np.ndarray | None = None,
    mode: ContextMode = "random_expr",
    max_len: int = 2200,
    genes: np.ndarray | None = None,
    generator: torch.Generator | None = None,
) -> Tokens:
    """Tokenise ``[B, n_vars]`` rows of a (sparse or dense) count matrix.

    ``genes`` (for ``mode="fixed"``) are vocabulary indices; genes absent from the data enter with a
    count of zero.
    """
    x = mapper.collapse(rows)
    vocab_idx = mapper.vocab_idx
    if mode == "fixed":
        if genes is None:
            msg = "mode='fixed' needs `genes` (vocabulary indices)."
            raise ValueError(msg)
        genes = np.asarray(genes, dtype=np.int64)
        pos = mapper.positions(genes)
        missing = pos < 0
        if missing.any():  # genes of the list that the data does not measure: zero columns appended
            x = np.concatenate([x, np.zeros((x.shape[0], int(missing.sum())), dtype=np.float32)], axis=1)
            vocab_idx = np.concatenate([vocab_idx, genes[missing]])
            pos[missing] = mapper.n_genes + np.arange(int(missing.sum()))
        genes = pos
    return tokenize(x, vocab_idx, depth=depth, mode=mode, max_len=max_len, genes=genes, generator=generator)
