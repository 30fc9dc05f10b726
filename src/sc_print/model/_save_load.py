"""Save and load :class:`~sc_print.model.ScPrint` (the seam of scvi-tools' ``model/base/_save_load.py``).

The on-disk format is ``<dir>/model.pt``: tensors and plain Python containers only, read with
``torch.load(weights_only=True)``. Saving never replaces an existing file without ``overwrite=True`` and
writes through temporary files renamed into place, so a failed save leaves the directory as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scvi.model.base import BaseModelClass

from sc_print._device import resolve_device
from sc_print._io import atomic_target, check_free, read_torch_file, require_keys
from sc_print._validation import resolve_adata
from sc_print.data import GeneVocab
from sc_print.nn import ScPrintConfig
from sc_print.ontology import LabelHierarchy

from ._constants import ADATA_FILE, MODEL_FILE, SAVE_FORMAT_VERSION

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from anndata import AnnData

    from ._model import ScPrint

logger = logging.getLogger(__name__)

#: pretraining options stored with the weights (module keyword arguments)
TRAINING_OPTIONS = (
    "max_len",
    "noise",
    "class_scale",
    "deep_scale",
    "generate_scale",
    "dissimilarity_scale",
    "contrastive_scale",
    "temperature",
    "context",
    "context_genes",
)
#: what a file written by ``ScPrint.save`` is called in messages
SAVED_MODEL = "an sc_print model saved by ScPrint.save"
#: keys every saved model has
_REQUIRED = ("format_version", "config", "state_dict", "genes")
#: what a model whose weights were never trained nor loaded says when it is used
UNTRAINED_MESSAGE = (
    "This ScPrint model has random weights (it was neither trained nor loaded from weights): its outputs are "
    "meaningless. Train it (`model.train(...)`) or load weights (`sp.load_model(...)`)."
)
#: keyword arguments of scvi-tools' ``BaseModelClass.load`` that mean nothing here (accepted when left at None)
_SCVI_LOAD_OPTIONS = ("prefix", "backup_url", "datamodule", "allowed_classes_names_list")


def plain(obj: Any) -> Any:
    """Tensors and plain Python containers only (loadable with ``torch.load(weights_only=True)``)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {(k if isinstance(k, int | str) else str(k)): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def minimal_registry(setup_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """scvi-tools registry of a model built without AnnData."""
    import scvi

    return {
        "scvi_version": scvi.__version__,
        "model_name": "ScPrint",
        "setup_method_name": "setup_anndata",
        "setup_args": dict(setup_args or {}),
        "field_registries": {},
    }


def _check_types(state: dict[str, Any], where: str) -> None:
    """Types of the parts of a saved state (a ValueError naming ``where`` for the first wrong one)."""
    sd = state["state_dict"]
    checks = [
        ("config", isinstance(state["config"], dict), "a dict"),
        ("state_dict", isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values()), "tensors"),
        ("genes", isinstance(state["genes"], list | tuple) and all(isinstance(g, str) for g in state["genes"]), "ids"),
        ("hierarchies", isinstance(state.get("hierarchies", {}), dict), "a dict"),
        ("label_columns", isinstance(state.get("label_columns", {}), dict), "a dict"),
        ("training", isinstance(state.get("training", {}), dict), "a dict"),
    ]
    pos = state.get("gene_pos")
    checks.append(("gene_pos", pos is None or isinstance(pos, list | tuple), "a list of integers"))
    for key, ok, expected in checks:
        if not ok:
            msg = f"{where} is not {SAVED_MODEL}: its {key!r} is not {expected}."
            raise ValueError(msg)


class SaveLoadMixin:
    """``save``, ``load`` and ``from_net`` of :class:`~sc_print.model.ScPrint` (mixed into the class)."""

    # ------------------------------------------------------------------ state
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
            "training": {name: getattr(module, name) for name in TRAINING_OPTIONS},
            "setup_args": json.loads(json.dumps(self._setup_args(), default=str)),
            "metadata": json.loads(json.dumps(getattr(self, "metadata_", {}), default=str)),
            "history": self._history_lists(),
            "is_trained": bool(getattr(self, "is_trained_", False)),
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

    def _check_if_trained(self, warn: bool = True, message: str = UNTRAINED_MESSAGE) -> None:  # noqa: FBT001, FBT002
        """Warn (``warn=True``) or raise a RuntimeError when the weights are random (scvi-tools' check)."""
        super()._check_if_trained(warn=warn, message=message)

    # ------------------------------------------------------------------ save
    def save(
        self,
        dir_path: str | os.PathLike,
        *,
        overwrite: bool = False,
        save_anndata: bool = False,
        **anndata_write_kwargs: Any,
    ) -> None:
        """Save weights, architecture, vocabulary and label hierarchies to ``dir_path/model.pt``.

        The file holds only tensors and plain Python containers, so it loads with
        ``torch.load(..., weights_only=True)``: loading never executes pickled code. Nothing that exists is
        replaced unless ``overwrite=True`` (every file the call would write is checked before any is
        written), and each file is written to a temporary name in ``dir_path`` and renamed into place, so a
        failed save leaves the directory as it was.

        Parameters
        ----------
        dir_path
            Output directory (created when needed).
        overwrite
            Replace ``model.pt`` (and ``adata.h5ad`` with ``save_anndata``) when they exist.
        save_anndata
            Also write the registered AnnData as ``dir_path/adata.h5ad``.
        **anndata_write_kwargs
            Passed to :meth:`anndata.AnnData.write_h5ad` (only with ``save_anndata=True``).

        Raises
        ------
        FileExistsError
            A file to write exists and ``overwrite=False``, or ``dir_path`` is a file.
        ValueError
            ``save_anndata=True`` on a model without AnnData, or write options without ``save_anndata``.
        """
        path = Path(dir_path).expanduser()
        if path.exists() and not path.is_dir():
            msg = f"{path} is a file; `dir_path` must be a directory (it is created when missing)."
            raise FileExistsError(msg)
        if anndata_write_kwargs and not save_anndata:
            msg = f"Options {sorted(anndata_write_kwargs)} are for writing the AnnData: pass save_anndata=True too."
            raise ValueError(msg)
        adata = self.adata if save_anndata else None
        if save_anndata and adata is None:
            msg = (
                "save_anndata=True, but this model has no AnnData attached (it was loaded or built without "
                "`adata=`). Save without it, or load with `ScPrint.load(path, adata=adata)`."
            )
            raise ValueError(msg)
        targets = [path / MODEL_FILE] + ([path / ADATA_FILE] if save_anndata else [])
        check_free(targets, overwrite=overwrite)
        state = plain(self._state())
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        try:
            with contextlib.ExitStack() as stack:
                torch.save(state, stack.enter_context(atomic_target(path / MODEL_FILE)))
                if adata is not None:
                    adata.write_h5ad(stack.enter_context(atomic_target(path / ADATA_FILE)), **anndata_write_kwargs)
        except BaseException:
            if created and not any(path.iterdir()):
                path.rmdir()
            raise

    # ------------------------------------------------------------------ load
    @classmethod
    def load(
        cls,
        dir_path: str | os.PathLike,
        adata: AnnData | None = None,
        *,
        accelerator: str = "auto",
        device: int | str | torch.device = "auto",
        **kwargs: Any,
    ) -> ScPrint:
        """Load a model saved with :meth:`save` (``torch.load(weights_only=True)``: no code is executed).

        Parameters
        ----------
        dir_path
            Directory holding ``model.pt`` (or the file itself).
        adata
            Optional AnnData to attach for further training; it is registered with the saved setup
            arguments when needed. Inference (``sp.tl.*``) needs no AnnData here.
        accelerator
            ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"gpu"`` or ``"mps"``, as in scvi-tools.
        device
            ``"auto"``, a device index or a device such as ``"cuda:1"`` (the same options as
            :func:`sc_print.load_model`).
        **kwargs
            scvi-tools' ``prefix``, ``backup_url``, ``datamodule`` and ``allowed_classes_names_list`` are
            accepted when ``None``; any other value is an error.

        Returns
        -------
        The model in eval mode on the chosen device.

        Raises
        ------
        FileNotFoundError
            Nothing saved at ``dir_path``.
        ValueError
            The file is not a saved sc_print model (the message names it and says why), a pickle that would
            run code (refused for safety), or the device does not exist.
        """
        unknown = {k: v for k, v in kwargs.items() if k not in _SCVI_LOAD_OPTIONS or v is not None}
        if unknown:
            msg = f"ScPrint.load does not support {sorted(unknown)}."
            raise TypeError(msg)
        torch_device = resolve_device(accelerator, device)  # a bad device fails before the file is read
        path = Path(dir_path).expanduser()
        file = path if path.is_file() else path / MODEL_FILE
        if not file.is_file():
            msg = f"No saved sc_print model at {file}."
            raise FileNotFoundError(msg)
        state = read_torch_file(file, what=SAVED_MODEL)
        model = cls._from_state(state, adata=adata, source=file)
        model.module.to(torch_device)
        return model

    @classmethod
    def _from_state(
        cls, state: Any, *, adata: AnnData | None = None, source: str | os.PathLike | None = None
    ) -> ScPrint:
        where = str(source) if source is not None else "The saved state"
        if isinstance(state, dict) and "hyper_parameters" in state and "format_version" not in state:
            msg = (
                f"{where} is an official scPRINT (Lightning) checkpoint, not {SAVED_MODEL}; load it with "
                "`sc_print.load_model(path)`."
            )
            raise ValueError(msg)
        require_keys(state, _REQUIRED, path=Path(where), what=SAVED_MODEL)
        version = state.get("format_version")
        if version != SAVE_FORMAT_VERSION:
            msg = (
                f"{where}: saved model format {version!r} is not supported (this sc_print reads format "
                f"{SAVE_FORMAT_VERSION}); save it again with the sc_print version that wrote it."
            )
            raise ValueError(msg)
        _check_types(state, where)
        try:
            config = ScPrintConfig.from_dict(state["config"])
            hierarchies = {name: LabelHierarchy.from_dict(d) for name, d in state.get("hierarchies", {}).items()}
            model = cls.from_net(
                config=config,
                state_dict=state["state_dict"],
                genes=state["genes"],
                gene_pos=state.get("gene_pos"),
                hierarchies=hierarchies,
                label_columns=state.get("label_columns", {}),
                training=state.get("training", {}),
                setup_args=state.get("setup_args", {}),
                metadata=state.get("metadata", {}),
                organisms=state.get("organisms"),
                is_trained=bool(state.get("is_trained", True)),  # files of 0.1.0 hold trained weights
            )
        except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as err:
            msg = f"{where} is not a usable {SAVED_MODEL[3:]}: {err}"
            raise ValueError(msg) from err
        if adata is not None:  # errors about the AnnData are the user's, not the file's: outside the wrap
            model._attach(adata, state.get("setup_args", {}))
        return model

    def _attach(self, adata: AnnData, setup_args: dict[str, Any] | None) -> None:
        """Register ``adata`` with the saved setup arguments and attach it (weights and flags are kept)."""
        adata = resolve_adata(adata)
        args = {k: v for k, v in (setup_args or {}).items() if k in ("layer", "labels_keys", "batch_key", "organism")}
        type(self).setup_anndata(adata, **args)
        kept = {name: getattr(self, name) for name in ("is_trained_", "_model_summary_string")}
        BaseModelClass.__init__(self, adata)  # resets the scvi-tools bookkeeping, not the module
        for name, value in kept.items():
            setattr(self, name, value)
        self._set_data_mapping(self.adata, args.get("organism"))

    @staticmethod
    def _summary(config: ScPrintConfig, n_genes: int, labels: Sequence[str]) -> str:
        return (
            f"ScPrint model ({config.d_model}d, {config.nlayers} layers, {config.nhead} heads) over "
            f"{n_genes} genes, labels {list(labels)}"
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
        is_trained: bool | None = None,
    ) -> ScPrint:
        """Build a model from its parts (used by :meth:`load` and the official-checkpoint reader).

        Parameters
        ----------
        config
            Architecture.
        state_dict
            Weights of :class:`~sc_print.nn.ScPrintNet` (``None`` keeps the random init: the model is then
            untrained, ``model.is_trained_`` is ``False`` and its getters warn).
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
        is_trained
            Value of ``model.is_trained_``; ``None`` = whether ``state_dict`` is given.

        Returns
        -------
        The model in eval mode on the CPU.
        """
        hierarchies = dict(hierarchies or {})
        model = cls.__new__(cls)
        BaseModelClass.__init__(model, registry=minimal_registry(setup_args))
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
        model.module.eval()
        model.is_trained_ = state_dict is not None if is_trained is None else bool(is_trained)
        model.metadata_ = dict(metadata or {})
        model._model_summary_string = cls._summary(config, len(model.vocab), list(hierarchies))
        model.init_params_ = {"non_kwargs": {}, "kwargs": {}}
        if adata is not None:
            model._attach(adata, setup_args)
        return model
