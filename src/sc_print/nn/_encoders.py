"""Token encoders: gene identity, expression value, genomic position, depth and cell/class tokens."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

Normalization = Literal["sum", "log"]


class GeneEncoder(nn.Module):
    """Gene-identity embedding table ``[G, d]`` (official checkpoints: frozen pooled ESM2; ours: learned)."""

    def __init__(self, n_genes: int, d_model: int, *, freeze: bool = False) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(n_genes, d_model)
        self.embeddings.weight.requires_grad_(not freeze)

    def forward(self, gene_idx: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` vocabulary indices → ``[B, S, d]``."""
        return self.embeddings(gene_idx)


class ContinuousValueEncoder(nn.Module):
    """MLP of a scalar: clamp to ``[0, max_value]`` → Linear(1, d) → (LayerNorm → ReLU → Dropout → Linear)*.

    Keys ``encoder.0`` (Linear 1→d), ``encoder.1`` (LayerNorm), ``encoder.4`` (Linear d→d) with 2 layers.
    """

    def __init__(self, d_model: int, *, layers: int = 2, dropout: float = 0.1, max_value: float = 100_000) -> None:
        super().__init__()
        self.max_value = max_value
        modules: list[nn.Module] = [nn.Linear(1, d_model)]
        for _ in range(layers - 1):
            modules += [nn.LayerNorm(d_model), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_model, d_model)]
        self.encoder = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[...]`` values → ``[..., d]``; positions where ``mask`` is True get a zero vector."""
        out = self.encoder(x.clamp(0, self.max_value).unsqueeze(-1))
        if mask is not None:
            out = out.masked_fill(mask.unsqueeze(-1), 0.0)
        return out


def normalize_expression(expr: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """Input transform of the expression MLP.

    ``"log"``: ``log2(1 + x)``. ``"sum"``: ``x / sum(x over the genes in context)`` (older checkpoints;
    note that the value then depends on which genes are in the context).
    """
    if normalization == "log":
        return torch.log2(1 + expr)
    if normalization == "sum":
        return expr / expr.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    msg = f"Unknown normalization {normalization!r}; use 'log' or 'sum'."
    raise ValueError(msg)


def sinusoid_table(n_positions: int, d_model: int) -> torch.Tensor:
    """Standard sinusoid (base 10000; sin on even, cos on odd dims) at positions ``0..n_positions-1``."""
    position = torch.arange(n_positions, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(n_positions, d_model)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table


class PositionalEncoding(nn.Module):
    """Genomic-position encoding gathered per gene: buffer ``pe [G, d]`` (official files: ``[G, 1, d]``).

    ``gene_pos`` holds one 1-based locus-cluster index per vocabulary gene (genes closer than 10 kb
    share a position); gene ``g`` gets row ``gene_pos[g] - 1`` of the sinusoid table.
    """

    def __init__(self, d_model: int, gene_pos: torch.Tensor) -> None:
        super().__init__()
        gene_pos = torch.as_tensor(gene_pos, dtype=torch.long)
        table = sinusoid_table(int(gene_pos.max()) if len(gene_pos) else 1, d_model)
        self.register_buffer("pe", table[(gene_pos - 1).clamp_min(0)])

    def forward(self, gene_idx: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` vocabulary indices → ``[B, S, d]``."""
        return self.pe[gene_idx]


class CategoryValueEncoder(nn.Module):
    """Embedding of small categorical values (cell/class placeholder tokens)."""

    def __init__(self, n: int, d_model: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n, d_model)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Indices → embeddings."""
        return self.embedding(idx)
