"""Turn rows of a count matrix into model inputs (gene indices + counts), straight from sparse rows.

The path of a cell: ``GeneMapper.collapse`` gathers the columns that map onto the model vocabulary
(duplicated genes summed) → :func:`select_genes` picks the context (random expressed genes with zero
filler, a fixed list, or all genes) → :class:`Tokens` (``gene_idx``, ``expr``, ``depth``) that
:class:`~sc_print.nn.ScPrintNet` consumes. Only the rows of one batch are ever densified, and only over
the mapped genes. Training, ``sp.tl.embed``/``denoise``/``grn``, the model getters and the scripts all
tokenise through :func:`tokenize`.

**Depth** (one definition everywhere): the total count of a cell over the columns of the data that map onto the
model vocabulary (duplicated columns included), i.e. the row sum of the collapsed counts.

**Random contexts are per cell** (the determinism contract): the random key of gene ``g`` in cell ``c`` is a
counter-based hash of ``(seed, stream, content of c, vocabulary id of g)``, where the content of a cell is an
order-independent hash of its ``(gene id, count)`` pairs (:func:`cell_hashes`). The genes drawn for a cell therefore
depend on its counts, the seed and the options only — not on its row, the other cells, the batch size or the
order of the columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

ContextMode = Literal["random_expr", "top_expr", "fixed", "all"]
CONTEXT_MODES: tuple[str, ...] = ("random_expr", "top_expr", "fixed", "all")
#: modes whose context is chosen per cell from its own counts (they need the per-cell keys of :func:`gene_keys`)
PER_CELL_MODES: tuple[str, ...] = ("random_expr", "top_expr")

# splitmix64 constants (Steele et al. 2014); uint64 arithmetic wraps modulo 2**64 in numpy
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MAX_SEED = 2**63 - 1


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser of a ``uint64`` array (a bijection with good avalanche)."""
    with np.errstate(over="ignore"):  # wrapping is intended (numpy warns on 0-d arrays only)
        z = np.asarray(z, dtype=np.uint64)
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def check_seed(seed: object, name: str = "seed") -> int:
    """Return ``seed`` as a non-negative ``int`` (< 2**63), raising a clear error otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= int(seed) <= _MAX_SEED:
        msg = f"`{name}` must be an integer in [0, 2**63), got {seed!r}."
        raise ValueError(msg)
    return int(seed)


def cell_hashes(x: np.ndarray | sp.spmatrix, vocab_idx: np.ndarray) -> np.ndarray:
    """Order-independent 64-bit hash of the content of each row.

    Parameters
    ----------
    x
        ``[B, U]`` non-negative integer counts over the genes ``vocab_idx`` (dense or sparse).
    vocab_idx
        ``[U]`` vocabulary index of each column.

    Returns
    -------
    ``uint64 [B]``: the wrapped sum over the row's non-zero entries of a hash of ``(vocabulary id, count)``.
    Two rows with the same counts at the same genes get the same hash, whatever the column order.
    """
    csr = sp.csr_matrix(x)
    csr.sum_duplicates()
    vocab = np.asarray(vocab_idx, dtype=np.uint64)
    counts = np.rint(csr.data).astype(np.uint64)
    entry = _mix(_mix(vocab[csr.indices] + _GOLDEN) ^ counts)
    out = np.zeros(csr.shape[0], dtype=np.uint64)
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    np.add.at(out, rows, entry)
    return out


def cell_seeds(hashes: np.ndarray, seed: int, stream: int = 0) -> np.ndarray:
    """Per-cell random seeds ``uint64 [B]`` from the cells' content hashes, a seed and a stream number.

    ``stream`` separates independent draws for the same cell (e.g. the repeats of ``sp.tl.grn``).
    """
    with np.errstate(over="ignore"):
        base = _mix(np.uint64(check_seed(seed)) * _GOLDEN + np.uint64(check_seed(stream, "stream")))
    return _mix(np.asarray(hashes, dtype=np.uint64) ^ base)


def random_cell_seeds(n: int, generator: torch.Generator | None = None) -> np.ndarray:
    """``n`` random per-cell seeds drawn from torch's (global or given) generator: fresh draws, e.g. in training."""
    draws = torch.randint(0, _MAX_SEED, (int(n),), generator=generator, dtype=torch.int64)
    return draws.numpy().astype(np.uint64)


