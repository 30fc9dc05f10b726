"""Hierarchical classification loss and hierarchy-aware probabilities (pure torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    import numpy as np

# Elements of the [rows, n_parents, n_leaves] temporaries built by hierarchical_probabilities per chunk.
_CHUNK_ELEMENTS = 1 << 24


def _as_parent_tensor(
    parent_matrix: torch.Tensor | np.ndarray | None, n_leaves: int, device: torch.device
) -> torch.Tensor:
    if parent_matrix is None:
        return torch.zeros((0, n_leaves), dtype=torch.bool, device=device)
    matrix = torch.as_tensor(parent_matrix, device=device)
    if matrix.ndim != 2 or matrix.shape[1] != n_leaves:
        msg = f"parent_matrix must have shape [n_parents, n_leaves={n_leaves}], got {tuple(matrix.shape)}."
        raise ValueError(msg)
    return matrix.bool()


def hierarchical_classification_loss(
    logits: torch.Tensor,
    codes: torch.Tensor,
    parent_matrix: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Hierarchical classification loss of scPRINT for one label.

    Binary cross-entropy with logits against a one-hot target over the leaves:

    - a row whose truth is a leaf ``l`` has target 1 on ``l`` and 0 on the other leaves, all with weight 1;
    - a row whose truth is unknown (``-1``), or a parent without leaf descendants, has weight 0
      everywhere (no gradient);
    - a row whose truth is a parent ``p`` (code ``n_leaves + p``) has weight 0 on ``p``'s leaf descendants
      (which of them is right is unknown) and weight 1 on the other leaves (target 0), plus one extra
      logit ``logsumexp(logits of p's descendants)`` with target 1 and weight ``1/sqrt(#descendants)``
      (the reference's weight), so the coarse label trains through its leaves.

    Normalisation: the weighted sum of all terms is divided by ``B * n_leaves``, the number of leaf
    logits. Unknown rows and zero-weight entries stay in the denominator, as in the reference's
    ``binary_cross_entropy_with_logits(..., weight=w)`` (``reduction="mean"``). For a batch whose truths
    are all leaves or unknown this is exactly the reference's value. Two deliberate differences when a
    batch holds parent truths: the reference then also averages over ``n_parents`` extra columns
    (``B * (n_leaves + n_parents)``), so its loss scale jumps with the batch composition, and it adds extra
    positive terms for every parent overlapping the truth's descendants (including ancestors of leaf
    truths, but only in such batches). Here only the truth parent's own term is added and the
    denominator never changes.

    Parameters
    ----------
    logits
        ``[B, n_leaves]`` classifier outputs (leaves only).
    codes
        ``[B]`` integer codes from :meth:`~sc_print.ontology.LabelHierarchy.encode`: leaf index, ``n_leaves +
        parent index`` or ``-1``.
    parent_matrix
        ``bool [n_parents, n_leaves]``, row ``p`` marking ``p``'s leaf descendants
        (:attr:`~sc_print.ontology.LabelHierarchy.parent_matrix`). Needed when ``codes`` hold parents.

    Returns
    -------
    Scalar loss tensor (0 with zero gradient when every truth is unknown).
    """
    if logits.ndim != 2:
        msg = f"logits must be [batch, n_leaves], got shape {tuple(logits.shape)}."
        raise ValueError(msg)
    n_cells, n_leaves = logits.shape
    codes = torch.as_tensor(codes, device=logits.device)
    if codes.shape != (n_cells,) or codes.is_floating_point():
        msg = f"codes must be an integer tensor of shape [{n_cells}], got {codes.dtype} {tuple(codes.shape)}."
        raise ValueError(msg)
    codes = codes.long()
    matrix = _as_parent_tensor(parent_matrix, n_leaves, logits.device)
    n_parents = matrix.shape[0]
    if n_cells and (int(codes.min()) < -1 or int(codes.max()) >= n_leaves + n_parents):
        msg = (
            f"codes must lie in -1..{n_leaves + n_parents - 1} (n_leaves={n_leaves}, n_parents={n_parents}); "
            "pass the hierarchy's parent_matrix when labels include parent terms."
        )
        raise ValueError(msg)

    logits_f = logits if logits.dtype == torch.float64 else logits.float()  # half → float32; float64 kept
    known = codes >= 0
    is_leaf = known & (codes < n_leaves)
    is_parent = codes >= n_leaves
    target = F.one_hot(codes.clamp(0, n_leaves - 1), n_leaves).to(logits_f.dtype) * is_leaf.unsqueeze(1)
    denominator = max(n_cells * n_leaves, 1)
    if n_parents == 0:
        weight = known.unsqueeze(1).expand(n_cells, n_leaves).to(logits_f.dtype)
        return F.binary_cross_entropy_with_logits(logits_f, target, weight=weight, reduction="sum") / denominator

    # [B, n_leaves]: leaf descendants of the truth parent (all False on rows whose truth is not a parent)
    desc = matrix[(codes - n_leaves).clamp(0, n_parents - 1)] & is_parent.unsqueeze(1)
    n_desc = desc.sum(1)
    has_desc = n_desc > 0
    # a parent without leaf descendants says nothing about the leaves: treat its rows as unknown
    trained = known & ~(is_parent & ~has_desc)
    weight = (trained.unsqueeze(1) & ~desc).to(logits_f.dtype)
    leaf_terms = F.binary_cross_entropy_with_logits(logits_f, target, weight=weight, reduction="sum")

    # rows without descendants reduce over every leaf so that logsumexp and its gradient stay finite;
    # their extra term has weight 0
    reduce_mask = desc | ~has_desc.unsqueeze(1)
    extra_logit = torch.logsumexp(logits_f.masked_fill(~reduce_mask, float("-inf")), dim=1)
    extra_weight = has_desc.to(logits_f.dtype) / n_desc.clamp(min=1).to(logits_f.dtype).sqrt()
    extra_terms = F.binary_cross_entropy_with_logits(
        extra_logit, torch.ones_like(extra_logit), weight=extra_weight, reduction="sum"
    )
    return (leaf_terms + extra_terms) / denominator


