"""``torchvision.ops`` stand-in: stochastic depth only."""

from __future__ import annotations

import torch
from torch import nn


def stochastic_depth(input: torch.Tensor, p: float, mode: str, training: bool = True) -> torch.Tensor:
    """Drop whole rows (``mode="row"``) or the whole batch (``mode="batch"``) with probability ``p``.

    Parameters
    ----------
    input
        Tensor whose first dimension is the batch.
    p
        Drop probability.
    mode
        ``"row"`` or ``"batch"``.
    training
        Identity when False.

    Returns
    -------
    The input, with dropped rows zeroed and kept rows scaled by ``1 / (1 - p)``.
    """
    if p < 0.0 or p > 1.0:
        msg = f"drop probability has to be between 0 and 1, got {p}"
        raise ValueError(msg)
    if mode not in ("batch", "row"):
        msg = f"mode has to be 'batch' or 'row', got {mode!r}"
        raise ValueError(msg)
    if not training or p == 0.0:
        return input
    survival = 1.0 - p
    shape = [input.shape[0]] + [1] * (input.ndim - 1) if mode == "row" else [1] * input.ndim
    noise = torch.empty(shape, dtype=input.dtype, device=input.device).bernoulli_(survival)
    if survival > 0.0:
        noise.div_(survival)
    return input * noise


class StochasticDepth(nn.Module):
    """Module form of :func:`stochastic_depth`."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return stochastic_depth(input, self.p, self.mode, self.training)


__all__ = ["StochasticDepth", "stochastic_depth"]
