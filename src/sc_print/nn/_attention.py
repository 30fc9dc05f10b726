"""Attention backends behind one function.

``attention(q, k, v)`` takes ``[B, Sq, H, hd]`` queries and ``[B, S, Hkv, hd]`` keys/values
(``Hkv`` divides ``H``: grouped-query attention, query head ``h`` uses kv head ``h // (H // Hkv)``)
and returns ``[B, Sq, H, hd]`` (``Sq = S`` except when only the cell tokens are needed). No mask, no causality: scPRINT attends over an unordered gene set.

Backends
--------
``"sdpa"`` (default)
    :func:`torch.nn.functional.scaled_dot_product_attention`; on CPU it runs the fused flash kernel
    (fp32/bf16) and on CUDA it dispatches to FlashAttention-2 / memory-efficient kernels in bf16/fp16.
``"flash_attn"``
    The ``flash-attn`` package (``pip install 'sc-print[gpu]'``), CUDA + fp16/bf16 only.
``"math"``
    Explicit ``softmax(QKᵀ/√d)V`` in the input dtype; a readable reference used in tests.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Literal

import torch
import torch.nn.functional as F

AttentionBackend = Literal["sdpa", "flash_attn", "math"]
BACKENDS: tuple[str, ...] = ("sdpa", "flash_attn", "math")


def flash_attn_available() -> bool:
    """Whether the optional ``flash-attn`` package is importable and CUDA is present."""
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def _repeat_kv(t: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat kv heads so that query head ``h`` sees kv head ``h // n_rep`` (``[B, S, Hkv, hd]``)."""
    return t if n_rep == 1 else t.repeat_interleave(n_rep, dim=2)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    backend: AttentionBackend = "sdpa",
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Bidirectional multi-head attention with optional grouped-query heads.

    Parameters
    ----------
    q
        Queries ``[B, Sq, H, hd]`` (``Sq <= S``: a subset of the tokens may query).
    k, v
        Keys and values ``[B, S, Hkv, hd]``.
    backend
        One of :data:`BACKENDS` (see the module docstring).
    dropout_p
        Dropout on the attention probabilities (pass 0 in eval mode).

    Returns
    -------
    ``[B, Sq, H, hd]`` attention output.
    """
    n_rep = q.shape[2] // k.shape[2]
    if backend == "flash_attn":
        if not (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)):
            msg = "The flash_attn backend needs CUDA tensors in float16/bfloat16; use backend='sdpa' elsewhere."
            raise ValueError(msg)
        from flash_attn import flash_attn_func

        return flash_attn_func(q, k, v, dropout_p=dropout_p, causal=False)
    if backend == "math":
        k, v = _repeat_kv(k, n_rep), _repeat_kv(v, n_rep)
        scores = torch.einsum("bshd,bthd->bhst", q, k) / math.sqrt(q.shape[-1])
        probs = scores.softmax(dim=-1)
        if dropout_p > 0:
            probs = F.dropout(probs, p=dropout_p)
        return torch.einsum("bhst,bthd->bshd", probs, v)
    if backend != "sdpa":
        msg = f"Unknown attention backend {backend!r}; choose one of {BACKENDS}."
        raise ValueError(msg)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        dropout_p=dropout_p,
        enable_gqa=n_rep > 1,
    )
    return out.transpose(1, 2)