def gene_keys(seeds: np.ndarray, vocab_idx: np.ndarray) -> np.ndarray:
    """Uniform ``[0, 1)`` keys ``float64 [B, U]``: one per (cell seed, vocabulary gene), a pure function of both."""
    gene = _mix(np.asarray(vocab_idx, dtype=np.uint64) + _GOLDEN)
    bits = _mix(np.asarray(seeds, dtype=np.uint64)[:, None] ^ gene[None, :]) >> np.uint64(11)
    return bits.astype(np.float64) * (1.0 / 2**53)


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
        #: columns of the data that map onto the vocabulary
        self.mapped_cols = mapped
        #: sorted unique vocabulary indices present in the data (the "mapped genes")
        self.vocab_idx, inverse = np.unique(col_vocab[mapped], return_inverse=True)
        #: position in the mapped genes of each mapped column
        self.col_to_u = inverse.astype(np.int64)
        self.n_vars = len(col_vocab)
        self.n_duplicates = int(mapped.size - self.vocab_idx.size)
        # sparse [n_vars, U] 0/1 matrix: X @ P sums duplicated columns into one mapped gene
        self._P = sp.csr_matrix(
            (np.ones(mapped.size, dtype=np.float32), (mapped, inverse)), shape=(self.n_vars, self.vocab_idx.size)
        )

    @property
    def n_genes(self) -> int:
        """Number of distinct mapped genes ``U``."""
        return int(self.vocab_idx.size)

    def positions(self, vocab_idx: np.ndarray) -> np.ndarray:
        """Column in the collapsed matrix of each vocabulary index (``-1`` when not in the data)."""
        vocab_idx = np.asarray(vocab_idx, dtype=np.int64).ravel()
        pos = np.searchsorted(self.vocab_idx, vocab_idx)
        pos = np.minimum(pos, max(self.n_genes - 1, 0))
        return np.where(self.vocab_idx[pos] == vocab_idx, pos, -1).astype(np.int64)

    def collapse_sparse(self, rows: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
        """``[B, n_vars]`` rows → sparse float32 ``[B, U]`` over the mapped genes (duplicates summed)."""
        return sp.csr_matrix(sp.csr_matrix(rows, dtype=np.float32) @ self._P)

    def collapse(self, rows: sp.spmatrix | np.ndarray) -> np.ndarray:
        """``[B, n_vars]`` rows (sparse or dense) → dense float32 ``[B, U]`` over the mapped genes."""
        if sp.issparse(rows):
            out = (sp.csr_matrix(rows, dtype=np.float32) @ self._P).toarray()
        else:
            out = np.asarray(rows, dtype=np.float32).reshape(-1, self.n_vars) @ self._P
        return np.asarray(out, dtype=np.float32)

    def depth(self, rows: sp.spmatrix | np.ndarray) -> np.ndarray:
        """Depth of each row: its total count over the mapped columns (float64), the one definition of depth."""
        if sp.issparse(rows):
            return np.asarray(sp.csr_matrix(rows)[:, self.mapped_cols].sum(1), dtype=np.float64).ravel()
        return np.asarray(rows, dtype=np.float64).reshape(-1, self.n_vars)[:, self.mapped_cols].sum(1)


def select_genes(
    x: torch.Tensor,
    *,
    mode: ContextMode = "random_expr",
    max_len: int = 2200,
    genes: torch.Tensor | np.ndarray | None = None,
    keys: np.ndarray | torch.Tensor | None = None,
) -> torch.Tensor:
    """Choose the context of each cell.

    Parameters
    ----------
    x
        ``[B, U]`` counts over the mapped genes.
    mode
        ``"random_expr"``: up to ``max_len`` expressed genes drawn without replacement, completed with
        random unexpressed genes when a cell has fewer (the reference collator); ``"top_expr"``: the ``max_len``
        genes with the highest counts (the reference's ``how="most expr"``; ties, unexpressed genes included,
        broken by the keys, so the context is still a function of the cell alone); ``"fixed"``: the columns
        in ``genes`` for every cell; ``"all"``: every mapped gene.
    max_len
        Context length for ``"random_expr"`` and ``"top_expr"`` (capped at ``U``).
    genes
        ``[S]`` column positions for ``"fixed"``.
    keys
        ``[B, U]`` uniform random keys for ``"random_expr"`` and ``"top_expr"`` (:func:`gene_keys`): the genes
        with the largest keys are drawn, expressed genes first (``"top_expr"``: among genes of equal count).

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
    if mode not in PER_CELL_MODES:
        msg = f"Unknown context mode {mode!r}; choose one of {CONTEXT_MODES}."
        raise ValueError(msg)
    if keys is None:
        msg = f"mode={mode!r} needs `keys` (see `gene_keys`)."
        raise ValueError(msg)
    s = min(int(max_len), u)
    keys_t = torch.as_tensor(keys, dtype=torch.float64).to(x.device)
    if mode == "top_expr":
        # exact lexicographic order (count, then key): stable sort by key, then stable sort by count
        by_key = keys_t.argsort(dim=1, descending=True, stable=True)
        counts = torch.gather(x.double(), 1, by_key)
        order = counts.argsort(dim=1, descending=True, stable=True)[:, :s]
        return torch.gather(by_key, 1, order).sort(dim=1).values
    # expressed genes get keys in [1, 2), the rest in [0, 1): top-s keeps every expressed gene first
    ranked = keys_t + (x > 0).double()
    return ranked.topk(s, dim=1, sorted=False).indices.sort(dim=1).values


def tokenize(
    x: np.ndarray | torch.Tensor,
    vocab_idx: np.ndarray | torch.Tensor,
    *,
    mode: ContextMode = "random_expr",
    max_len: int = 2200,
    genes: np.ndarray | torch.Tensor | None = None,
    seed: int = 0,
    stream: int = 0,
    seeds: np.ndarray | None = None,
) -> Tokens:
    """Tokenise collapsed counts ``x`` ``[B, U]`` whose columns are the vocabulary genes ``vocab_idx`` ``[U]``.

    The depth is the row sum of ``x`` (the one definition of depth). For ``"random_expr"`` the draws of each cell
    follow from ``seed``, ``stream`` and the cell's own counts (:func:`cell_seeds`), unless ``seeds`` gives the
    per-cell seeds directly (e.g. :func:`random_cell_seeds` for fresh draws in training); ``"top_expr"`` uses them
    to break ties. See
    :func:`select_genes` for the other parameters.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    vocab_np = np.asarray(torch.as_tensor(vocab_idx).cpu().numpy(), dtype=np.int64)
    keys = None
    if mode in PER_CELL_MODES:
        if seeds is None:
            seeds = cell_seeds(cell_hashes(x.detach().cpu().numpy(), vocab_np), seed, stream)
        keys = gene_keys(seeds, vocab_np)
    cols = select_genes(x, mode=mode, max_len=max_len, genes=genes, keys=keys)
    vocab_t = torch.as_tensor(vocab_np, dtype=torch.long, device=x.device)
    return Tokens(gene_idx=vocab_t[cols], expr=torch.gather(x, 1, cols), depth=x.sum(1))


def tokenize_rows(
    rows: sp.spmatrix | np.ndarray,
    mapper: GeneMapper,
    *,
    mode: ContextMode = "random_expr",
    max_len: int = 2200,
    genes: np.ndarray | None = None,
    seed: int = 0,
    stream: int = 0,
    seeds: np.ndarray | None = None,
) -> Tokens:
    """Tokenise ``[B, n_vars]`` rows of a (sparse or dense) count matrix.

    ``genes`` (for ``mode="fixed"``) are vocabulary indices; genes absent from the data enter with a
    count of zero (and do not change the depth).
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
    return tokenize(x, vocab_idx, mode=mode, max_len=max_len, genes=genes, seed=seed, stream=stream, seeds=seeds)
