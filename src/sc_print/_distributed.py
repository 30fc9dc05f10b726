"""Multi-process inference on Lightning Fabric: the cells are sharded across processes, the results gathered.

The ``sp.tl`` functions (and the ``sc-print`` command line) take ``devices``, ``num_nodes`` and ``strategy``; with
more than one process they call this module, which launches the processes with
:class:`lightning.fabric.Fabric` (``gloo`` on CPU, ``nccl`` on CUDA) and

- for embeddings and denoising (:func:`embed_cells`, :func:`denoise_cells`): gives each process a contiguous
  shard of the cells, runs :meth:`~sc_print.model.ScPrint.embed_cells` / ``denoise_cells`` over it block by block
  and gathers the blocks in the original cell order;
- for networks (:func:`accumulate_qk`): each process sums the per-gene queries and keys over its share of the
  group's cells (:func:`sc_print.grn.accumulate_qk`), the sums are all-reduced and the network is built once.

By the determinism contract (a cell's outputs depend on its counts, the model, the options and the seed only) the
results equal those of one process up to float32 summation order. Options that are data-set dependent (highly
variable genes) are resolved once, on every cell, before the processes start.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import sparse

from ._validation import check_positive_int

if TYPE_CHECKING:
    from collections.abc import Callable

    from anndata import AnnData

    from .data import CountInputs
    from .grn import QKAccumulator
    from .model import ScPrint
    from .model._inference import CellOutputs, DenoiseOutputs
    from .nn import ScPrintNet

#: accepted ``strategy`` values (Lightning's DDP launchers)
STRATEGIES: tuple[str, ...] = ("auto", "ddp", "ddp_spawn", "ddp_fork")
#: environment variables set by an external launcher (torchrun, SLURM): every process runs the same program
_LAUNCHED_ENV = ("LOCAL_RANK", "SLURM_PROCID")
#: cells per call of the per-process getters on CUDA (bounded memory: one block of counts in memory per process)
BLOCK_SIZE = 8192
#: the same on CPU, where a block takes longer (finer progress, same results)
CPU_BLOCK_SIZE = 512
#: in a worker process: whether every rank needs the gathered results (external launch) or only rank 0
_ALL_RANKS = False

#: the docstring text of the parallel options (``{parallel}`` in the ``sp.tl`` docstrings)
DOC_PARALLEL = """\
devices
    Processes per node (one per GPU, or CPU processes): with more than one (or ``num_nodes > 1``) the cells are
    sharded across processes by Lightning Fabric and the results gathered in the original cell order, equal to
    those of one process (see :doc:`/scale`). Pass ``device="auto"`` then.
num_nodes
    Nodes of a multi-node run (launched by SLURM or ``torchrun``).
strategy
    ``"auto"`` (``"ddp"`` under an external launcher, else ``"ddp_fork"`` on CPU and ``"ddp_spawn"`` on GPU),
    ``"ddp"``, ``"ddp_spawn"`` or ``"ddp_fork"``."""


@dataclass(frozen=True)
class Parallel:
    """A validated multi-process request.

    Attributes
    ----------
    accelerator
        ``"cpu"`` or ``"gpu"``.
    devices
        Processes per node.
    num_nodes
        Nodes.
    strategy
        The Lightning strategy (``"ddp"``, ``"ddp_spawn"`` or ``"ddp_fork"``).
    """

    accelerator: str
    devices: int
    num_nodes: int
    strategy: str

    @property
    def external(self) -> bool:
        """Whether every process runs the caller's program (``strategy="ddp"``), rather than a launched worker."""
        return self.strategy == "ddp"


def externally_launched() -> bool:
    """Whether this process is one of several started by ``torchrun``, SLURM or Lightning's script launcher."""
    if "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return True
    return "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1