def hierarchical_probabilities(
    logits: torch.Tensor,
    parent_matrix: torch.Tensor | np.ndarray | None = None,
    *,
    method: Literal["noisy_or", "max", "logsumexp"] = "noisy_or",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leaf and parent probabilities from leaf logits.

    The leaves are trained as independent binary outputs, so a leaf's probability is ``sigmoid(logit)``.
    A parent's probability combines its leaf descendants:

    - ``"noisy_or"`` (default): ``1 - prod(1 - p_leaf)``, the chance that at least one descendant is
      present when the leaf outputs are independent (computed stably as ``-expm1(-sum softplus(logit))``);
    - ``"max"``: the largest descendant probability (a lower bound, never above ``"noisy_or"``);
    - ``"logsumexp"``: ``sigmoid(logsumexp(descendant logits))``, the quantity the loss trains for cells
      labelled with the parent; it lies between the two others.

    A parent without descendants gets probability 0.

    Parameters
    ----------
    logits
        ``[B, n_leaves]`` classifier outputs.
    parent_matrix
        ``bool [n_parents, n_leaves]`` (``None``: no parents).
    method
        How parent probabilities are formed, see above.

    Returns
    -------
    ``leaf_proba [B, n_leaves]`` and ``parent_proba [B, n_parents]`` (float32, same device as ``logits``).
    """
    if logits.ndim != 2:
        msg = f"logits must be [batch, n_leaves], got shape {tuple(logits.shape)}."
        raise ValueError(msg)
    if method not in ("noisy_or", "max", "logsumexp"):
        msg = f"method must be 'noisy_or', 'max' or 'logsumexp', got {method!r}."
        raise ValueError(msg)
    logits_f = logits if logits.dtype == torch.float64 else logits.float()  # half → float32; float64 kept
    leaf_proba = torch.sigmoid(logits_f)
    matrix = _as_parent_tensor(parent_matrix, logits.shape[1], logits.device)
    n_parents = matrix.shape[0]
    if n_parents == 0:
        return leaf_proba, logits_f.new_zeros((logits.shape[0], 0))
    has_desc = matrix.any(1)
    if method == "noisy_or":
        log_none = F.softplus(logits_f) @ matrix.T.to(logits_f.dtype)  # -sum log(1 - p) over descendants
        return leaf_proba, -torch.expm1(-log_none)
    rows = max(1, _CHUNK_ELEMENTS // max(1, n_parents * logits.shape[1]))
    source = leaf_proba if method == "max" else logits_f
    fill = 0.0 if method == "max" else float("-inf")
    safe = matrix | ~has_desc.unsqueeze(1)  # keep reductions finite for parents without descendants
    chunks = []
    for start in range(0, logits.shape[0], rows):
        block = source[start : start + rows].unsqueeze(1).masked_fill(~safe.unsqueeze(0), fill)
        if method == "max":
            chunks.append(block.amax(-1))
        else:
            chunks.append(torch.sigmoid(torch.logsumexp(block, -1)))
    parent_proba = torch.cat(chunks, 0) * has_desc.to(logits_f.dtype)
    return leaf_proba, parent_proba
