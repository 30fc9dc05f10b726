"""Training plan (AdamW, warmup, plateau schedule) and label-weighted data splitting for ScPrint."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scvi.dataloaders import DataSplitter
from scvi.train import TrainingPlan
from torch.utils.data import BatchSampler, WeightedRandomSampler


class ScPrintTrainingPlan(TrainingPlan):
    """scvi-tools :class:`~scvi.train.TrainingPlan` with the optimisation of the scPRINT paper.

    AdamW (betas 0.9/0.999, eps 1e-8), a linear warmup over ``warmup_steps`` optimiser steps, then
    ``ReduceLROnPlateau`` (``lr_factor``, ``lr_patience``) on ``lr_scheduler_metric`` once per epoch.
    Gradient clipping and mixed precision are Trainer options (``gradient_clip_val``, ``precision``),
    passed through :meth:`ScPrint.train <sc_print.model.ScPrint.train>`.

    Parameters
    ----------
    module
        The :class:`~sc_print.model.ScPrintModule`.
    lr
        Peak learning rate.
    weight_decay
        AdamW weight decay.
    warmup_steps
        Linear warmup length in optimiser steps.
    lr_factor, lr_patience
        Plateau schedule.
    lr_scheduler_metric
        Metric watched by the plateau schedule (``"train_loss"`` when there is no validation set).
    **kwargs
        Passed to :class:`~scvi.train.TrainingPlan`.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 500,
        lr_factor: float = 0.6,
        lr_patience: int = 1,
        lr_scheduler_metric: str = "train_loss",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            module,
            lr=lr,
            weight_decay=weight_decay,
            optimizer="AdamW",
            reduce_lr_on_plateau=True,
            lr_factor=lr_factor,
            lr_patience=lr_patience,
            lr_scheduler_metric=lr_scheduler_metric,
            **kwargs,
        )
        self.warmup_steps = warmup_steps

    def configure_optimizers(self) -> tuple[list, list]:
        """AdamW + per-step warmup + per-epoch plateau schedule."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=self.weight_decay)
        warmup = max(int(self.warmup_steps), 1)
        # factor (step + 1) / warmup, then left alone: LinearLR is chainable, so the plateau reductions persist
        # (a LambdaLR would reset the rate to lr * 1.0 at every step and undo them)
        schedulers = [
            {
                "scheduler": torch.optim.lr_scheduler.LinearLR(
                    optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=max(warmup - 1, 1)
                ),
                "interval": "step",
            },
            {
                "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(
                    optimizer, mode="min", factor=self.lr_factor, patience=self.lr_patience
                ),
                "interval": "epoch",
                "monitor": self.lr_scheduler_metric,
                "strict": False,
            },
        ]
        return [optimizer], schedulers

    def compute_and_log_metrics(self, loss_output: Any, metrics: dict[str, Any], mode: str) -> None:
        """scvi-tools' metric logging under ``torch.no_grad`` rather than ``torch.inference_mode``.

        With DDP, Lightning all-reduces the logged values in place at the end of an epoch, which inference tensors
        forbid (scvi-tools decorates this method with ``torch.inference_mode``).
        """
        with torch.no_grad():
            TrainingPlan.compute_and_log_metrics.__wrapped__(self, loss_output, metrics, mode)


def _first(items: list) -> Any:
    """Collate the single already-batched item into tensors (module level: picklable)."""
    return {key: torch.as_tensor(value) for key, value in items[0].items()}


class ScPrintDataSplitter(DataSplitter):
    """scvi-tools :class:`~scvi.dataloaders.DataSplitter` whose training loader can draw label-weighted cells.

    Parameters
    ----------
    *args, **kwargs
        Passed to :class:`~scvi.dataloaders.DataSplitter`.
    cell_weights
        ``[n_obs]`` sampling weights of all cells (see :func:`sc_print.data.label_weights`); ``None`` =
        uniform shuffling. Training cells are drawn with replacement, one epoch = as many cells as the
        training split.
    """

    def __init__(self, *args: Any, cell_weights: np.ndarray | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cell_weights = cell_weights

    def train_dataloader(self):
        if self.cell_weights is None:
            return super().train_dataloader()
        weights = torch.as_tensor(np.asarray(self.cell_weights)[self.train_idx], dtype=torch.double)
        kwargs = {k: v for k, v in self.data_loader_kwargs.items() if k not in ("batch_size", "shuffle")}
        num_samples, generator = len(self.train_idx), None
        if kwargs.pop("distributed_sampler", False) and torch.distributed.is_initialized():
            # DDP: each process draws its share of the epoch, from its own stream (ranks share the global seed)
            world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
            num_samples = -(-num_samples // world)
            generator = torch.Generator().manual_seed(int(torch.initial_seed()) + rank)
        sampler = BatchSampler(
            WeightedRandomSampler(weights, num_samples=num_samples, replacement=True, generator=generator),
            batch_size=self.data_loader_kwargs.get("batch_size", 128),
            drop_last=self.drop_last,
        )
        # scvi's loader keeps torch's automatic batching (batch_size=1) when given a sampler: unwrap it
        kwargs["collate_fn"] = _first
        return self.data_loader_cls(
            self.adata_manager,
            indices=self.train_idx,
            sampler=sampler,
            load_sparse_tensor=self.load_sparse_tensor,
            pin_memory=self.pin_memory,
            **kwargs,
        )