def global_rank() -> int:
    """Rank of this process in an externally launched job (0 otherwise): only rank 0 writes files."""
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def available_devices(accelerator: str) -> int:
    """Processes this machine can run for ``accelerator``: CUDA devices, or CPU cores."""
    if accelerator == "gpu":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_parallel(
    *, accelerator: str, devices: Any, num_nodes: Any, strategy: str, device: Any = "auto"
) -> Parallel | None:
    """Validate the multi-process options; ``None`` for one process (the ordinary path).

    Raises
    ------
    ValueError
        ``devices``/``num_nodes`` not positive integers, more devices than this machine has, an unknown
        strategy, MPS (single device), or an explicit ``device`` together with several processes.
    """
    devices = check_positive_int(devices, "devices")
    num_nodes = check_positive_int(num_nodes, "num_nodes")
    if strategy not in STRATEGIES:
        msg = f"Unknown strategy {strategy!r}; use one of {list(STRATEGIES)}."
        raise ValueError(msg)
    if devices == 1 and num_nodes == 1:
        return None
    if device != "auto":
        msg = f"device={device!r} cannot be combined with devices={devices}: each process gets its own device."
        raise ValueError(msg)
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    elif accelerator == "cuda":
        accelerator = "gpu"
    if accelerator not in ("cpu", "gpu"):
        msg = f"Several processes need accelerator 'cpu' or 'gpu' (got {accelerator!r}); MPS has a single device."
        raise ValueError(msg)
    n = available_devices(accelerator)
    if devices > n:
        what = "CUDA devices" if accelerator == "gpu" else "CPU cores"
        msg = f"devices={devices} but this machine has {n} {what}; pass --devices {max(n, 1)} or fewer."
        raise ValueError(msg)
    if strategy == "auto":
        if externally_launched():
            strategy = "ddp"
        elif accelerator == "cpu" and "fork" in multiprocessing.get_all_start_methods():
            strategy = "ddp_fork"
        else:
            strategy = "ddp_spawn"
    if num_nodes > 1 and strategy != "ddp":
        msg = f"num_nodes={num_nodes} needs an external launcher (SLURM, torchrun) and strategy 'ddp' or 'auto'."
        raise ValueError(msg)
    return Parallel(accelerator, devices, num_nodes, strategy)


# ------------------------------------------------------------------------------------------------ machinery
def shard(n: int, world_size: int, rank: int) -> np.ndarray:
    """Contiguous shard of ``range(n)`` of process ``rank`` (the first ``n % world_size`` shards one longer)."""
    return np.array_split(np.arange(n, dtype=np.int64), world_size)[rank]


def _launch(par: Parallel, worker: Callable[..., Any], *args: Any) -> Any:
    """Run ``worker(fabric, *args)`` in every process; the result of rank 0 (``None`` on other external ranks).

    Launched processes hand their result back through a file (Lightning's return queue is a pipe that the parent
    only reads after the processes have exited, which blocks a large result).
    """
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator=par.accelerator, devices=par.devices, num_nodes=par.num_nodes, strategy=par.strategy)
    if par.external:
        return fabric.launch(_everywhere, worker, *args)
    with tempfile.TemporaryDirectory(prefix="sc_print_ddp_") as folder:
        result = Path(folder) / "rank0.pkl"
        fabric.launch(_stored, worker, str(result), *args)
        if not result.is_file():
            msg = "The worker processes ended without a result; see the messages above."
            raise RuntimeError(msg)
        with result.open("rb") as handle:
            return pickle.load(handle)


def _everywhere(fabric: Any, worker: Callable[..., Any], *args: Any) -> Any:
    """Run ``worker`` in a process of an external launch: every rank gets the gathered result."""
    global _ALL_RANKS
    _ALL_RANKS = True
    return worker(fabric, *args)


def _stored(fabric: Any, worker: Callable[..., Any], path: str, *args: Any) -> None:
    """Run ``worker`` and let rank 0 pickle its result to ``path`` (results gathered on rank 0 only)."""
    global _ALL_RANKS
    _ALL_RANKS = False
    out = worker(fabric, *args)
    if fabric.global_rank == 0:
        with open(path, "wb") as handle:
            pickle.dump(out, handle, protocol=pickle.HIGHEST_PROTOCOL)


