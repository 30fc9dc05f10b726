"""Zero-inflated Poisson downsampling of counts (the denoising corruption of scPRINT)."""

from __future__ import annotations

import torch


def downsample_profile(x: torch.Tensor, p: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Remove about a fraction ``p`` of the counts of ``x`` (reference ``downsample_profile``, method "new").

    With ``p' = 1.1 p``: subtract ``R ~ Poisson(x p'/2)``, clip at 0, then zero each entry with probability
    ``p'/2``. At ``p = 0.6`` this removes about 55 % of the counts of highly expressed genes in expectation
    (less for small counts: the clipping at zero never removes more than the count itself).

    Parameters
    ----------
    x
        Counts (any shape, non-negative).
    p
        Drop level in ``[0, 1)``.
    generator
        Seeded generator for reproducible noise.

    Returns
    -------
    Downsampled counts, same shape and dtype as ``x``.
    """
    if not 0.0 <= p < 1.0:
        msg = f"Downsampling level p must be in [0, 1), got {p}."
        raise ValueError(msg)
    if p == 0:
        return x.clone()
    pp = 1.1 * p
    xf = x.float()
    removed = torch.poisson(xf * (pp / 2), generator=generator)
    keep = torch.rand(xf.shape, generator=generator, device=xf.device) >= pp / 2
    return ((xf - removed).clamp_min(0) * keep).floor().to(x.dtype)
