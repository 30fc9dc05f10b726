"""Gene networks as the exact mean over cells of each cell's attention (``aggregation="mean_attention"``).

Mean-Q/K (:mod:`sc_print.grn._aggregate`) takes one softmax of the averaged queries and keys; this module computes
the quantity mean-Q/K approximates: for every layer/head ``h`` and cell ``c``, the attention of the cell's own
context ``A_{c,h} = softmax(q_c k_cᵀ/√hd)`` (each row normalised over *that cell's* tokens), and

``M[i, j] = (1 / n_i) Σ_c Σ_h w_h A_{c,h}[i, j]``

with ``n_i`` the number of contexts (cells × draws) in which slot ``i`` appeared and ``A_{c,h}[i, j] = 0`` when
``j`` is not in the context of ``c``. With a fixed context (``genes="hvg"``, ``"expressed"``, a list) every cell
holds every gene and ``M`` is exactly the mean over cells of the head-averaged attention; every row of ``M`` sums
to 1 (cell tokens included), like a row of mean-Q/K.

Streaming: ``M`` is a sum over cells of per-cell quantities, so an :class:`AttentionAccumulator` keeps only the
running sum ``Σ_c Σ_h w_h A_{c,h}`` as one dense ``[T + C, T + C]`` float32 matrix over the slots that can appear
(``C`` = the fixed context, or every mapped gene for genome-wide contexts: about 2.3 GB at 24,000 genes), plus the
per-slot counts ``n_i``. Per batch and layer the per-cell maps are computed flash-attention style — the torch
backend in row blocks of the cells' ``S × S`` attention (exact softmax per row), the Triton backend as a
per-row log-sum-exp pass and a second pass that adds the normalised, head-weighted tiles straight into the
accumulator — so no per-cell map is stored, let alone a ``G × G`` one. Head weights are applied while
accumulating (they are known up front), so the memory does not grow with the number of heads. Sums over
shards of cells (several processes) add up: all-reduce ``attn_sum`` and ``count``. The filtration
(threshold ``1/N``, top-k or none) is applied at the end, on the mean, row block by row block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ._aggregate import (  # Backend / Filtration at run time: the docs resolve the type hints
    Backend,
    Filtration,
    _head_weights,
    check_filtration,
    filter_block,
    resolve_backend,
    stack_rows,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import scipy.sparse as sp


class AttentionAccumulator:
    """Running sum over cells of the head-weighted per-cell attention maps, at the slots of the genes.

    Parameters
    ----------
    n_tokens
        Number of cell tokens ``T`` in front of the genes.
    n_genes
        Number of gene slots ``U`` (genes are addressed by their slot ``0..U-1``).
    layers
        Transformer layers to record.
    nhead
        Attention heads per layer.
    heads, head_weights
        ``(layer position, head)`` pairs to average (``None`` = every head of ``layers``) and their weights
        (``None`` = equal); layer positions index ``layers``.
    genes
        Gene slots that can appear (a fixed context); ``None``: all ``U`` (genome-wide). Tokens of other genes take
        part in each cell's softmax but are not accumulated.
    device
        Where the sums live.
    backend
        ``"torch"``, ``"triton"`` or ``"auto"`` (Triton on CUDA when installed).
    """

    def __init__(
        self,
        *,
        n_tokens: int,
        n_genes: int,
        layers: Sequence[int],
        nhead: int,
        heads: Sequence[tuple[int, int]] | None = None,
        head_weights: Sequence[float] | None = None,
        genes: np.ndarray | None = None,
        device: torch.device | str = "cpu",
        backend: Backend = "auto",
    ) -> None:
        device = torch.device(device)
        self.n_tokens, self.n_genes = n_tokens, n_genes
        self.layers = list(layers)
        self._layer_pos = {layer: i for i, layer in enumerate(self.layers)}
        self.weights = _head_weights(len(self.layers), nhead, heads, head_weights).to(device)
        self.backend = resolve_backend(backend, device)
        genes = np.arange(n_genes) if genes is None else np.asarray(genes, dtype=np.int64)
        if genes.size and (genes.min() < 0 or genes.max() >= n_genes or len(np.unique(genes)) != len(genes)):
            msg = f"`genes` must be distinct gene slots in 0..{n_genes - 1}."
            raise ValueError(msg)
        self.genes = genes
        # slot (tokens, then genes 0..U-1) -> row of the accumulator, -1 when not accumulated
        index = torch.full((n_tokens + n_genes,), -1, dtype=torch.int64)
        index[:n_tokens] = torch.arange(n_tokens)
        index[n_tokens + torch.as_tensor(genes)] = torch.arange(n_tokens, n_tokens + len(genes))
        self._index = index.to(device)
        n = n_tokens + len(genes)
        self.attn_sum = torch.zeros(n, n, dtype=torch.float32, device=device)
        self.count = torch.zeros(n, dtype=torch.float32, device=device)
        self._rows: torch.Tensor | None = None

    def set_batch(self, gene_slots: torch.Tensor) -> None:
        """Declare the gene slots ``[B, S]`` of the next batch (before running the model on it)."""
        b = gene_slots.shape[0]
        tokens = torch.arange(self.n_tokens, device=gene_slots.device).expand(b, -1)
        slots = torch.cat([tokens, gene_slots + self.n_tokens], dim=1).to(self._index.device)
        self._rows = self._index[slots]
        seen = self._rows[self._rows >= 0]
        self.count.index_add_(0, seen, torch.ones_like(seen, dtype=torch.float32))

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor) -> None:
        """The ``qk_hook`` of :class:`~sc_print.nn.ScPrintNet`: add the attention of ``q, k`` ``[B, T+S, H, hd]``."""
        if self._rows is None:
            msg = "Call set_batch(gene_slots) before running the model."
            raise RuntimeError(msg)
        w = self.weights[self._layer_pos[layer]]
        active = torch.nonzero(w > 0).ravel()
        if active.numel() == 0:
            return
        qa = q[:, :, active].transpose(1, 2)  # [B, A, S, hd]
        ka = k[:, :, active].transpose(1, 2)
        with torch.autocast(q.device.type, enabled=False):
            if self.backend == "triton":
                from ._triton import attention_sum

                attention_sum(qa, ka, w[active], self._rows, self.attn_sum)
            else:
                attention_sum_torch(qa, ka, w[active], self._rows, self.attn_sum)

    @property
    def seen(self) -> np.ndarray:
        """Positions (in ``0..U-1``) of the gene slots seen at least once, in the network's row order."""
        seen = self.count[self.n_tokens :].cpu().numpy() > 0
        return self.genes[seen]


