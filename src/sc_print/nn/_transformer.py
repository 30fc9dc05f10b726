"""Pre-norm transformer of scPRINT (flash-attn ``Block`` layout, exact GELU, LayerNorm eps 1e-6).

Module names mirror the official checkpoints: ``blocks.{i}.mixer.Wqkv``, ``mixer.out_proj``,
``norm1``, ``norm2``, ``mlp.fc1``, ``mlp.fc2`` and the final ``norm``.

In eval mode a block computes ``x = x + MHA(LN1(x)); x = x + MLP(LN2(x))`` and the stack ends with a
LayerNorm. The residual stream stays float32 under autocast (the ``residual_in_fp32`` of the paper).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ._attention import AttentionBackend, _repeat_kv, attention

#: callable(layer index, q [B, T, H, hd], k [B, T, H, hd]) receiving each requested layer's Q and K
QKHook = Callable[[int, torch.Tensor, torch.Tensor], None]


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p`` (training)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale kept samples by ``1/(1-p)``; identity in eval mode."""
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class MHA(nn.Module):
    """Multi-head self-attention with packed ``Wqkv`` (rows ``[Q | K | V]``, heads contiguous) and GQA."""

    def __init__(self, d_model: int, nhead: int, num_heads_kv: int | None = None) -> None:
        super().__init__()
        num_heads_kv = nhead if num_heads_kv is None else num_heads_kv
        if d_model % nhead or nhead % num_heads_kv:
            msg = (
                f"d_model ({d_model}) must be divisible by nhead ({nhead}) and nhead by num_heads_kv ({num_heads_kv})."
            )
            raise ValueError(msg)
        self.nhead, self.num_heads_kv, self.head_dim = nhead, num_heads_kv, d_model // nhead
        self.Wqkv = nn.Linear(d_model, (nhead + 2 * num_heads_kv) * self.head_dim)
        self.out_proj = nn.Linear(d_model, d_model)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project ``x`` ``[B, T, d]`` to ``q [B,T,H,hd]``, ``k, v [B,T,Hkv,hd]``."""
        b, t, _ = x.shape
        qkv = self.Wqkv(x)
        hq, hk = self.nhead * self.head_dim, self.num_heads_kv * self.head_dim
        q = qkv[..., :hq].view(b, t, self.nhead, self.head_dim)
        k = qkv[..., hq : hq + hk].view(b, t, self.num_heads_kv, self.head_dim)
        v = qkv[..., hq + hk :].view(b, t, self.num_heads_kv, self.head_dim)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        *,
        backend: AttentionBackend = "sdpa",
        qk_out: list | None = None,
        n_queries: int | None = None,
    ) -> torch.Tensor:
        """Attend; when ``qk_out`` is a list, append ``(q, k)`` with kv heads repeated to ``H``.

        With ``n_queries``, only the first ``n_queries`` tokens query (over all keys): the output is
        ``[B, n_queries, d]``.
        """
        q, k, v = self.qkv(x)
        if qk_out is not None:
            qk_out.append((q, _repeat_kv(k, self.nhead // self.num_heads_kv)))
        if n_queries is not None:
            q = q[:, :n_queries]
        out = attention(q, k, v, backend=backend)
        return self.out_proj(out.reshape(q.shape[0], q.shape[1], -1))


class Mlp(nn.Module):
    """``fc1 -> GELU (exact) -> fc2``."""

    def __init__(self, d_model: int, dim_feedforward: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, dim_feedforward)
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(dim_feedforward, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the feed-forward network."""
        return self.fc2(self.activation(self.fc1(x)))


