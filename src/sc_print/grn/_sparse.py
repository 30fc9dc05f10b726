"""Sparse helpers shared by the torch and Triton network builders."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def stack_rows(chunks: list[sp.csr_matrix], n_cols: int) -> sp.csr_matrix:
    """Row blocks (CSR, sorted indices) into one CSR matrix, one copy of the edges at most (no COO detour)."""
    if not chunks:
        return sp.csr_matrix((0, n_cols), dtype=np.float32)
    nnz = [c.nnz for c in chunks]
    indptr = np.concatenate(
        [[0]] + [c.indptr[1:] + off for c, off in zip(chunks, np.cumsum([0, *nnz[:-1]]), strict=True)]
    )
    data = np.concatenate([c.data.astype(np.float32, copy=False) for c in chunks])
    idx_dtype = np.int32 if max(len(data), n_cols) < 2**31 else np.int64  # one index dtype: no upcast copy
    indices = np.concatenate([c.indices.astype(idx_dtype, copy=False) for c in chunks])
    chunks.clear()
    out = sp.csr_matrix((data, indices, indptr.astype(idx_dtype)), shape=(len(indptr) - 1, n_cols), copy=False)
    out.has_sorted_indices = True  # every chunk comes from a dense block: column order within rows
    return out
