"""Gene networks from attention: running mean of Q and K per gene, then ``softmax(Q̄ K̄ᵀ / √d)``.

Per-cell attention matrices are never built. While cells stream through the model, a
:class:`QKAccumulator` adds each layer's query and key vectors into per-gene running sums (slots
``0..T-1`` are the cell tokens, slot ``T + j`` is mapped gene ``j``). At the end :func:`attention_network`
builds, for every selected layer and head, ``softmax(Q̄ K̄ᵀ/√hd)`` over all seen slots (cell tokens
included, as in the reference), averages the heads, drops the cell tokens and filters the edges —
row block by row block, so a 20,000-gene network never needs a dense float matrix per head.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp
import torch

from ._sparse import stack_rows

if TYPE_CHECKING:
    from collections.abc import Sequence

Filtration = Literal["threshold", "top_k", "none"]
FILTRATIONS: tuple[str, ...] = ("threshold", "top_k", "none")
Backend = Literal["auto", "torch", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")


class QKAccumulator:
    """Running sums of per-gene query and key vectors over cells.

    Parameters
    ----------
    n_tokens
        Number of cell tokens ``T`` in front of the genes.
    n_genes
        Number of gene slots ``U`` (genes are addressed by their slot ``0..U-1``).
    layers
        Transformer layers to record.
    nhead, head_dim
        Attention shape.
    device
        Where the sums live.
    """

    def __init__(
        self,
        *,
        n_tokens: int,
        n_genes: int,
        layers: Sequence[int],
        nhead: int,
        head_dim: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.n_tokens, self.n_genes = n_tokens, n_genes
        self.layers = list(layers)
        self._layer_pos = {layer: i for i, layer in enumerate(self.layers)}
        shape = (len(self.layers), n_tokens + n_genes, nhead, head_dim)
        self.q_sum = torch.zeros(shape, dtype=torch.float32, device=device)
        self.k_sum = torch.zeros(shape, dtype=torch.float32, device=device)
        self.count = torch.zeros(n_tokens + n_genes, dtype=torch.float32, device=device)
        self._slots: torch.Tensor | None = None

    def set_batch(self, gene_slots: torch.Tensor) -> None:
        """Declare the gene slots ``[B, S]`` of the next batch (before running the model on it)."""
        b = gene_slots.shape[0]
        tokens = torch.arange(self.n_tokens, device=gene_slots.device).expand(b, -1)
        self._slots = torch.cat([tokens, gene_slots + self.n_tokens], dim=1).reshape(-1).to(self.count.device)
        self.count.index_add_(0, self._slots, torch.ones_like(self._slots, dtype=torch.float32))

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor) -> None:
        """The ``qk_hook`` of :class:`~sc_print.nn.ScPrintNet`: add ``q, k`` ``[B, T+S, H, hd]``."""
        if self._slots is None:
            msg = "Call set_batch(gene_slots) before running the model."
            raise RuntimeError(msg)
        i = self._layer_pos[layer]
        h, d = q.shape[-2:]
        self.q_sum[i].index_add_(0, self._slots, q.reshape(-1, h, d).float())
        self.k_sum[i].index_add_(0, self._slots, k.reshape(-1, h, d).float())

    def means(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean Q and K ``[L, N, H, hd]`` over the seen slots, and the boolean mask of seen slots ``[T+U]``."""
        seen = self.count > 0
        denom = self.count[seen][None, :, None, None]
        return self.q_sum[:, seen] / denom, self.k_sum[:, seen] / denom, seen


def _head_weights(n_layers: int, nhead: int, heads: Sequence[tuple[int, int]] | None, weights) -> torch.Tensor:
    w = torch.zeros(n_layers, nhead)
    if heads is None:
        w[:] = 1.0
    else:
        vals = np.ones(len(heads)) if weights is None else np.asarray(weights, dtype=np.float64)
        for (layer, head), val in zip(heads, vals, strict=True):
            w[layer, head] = float(val)
    if w.sum() <= 0:
        msg = "No attention head selected (all head weights are zero)."
        raise ValueError(msg)
    return w / w.sum()


