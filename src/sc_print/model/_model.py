"""ScPrint: the scvi-tools model class (data registration, pretraining); saving and loading in ``_save_load.py``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from sc_print._validation import _where, check_counts, get_counts, resolve_adata
from sc_print.data import GeneVocab, data_gene_ids, label_weights
from sc_print.nn import ScPrintConfig, ScPrintNet
from sc_print.ontology import LabelHierarchy, label_key

from ._abstention import AbstentionMixin
from ._constants import REGISTRY_KEYS
from ._finetune import FinetuneMixin
from ._inference import ScPrintInferenceMixin
from ._module import ScPrintModule
from ._perturb import ScPrintPerturbMixin
from ._save_load import SaveLoadMixin
from ._training import ScPrintDataSplitter, ScPrintTrainingPlan

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)


def _adata_gene_ids(adata: AnnData, organism: str | None = None) -> np.ndarray:
    """Ensembl id of every column (``""`` when unmapped): from ``sp.pp.prepare`` if run, else mapped now."""
    return data_gene_ids(adata, organism)[0]


class ScPrint(
    ScPrintInferenceMixin,
    ScPrintPerturbMixin,
    FinetuneMixin,
    AbstentionMixin,
    SaveLoadMixin,
    UnsupervisedTrainingMixin,
    BaseModelClass,
):
    """scPRINT single-cell foundation model as an scvi-tools model.

    Build it on an AnnData registered with :meth:`setup_anndata`, pretrain it with :meth:`train`, and use it
    through ``sp.tl.embed / denoise / grn``. Official checkpoints load with :func:`sc_print.load_model`.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (raw counts).
    size
        Size preset: ``"tiny"`` (d=32, 2 layers), ``"small"`` (128, 4), ``"medium"`` (256, 8) or ``"large"``
        (512, 16), see :meth:`ScPrintConfig.preset <sc_print.nn.ScPrintConfig.preset>`; explicit
        ``d_model``/``nlayers``/``nhead``/``layers_cls`` override it.
    genes
        Gene vocabulary (Ensembl ids). ``None`` = every gene of ``adata`` that maps to the gene table.
    d_model, nhead, nlayers, num_heads_kv, layers_cls
        Architecture (see :class:`~sc_print.nn.ScPrintConfig`).
    normalization, depth_atinput, expr_decoder, dropout, drop_path_rate, attention
        Architecture switches (see :class:`~sc_print.nn.ScPrintConfig`).
    gene_embeddings
        Optional gene-embedding table (index = Ensembl id, float columns, e.g. ESM2 protein embeddings):
        rows are pooled to ``d_model`` (adaptive average pooling, as in scPRINT) and frozen. Without it the
        gene table is learned.
    organism
        Organism of ``adata`` when its gene names are ambiguous.
    max_len, noise, class_scale, generate_scale, dissimilarity_scale, contrastive_scale, temperature
        Pretraining recipe (see :class:`~sc_print.model.ScPrintModule`).

    Examples
    --------
    >>> import sc_print as sp
    >>> sp.ScPrint.setup_anndata(adata, labels_keys=["cell_type"])  # doctest: +SKIP
    >>> model = sp.ScPrint(adata, size="small")  # doctest: +SKIP
    >>> model.train(max_steps=300)  # doctest: +SKIP
    >>> model.save("my_model/")  # doctest: +SKIP
    """

    _module_cls = ScPrintModule
    _training_plan_cls = ScPrintTrainingPlan
    _data_splitter_cls = ScPrintDataSplitter

    def __init__(
        self,
        adata: AnnData,
        *,
        size: Literal["tiny", "small", "medium", "large"] = "small",
        genes: Sequence[str] | None = None,
        d_model: int | None = None,
        nhead: int | None = None,
        nlayers: int | None = None,
        num_heads_kv: int | None = None,
        layers_cls: list[int] | None = None,
        normalization: Literal["log", "sum"] = "log",
        depth_atinput: bool = True,
        expr_decoder: Literal["zinb", "nb", "mse"] = "zinb",
        dropout: float = 0.1,
        drop_path_rate: float = 0.0,
        attention: Literal["sdpa", "flash_attn", "math"] = "sdpa",
        gene_embeddings: pd.DataFrame | None = None,
        organism: str | None = None,
        max_len: int = 1024,
        noise: float = 0.6,
        class_scale: float = 1.5,
        generate_scale: float = 1.0,
        dissimilarity_scale: float = 0.2,
        contrastive_scale: float = 0.0,
        temperature: float = 0.2,
    ) -> None:
        super().__init__(adata)
        organism = organism or self.adata_manager.registry["setup_args"].get("organism")
        ids = _adata_gene_ids(self.adata, organism)
        if genes is None:
            genes = sorted({g for g in ids if g})
        self.vocab = GeneVocab(list(genes))
        self.hierarchies: dict[str, LabelHierarchy] = {}
        self.label_columns: dict[str, str] = {}
        for column in self.adata_manager.registry["setup_args"].get("labels_keys") or []:
            categories = self._label_categories(column)
            hierarchy = LabelHierarchy.from_labels(column, categories)
            self.hierarchies[hierarchy.label] = hierarchy
            self.label_columns[hierarchy.label] = column
        config = ScPrintConfig.preset(
            size,
            n_genes=len(self.vocab),
            d_model=d_model,
            nhead=nhead,
            nlayers=nlayers,
            layers_cls=layers_cls,
            num_heads_kv=num_heads_kv,
            normalization=normalization,
            depth_atinput=depth_atinput,
            labels={name: h.n_leaves for name, h in self.hierarchies.items()},
            expr_decoder=expr_decoder,
            dropout=dropout,
            drop_path_rate=drop_path_rate,
            attention=attention,
            freeze_gene_embeddings=gene_embeddings is not None,
        )
        self.module = self._module_cls(
            config.to_dict(),
            self.vocab.positions.tolist(),
            parent_matrices={name: h.parent_matrix for name, h in self.hierarchies.items()},
            max_len=max_len,
            noise=noise,
            class_scale=class_scale,
            generate_scale=generate_scale,
            dissimilarity_scale=dissimilarity_scale,
            contrastive_scale=contrastive_scale,
            temperature=temperature,
        )
        if gene_embeddings is not None:
            self._load_gene_embeddings(gene_embeddings)
        self._set_data_mapping(self.adata, organism)
        self.metadata_: dict[str, Any] = {"name": "custom"}
        self._model_summary_string = self._summary(config, len(self.vocab), list(self.hierarchies))
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ registration
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        labels_keys: Sequence[str] | None = None,
        batch_key: str | None = None,
        organism: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Register raw counts (and optional label and batch columns) for pretraining.

        Nothing is written to ``adata`` unless every check passes.

        Parameters
        ----------
        adata
            AnnData with raw counts.
        layer
            Layer holding raw counts (``None`` = ``.X``).
        labels_keys
            ``.obs`` columns of labels to predict (ontology ids such as ``CL:0000236`` train the
            hierarchical classifier; other values are plain classes; ``"unknown"`` or missing values
            are ignored by the loss).
        batch_key
            ``.obs`` column of batches (recorded; scPRINT does not condition on it).
        organism
            Organism, when gene names are ambiguous.
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields`.

        Raises
        ------
        KeyError
            A label or batch column, or the layer, is missing.
        ValueError
            The data are not raw counts (normalised, negative, NaN), or no gene maps onto the gene table.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        adata = resolve_adata(adata)
        labels_keys = list(labels_keys or [])
        for key in [*labels_keys, *([batch_key] if batch_key else [])]:
            if key not in adata.obs:
                msg = f"Column {key!r} not found in `adata.obs`; available columns: {list(adata.obs.columns)}."
                raise KeyError(msg)
        X, where = get_counts(adata, layer)
        if layer is None and where != _where():
            msg = (
                f"`.X` does not hold raw counts but {where} does; training reads `.X` or a layer, so copy the "
                "counts to a layer and register that: `adata.layers['counts'] = adata.raw[:, adata.var_names].X` "
                "then `ScPrint.setup_anndata(adata, layer='counts', ...)`."
            )
            raise ValueError(msg)
        check_counts(X, where=where, adata=adata)
        ids = _adata_gene_ids(adata, organism)
        if not any(ids):
            msg = (
                "No gene of `adata.var_names` maps onto the sc_print gene table (human/mouse Ensembl ids or "
                "symbols). Pass `organism=` or run `sp.pp.prepare(adata, gene_id_key=...)` first."
            )
            raise ValueError(msg)
        for key in labels_keys:
            if adata.obs[key].isna().any():
                msg = (
                    f"`adata.obs[{key!r}]` has missing values; fill them with 'unknown' (ignored by the loss), "
                    f"e.g. `adata.obs[{key!r}] = adata.obs[{key!r}].astype(str).fillna('unknown')`."
                )
                raise ValueError(msg)
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        ]
        fields += [CategoricalObsField(REGISTRY_KEYS.label(label_key(k)), k) for k in labels_keys]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    def _label_categories(self, column: str) -> np.ndarray:
        registry = self.adata_manager.get_state_registry(REGISTRY_KEYS.label(label_key(column)))
        return np.asarray(registry.categorical_mapping, dtype=object)

    def _set_data_mapping(self, adata: AnnData, organism: str | None = None) -> None:
        ids = _adata_gene_ids(adata, organism)
        col_vocab = self.vocab.index(ids)
        col_vocab[ids == ""] = -1
        lookup = {}
        for name, column in self.label_columns.items():
            categories = self._label_categories(column)
            lookup[name] = self.hierarchies[name].encode(categories, missing="unknown")
        self.module.set_data_mapping(col_vocab, lookup)

    def _load_gene_embeddings(self, table: pd.DataFrame) -> None:
        missing = ~pd.Index(self.vocab.ids).isin(table.index)
        if missing.all():
            msg = "No vocabulary gene is in the index of `gene_embeddings` (expected Ensembl ids)."
            raise ValueError(msg)
        emb = torch.as_tensor(table.reindex(self.vocab.ids).fillna(0.0).to_numpy(np.float32))
        pooled = torch.nn.functional.adaptive_avg_pool1d(emb.unsqueeze(0), self.module.config.d_model)[0]
        with torch.no_grad():
            self.module.net.gene_encoder.embeddings.weight.copy_(pooled)
        if missing.any():
            logger.warning("%d vocabulary genes have no row in `gene_embeddings`; they start at zero.", missing.sum())

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        *,
        max_steps: int = -1,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        batch_size: int = 64,
        train_size: float | None = None,
        validation_size: float | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 500,
        weighted_sampling: bool = True,
        weight_scaler: float = 50.0,
        gradient_clip_val: float = 100.0,
        precision: str | int | None = None,
        plan_kwargs: dict[str, Any] | None = None,
        datasplitter_kwargs: dict[str, Any] | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        """Pretrain with the multi-task scPRINT recipe (Lightning; DDP and multi-node work as in scvi-tools).

        Parameters
        ----------
        max_epochs
            Epochs; ``None`` with ``max_steps`` set = as many as needed for ``max_steps``.
        max_steps
            Optimiser steps (``-1`` = no limit).
        accelerator, devices
            Lightning accelerator and devices (``strategy=``, ``num_nodes=`` go in ``trainer_kwargs``).
        batch_size
            Cells per step.
        train_size, validation_size
            Split of the cells (see :class:`~scvi.dataloaders.DataSplitter`).
        lr, weight_decay, warmup_steps
            AdamW and its linear warmup.
        weighted_sampling, weight_scaler
            Draw training cells with label-combination weights ``s*n/(n+s)`` (:func:`~sc_print.data.label_weights`).
        gradient_clip_val
            Gradient-norm clipping.
        precision
            Lightning precision; ``None`` = ``"16-mixed"`` on GPU, ``"32-true"`` on CPU.
        plan_kwargs, datasplitter_kwargs
            Extra arguments of :class:`ScPrintTrainingPlan` / :class:`ScPrintDataSplitter`.
        **trainer_kwargs
            Passed to the Lightning trainer (``callbacks``, ``ckpt_path`` to resume, ``strategy``, ...). A
            Lightning ``ModelCheckpoint`` in ``callbacks`` turns ``enable_checkpointing`` on (scvi-tools then
            also adds its own ``SaveCheckpoint`` under ``scvi.settings.logging_dir``); resume by passing one of
            its ``.ckpt`` files as ``ckpt_path`` to ``train`` of a model built on the same data and options.
        """
        if max_epochs is None:
            max_epochs = 100_000 if max_steps > 0 else 10
        if precision is None:
            gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
            precision = "16-mixed" if gpu else "32-true"
        has_val = validation_size is not None and validation_size > 0
        plan = {
            "lr": lr,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "lr_scheduler_metric": "validation_loss" if has_val else "train_loss",
            **(plan_kwargs or {}),
        }
        splitter = dict(datasplitter_kwargs or {})
        if weighted_sampling and self.label_columns:
            labels = pd.DataFrame({c: self.adata.obs[c].astype(str).to_numpy() for c in self.label_columns.values()})
            splitter["cell_weights"] = label_weights(labels, scaler=weight_scaler)
        if any(isinstance(c, ModelCheckpoint) for c in trainer_kwargs.get("callbacks") or []):
            # Lightning refuses a ModelCheckpoint callback when checkpointing is off (the scvi-tools default)
            trainer_kwargs.setdefault("enable_checkpointing", True)
        if has_val:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        else:
            trainer_kwargs.setdefault("limit_val_batches", 0)
        # Lightning keeps the modes it finds: a loaded (or already trained) model is in eval mode, so without
        # this its dropout and stochastic depth would stay off during training
        self.module.train()
        super().train(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            train_size=train_size if train_size is not None else (1.0 if not has_val else None),
            validation_size=validation_size,
            batch_size=batch_size,
            plan_kwargs=plan,
            datasplitter_kwargs=splitter,
            max_steps=max_steps,
            gradient_clip_val=gradient_clip_val,
            precision=precision,
            **trainer_kwargs,
        )

    # ------------------------------------------------------------------ accessors
    @property
    def net(self) -> ScPrintNet:
        """The underlying :class:`~sc_print.nn.ScPrintNet`."""
        return self.module.net

    @property
    def genes(self) -> list[str]:
        """Gene vocabulary (Ensembl ids, token order)."""
        return self.vocab.ids.tolist()

    @property
    def organisms(self) -> tuple[str, ...]:
        """Organisms covered by the vocabulary."""
        return self.vocab.organisms
