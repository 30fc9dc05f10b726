"""Pretraining losses of scPRINT (pure torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-8


def zinb_log_likelihood(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, pi_logits: torch.Tensor, eps: float = EPS
) -> torch.Tensor:
    """Element-wise log-likelihood of counts ``x`` under ZINB(``mu``, ``theta``, ``pi``).

    Same parameterisation as scvi-tools' ``ZeroInflatedNegativeBinomial`` (``zi_logits``): the zero
    component has probability ``sigmoid(pi_logits)``.
    """
    softplus_pi = F.softplus(-pi_logits)
    log_theta_eps = torch.log(theta + eps)
    log_theta_mu_eps = torch.log(theta + mu + eps)
    pi_theta_log = -pi_logits + theta * (log_theta_eps - log_theta_mu_eps)
    case_zero = F.softplus(pi_theta_log) - softplus_pi
    case_non_zero = (
        -softplus_pi
        + pi_theta_log
        + x * (torch.log(mu + eps) - log_theta_mu_eps)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )
    return torch.where(x < eps, case_zero, case_non_zero)


def nb_log_likelihood(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Element-wise negative-binomial log-likelihood (mean ``mu``, inverse dispersion ``theta``)."""
    log_theta_mu_eps = torch.log(theta + mu + eps)
    return (
        theta * (torch.log(theta + eps) - log_theta_mu_eps)
        + x * (torch.log(mu + eps) - log_theta_mu_eps)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


def zinb_loss(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, pi_logits: torch.Tensor) -> torch.Tensor:
    """Mean ZINB negative log-likelihood over every gene in context."""
    return -zinb_log_likelihood(x, mu, theta, pi_logits).mean()


def nb_loss(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Mean NB negative log-likelihood over every gene in context."""
    return -nb_log_likelihood(x, mu, theta).mean()


def mse_loss(x: torch.Tensor, mu: torch.Tensor, scale: float = 1e4) -> torch.Tensor:
    """MSE between ``log2(1 + ·)`` of the two profiles, each rescaled to sum ``scale`` per cell."""

    def _norm(t: torch.Tensor) -> torch.Tensor:
        return torch.log2(1 + t / t.sum(-1, keepdim=True).clamp_min(EPS) * scale)

    return F.mse_loss(_norm(mu), _norm(x))


def expression_loss(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor | None, pi_logits: torch.Tensor | None
) -> torch.Tensor:
    """ZINB, NB or MSE loss depending on which parameters the decoder produced."""
    if theta is None:
        return mse_loss(x, mu)
    if pi_logits is None:
        return nb_loss(x, mu, theta)
    return zinb_loss(x, mu, theta, pi_logits)


def token_dissimilarity(cell_tokens: torch.Tensor) -> torch.Tensor:
    """Mean absolute cosine similarity between different cell tokens of the same cell (paper code).

    ``cell_tokens`` is ``[B, T, d]``; minimising this keeps the per-label embeddings distinct.
    """
    t = F.normalize(cell_tokens.float(), dim=-1)
    cos = torch.einsum("btd,bud->btu", t, t).abs().mean(0)
    n = cos.shape[0]
    if n < 2:
        return cos.new_zeros(())
    return (cos * (1 - torch.eye(n, device=cos.device))).sum() / (n * n)


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Symmetric InfoNCE (NT-Xent) between two views ``a``, ``b`` ``[B, d]`` of the same cells."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
