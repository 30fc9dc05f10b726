"""Output heads: the expression decoder (ZINB / NB / MSE) and the per-label classifiers."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
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


class ClsDecoder(nn.Module):
    """Classifier on one cell token: (Linear → LayerNorm → ReLU → Dropout)* then ``out_layer`` (leaf logits)."""

    def __init__(
        self, d_model: int, n_classes: int, *, layers: list[int] | tuple[int, ...] = (), dropout: float = 0.1
    ) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        width = d_model
        for h in layers:
            modules += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.decoder = nn.Sequential(*modules)
        self.out_layer = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` token → ``[B, n_classes]`` logits."""
        return self.out_layer(self.decoder(x)).float()
