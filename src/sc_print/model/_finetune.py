"""Fine-tuning of a trained :class:`~sc_print.model.ScPrint` on the user's labels, and calibrated abstention.

:meth:`FinetuneMixin.finetune` returns a new model (the original is untouched): the weights of the base model are
copied into a network with one classifier per requested label column (new heads for new labels, the existing
head re-fitted for a label the model already predicts), trained with the Lightning machinery of
:meth:`ScPrint.train <sc_print.model.ScPrint.train>` together with the self-supervised pretraining losses, and
calibrated on held-out cells. The calibration (a confidence threshold and a novelty test per label) is stored in
``model.metadata_["calibration"]`` and applied by ``sp.tl.embed`` / :meth:`ScPrint.abstain
<sc_print.model.ScPrint.abstain>` (``_abstention.py``).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch

from sc_print._validation import get_counts, resolve_adata
from sc_print.ontology import LabelHierarchy, is_ontology_term, is_unknown, label_key

from ._calibration import calibrate_label
from ._probe import fit_heads

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

    from ._model import ScPrint

logger = logging.getLogger(__name__)

#: what a cell gets instead of a label when the model abstains
UNKNOWN = "unknown"
#: ``train=`` options of :meth:`FinetuneMixin.finetune`
TRAIN_MODES = ("all", "last_layers", "heads")
#: ``context=`` options of :meth:`FinetuneMixin.finetune`
FINETUNE_CONTEXTS = ("top_expr", "random_expr", "hvg")
#: ``head=`` options of :meth:`FinetuneMixin.finetune`
HEADS = ("pooled", "token")
#: probe ``(steps, lr)`` of each head kind when ``probe_steps`` / ``probe_lr`` are ``None``
PROBE_DEFAULTS = {"pooled": (1500, 2e-3), "token": (300, 3e-3)}


class _GradReverse(torch.autograd.Function):
    """Identity forward, ``-scale`` times the gradient backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Gradient reversal: ``x`` forward, ``-scale * grad`` backward.

    Parameters
    ----------
    x
        Input tensor.
    scale
        Factor of the reversed gradient.

    Returns
    -------
    ``x`` (a view) whose gradient is reversed.
    """
    return _GradReverse.apply(x, float(scale))


class BatchAdversary(torch.nn.Module):
    """Batch classifier on the cell embedding behind a gradient-reversal layer (training only, not saved).

    Parameters
    ----------
    d_model
        Embedding width.
    n_batches
        Number of batches.
    """

    def __init__(self, d_model: int, n_batches: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d_model, d_model), torch.nn.ReLU(), torch.nn.Linear(d_model, n_batches)
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` embedding → ``[B, n_batches]`` logits, with the gradient into ``embedding`` reversed."""
        return self.net(grad_reverse(embedding))


# ---------------------------------------------------------------------------------------------- input checks
def _clean_labels(adata: AnnData, column: str, min_cells: int) -> tuple[pd.Series, dict[str, int]]:
    """Labels of ``column`` as strings (``"unknown"`` for missing), rare classes set to unknown (with a warning)."""
    if column not in adata.obs.columns:
        msg = f"Label column {column!r} not found in `adata.obs`; available columns: {list(adata.obs.columns)}."
        raise KeyError(msg)
    raw = adata.obs[column].astype(object).to_numpy()
    values = pd.Series([UNKNOWN if is_unknown(v) else str(v) for v in raw], index=adata.obs_names, dtype=object)
    known = values[values != UNKNOWN]
    if known.empty:
        msg = (
            f"`adata.obs[{column!r}]` has no usable label: every value is missing or 'unknown'. Fine-tuning needs "
            "labelled cells; fill the column or pick another."
        )
        raise ValueError(msg)
    counts = known.value_counts()
    rare = counts[counts < min_cells]
    if len(rare):
        logger.warning(
            "%d class(es) of `adata.obs[%r]` have fewer than min_cells_per_class=%d cells and are ignored "
            "(treated as unknown): %s.",
            len(rare),
            column,
            min_cells,
            dict(rare.head(10)),
        )
        values[values.isin(rare.index)] = UNKNOWN
    kept = counts[counts >= min_cells]
    if len(kept) < 2:
        msg = (
            f"`adata.obs[{column!r}]` has {len(kept)} class(es) with at least min_cells_per_class={min_cells} cells "
            f"(counts: {dict(counts.head(10))}); a classifier needs at least two. Add cells of other classes or "
            "lower `min_cells_per_class`."
        )
        raise ValueError(msg)
    return values, {str(k): int(v) for k, v in kept.items()}


