"""Gene networks from attention: running mean of Q and K per gene, then ``softmax(Q̄ K̄ᵀ / √d)``.

Per-cell attention matrices are never built. While cells stream through the model, a
:class:`QKAccumulator` adds each layer's query and key vectors into per-gene running sums (slots
``0..T-1`` are the cell tokens, slot ``T + j`` is mapped gene ``j``). At the end :func:`attention_network`
builds, for every selected layer and head, ``softmax(Q̄ K̄ᵀ/√hd)`` over all seen slots (cell tokens
included, as in the reference), averages the heads, drops the cell tokens and filters the edges —
row block by row block, so a 20,000-gene network never needs a dense float matrix per head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp
import torch

if TYPE_CHECKING:
    from collections.abc import Sequence

Filtration = Literal["threshold", "top_k", "none"]


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
        Rows of the network built at once (memory ``block_rows × N`` floats per head).
    per_head
        Return the dense per-head cube ``[G, G, n_heads]`` (for head selection on small gene sets)
        instead of the aggregated sparse network.

    Returns
    -------
    ``[G, G]`` CSR float32 (``G = N - n_tokens``; row ``i`` = query gene), or the dense per-head cube.
    """
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
    indptr, indices, data = [0], [], []
    threshold = 1.0 / n
    for start in range(n_tokens, n, block_rows):
        stop = min(start + block_rows, n)
        block = torch.zeros(stop - start, n, device=q_mean.device)
        for layer, h in active:
            scores = (q_mean[layer, start:stop, h] @ k_mean[layer, :, h].T) * scale
            block += w[layer, h] * torch.softmax(scores, dim=-1)
        block = block[:, n_tokens:]
        if filtration == "threshold":
            block = torch.where(block >= threshold, block, torch.zeros((), device=block.device))
        elif filtration == "top_k":
            k = min(top_k, g)
            vals, idx = block.topk(k, dim=1)
            block = torch.zeros_like(block).scatter_(1, idx, vals)
        elif filtration != "none":
            msg = f"Unknown filtration {filtration!r}; use 'threshold', 'top_k' or 'none'."
            raise ValueError(msg)
        chunk = sp.csr_matrix(block.cpu().numpy().astype(np.float32))
        indices.append(chunk.indices)
        data.append(chunk.data)
        indptr.extend((chunk.indptr[1:] + indptr[-1]).tolist())
    return sp.csr_matrix(
        (
            np.concatenate(data) if data else np.zeros(0, np.float32),
            np.concatenate(indices) if indices else np.zeros(0, np.int32),
            np.asarray(indptr),
        ),
        shape=(g, g),
    )