class Block(nn.Module):
    """One pre-norm transformer block."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        *,
        num_heads_kv: int | None = None,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, eps=1e-6)
        self.mixer = MHA(d_model, nhead, num_heads_kv)
        self.dropout1 = nn.Dropout(dropout)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-6)
        self.mlp = Mlp(d_model, dim_feedforward or 4 * d_model)
        self.dropout2 = nn.Dropout(dropout)
        self.drop_path2 = DropPath(drop_path)

    def forward(
        self,
        x: torch.Tensor,
        *,
        backend: AttentionBackend = "sdpa",
        qk_out: list | None = None,
        n_outputs: int | None = None,
    ) -> torch.Tensor:
        """``x`` is the float32 residual stream ``[B, T, d]``.

        With ``n_outputs``, only the first ``n_outputs`` tokens are updated (they still attend to every
        token) and the block returns ``[B, n_outputs, d]``: the attention output and MLP of the other tokens
        are never computed.
        """
        h = self.mixer(self.norm1(x), backend=backend, qk_out=qk_out, n_queries=n_outputs)
        if n_outputs is not None:
            x = x[:, :n_outputs]
        x = x + self.drop_path1(self.dropout1(h)).float()
        h = self.mlp(self.norm2(x))
        return x + self.drop_path2(self.dropout2(h)).float()


class Transformer(nn.Module):
    """Stack of pre-norm blocks followed by a final LayerNorm.

    Parameters
    ----------
    d_model, nhead, nlayers
        Width, attention heads and depth.
    num_heads_kv
        Key/value heads for grouped-query attention (``None`` = ``nhead``).
    dim_feedforward
        Hidden width of the MLP (``None`` = ``4 * d_model``).
    dropout
        Residual dropout.
    drop_path_rate
        Stochastic-depth rate of the last block (linear schedule from 0).
    backend
        Attention backend (see :func:`sc_print.nn.attention`).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        nlayers: int,
        *,
        num_heads_kv: int | None = None,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        drop_path_rate: float = 0.0,
        backend: AttentionBackend = "sdpa",
    ) -> None:
        super().__init__()
        rates = [drop_path_rate * i / max(nlayers - 1, 1) for i in range(nlayers)]
        self.blocks = nn.ModuleList(
            Block(
                d_model,
                nhead,
                num_heads_kv=num_heads_kv,
                dim_feedforward=dim_feedforward,
                dropout=dropout,
                drop_path=rate,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(d_model, eps=1e-6)
        self.backend: AttentionBackend = backend

    def forward(
        self,
        x: torch.Tensor,
        *,
        qk_hook: QKHook | None = None,
        qk_layers: Sequence[int] | None = None,
        stop_after_qk: bool = False,
        n_outputs: int | None = None,
    ) -> torch.Tensor | None:
        """Run the stack on ``x`` ``[B, T, d]``.

        Parameters
        ----------
        x
            Input tokens.
        qk_hook
            Called as ``qk_hook(layer, q, k)`` for every layer in ``qk_layers`` (``None`` = all layers),
            with ``q, k`` of shape ``[B, T, H, hd]`` (kv heads repeated for GQA).
        qk_layers
            Layers (negative indices allowed) whose Q and K go to ``qk_hook``.
        stop_after_qk
            Stop as soon as the last requested Q/K were handed over and return ``None``: the gene-network
            path needs no output, and skips the attention of that layer and every later layer.
        n_outputs
            Return only the first ``n_outputs`` tokens (the cell tokens, for embedding): the last block
            computes queries, attention output and MLP for those tokens only, against the keys and values of
            every token, which gives the same values as slicing the full output.

        Returns
        -------
        ``[B, T, d]`` normalised output (float32; ``[B, n_outputs, d]`` with ``n_outputs``), or ``None`` when
        ``stop_after_qk``.
        """
        n = len(self.blocks)
        wanted = set(range(n)) if qk_layers is None else {i % n for i in qk_layers}
        last = max(wanted) if (qk_hook is not None and wanted) else -1
        x = x.float()
        for i, block in enumerate(self.blocks):
            grab = qk_hook is not None and i in wanted
            if grab and stop_after_qk and i == last:
                q, k, _ = block.mixer.qkv(block.norm1(x))
                qk_hook(i, q, _repeat_kv(k, block.mixer.nhead // block.mixer.num_heads_kv))
                return None
            qk_out: list | None = [] if grab else None
            x = block(x, backend=self.backend, qk_out=qk_out, n_outputs=n_outputs if i == n - 1 else None)
            if grab:
                qk_hook(i, *qk_out[0])
        if stop_after_qk and qk_hook is not None:
            return None
        # each residual branch was dropped once inside its block (the flash-attn layout): no dropout of the
        # whole residual stream here
        return self.norm(x)
