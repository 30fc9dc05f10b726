"""Output heads: the expression decoder (ZINB / NB / MSE) and the per-label classifiers."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

ExprDecoderKind = Literal["zinb", "nb", "mse"]


class ExprParams(NamedTuple):
    """Expression-decoder outputs for the genes in context, each ``[B, S]``.

    ``mu`` is the negative-binomial mean, ``theta`` the inverse dispersion (``None`` for MSE) and
    ``pi_logits`` the zero-inflation logits (``None`` unless ZINB; ``sigmoid(pi_logits)`` is the
    dropout probability).
    """

    mu: torch.Tensor
    theta: torch.Tensor | None
    pi_logits: torch.Tensor | None


class ExprDecoder(nn.Module):
    """``fc`` (Linear → LN → LeakyReLU → Dropout → Linear → LN → LeakyReLU) then ``pred_var_zero``.

    The mean is ``softmax(mean_logit over the context genes) * depth_mult``: the decoded profile
    sums to the requested depth.

    Parameters
    ----------
    d_model
        Token width.
    kind
        ``"zinb"`` (3 outputs: mean, dispersion, zero logits, in that order), ``"nb"`` (2) or
        ``"mse"`` (1).
    depth_input
        Concatenate ``log2(1 + depth)`` to every gene token first (checkpoints without a depth token).
    dropout
        Dropout between the two layers.
    """

    N_OUT = {"zinb": 3, "nb": 2, "mse": 1}

    def __init__(
        self, d_model: int, *, kind: ExprDecoderKind = "zinb", depth_input: bool = False, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if kind not in self.N_OUT:
            msg = f"Unknown expression decoder {kind!r}; choose one of {sorted(self.N_OUT)}."
            raise ValueError(msg)
        self.kind, self.depth_input = kind, depth_input
        self.fc = nn.Sequential(
            nn.Linear(d_model + int(depth_input), d_model),
            nn.LayerNorm(d_model),
            nn.LeakyReLU(),
            nn.Dropout(dropout),
            nn.Linear(d_model, d_model),
            nn.LayerNorm(d_model),
            nn.LeakyReLU(),
        )
        self.pred_var_zero = nn.Linear(d_model, self.N_OUT[kind])

    def forward(
        self, gene_out: torch.Tensor, depth_mult: torch.Tensor, log_depth: torch.Tensor | None = None
    ) -> ExprParams:
        """Decode ``gene_out`` ``[B, S, d]``; ``depth_mult`` ``[B]`` scales the mean; ``log_depth`` ``[B]``."""
        if self.depth_input:
            if log_depth is None:
                msg = "This decoder takes the cell depth as input; pass log_depth."
                raise ValueError(msg)
            gene_out = torch.cat([gene_out, log_depth[:, None, None].expand(-1, gene_out.shape[1], 1)], dim=-1)
        out = self.pred_var_zero(self.fc(gene_out)).float()
        mu = out[..., 0].softmax(dim=-1) * depth_mult[:, None]
        theta = torch.exp(out[..., 1].clamp(max=15)) if self.kind != "mse" else None
        pi_logits = out[..., 2] if self.kind == "zinb" else None
        return ExprParams(mu, theta, pi_logits)


class GenePool(nn.Module):
    """Attention pooling of a cell's output gene tokens: a per-token MLP, then ``n_queries`` learned softmax pools.

    Each token ``h`` becomes ``f = phi(h)`` (Linear → LayerNorm → GELU → Linear, width ``width``); query ``q``
    weights the genes by ``softmax_s(f_s · q)`` and the pooled vector is the mean over queries of the weighted sum
    of ``f``. It is a set read-out (Lee et al. 2019, "pooling by multihead attention"): a function of the genes in
    the cell's context that does not depend on their order.

    Parameters
    ----------
    d_model
        Token width.
    width
        Width of ``phi`` and of the pooled vector.
    n_queries
        Learned queries.
    """

    def __init__(self, d_model: int, *, width: int = 256, n_queries: int = 4) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(d_model, width), nn.LayerNorm(width), nn.GELU(), nn.Linear(width, width))
        self.queries = nn.Parameter(torch.randn(n_queries, width) * 0.02)
        self.width = width

    def forward(self, genes: torch.Tensor) -> torch.Tensor:
        """``[B, S, d]`` gene tokens → ``[B, width]``."""
        f = self.phi(genes)
        weights = torch.einsum("bsw,qw->bqs", f, self.queries.to(f.dtype)).softmax(dim=-1)
        return torch.einsum("bqs,bsw->bw", weights, f) / self.queries.shape[0]


class ExpressionReadout(nn.Module):
    """Linear read-out of a cell's context expression: one learned weight per (vocabulary gene, class).

    The logit of class ``c`` is ``b[c] + sum_s W[gene_s, c] * log1p(1e4 * x_s / sum_s x_s)`` over the genes ``s``
    in the cell's context (``torch.nn.functional.embedding_bag``, weighted sum). Normalising by the counts in
    context makes the value unchanged, on average, by the random removal of counts of denoising training. It is
    the "wide" part of a wide-and-deep classifier (Cheng et al. 2016): a logistic regression on the genes the
    model is shown, trained jointly with the head that reads the transformer outputs. Zeros at init.

    Parameters
    ----------
    n_genes
        Vocabulary size.
    n_classes
        Leaf classes.
    """

    SCALE = 1e4

    def __init__(self, n_genes: int, n_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_genes, n_classes))
        self.bias = nn.Parameter(torch.zeros(n_classes))

    @classmethod
    def values(cls, expr: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` counts → ``log1p`` of the counts per ``SCALE`` counts in context."""
        expr = expr.float()
        return torch.log1p(expr / expr.sum(-1, keepdim=True).clamp_min(1.0) * cls.SCALE)

    def forward(self, gene_idx: torch.Tensor, expr: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` vocabulary indices and counts → ``[B, n_classes]`` logits."""
        return F.embedding_bag(gene_idx, self.weight, per_sample_weights=self.values(expr), mode="sum") + self.bias


class ClsDecoder(nn.Module):
    """Classifier on one cell token: (Linear → LayerNorm → ReLU → Dropout)* then ``out_layer`` (leaf logits).

    With ``gene_pool``, the classifier also reads a :class:`GenePool` of the cell's output gene tokens: its input
    is ``LayerNorm([token, pool(genes)])`` (then dropout), and ``layers`` are not used. With ``readout_genes``,
    an :class:`ExpressionReadout` of the cell's context expression is added to the logits.

    Parameters
    ----------
    d_model
        Token width.
    n_classes
        Leaf classes.
    layers
        Hidden widths (token-only classifiers).
    dropout
        Dropout of the hidden layers (and of the pooled input).
    gene_pool
        ``None`` or ``{"width": int, "n_queries": int}`` of the :class:`GenePool`.
    readout_genes
        ``None`` or the vocabulary size of an :class:`ExpressionReadout`.
    """

    def __init__(
        self,
        d_model: int,
        n_classes: int,
        *,
        layers: list[int] | tuple[int, ...] = (),
        dropout: float = 0.1,
        gene_pool: dict[str, int] | None = None,
        readout_genes: int | None = None,
    ) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        width = d_model
        self.pool = GenePool(d_model, **gene_pool) if gene_pool else None
        if self.pool is not None:
            width = d_model + self.pool.width
            modules = [nn.LayerNorm(width), nn.Dropout(dropout)]
        else:
            for h in layers:
                modules += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU(), nn.Dropout(dropout)]
                width = h
        self.decoder = nn.Sequential(*modules)
        self.out_layer = nn.Linear(width, n_classes)
        self.readout = ExpressionReadout(readout_genes, n_classes) if readout_genes else None

    def forward(
        self,
        x: torch.Tensor,
        genes: torch.Tensor | None = None,
        context: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``[B, d]`` token → ``[B, n_classes]`` logits.

        A pooling classifier also needs ``genes``, the ``[B, S, d]`` output gene tokens; one with a read-out needs
        ``context``, the ``([B, S] vocabulary indices, [B, S] counts)`` of the genes in context.
        """
        return self.add_readout(self.deep_logits(x, genes), context)

    def add_readout(self, deep: torch.Tensor, context: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The classifier's logits from its :meth:`deep_logits`: plus the expression read-out when it has one."""
        if self.readout is None:
            return deep
        if context is None:
            msg = "This classifier reads the context expression too; pass `context=(gene_idx, expr)`."
            raise ValueError(msg)
        return deep + self.readout(*context)

    def deep_logits(self, x: torch.Tensor, genes: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, n_classes]`` logits of the token (and pool) part alone, without the expression read-out."""
        if self.pool is not None:
            if genes is None:
                msg = "This classifier reads the output gene tokens too; pass `genes`."
                raise ValueError(msg)
            x = torch.cat([x, self.pool(genes)], dim=-1)
        return self.out_layer(self.decoder(x)).float()