def triton_usable(device: torch.device) -> bool:
    """Whether the Triton kernels can run on ``device`` (CUDA with triton installed, or the Triton interpreter)."""
    if importlib.util.find_spec("triton") is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"torch"`` or ``"triton"`` for ``backend`` (``"auto"``: Triton on CUDA when installed, else torch)."""
    if backend not in BACKENDS:
        msg = f"Unknown network backend {backend!r}; use one of {list(BACKENDS)}."
        raise ValueError(msg)
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_usable(device) else "torch"
    if backend == "triton" and not triton_usable(device):
        msg = (
            "backend='triton' needs the `triton` package and a CUDA device (or TRITON_INTERPRET=1 for CPU "
            "testing); install it with `pip install triton` or use backend='torch'."
        )
        raise ValueError(msg)
    return backend


def check_filtration(filtration: str) -> None:
    """A clear error for an unknown filtration."""
    if filtration not in FILTRATIONS:
        msg = f"Unknown filtration {filtration!r}; use 'threshold', 'top_k' or 'none'."
        raise ValueError(msg)


def filter_block(block: torch.Tensor, *, filtration: str, threshold: float, top_k: int) -> sp.csr_matrix:
    """Filter a dense ``[rows, G]`` block of a network (see :func:`attention_network`) into CSR float32."""
    if filtration == "threshold":
        block = torch.where(block >= threshold, block, torch.zeros((), device=block.device))
    elif filtration == "top_k":
        vals, idx = block.topk(min(top_k, block.shape[1]), dim=1)
        block = torch.zeros_like(block).scatter_(1, idx, vals)
    return sp.csr_matrix(block.cpu().numpy().astype(np.float32))


def place_network(net: sp.csr_matrix, positions: np.ndarray, n: int) -> sp.csr_matrix:
    """``net`` ``[G, G]`` as an ``n × n`` CSR float32 whose row and column ``positions[i]`` are row/column ``i`` of ``net``.

    ``positions`` are distinct. Rows are gathered in position order, column indices renumbered in place and sorted
    per row: one copy of the edges (a genome-wide network can hold hundreds of millions), no COO detour.
    """
    positions = np.asarray(positions, dtype=np.int64)
    order = np.argsort(positions, kind="stable")
    out = net.copy() if np.array_equal(order, np.arange(len(order))) else net[order]
    if out.dtype != np.float32:
        out = out.astype(np.float32)
    idx_dtype = np.int32 if max(out.nnz, n) < 2**31 else np.int64
    idx = out.indices.astype(idx_dtype, copy=False)
    lookup = positions.astype(idx_dtype)
    step = 1 << 24
    for start in range(0, len(idx), step):
        idx[start : start + step] = lookup[idx[start : start + step]]
    lengths = np.zeros(n, dtype=idx_dtype)
    lengths[positions[order]] = np.diff(out.indptr)
    indptr = np.zeros(n + 1, dtype=idx_dtype)
    np.cumsum(lengths, out=indptr[1:])
    placed = sp.csr_matrix((out.data, idx, indptr), shape=(n, n), copy=False)
    placed.has_sorted_indices = False
    placed.sort_indices()
    return placed


def attention_network(
    q_mean: torch.Tensor,
    k_mean: torch.Tensor,
    *,
    n_tokens: int,
    heads: Sequence[tuple[int, int]] | None = None,
    head_weights: Sequence[float] | None = None,
    filtration: Filtration = "threshold",
    top_k: int = 20,
    block_rows: int = 1024,
    per_head: bool = False,
    backend: Backend = "auto",
) -> sp.csr_matrix | np.ndarray:
    """Aggregate mean-Q/K attention into a gene × gene network.

    Parameters
    ----------
    q_mean, k_mean
        ``[L, N, H, hd]`` mean query/key vectors of the ``N`` seen slots; the first ``n_tokens`` slots
        are cell tokens.
    n_tokens
        Cell tokens among the slots (kept in the softmax, dropped from the output, as in the reference).
    heads
        ``(layer position, head)`` pairs to average (``None`` = all); layer positions index ``L``.
    head_weights
        Weights of ``heads`` (``None`` = equal).
    filtration
        ``"threshold"``: drop edges below ``1/N`` (the reference rule); ``"top_k"``: keep the ``top_k``
        strongest targets per source; ``"none"``: keep every edge.
    top_k
        Edges per row for ``"top_k"``.
    block_rows
        Rows of the network built at once by the torch backend (memory ``block_rows × N`` floats per head).
    per_head
        Return the dense per-head cube ``[G, G, n_heads]`` (for head selection on small gene sets)
        instead of the aggregated sparse network (torch backend).
    backend
        ``"torch"``: row blocks with :func:`torch.softmax`; ``"triton"``: the fused kernels of
        ``sc_print.grn._triton`` (softmax over key blocks, head average and filtration in one pass, output written
        straight to CSR, no dense block at all); ``"auto"``: Triton on a CUDA device when installed, else torch.
        Both give the same network (float32; an edge within float rounding of the threshold may differ).

    Returns
    -------
    ``[G, G]`` CSR float32 (``G = N - n_tokens``; row ``i`` = query gene), or the dense per-head cube.
    """
    check_filtration(filtration)
    n_layers, n, nhead, hd = q_mean.shape
    g = n - n_tokens
    scale = hd**-0.5
    if per_head:
        pairs = [(layer, h) for layer in range(n_layers) for h in range(nhead)] if heads is None else list(heads)
        cube = np.empty((g, g, len(pairs)), dtype=np.float32)
        for j, (layer, h) in enumerate(pairs):
            for start in range(n_tokens, n, block_rows):
                stop = min(start + block_rows, n)
                att = torch.softmax((q_mean[layer, start:stop, h] @ k_mean[layer, :, h].T) * scale, dim=-1)
                cube[start - n_tokens : stop - n_tokens, :, j] = att[:, n_tokens:].cpu().numpy()
        return cube
    w = _head_weights(n_layers, nhead, heads, head_weights).to(q_mean.device)
    active = [(layer, h) for layer in range(n_layers) for h in range(nhead) if w[layer, h] > 0]
    if resolve_backend(backend, q_mean.device) == "triton":
        from ._triton import mean_qk_network

        li = torch.tensor([a for a, _ in active], device=q_mean.device)
        hi = torch.tensor([b for _, b in active], device=q_mean.device)
        return mean_qk_network(
            q_mean[li, :, hi],
            k_mean[li, :, hi],
            w[li, hi],
            n_tokens=n_tokens,
            filtration=filtration,
            top_k=top_k,
        )
    chunks = []
    for start in range(n_tokens, n, block_rows):
        stop = min(start + block_rows, n)
        block = torch.zeros(stop - start, n, device=q_mean.device)
        for layer, h in active:
            scores = (q_mean[layer, start:stop, h].float() @ k_mean[layer, :, h].float().T) * scale
            block += w[layer, h] * torch.softmax(scores, dim=-1)
        chunks.append(filter_block(block[:, n_tokens:], filtration=filtration, threshold=1.0 / n, top_k=top_k))
    return stack_rows(chunks, g)