def attention_sum_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    w: torch.Tensor,
    rows: torch.Tensor,
    acc: torch.Tensor,
    *,
    max_elements: int = 2**24,
) -> None:
    """Torch version of ``_triton.attention_sum``: ``acc[rows[b,i], rows[b,j]] += Σ_a w_a softmax(q kᵀ/√hd)[i, j]``.

    ``q, k``: ``[B, A, S, hd]``; ``w``: ``[A]``; ``rows``: ``[B, S]`` (``-1``: not accumulated); ``acc``: ``[N, N]``.
    Query rows go in blocks of at most ``max_elements`` scores.
    """
    b, a, s, hd = q.shape
    n = acc.shape[1]
    q, k = q.float(), k.float()
    w = w.to(device=q.device, dtype=torch.float32)[None, :, None, None]
    scale = hd**-0.5
    step = max(1, max_elements // max(1, b * a * s))
    # a fixed context: every cell has the same slots in the same order -> add the cells up before scattering
    shared = bool((rows == rows[:1]).all())
    cols = rows[:1] if shared else rows
    col_ok = cols >= 0
    flat = acc.view(-1)
    for start in range(0, s, step):
        stop = min(start + step, s)
        probs = torch.softmax(q[:, :, start:stop] @ k.transpose(-1, -2) * scale, dim=-1)
        mixed = (w * probs).sum(1)  # [B, rows, S]
        if shared:
            mixed = mixed.sum(0, keepdim=True)
        r = cols[:, start:stop]
        ok = (r >= 0)[:, :, None] & col_ok[:, None, :]
        idx = r[:, :, None] * n + cols[:, None, :]
        flat.index_add_(0, idx[ok], mixed[ok])


def mean_attention_network(
    acc: AttentionAccumulator,
    *,
    filtration: Filtration = "threshold",
    top_k: int = 20,
    block_rows: int = 1024,
) -> sp.csr_matrix:
    """The filtered mean-attention network of the genes seen by ``acc``.

    Parameters
    ----------
    acc
        A filled :class:`AttentionAccumulator`.
    filtration, top_k
        As in :func:`~sc_print.grn.attention_network`; the threshold is ``1/N`` with ``N`` the seen slots (cell
        tokens included), the same rule as mean-Q/K.
    block_rows
        Rows filtered at once.

    Returns
    -------
    ``[G, G]`` CSR float32 over the genes ``acc.seen`` (row ``i`` = query gene).
    """
    check_filtration(filtration)
    seen = torch.nonzero(acc.count > 0).ravel()
    genes = seen[seen >= acc.n_tokens]
    n, g = len(seen), len(genes)
    chunks = []
    for start in range(0, g, block_rows):
        r = genes[start : start + block_rows]
        block = acc.attn_sum[r][:, genes] / acc.count[r][:, None]
        chunks.append(filter_block(block, filtration=filtration, threshold=1.0 / max(n, 1), top_k=top_k))
    return stack_rows(chunks, g)
