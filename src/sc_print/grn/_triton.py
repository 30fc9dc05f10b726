"""Triton kernels of the gene-network step (imported only when a Triton backend is asked for).

Three kernels, all blocked flash-attention style over ``[BLOCK_M queries] × [BLOCK_N keys]`` tiles, so no
``S × S`` (or ``G × G``) score matrix is ever materialised:

``_lse_kernel``
    Per-row log-sum-exp of ``q kᵀ · scale`` for every (batch, head) (online max / sum over key blocks).
``_network_kernel`` (``aggregation="mean_qk"``)
    Recomputes the scores of a block of query genes against every gene key, turns them into
    probabilities with the stored log-sum-exp, averages the heads (weights ``w``), and applies the
    filtration in the same pass: ``MODE=0`` counts the edges kept per row (threshold), ``MODE=1`` writes them
    straight into CSR ``indices`` / ``data`` at ``indptr`` (column order, canonical CSR), ``MODE=2`` writes the
    ``TOPK`` strongest edges of every (row, key block) — the exact per-row top-k is then a small ``topk`` over
    these candidates.
``_attention_sum_kernel`` (``aggregation="mean_attention"``)
    For each cell of a batch, adds the head-averaged attention rows ``Σ_h w_h softmax(q_c k_cᵀ · scale)`` into a
    dense ``[N, N]`` accumulator at the cells' slots (``atomic_add``: cells share slots), slots ``-1`` take part
    in the softmax but are not accumulated.

Under ``TRITON_INTERPRET=1`` (CPU tests) the tiles are upcast to float32 before ``tl.dot`` (the interpreter's
bfloat16 ``dot`` is wrong in triton 3.9); on a GPU bfloat16 tiles go to the tensor cores with float32
accumulation and float32 tiles use IEEE float32 products (no TF32), so the results match the torch path.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp
import torch
import triton
import triton.language as tl

from ._sparse import stack_rows

#: whether the kernels were built for the Triton interpreter (``TRITON_INTERPRET=1`` at import)
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _tile(ptr, base, idx, n, d, head_dim, UPCAST: tl.constexpr):
    """Rows ``idx`` (masked to ``< n``) of a row-major ``[n, head_dim]`` matrix at ``ptr + base``."""
    inside = (idx[:, None] < n) & (d[None, :] < head_dim)
    t = tl.load(ptr + base + idx[:, None] * head_dim + d[None, :], mask=inside, other=0.0)  # pad dims add 0
    if UPCAST:
        t = t.to(tl.float32)
    return t


@triton.jit
def _lse_kernel(
    q_ptr,
    k_ptr,
    lse_ptr,
    n_keys,
    head_dim,
    scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HD: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    d = tl.arange(0, HD)
    base = bh.to(tl.int64) * n_keys * head_dim
    q = _tile(q_ptr, base, rows, n_keys, d, head_dim, UPCAST)
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    s_exp = tl.zeros([BLOCK_M], tl.float32)
    for start in range(0, n_keys, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        k = _tile(k_ptr, base, cols, n_keys, d, head_dim, UPCAST)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        s = tl.where(cols[None, :] < n_keys, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        s_exp = s_exp * tl.exp(m - m_new) + tl.sum(tl.exp(s - m_new[:, None]), 1)
        m = m_new
    tl.store(lse_ptr + bh.to(tl.int64) * n_keys + rows, m + tl.log(s_exp), mask=rows < n_keys)


@triton.jit
def _mixed_probs(
    q_ptr,
    k_ptr,
    lse_ptr,
    w_ptr,
    b,
    n_heads,
    rows,
    cols,
    n_keys,
    head_dim,
    scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HD: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """``Σ_a w_a exp(q_a kᵀ_a · scale - lse_a)`` on the tile ``rows × cols`` of batch ``b`` (0 outside)."""
    d = tl.arange(0, HD)
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for a in range(n_heads):
        bh = (b * n_heads + a).to(tl.int64)
        base = bh * n_keys * head_dim
        q = _tile(q_ptr, base, rows, n_keys, d, head_dim, UPCAST)
        k = _tile(k_ptr, base, cols, n_keys, d, head_dim, UPCAST)
        lse = tl.load(lse_ptr + bh * n_keys + rows, mask=rows < n_keys, other=0.0)
        w = tl.load(w_ptr + a)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        acc += w * tl.exp(s - lse[:, None])
    return tl.where((rows[:, None] < n_keys) & (cols[None, :] < n_keys), acc, 0.0)


@triton.jit
def _network_kernel(
    q_ptr,
    k_ptr,
    lse_ptr,
    w_ptr,
    counts_ptr,
    indptr_ptr,
    indices_ptr,
    data_ptr,
    cand_val_ptr,
    cand_idx_ptr,
    n_heads,
    n_keys,
    n_tokens,
    row_start,
    n_rows,
    n_kblocks,
    head_dim,
    scale,
    threshold,
    MODE: tl.constexpr,
    TOPK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HD: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    local = pid * BLOCK_M + tl.arange(0, BLOCK_M)  # row of this chunk
    valid = local < n_rows
    rows = n_tokens + row_start + local  # query slot
    lane = tl.arange(0, BLOCK_N)
    count = tl.zeros([BLOCK_M], tl.int32)
    written = tl.zeros([BLOCK_M], tl.int64)
    base = tl.zeros([BLOCK_M], tl.int64)
    if MODE == 1:
        base = tl.load(indptr_ptr + row_start + local, mask=valid, other=0)
    for kb in range(0, n_kblocks):
        cols = n_tokens + kb * BLOCK_N + lane
        p = _mixed_probs(
            q_ptr, k_ptr, lse_ptr, w_ptr, 0, n_heads, rows, cols, n_keys, head_dim, scale,
            BLOCK_M, BLOCK_N, HD, UPCAST, PRECISION,
        )  # fmt: skip
        inside = valid[:, None] & (cols[None, :] < n_keys)
        if MODE == 2:
            pv = tl.where(inside, p, -1.0)
            for j in tl.static_range(TOPK):
                best = tl.max(pv, 1)
                arg = tl.argmax(pv, 1)
                off = (local.to(tl.int64) * n_kblocks + kb) * TOPK + j
                tl.store(cand_val_ptr + off, best, mask=valid)
                tl.store(cand_idx_ptr + off, kb * BLOCK_N + arg, mask=valid)
                pv = tl.where(lane[None, :] == arg[:, None], -1.0, pv)
        else:
            keep = inside & (p >= threshold) & (p > 0.0)
            kept = keep.to(tl.int32)
            if MODE == 0:
                count += tl.sum(kept, 1)
            else:
                dst = base[:, None] + written[:, None] + (tl.cumsum(kept, 1) - 1).to(tl.int64)
                gene = tl.broadcast_to((cols - n_tokens)[None, :], [BLOCK_M, BLOCK_N])
                tl.store(indices_ptr + dst, gene, mask=keep)
                tl.store(data_ptr + dst, p, mask=keep)
                written += tl.sum(kept, 1).to(tl.int64)
    if MODE == 0:
        tl.store(counts_ptr + local, count, mask=valid)


@triton.jit
def _attention_sum_kernel(
    q_ptr,
    k_ptr,
    lse_ptr,
    w_ptr,
    slot_ptr,
    acc_ptr,
    n_heads,
    n_keys,
    n_slots,
    head_dim,
    scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HD: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slot_base = b.to(tl.int64) * n_keys
    srow = tl.load(slot_ptr + slot_base + rows, mask=rows < n_keys, other=-1)
    for start in range(0, n_keys, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        p = _mixed_probs(
            q_ptr, k_ptr, lse_ptr, w_ptr, b, n_heads, rows, cols, n_keys, head_dim, scale,
            BLOCK_M, BLOCK_N, HD, UPCAST, PRECISION,
        )  # fmt: skip
        scol = tl.load(slot_ptr + slot_base + cols, mask=cols < n_keys, other=-1)
        ok = (srow[:, None] >= 0) & (scol[None, :] >= 0)
        tl.atomic_add(acc_ptr + srow[:, None] * n_slots + scol[None, :], p, mask=ok)


# ---------------------------------------------------------------------------------------------------- host side
def _config(t: torch.Tensor, head_dim: int, block: int | None) -> dict:
    bm = block or (16 if INTERPRETED else 64)
    return {
        "BLOCK_M": bm,
        "BLOCK_N": bm,
        "HD": max(16, triton.next_power_of_2(head_dim)),
        "UPCAST": INTERPRETED,
        "PRECISION": "ieee" if t.dtype == torch.float32 else None,
    }


def _check(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if not (t.is_cuda or INTERPRETED):
            msg = (
                "The Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 set before triton is imported, for "
                "testing on CPU); use backend='torch' on CPU."
            )
            raise ValueError(msg)


def row_lse(q: torch.Tensor, k: torch.Tensor, *, scale: float, block: int | None = None) -> torch.Tensor:
    """Log-sum-exp of every row of ``q kᵀ · scale`` for ``q, k`` ``[B, A, S, hd]`` -> ``[B, A, S]`` float32."""
    _check(q, k)
    q, k = q.contiguous(), k.contiguous()
    b, a, s, hd = q.shape
    cfg = _config(q, hd, block)
    lse = torch.empty(b, a, s, dtype=torch.float32, device=q.device)
    _lse_kernel[(triton.cdiv(s, cfg["BLOCK_M"]), b * a)](q, k, lse, s, hd, scale, **cfg)
    return lse


def mean_qk_network(
    q: torch.Tensor,
    k: torch.Tensor,
    w: torch.Tensor,
    *,
    n_tokens: int,
    filtration: str,
    top_k: int,
    row_chunk: int = 4096,
    block: int | None = None,
) -> sp.csr_matrix:
    """Filtered head-averaged ``softmax(q kᵀ/√hd)`` over the gene slots, as CSR, without a dense ``G × G``.

    ``q, k``: ``[A, N, hd]`` mean queries / keys of the active heads; ``w``: ``[A]`` head weights (sum 1).
    """
    _check(q, k)
    a, n, hd = q.shape
    g = n - n_tokens
    scale = hd**-0.5
    q4, k4 = q.contiguous()[None], k.contiguous()[None]
    w = w.to(device=q.device, dtype=torch.float32).contiguous()
    cfg = _config(q, hd, block)
    bm, bn = cfg["BLOCK_M"], cfg["BLOCK_N"]
    lse = row_lse(q4, k4, scale=scale, block=block)
    n_kblocks = triton.cdiv(g, bn)
    dummy_i = torch.zeros(1, dtype=torch.int32, device=q.device)
    dummy_f = torch.zeros(1, dtype=torch.float32, device=q.device)
    if filtration == "top_k":
        kb = min(top_k, bn)
        keep = min(top_k, g)
        parts = []
        for start in range(0, g, row_chunk):
            rows = min(row_chunk, g - start)
            cand_val = torch.empty(rows, n_kblocks * kb, dtype=torch.float32, device=q.device)
            cand_idx = torch.empty(rows, n_kblocks * kb, dtype=torch.int32, device=q.device)
            _network_kernel[(triton.cdiv(rows, bm),)](
                q4, k4, lse, w, dummy_i, dummy_i, dummy_i, dummy_f, cand_val, cand_idx,
                a, n, n_tokens, start, rows, n_kblocks, hd, scale, 0.0, MODE=2, TOPK=kb, **cfg,
            )  # fmt: skip
            vals, pos = cand_val.topk(min(keep, cand_val.shape[1]), dim=1)
            cols = cand_idx.gather(1, pos)
            r = np.repeat(np.arange(rows), vals.shape[1])
            v, c = vals.cpu().numpy().ravel(), cols.cpu().numpy().ravel()
            ok = v > 0
            part = sp.csr_matrix((v[ok], (r[ok], c[ok])), shape=(rows, g), dtype=np.float32)
            part.sort_indices()
            parts.append(part)
        return stack_rows(parts, g)
    threshold = 1.0 / n if filtration == "threshold" else 0.0
    grid = (triton.cdiv(g, bm),)
    counts = torch.zeros(g, dtype=torch.int32, device=q.device)
    _network_kernel[grid](
        q4, k4, lse, w, counts, dummy_i, dummy_i, dummy_f, dummy_f, dummy_i,
        a, n, n_tokens, 0, g, n_kblocks, hd, scale, threshold, MODE=0, TOPK=1, **cfg,
    )  # fmt: skip
    indptr = torch.zeros(g + 1, dtype=torch.int64, device=q.device)
    indptr[1:] = torch.cumsum(counts.to(torch.int64), 0)
    nnz = int(indptr[-1])
    indices = torch.empty(max(nnz, 1), dtype=torch.int32, device=q.device)
    data = torch.empty(max(nnz, 1), dtype=torch.float32, device=q.device)
    _network_kernel[grid](
        q4, k4, lse, w, dummy_i, indptr, indices, data, dummy_f, dummy_i,
        a, n, n_tokens, 0, g, n_kblocks, hd, scale, threshold, MODE=1, TOPK=1, **cfg,
    )  # fmt: skip
    return sp.csr_matrix(
        (data[:nnz].cpu().numpy(), indices[:nnz].cpu().numpy(), indptr.cpu().numpy()),
        shape=(g, g),
    )


def attention_sum(
    q: torch.Tensor,
    k: torch.Tensor,
    w: torch.Tensor,
    slots: torch.Tensor,
    acc: torch.Tensor,
    *,
    block: int | None = None,
) -> None:
    """Add ``Σ_a w_a softmax(q_b,a k_b,aᵀ/√hd)[i, j]`` into ``acc[slots[b, i], slots[b, j]]`` for every cell ``b``.

    ``q, k``: ``[B, A, S, hd]``; ``w``: ``[A]``; ``slots``: ``[B, S]`` (``-1``: not accumulated); ``acc``:
    ``[N, N]`` float32, updated in place.
    """
    _check(q, k, acc)
    q, k = q.contiguous(), k.contiguous()
    b, a, s, hd = q.shape
    scale = hd**-0.5
    cfg = _config(q, hd, block)
    lse = row_lse(q, k, scale=scale, block=block)
    _attention_sum_kernel[(triton.cdiv(s, cfg["BLOCK_M"]), b)](
        q, k, lse, w.to(device=q.device, dtype=torch.float32).contiguous(),
        slots.to(device=q.device, dtype=torch.int64).contiguous(), acc,
        a, s, acc.shape[1], hd, scale, **cfg,
    )  # fmt: skip
