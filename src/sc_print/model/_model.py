"""ScPrint: the scvi-tools model class (data registration, pretraining, save/load)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from sc_print._keys import Key
from sc_print._validation import _where, check_counts, get_counts, resolve_adata
from sc_print.data import GeneVocab, label_weights, map_gene_names
from sc_print.nn import PRESETS, ScPrintConfig, ScPrintNet
from sc_print.ontology import LabelHierarchy, label_key

from ._constants import MODEL_FILE, REGISTRY_KEYS, SAVE_FORMAT_VERSION
from ._module import ScPrintModule
from ._training import ScPrintDataSplitter, ScPrintTrainingPlan

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)

#: pretraining options stored with the weights (module keyword arguments)
_TRAINING_OPTIONS = (
    "max_len",
    "noise",
    "class_scale",
    "generate_scale",
    "dissimilarity_scale",
    "contrastive_scale",
    "temperature",
)


def _adata_gene_ids(adata: AnnData, organism: str | None = None) -> np.ndarray:
    """Ensembl id of every column (``""`` when unmapped): from ``sp.pp.prepare`` if run, else mapped now."""
    if Key.var.gene_id in adata.var:
        return adata.var[Key.var.gene_id].fillna("").astype(str).to_numpy()
    ids, _ = map_gene_names(adata.var_names, organism=organism)
    return np.asarray(ids, dtype=str)


def _plain(obj: Any) -> Any:
    """Tensors and plain Python containers only (loadable with ``torch.load(weights_only=True)``)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {(k if isinstance(k, int | str) else str(k)): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _minimal_registry() -> dict[str, Any]:
    import scvi

    return {
        "scvi_version": scvi.__version__,
        "model_name": "ScPrint",
        "setup_method_name": "setup_anndata",
        "setup_args": {},
        "field_registries": {},
    }


class ScPrint(UnsupervisedTrainingMixin, BaseModelClass):
    """scPRINT single-cell foundation model as an scvi-tools model.

    Build it on an AnnData registered with :meth:`setup_anndata`, pretrain it with :meth:`train`, and use it
    through ``sp.tl.embed / denoise / grn``. Official checkpoints load with :func:`sc_print.load_model`.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (raw counts).
    size
        Size preset: ``"tiny"``, ``"small"`` (d=128, 4 layers), ``"medium"`` (256, 8) or ``"large"``
        (512, 16); explicit ``d_model``/``nlayers``/``nhead`` override it.
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
        preset = dict(PRESETS[size])
        overrides = {"d_model": d_model, "nhead": nhead, "nlayers": nlayers, "layers_cls": layers_cls}
        preset.update({k: v for k, v in overrides.items() if v is not None})
        if d_model is not None and layers_cls is None:
            preset["layers_cls"] = [d_model]
        config = ScPrintConfig(
            n_genes=len(self.vocab),
            num_heads_kv=num_heads_kv,
            normalization=normalization,
            depth_atinput=depth_atinput,
            labels={name: h.n_leaves for name, h in self.hierarchies.items()},
            expr_decoder=expr_decoder,
            dropout=dropout,
            drop_path_rate=drop_path_rate,
            attention=attention,
            freeze_gene_embeddings=gene_embeddings is not None,
            **preset,
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
        self._model_summary_string = (
            f"ScPrint model ({config.d_model}d, {config.nlayers} layers, {config.nhead} heads) over "
            f"{len(self.vocab)} genes, labels {list(self.hierarchies)}"
        )
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

    # ------------------------------------------------------------------ save / load
    def _state(self) -> dict[str, Any]:
        module = self.module
        return {
            "format_version": SAVE_FORMAT_VERSION,
            "config": module.config.to_dict(),
            # the position table is derived from gene_pos: not stored
            "state_dict": {k: v.detach().cpu() for k, v in module.net.state_dict().items() if k != "pos_encoder.pe"},
            "genes": self.genes,
            "gene_pos": [int(p) for p in self.vocab.positions],
            "organisms": list(self.vocab.organisms),
            "hierarchies": {name: h.to_dict() for name, h in self.hierarchies.items()},
            "label_columns": dict(self.label_columns),
            "training": {name: getattr(module, name) for name in _TRAINING_OPTIONS},
            "setup_args": json.loads(json.dumps(self._setup_args(), default=str)),
            "metadata": json.loads(json.dumps(getattr(self, "metadata_", {}), default=str)),
            "history": self._history_lists(),
        }

    def _setup_args(self) -> dict[str, Any]:
        try:
            return dict(self.registry_.get("setup_args", {}))
        except AttributeError:
            return {}

    def _history_lists(self) -> dict[str, list[float]]:
        hist = getattr(self, "history_", None) or {}
        out = {}
        for key, frame in hist.items():
            try:
                out[key] = [float(v) for v in np.asarray(frame).ravel()]
            except (TypeError, ValueError):
                continue
        return out

    def save(
        self, dir_path: str | os.PathLike, *, overwrite: bool = False, save_anndata: bool = False, **kwargs: Any
    ) -> None:
        """Save weights, architecture, vocabulary and label hierarchies to ``dir_path/model.pt``.

        The file holds only tensors and plain Python containers, so it loads with
        ``torch.load(..., weights_only=True)``: loading never executes pickled code.

        Parameters
        ----------
        dir_path
            Output directory (created).
        overwrite
            Replace an existing saved model.
        save_anndata
            Also write the registered AnnData as ``adata.h5ad``.
        **kwargs
            Passed to :meth:`anndata.AnnData.write_h5ad`.
        """
        path = Path(dir_path)
        if (path / MODEL_FILE).exists() and not overwrite:
            msg = f"{path / MODEL_FILE} exists; pass overwrite=True to replace it."
            raise ValueError(msg)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(_plain(self._state()), path / MODEL_FILE)
        if save_anndata:
            self.adata.write_h5ad(path / "adata.h5ad", **kwargs)

    @classmethod
    def load(
        cls,
        dir_path: str | os.PathLike,
        adata: AnnData | None = None,
        *,
        accelerator: str = "auto",
        device: int | str = "auto",
        **kwargs: Any,
    ) -> ScPrint:
        """Load a model saved with :meth:`save` (``torch.load(weights_only=True)``).

        Parameters
        ----------
        dir_path
            Directory holding ``model.pt`` (or the file itself).
        adata
            Optional AnnData to attach for further training; it is registered with the saved setup
            arguments when needed. Inference (``sp.tl.*``) needs no AnnData here.
        accelerator, device
            Where to put the weights.
        **kwargs
            Ignored (scvi-tools compatibility).
        """
        from sc_print._utils import resolve_device

        path = Path(dir_path)
        file = path if path.is_file() else path / MODEL_FILE
        if not file.exists():
            msg = f"No saved sc_print model at {file}."
            raise FileNotFoundError(msg)
        state = torch.load(file, map_location="cpu", weights_only=True)
        model = cls._from_state(state, adata=adata)
        model.module.to(resolve_device(accelerator, device))
        return model

    @classmethod
    def _from_state(cls, state: dict[str, Any], *, adata: AnnData | None = None) -> ScPrint:
        version = state.get("format_version")
        if version != SAVE_FORMAT_VERSION:
            msg = f"Saved model format {version!r} is not supported (expected {SAVE_FORMAT_VERSION})."
            raise ValueError(msg)
        hierarchies = {name: LabelHierarchy.from_dict(d) for name, d in state["hierarchies"].items()}
        return cls.from_net(
            config=ScPrintConfig.from_dict(state["config"]),
            state_dict=state["state_dict"],
            genes=state["genes"],
            gene_pos=state["gene_pos"],
            hierarchies=hierarchies,
            label_columns=state.get("label_columns", {}),
            training=state.get("training", {}),
            setup_args=state.get("setup_args", {}),
            metadata=state.get("metadata", {}),
            adata=adata,
        )

    @classmethod
    def from_net(
        cls,
        *,
        config: ScPrintConfig,
        state_dict: dict[str, torch.Tensor] | None,
        genes: Sequence[str],
        gene_pos: Sequence[int] | None = None,
        hierarchies: dict[str, LabelHierarchy] | None = None,
        label_columns: dict[str, str] | None = None,
        training: dict[str, Any] | None = None,
        setup_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        adata: AnnData | None = None,
        organisms: Sequence[str] | None = None,
    ) -> ScPrint:
        """Build a trained model from its parts (used by :meth:`load` and the official-checkpoint reader).

        Parameters
        ----------
        config
            Architecture.
        state_dict
            Weights of :class:`~sc_print.nn.ScPrintNet` (``None`` keeps the random init).
        genes, gene_pos
            Vocabulary (Ensembl ids) and genomic positions.
        hierarchies
            ``{label: LabelHierarchy}`` in class order.
        label_columns
            ``{label: .obs column}`` used at training.
        training
            Pretraining options of :class:`ScPrintModule`.
        setup_args
            Arguments of :meth:`setup_anndata` (replayed when ``adata`` is given).
        metadata
            Free metadata (``name``, ``sha256``, ``generation``, ...), stored in ``model.metadata_``.
        adata
            Optional AnnData to attach (registered with ``setup_args`` when needed).
        organisms
            Organisms of the vocabulary (``None`` = inferred from the gene ids).
        """
        hierarchies = dict(hierarchies or {})
        if adata is not None:
            adata = resolve_adata(adata)
            args = {
                k: v for k, v in (setup_args or {}).items() if k in ("layer", "labels_keys", "batch_key", "organism")
            }
            cls.setup_anndata(adata, **args)
            model = cls.__new__(cls)
            BaseModelClass.__init__(model, adata)
        else:
            model = cls.__new__(cls)
            registry = _minimal_registry()
            registry["setup_args"] = dict(setup_args or {})
            BaseModelClass.__init__(model, registry=registry)
        model.vocab = GeneVocab(list(genes), gene_pos, organisms=organisms)
        model.hierarchies = hierarchies
        model.label_columns = dict(label_columns or {})
        model.module = cls._module_cls(
            config.to_dict(),
            list(model.vocab.positions),
            parent_matrices={name: h.parent_matrix for name, h in hierarchies.items()},
            **(training or {}),
        )
        if state_dict is not None:
            missing, unexpected = model.module.net.load_state_dict(state_dict, strict=False)
            missing = [k for k in missing if k != "pos_encoder.pe"]  # rebuilt from gene_pos when absent
            if missing or unexpected:
                msg = f"Weights do not match the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}."
                raise ValueError(msg)
        if adata is not None:
            model._set_data_mapping(model.adata, args.get("organism"))
        model.module.eval()
        model.is_trained_ = True
        model.metadata_ = dict(metadata or {})
        model._model_summary_string = (
            f"ScPrint model ({config.d_model}d, {config.nlayers} layers, {config.nhead} heads) over "
            f"{len(model.vocab)} genes, labels {list(hierarchies)}"
        )
        model.init_params_ = {"non_kwargs": {}, "kwargs": {}}
        return model
