"""Stream the cells of a group through a model; accumulate per-gene mean Q and K, or per-cell attention maps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from sc_print._runtime import inference_mode
from sc_print.data import cell_hashes, cell_seeds, iter_row_chunks, iter_tokens

from ._aggregate import QKAccumulator
from ._mean_attention import AttentionAccumulator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sc_print.data import CountInputs
    from sc_print.nn import ScPrintNet

    from ._aggregate import Backend


def row_hashes(inputs: CountInputs, rows: np.ndarray, *, chunk_size: int = 4096) -> np.ndarray:
    """Content hash of each cell in ``rows`` (:func:`~sc_print.data.cell_hashes`, over the mapped genes)."""
    mapper = inputs.mapping.mapper
    out = np.empty(len(rows), dtype=np.uint64)
    for start, stop, block in iter_row_chunks(inputs.X, chunk_size, rows):
        out[start:stop] = cell_hashes(mapper.collapse_sparse(block), mapper.vocab_idx)
    return out


def select_cells(
    inputs: CountInputs,
    rows: np.ndarray,
    *,
    n_cells: int | None,
    cell_selection: str,
    seed: int,
) -> np.ndarray:
    """The cells of one group a network is built from, as a function of those cells alone (not of their order).

    Parameters
    ----------
    inputs
        The validated counts.
    rows
        Row positions of the group's cells.
    n_cells
        How many to keep (``None``: all).
    cell_selection
        ``"deepest"``: the ``n_cells`` cells with the largest depth (ties broken by the cells' content hash, not
        their row); ``"random"``: the ``n_cells`` cells with the smallest per-cell random key (from ``seed`` and
        each cell's counts), a uniform draw that does not depend on the row order.
    seed
        Seed of ``"random"``.

    Returns
    -------
    Sorted row positions.
    """
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if n_cells is None or n_cells >= len(rows):
        return rows
    hashes = row_hashes(inputs, rows)
    if cell_selection == "deepest":
        order = np.lexsort((hashes, -inputs.depth[rows]))  # last key first: depth, then content hash
    else:
        order = np.argsort(cell_seeds(hashes, seed, stream=1), kind="stable")
    return np.sort(rows[order[:n_cells]])


def accumulate_qk(
    net: ScPrintNet,
    inputs: CountInputs,
    rows: np.ndarray,
    *,
    positions: np.ndarray | None,
    layers: list[int],
    max_len: int,
    n_repeats: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    description: str = "",
) -> QKAccumulator:
    """Run the cells ``rows`` through ``net`` and sum the Q and K of ``layers`` per mapped gene.

    Parameters
    ----------
    net
        The network.
    inputs
        The validated counts.
    rows
        Sorted row positions of the cells.
    positions
        Fixed context (positions in the mapped genes), or ``None`` for per-cell random contexts of ``max_len``
        expressed genes, ``n_repeats`` independent draws per cell (streams ``0..n_repeats-1`` of ``seed``).
    layers
        Layers to record.
    max_len, n_repeats, seed
        Random contexts (see ``positions``).
    batch_size, device, dtype
        How the model runs.
    description
        Progress-bar label.

    Returns
    -------
    The filled :class:`QKAccumulator` (slot ``T + j`` is mapped gene ``j``).
    """
    cfg = net.config
    acc = QKAccumulator(
        n_tokens=net.n_cell_tokens,
        n_genes=inputs.mapping.mapper.n_genes,
        layers=layers,
        nhead=cfg.nhead,
        head_dim=cfg.d_model // cfg.nhead,
        device=device,
    )
    _stream(
        net, inputs, rows, acc, positions=positions, layers=layers, max_len=max_len, n_repeats=n_repeats,
        seed=seed, batch_size=batch_size, device=device, dtype=dtype, description=description,
    )  # fmt: skip
    return acc


def accumulate_attention(
    net: ScPrintNet,
    inputs: CountInputs,
    rows: np.ndarray,
    *,
    positions: np.ndarray | None,
    layers: list[int],
    max_len: int,
    n_repeats: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    heads: Sequence[tuple[int, int]] | None = None,
    head_weights: Sequence[float] | None = None,
    backend: Backend = "auto",
    description: str = "",
) -> AttentionAccumulator:
    """Run the cells ``rows`` through ``net`` and sum their head-averaged attention maps (``mean_attention``).

    The same cells, contexts and batches as :func:`accumulate_qk` (see there for the parameters); ``heads`` /
    ``head_weights`` (layer positions index ``layers``) are averaged while accumulating, and ``backend`` picks the
    torch or Triton kernels (see :class:`~sc_print.grn.AttentionAccumulator`).

    Returns
    -------
    The filled accumulator (its rows cover the cell tokens then the ``positions``, or every mapped gene).
    """
    acc = AttentionAccumulator(
        n_tokens=net.n_cell_tokens,
        n_genes=inputs.mapping.mapper.n_genes,
        layers=layers,
        nhead=net.config.nhead,
        heads=heads,
        head_weights=head_weights,
        genes=positions,
        device=device,
        backend=backend,
    )
    _stream(
        net, inputs, rows, acc, positions=positions, layers=layers, max_len=max_len, n_repeats=n_repeats,
        seed=seed, batch_size=batch_size, device=device, dtype=dtype, description=description,
    )  # fmt: skip
    return acc


def _stream(
    net: ScPrintNet,
    inputs: CountInputs,
    rows: np.ndarray,
    acc: QKAccumulator | AttentionAccumulator,
    *,
    positions: np.ndarray | None,
    layers: list[int],
    max_len: int,
    n_repeats: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    description: str,
) -> None:
    """Feed the batches of ``rows`` through ``net`` with ``acc`` as the Q/K hook."""
    mapper = inputs.mapping.mapper
    vocab_sorted = torch.as_tensor(mapper.vocab_idx, device=device)
    repeats = 1 if positions is not None else n_repeats
    with inference_mode(net, device, dtype):
        for stream in range(repeats):
            batches = iter_tokens(
                inputs,
                mode="fixed" if positions is not None else "random_expr",
                max_len=max_len,
                genes=positions,
                seed=seed,
                stream=stream,
                batch_size=batch_size,
                device=device,
                rows=rows,
                description=description if repeats == 1 else f"{description} ({stream + 1}/{repeats})",
            )
            for _, _, tokens in batches:
                acc.set_batch(torch.searchsorted(vocab_sorted, tokens.gene_idx))
                net(
                    tokens.gene_idx,
                    tokens.expr,
                    tokens.depth,
                    qk_hook=acc,
                    qk_layers=layers,
                    decode=False,
                    classify=False,
                )