def _split(labels: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out cells: ``fraction`` of every class of the first label (stratified, seeded)."""
    held = np.zeros(len(labels), dtype=bool)
    if fraction <= 0:
        return held
    gen = np.random.default_rng(seed)
    strata = labels.iloc[:, 0].to_numpy()
    for value in pd.unique(strata):
        idx = np.flatnonzero(strata == value)
        n = int(round(fraction * len(idx)))
        if value != UNKNOWN and len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        held[gen.choice(idx, size=n, replace=False)] = True
    return held


def _training_adata(adata: AnnData, layer: str | None, labels: pd.DataFrame, batch_key: str | None) -> AnnData:
    """A new AnnData (counts in ``.X``, cleaned labels, batches) so that registration never touches the user's."""
    import anndata as ad

    X, _ = get_counts(adata, layer)
    obs = labels.copy()
    if batch_key is not None:
        obs[batch_key] = adata.obs[batch_key].astype(str).to_numpy()
    for column in obs.columns:
        obs[column] = pd.Categorical(obs[column].astype(str))
    return ad.AnnData(X=X.copy(), obs=obs, var=adata.var.copy())


def _sha256(model: ScPrint) -> tuple[str, str]:
    """Checksum of the model and what it is of: the recorded file checksum, else the sha256 of its weights."""
    recorded = (model.metadata_ or {}).get("sha256")
    if recorded:
        return str(recorded), "file"
    digest = hashlib.sha256()
    for key, value in sorted(model.net.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest(), "weights (state dict tensors in key order)"


def _init_head(new: torch.nn.Module, old: torch.nn.Module, new_leaves: list[str], old_leaves: list[str]) -> None:
    """Copy the hidden layers of an existing classifier and the output rows of the leaves both share."""
    new_sd, old_sd = new.state_dict(), old.state_dict()
    for key, value in old_sd.items():
        if not key.startswith("out_layer") and key in new_sd and new_sd[key].shape == value.shape:
            new_sd[key] = value.clone()
    index = {leaf: i for i, leaf in enumerate(old_leaves)}
    for j, leaf in enumerate(new_leaves):
        if leaf in index:
            new_sd["out_layer.weight"][j] = old_sd["out_layer.weight"][index[leaf]]
            new_sd["out_layer.bias"][j] = old_sd["out_layer.bias"][index[leaf]]
    new.load_state_dict(new_sd)


def _transfer_weights(
    new: ScPrint, base: ScPrint, hierarchies: dict[str, LabelHierarchy], refit: Sequence[str]
) -> None:
    """Base weights into the new network; new label tokens start at the mean label token (plus small noise).

    Kept classifiers are copied whole; re-fitted token classifiers (``refit``) start from the base weights of
    the leaves they share; re-fitted pooling or read-out classifiers are fitted afresh by the probe.
    """
    old_net, new_net = base.net, new.net
    old_sd = old_net.state_dict()
    new_sd = new_net.state_dict()
    for key, value in old_sd.items():
        if key.startswith(("cls_decoders.", "class_encoder.")):
            continue
        if key in new_sd and new_sd[key].shape == value.shape:
            new_sd[key] = value.clone()
    old_rows = old_net.class_encoder.embedding.weight.detach()
    old_labels = list(old_net.config.labels)
    rows = new_sd["class_encoder.embedding.weight"]
    rows[0] = old_rows[0]
    mean_label = old_rows[1:].mean(0) if len(old_labels) else old_rows[0]
    for i, label in enumerate(new_net.config.labels, start=1):
        if label in old_labels:
            rows[i] = old_rows[1 + old_labels.index(label)]
        else:
            rows[i] = mean_label + 0.02 * torch.randn_like(mean_label)
    new_net.load_state_dict(new_sd)
    for label, dec in new_net.cls_decoders.items():
        if label not in old_net.cls_decoders:
            continue
        old = old_net.cls_decoders[label]
        if label not in refit:
            dec.load_state_dict(old.state_dict())
        elif dec.pool is None and dec.readout is None:
            _init_head(dec, old, hierarchies[label].leaves, base.label_hierarchy(label).leaves)


def _freeze(model: ScPrint, train: str, n_layers: int) -> list[str]:
    """Set ``requires_grad`` for the ``train`` mode; returns the trainable top-level parts."""
    net = model.net
    for p in net.parameters():
        p.requires_grad_(False)
    parts: list[torch.nn.Module] = [net.cls_decoders]
    names = ["cls_decoders"]
    if train in ("last_layers", "all"):
        parts += [net.class_encoder, net.expr_decoder, net.transformer.norm]
        names += ["class_encoder", "expr_decoder", "transformer.norm"]
        blocks = list(net.transformer.blocks)
        keep = blocks if train == "all" else blocks[len(blocks) - n_layers :]
        parts += keep
        names += [f"transformer.blocks.{i}" for i in range(len(blocks) - len(keep), len(blocks))]
    if train == "all":
        parts += [net.expr_encoder, net.pos_encoder] + ([net.depth_encoder] if hasattr(net, "depth_encoder") else [])
        names += ["expr_encoder", "depth_encoder"]
        if not net.config.freeze_gene_embeddings:
            parts.append(net.gene_encoder)
            names.append("gene_encoder")
    for part in parts:
        for p in part.parameters():
            p.requires_grad_(True)
    return names


class FinetuneMixin:
    """``finetune`` of :class:`~sc_print.model.ScPrint` (mixed into the class)."""

    def finetune(
        self,
        adata: AnnData,
        *,
        labels_keys: str | Sequence[str],
        batch_key: str | None = None,
        layer: str | None = None,
        max_steps: int = 150,
        train: Literal["all", "last_layers", "heads"] = "all",
        n_layers: int = 1,
        keep_labels: bool = True,
        ssl_scale: float = 1.0,
        class_scale: float = 1.5,
        batch_scale: float = 0.5,
        max_len: int = 256,
        context: Literal["top_expr", "random_expr", "hvg"] = "top_expr",
        head: Literal["pooled", "token"] = "pooled",
        expression_readout: bool = True,
        deep_scale: float | None = None,
        noise: float | None = 0.3,
        batch_size: int = 32,
        lr: float = 3e-4,
        warmup_steps: int = 10,
        probe_steps: int | None = None,
        probe_lr: float | None = None,
        heldout_fraction: float = 0.1,
        min_cells_per_class: int = 5,
        target_accuracy: float = 0.9,
        seed: int = 0,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        name: str | None = None,
        **trainer_kwargs: Any,
    ) -> ScPrint:
        """Fine-tune a copy of this model on labelled cells; the original model is not changed.

        One classifier per column of ``labels_keys``: a new head (and a new label token) for a label the model
        does not predict, the existing head re-fitted to the column's classes (rows of shared classes start from
        the base weights) for one it does. Columns whose known values are all ontology ids (``CL:0000236``)
        get the ontology parents and the hierarchical loss (a coarse label trains its leaves); free-text labels
        get a flat head. Training is :meth:`ScPrint.train <sc_print.model.ScPrint.train>` (Lightning, so
        ``accelerator``/``devices``/``strategy`` work as there) with the pretraining recipe: expression denoising
        and bottleneck reconstruction keep adapting the embedding and the denoiser to the new cells, weighted by
        ``ssl_scale``, plus ``class_scale`` times the classification loss.

        With ``batch_key``, a batch classifier reads the cell embedding through a gradient-reversal layer
        (domain-adversarial training, Ganin & Lempitsky 2015, as scGPT's "DAR"): the classifier learns to tell
        the batches apart and the trunk is pushed, with weight ``batch_scale``, to make them indistinguishable.
        It is used rather than conditioning the model on the batch (scVI) because scPRINT sees no batch at
        inference: a query from a new batch is embedded as is, so the batch has to be kept out of the embedding
        itself. The adversary is a training-time part and is not saved.

        A stratified ``heldout_fraction`` of the labelled cells is kept out of training and used to calibrate
        abstention (see :meth:`~sc_print.model.ScPrint.abstain`): ``min_confidence`` (the smallest probability
        threshold whose kept cells reach ``target_accuracy``) and a novelty threshold on the distance of a cell's
        label token to its predicted class. Both are stored in ``metadata_["calibration"]``, with the lineage in
        ``metadata_["finetune"]`` (base model name and sha256, data, classes, steps, ``losses`` as
        ``{name: [first epoch, last epoch]}``); :meth:`~sc_print.model.ScPrint.save` keeps them.

        Parameters
        ----------
        adata
            AnnData with raw counts (``.X``, or ``layer``). It is never modified: a new AnnData is registered.
        labels_keys
            ``.obs`` column(s) of labels. Missing values and ``"unknown"`` are ignored by the loss.
        batch_key
            ``.obs`` column of batches kept out of the embedding (adversarially); ``None``: no batch term.
        layer
            Layer with the raw counts.
        max_steps
            Optimiser steps (of ``batch_size`` cells, ``max_len`` genes each); the time does not grow with the
            number of cells, except for the calibration pass over the held-out cells. ``train="heads"`` is the
            fastest option.
        train
            Trainable parts: ``"heads"`` (classifiers only: the embedding and denoiser stay the base model's and
            the self-supervised losses are skipped), ``"last_layers"`` (classifiers, label tokens, the last
            ``n_layers`` transformer blocks and the expression decoder) or ``"all"``.
        n_layers
            Transformer blocks trained with ``train="last_layers"``.
        keep_labels
            Keep the base model's other classifiers (they are not trained, and drift with the trunk); ``False``
            drops them.
        ssl_scale
            Weight of the self-supervised losses (denoising + bottleneck reconstruction); ``0`` turns them off.
        class_scale
            Weight of the classification loss.
        batch_scale
            Weight of the adversarial batch loss (with ``batch_key``).
        max_len, context
            Context of each cell in training: its ``max_len`` most expressed genes (``"top_expr"``, the default),
            ``max_len`` expressed genes drawn at random (``"random_expr"``, scPRINT's pretraining) or one panel
            shown to every cell, the ``max_len`` highly variable genes (seurat_v3) of the fine-tuning cells
            (``"hvg"``; zeros included). The model records it (``metadata_["context"]``, with the panel's gene
            ids for ``"hvg"``) and ``sp.tl.embed`` uses it by default, so that inference sees the cells as
            training did; the panel is a choice made once on the reference and reused as is on every query
            (panel genes a query does not measure are left out, with a warning). ``"top_expr"`` is the default
            because a random draw of a few hundred of a cell's thousands of expressed genes mostly holds weakly
            expressed, noisy genes; ``"hvg"`` shows every cell the same genes (as the PCA + logistic-regression
            baseline does), most of them unexpressed in any one cell.
        noise
            Fraction of the counts removed from the input in training (the denoising task); ``None``: the base
            model's (0.6 for scPRINT). The classifiers see the same noisy inputs, so less noise than in
            pretraining is the default (chosen on the splits of ``benchmarks/annotation.py``).
        batch_size, lr, warmup_steps
            Optimisation (AdamW with linear warmup, as :meth:`ScPrint.train <sc_print.model.ScPrint.train>`), then a
            constant rate: the plateau schedule of pretraining is off, as small references make epochs of a few
            steps.
        head
            Classifier of each label in ``labels_keys``: ``"pooled"`` (the default) reads the label's output token
            and an attention pool of the cell's output gene tokens (:class:`~sc_print.nn.GenePool`: a per-token
            MLP and 4 learned softmax queries); ``"token"`` reads the label token alone, as scPRINT's classifiers
            do. On the splits of ``benchmarks/annotation.py`` the small embedded model's label token loses much of
            what tells the classes apart (a logistic regression on the genes it sees does better than one on its
            tokens; ``benchmarks/annotation_diagnosis.py``), and the gene outputs still carry it. Without the
            expression read-out, training the trunk after the probe lowers the accuracy there
            (``benchmarks/annotation.py`` in the README Results).
        expression_readout
            Add to each new classifier a linear read-out of the cell's context expression
            (:class:`~sc_print.nn.ExpressionReadout`: one weight per gene and class on ``log1p`` of the counts per
            10,000 in context), a wide-and-deep classifier (Cheng et al. 2016). The probe fits it first, alone,
            as a logistic regression (L-BFGS to convergence, L2 as scikit-learn's ``C=1``), then the rest of the
            head on top of it; it stays frozen in the training that follows (with ``probe_steps=0`` it starts at
            zero and is trained with the rest). On by default: on the splits of ``benchmarks/annotation.py`` the
            small embedded model's outputs alone are less accurate than a logistic regression on the genes it is
            shown, and the read-out gives the classifier that regression to start from; ``False`` keeps the
            classifier on the transformer outputs only (scPRINT's design). It adds ``n_genes x n_classes``
            weights per label.
        deep_scale
            With the read-out: weight of the classification loss of the rest of the head alone (its logits without
            the read-out, :meth:`~sc_print.nn.ClsDecoder.deep_logits`), added in training to that of the whole
            classifier (deep supervision, Lee et al. 2015); ``None`` is 1.0, ``0`` turns it off. A read-out that
            already separates the reference otherwise leaves the label token (part of the cell embedding) and the
            trunk almost no classification signal, and the fine-tuned embedding does not learn the labels: on the
            CellBench split of ``benchmarks/annotation.py`` its scib-metrics scores fall below the zero-shot
            model's without deep supervision and rise above them with it, at the same accuracy or better.
        probe_steps, probe_lr
            Probing before fine-tuning (LP-FT, Kumar et al. 2022; see ``sc_print.model._probe``): the new heads
            are first fitted for ``probe_steps`` AdamW steps at ``probe_lr`` on the outputs of the frozen base
            model (token heads: all cells per step, first layer initialised on the standardised tokens; pooled
            heads: 64 cells per step, on the gene outputs of at most 4,096 cells kept in memory as float16).
            Without it a new head starts from a near-constant token and barely learns in a short run. ``0`` skips
            it; ``None``: 1,500 steps at 2e-3 (pooled) or 300 at 3e-3 (token).
        heldout_fraction
            Fraction of the labelled cells (stratified by the first label) held out for calibration; ``0``
            trains on every cell and records no calibration.
        min_cells_per_class
            Classes with fewer cells are ignored (with a warning); fewer than two classes left is an error.
        target_accuracy
            Accuracy of the kept held-out cells that sets ``min_confidence``.
        seed
            Seed of the split, of the new weights and of training.
        accelerator, devices
            Lightning accelerator and devices.
        name
            Name of the new model (``None``: ``"<base>-finetuned"``).
        **trainer_kwargs
            Passed to :meth:`ScPrint.train <sc_print.model.ScPrint.train>` (``callbacks``, ``ckpt_path`` to
            resume from a Lightning checkpoint of the same call, ``max_time``, ``enable_progress_bar``...).

        Returns
        -------
        The fine-tuned model (eval mode), a new object.

        Raises
        ------
        KeyError
            A label or batch column is missing.
        ValueError
            A label column without usable labels or with fewer than two classes of ``min_cells_per_class`` cells,
            a label named like a built-in token, bad options, or counts that are not raw counts.

        Examples
        --------
        >>> import sc_print as sp
        >>> base = sp.load_model("default")  # doctest: +SKIP
        >>> ft = base.finetune(reference, labels_keys="cell_line", max_steps=100)  # doctest: +SKIP
        >>> sp.tl.embed(query, model=ft)  # doctest: +SKIP
        >>> query.obs["scprint_pred_cell_line"].value_counts()  # doctest: +SKIP
        """
        from lightning.pytorch import seed_everything

        self._check_if_trained(warn=True)
        if train not in TRAIN_MODES:
            msg = f"Unknown train={train!r}; choose one of {list(TRAIN_MODES)}."
            raise ValueError(msg)
        n_blocks = len(self.net.transformer.blocks)
        if not isinstance(n_layers, int) or not 1 <= n_layers <= n_blocks:
            msg = f"`n_layers` must be an integer in [1, {n_blocks}] (the model has {n_blocks} blocks)."
            raise ValueError(msg)
        if noise is not None and not (isinstance(noise, int | float) and 0 <= noise < 1):
            msg = f"`noise` must be a fraction in [0, 1) or None, got {noise!r}."
            raise ValueError(msg)
        if context not in FINETUNE_CONTEXTS:
            msg = f"Unknown context={context!r}; choose one of {list(FINETUNE_CONTEXTS)}."
            raise ValueError(msg)
        if head not in HEADS:
            msg = f"Unknown head={head!r}; choose one of {list(HEADS)}."
            raise ValueError(msg)
        if not isinstance(expression_readout, bool):
            msg = f"`expression_readout` must be True or False, got {expression_readout!r}."
            raise TypeError(msg)
        explicit_deep = deep_scale is not None
        deep_scale = 1.0 if deep_scale is None else deep_scale
        if isinstance(deep_scale, bool) or not isinstance(deep_scale, int | float) or not deep_scale >= 0:
            msg = f"`deep_scale` must be a non-negative number, got {deep_scale!r}."
            raise ValueError(msg)
        probe_steps = PROBE_DEFAULTS[head][0] if probe_steps is None else probe_steps
        probe_lr = PROBE_DEFAULTS[head][1] if probe_lr is None else probe_lr
        if not isinstance(probe_steps, int) or probe_steps < 0:
            msg = f"`probe_steps` must be a non-negative integer, got {probe_steps!r}."
            raise ValueError(msg)
        if not 0 <= heldout_fraction < 0.9:
            msg = f"`heldout_fraction` must be in [0, 0.9), got {heldout_fraction!r}."
            raise ValueError(msg)
        if batch_key is not None and train == "heads":
            msg = "`batch_key` changes the embedding, which train='heads' freezes; use train='last_layers' or 'all'."
            raise ValueError(msg)
        columns = [labels_keys] if isinstance(labels_keys, str) else list(labels_keys)
        if not columns:
            msg = "Pass at least one label column in `labels_keys`."
            raise ValueError(msg)
        data = resolve_adata(adata)
        if batch_key is not None and batch_key not in data.obs.columns:
            msg = f"Batch column {batch_key!r} not found in `adata.obs`; available columns: {list(data.obs.columns)}."
            raise KeyError(msg)
        reserved = {"cell", "depth"}
        names = [label_key(c) for c in columns]
        if reserved & set(names) or len(set(names)) != len(names):
            msg = f"Label names {names} must be distinct and not 'cell' or 'depth'; rename the columns."
            raise ValueError(msg)
        labels = pd.DataFrame(index=data.obs_names)
        class_counts = {}
        for column in columns:
            labels[column], class_counts[column] = _clean_labels(data, column, min_cells_per_class)
        held = _split(labels, heldout_fraction, seed)
        t0 = time.perf_counter()
        train_ad = _training_adata(data[~held], layer, labels[~held], batch_key)

        # ---- architecture: base labels (kept or re-fitted), then the new ones
        hierarchies: dict[str, LabelHierarchy] = {}
        base_labels = list(self.net.config.labels)
        for name_, column in zip(names, columns, strict=True):
            known = [v for v in train_ad.obs[column].astype(str) if v != UNKNOWN]
            ontology = all(is_ontology_term(v) for v in known)
            hierarchies[name_] = LabelHierarchy.from_labels(name_, known, hierarchical=ontology)
        kept = [lab for lab in base_labels if lab not in hierarchies] if keep_labels else []
        order = [lab for lab in base_labels if lab in hierarchies or lab in kept]
        order += [lab for lab in names if lab not in order]
        all_h = {lab: hierarchies.get(lab) or self.label_hierarchy(lab) for lab in order}
        config = copy.deepcopy(self.net.config)
        config.labels = {lab: all_h[lab].n_leaves for lab in order}
        pooled = set(config.pooled_labels) & set(kept)
        readout = set(config.readout_labels) & set(kept)
        if head == "pooled":
            pooled |= set(names)
        if expression_readout:
            readout |= set(names)
        config.pooled_labels = [lab for lab in order if lab in pooled]
        config.readout_labels = [lab for lab in order if lab in readout]
        if explicit_deep and deep_scale > 0 and not set(config.readout_labels) & set(names):
            logger.warning("`deep_scale` acts on classifiers with an expression read-out; none here, so it is unused.")
        if config.pred_embedding and any(t not in config.token_names for t in config.pred_embedding):
            config.pred_embedding = None
        training = {k: getattr(self.module, k) for k in _training_options()}
        # ---- context: per cell, or one panel of the reference's highly variable genes (recorded in the model)
        embedding_context: dict[str, Any] = {"mode": context, "max_len": int(max_len)}
        if context == "hvg":
            panel_idx = _hvg_panel(self, train_ad, int(max_len))
            training.update(max_len=len(panel_idx), context="fixed", context_genes=panel_idx.tolist())
            embedding_context = {
                "mode": "fixed",
                "max_len": len(panel_idx),
                "genes": [self.genes[i] for i in panel_idx],
                "source": "highly variable genes (seurat_v3) of the fine-tuning cells",
            }
        else:
            training.update(max_len=int(max_len), context=context, context_genes=None)
        training.update(class_scale=float(class_scale), deep_scale=float(deep_scale))
        if noise is not None:
            training["noise"] = float(noise)
        seed_everything(seed, verbose=False)
        new = type(self).from_net(
            config=config,
            state_dict=None,
            genes=self.genes,
            gene_pos=list(self.vocab.positions),
            hierarchies=all_h,
            label_columns=dict(zip(names, columns, strict=True)),
            training=training,
            setup_args={"labels_keys": columns, "batch_key": batch_key},
            metadata={},
            adata=train_ad,
            organisms=list(self.vocab.organisms),
        )
        _transfer_weights(new, self, all_h, names)
        new.is_trained_ = True  # the base model's weights, for the probe pass (reset below so that train() logs)
        # the context the model is trained with is the one it is embedded with (probe and calibration included)
        new.metadata_ = {"context": embedding_context}
        trainable = _freeze(new, train, n_layers)
        fresh = [n for n in names if n not in base_labels or n in config.pooled_labels or n in config.readout_labels]
        probe_losses = {}
        if fresh and probe_steps > 0:
            codes = {
                n: all_h[n].encode(train_ad.obs[c].astype(str).to_numpy(), missing="unknown")
                for n, c in zip(names, columns, strict=True)
                if n in fresh
            }
            probe_losses = fit_heads(new, train_ad, fresh, codes, steps=probe_steps, lr=probe_lr, seed=seed)
            for label in fresh:  # a read-out fitted to convergence by the probe is not stepped at afterwards
                if new.net.cls_decoders[label].readout is not None:
                    new.net.cls_decoders[label].readout.requires_grad_(False)
        new.is_trained_ = False  # scvi-tools keeps the training history only of a model trained for the first time
        module = new.module
        module.ssl_scale = 0.0 if train == "heads" else float(ssl_scale)
        if batch_key is not None:
            n_batches = train_ad.obs[batch_key].nunique()
            module.batch_adversary = BatchAdversary(config.d_model, n_batches)
            module.adversary_scale = float(batch_scale)

        # ---- training (Lightning, through ScPrint.train)
        trainer_kwargs.setdefault("enable_progress_bar", False)
        trainer_kwargs.setdefault("enable_model_summary", False)
        seed_everything(seed, verbose=False)
        new.train(
            max_steps=max_steps,
            accelerator=accelerator,
            devices=devices,
            batch_size=batch_size,
            lr=lr,
            warmup_steps=warmup_steps,
            plan_kwargs={"lr_patience": max(int(max_steps), 1)},
            **trainer_kwargs,
        )
        module.batch_adversary = None
        module.eval()
        new.is_trained_ = True
        train_s = time.perf_counter() - t0

        # ---- calibration on the held-out cells
        calibration = {}
        if held.any():
            held_ad = data[held]
            out = new.embed_cells(held_ad, layer=layer, labels=names, seed=seed)
            for name_, column in zip(names, columns, strict=True):
                truth = labels.loc[held, column].to_numpy()
                ok = truth != UNKNOWN
                if ok.sum() < 2:
                    continue
                proba = out.proba[name_][ok]
                correct = all_h[name_].is_correct(proba.argmax(1), truth[ok])
                calibration[name_] = calibrate_label(
                    proba, out.tokens[name_][ok], correct, target_accuracy=target_accuracy
                )
                calibration[name_].update(
                    mode=embedding_context["mode"], max_len=int(embedding_context["max_len"]), seed=int(seed)
                )
        history = {
            k: [float(np.asarray(v).ravel()[0]), float(np.asarray(v).ravel()[-1])]
            for k, v in (new.history_ or {}).items()
            if len(v) and k.endswith(("_train", "_validation", "train_loss"))
        }
        new.metadata_ = {
            "context": embedding_context,
            "name": name or f"{(self.metadata_ or {}).get('name', 'custom')}-finetuned",
            "finetune": {
                "base_model": dict(
                    zip(("sha256", "sha256_of"), _sha256(self), strict=True),
                    name=(self.metadata_ or {}).get("name", "custom"),
                ),
                "data": {
                    "n_cells": int(data.n_obs),
                    "n_train_cells": int((~held).sum()),
                    "n_heldout_cells": int(held.sum()),
                    "n_genes": int(data.n_vars),
                    "labels": {c: class_counts[c] for c in columns},
                    "batch_key": batch_key,
                    "n_batches": int(data.obs[batch_key].nunique()) if batch_key else None,
                },
                "labels": {n: {"column": c, "classes": all_h[n].leaves} for n, c in zip(names, columns, strict=True)},
                "kept_labels": kept,
                "steps": int(new.module.global_step) if hasattr(new.module, "global_step") else int(max_steps),
                "max_steps": int(max_steps),
                "train": train,
                "trainable": trainable,
                "ssl_scale": float(module.ssl_scale),
                "class_scale": float(class_scale),
                "deep_scale": float(deep_scale),
                "batch_scale": float(batch_scale) if batch_key else None,
                "max_len": int(max_len),
                "batch_size": int(batch_size),
                "lr": float(lr),
                "seed": int(seed),
                "losses": history,
                "head": head,
                "expression_readout": bool(expression_readout),
                "probe": {"steps": int(probe_steps), "lr": float(probe_lr), "losses": probe_losses},
                "wall_time_s": round(train_s, 1),
            },
            "calibration": calibration,
        }
        return new


def _hvg_panel(model: ScPrint, adata: AnnData, n_top: int) -> np.ndarray:
    """Vocabulary indices of the ``n_top`` highly variable genes (seurat_v3) of ``adata`` among the mapped genes."""
    from sc_print.data import hvg_positions, load_counts

    inputs = load_counts(adata, model.vocab, layer=None, chunk_size=1024)
    pos = hvg_positions(inputs.X, inputs.mapping, n_top, chunk_size=1024)
    return np.asarray(inputs.mapping.mapper.vocab_idx[pos], dtype=np.int64)


def _training_options() -> tuple[str, ...]:
    from ._save_load import TRAINING_OPTIONS

    return TRAINING_OPTIONS