def _setup(fabric: Any) -> tuple[str, int | str]:
    """Per-process set-up: threads split between the local processes, no per-block progress bars."""
    if fabric.device.type == "cpu":
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", fabric.world_size // fabric.strategy.num_nodes)))
        torch.set_num_threads(max(1, available_devices("cpu") // local))
        return "cpu", "auto"
    return "cuda", int(fabric.device.index or 0)


def _gather(fabric: Any, obj: Any) -> list[Any] | None:
    """Objects of every rank, in rank order, on rank 0 (``None`` elsewhere); on every rank when external."""
    import torch.distributed as dist

    out: list[Any] = [None] * fabric.world_size
    if _ALL_RANKS:
        dist.all_gather_object(out, obj)
        return out
    dist.gather_object(obj, out if fabric.global_rank == 0 else None, dst=0)
    return out if fabric.global_rank == 0 else None


def _blocks(rows: np.ndarray, block: int) -> list[np.ndarray]:
    return [rows[i : i + block] for i in range(0, len(rows), block)] or [rows]


def _iter_blocks(fabric: Any, n_obs: int, what: str) -> Any:
    """Blocks of this process's shard, with one progress bar (cells) on rank 0; the getters' own bars hidden."""
    from tqdm.auto import tqdm

    from ._settings import settings

    rows = shard(n_obs, fabric.world_size, fabric.global_rank)
    show = settings.show_progress and fabric.global_rank == 0
    settings.progress_bar = False
    size = min(BLOCK_SIZE, CPU_BLOCK_SIZE) if fabric.device.type == "cpu" else BLOCK_SIZE
    blocks = [block for block in _blocks(rows, size) if len(block)]
    desc = f"sc_print {what} (rank 0 of {fabric.world_size})"
    with tqdm(total=len(rows), desc=desc, disable=not show, leave=False, dynamic_ncols=True) as bar:
        for block in blocks:
            yield block
            bar.update(len(block))


# ------------------------------------------------------------------------------------------------ embed
def _embed_worker(fabric: Any, model: ScPrint, data: AnnData, kwargs: dict[str, Any]) -> Any:
    accelerator, device = _setup(fabric)
    parts = []
    for block in _iter_blocks(fabric, data.n_obs, "embed"):
        out = model.embed_cells(data, indices=block, accelerator=accelerator, device=device, **kwargs)
        parts.append((out.embedding, out.tokens, out.proba, out.gene_sum, out.gene_count))
    gathered = _gather(fabric, parts)
    return None if gathered is None else [p for rank_parts in gathered for p in rank_parts]


def embed_cells(par: Parallel, model: ScPrint, data: AnnData, **kwargs: Any) -> CellOutputs:
    """:meth:`~sc_print.model.ScPrint.embed_cells` over several processes (same arguments, same result).

    The counts are validated here, once, before the processes start; ``mode="fixed"`` without ``genes`` picks
    the variable genes here, on every cell, and hands them to the processes.
    """
    from .data import hvg_positions, load_counts

    inputs = load_counts(data, model.vocab, layer=kwargs.get("layer"), chunk_size=kwargs.get("batch_size", 64))
    if kwargs.get("mode") == "fixed" and kwargs.get("genes") is None:
        positions = hvg_positions(
            inputs.X, inputs.mapping, kwargs.get("max_len", 2000), chunk_size=max(kwargs.get("batch_size", 64), 1024)
        )
        kwargs["genes"] = data.var_names[inputs.mapping.first_col[positions]].astype(str).tolist()
    kwargs.pop("accelerator", None)
    kwargs.pop("device", None)
    first = model.embed_cells(data, indices=np.arange(1), accelerator="cpu", **kwargs)  # shapes, context, checks
    parts = _launch(par, _embed_worker, model, data, kwargs)
    if parts is None:  # not rank 0 of an external launch with gather to rank 0
        msg = "embed_cells: no result on this rank."
        raise RuntimeError(msg)
    first.embedding = np.concatenate([p[0] for p in parts])
    first.tokens = {k: np.concatenate([p[1][k] for p in parts]) for k in first.tokens}
    first.proba = {k: np.concatenate([p[2][k] for p in parts]) for k in first.proba}
    if first.gene_sum is not None:
        first.gene_sum = np.sum([p[3] for p in parts], axis=0, dtype=np.float64).astype(np.float32)
        first.gene_count = np.sum([p[4] for p in parts], axis=0).astype(np.float32)
    first.inputs = inputs
    return first


# ------------------------------------------------------------------------------------------------ denoise
def _denoise_worker(fabric: Any, model: ScPrint, data: AnnData, kwargs: dict[str, Any]) -> Any:
    accelerator, device = _setup(fabric)
    parts = [
        model.denoise_cells(data, indices=block, accelerator=accelerator, device=device, **kwargs).values
        for block in _iter_blocks(fabric, data.n_obs, "denoise")
    ]
    gathered = _gather(fabric, parts)
    return None if gathered is None else [p for rank_parts in gathered for p in rank_parts]


def denoise_cells(par: Parallel, model: ScPrint, data: AnnData, **kwargs: Any) -> DenoiseOutputs:
    """:meth:`~sc_print.model.ScPrint.denoise_cells` over several processes (same arguments, same result).

    ``genes="hvg"`` picks the variable genes here, on every cell, before the processes start.
    """
    from .data import hvg_positions, load_counts

    inputs = load_counts(data, model.vocab, layer=kwargs.get("layer"), chunk_size=kwargs.get("batch_size", 32))
    gene_set = kwargs.get("genes", "expressed")
    if isinstance(gene_set, str) and gene_set == "hvg":
        positions = hvg_positions(
            inputs.X, inputs.mapping, kwargs.get("n_genes", 2000), chunk_size=max(kwargs.get("batch_size", 32), 1024)
        )
        kwargs["genes"] = data.var_names[inputs.mapping.first_col[positions]].astype(str).tolist()
    kwargs.pop("accelerator", None)
    kwargs.pop("device", None)
    first = model.denoise_cells(data, indices=np.arange(1), accelerator="cpu", **kwargs)
    if isinstance(gene_set, str):
        first.context["gene_set"] = gene_set
    parts = _launch(par, _denoise_worker, model, data, kwargs)
    if parts is None:
        msg = "denoise_cells: no result on this rank."
        raise RuntimeError(msg)
    if sparse.issparse(parts[0]):
        first.values = sparse.vstack(parts, format="csr", dtype=np.float32)
    else:
        first.values = np.concatenate(parts)
    first.inputs = inputs
    return first


# ------------------------------------------------------------------------------------------------ grn
def _qk_worker(
    fabric: Any, net: ScPrintNet, inputs: CountInputs, rows: np.ndarray, kwargs: dict[str, Any]
) -> QKAccumulator | None:
    import torch.distributed as dist

    from ._settings import settings
    from .grn import accumulate_qk as accumulate

    _setup(fabric)
    if fabric.global_rank:
        settings.progress_bar = False
    mine = shard(len(rows), fabric.world_size, fabric.global_rank)
    acc = accumulate(net, inputs, rows[mine], device=fabric.device, **kwargs)
    for tensor in (acc.q_sum, acc.k_sum, acc.count):
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    if fabric.global_rank and not _ALL_RANKS:
        return None
    acc.q_sum, acc.k_sum, acc.count = acc.q_sum.cpu(), acc.k_sum.cpu(), acc.count.cpu()
    return acc


def accumulate_qk(
    par: Parallel, net: ScPrintNet, inputs: CountInputs, rows: np.ndarray, *, device: torch.device, **kwargs: Any
) -> QKAccumulator:
    """:func:`sc_print.grn.accumulate_qk` over several processes: each sums over its cells, the sums all-reduced.

    Returns
    -------
    The accumulator with the sums over every cell of ``rows``, on ``device``.
    """
    acc = _launch(par, _qk_worker, net, inputs, np.asarray(rows), kwargs)
    if acc is None:
        msg = "accumulate_qk: no result on this rank."
        raise RuntimeError(msg)
    acc.q_sum, acc.k_sum, acc.count = acc.q_sum.to(device), acc.k_sum.to(device), acc.count.to(device)
    return acc
