"""scvi-tools style getters of :class:`~sc_print.model.ScPrint`: embeddings, predictions, denoised expression.

All of them go through the one data path of :mod:`sc_print.data` (``load_counts`` → ``iter_tokens``), and the
``sp.tl`` functions are AnnData writers on top of :meth:`ScPrintInferenceMixin.embed_cells` and
:meth:`ScPrintInferenceMixin.denoise_cells`.

Determinism contract: with the default options, the outputs of a cell are a function of that cell's counts, the
model, the options and the seed — not of the other cells, their order or the batch size. Random gene contexts are
drawn per cell from the seed and the cell's own counts (:func:`sc_print.data.cell_seeds`). Options that are
inherently data-set dependent (highly variable genes) say so, and the genes they chose are returned so that a
re-run on a subset can pass them back.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from sc_print._device import resolve_device
from sc_print._runtime import inference_mode, resolve_dtype, resolve_seed
from sc_print._validation import check_positive_int, resolve_adata
from sc_print.data import (
    CONTEXT_MODES,
    CountInputs,
    genes_from_names,
    hvg_positions,
    is_sparse_matrix,
    iter_tokens,
    load_counts,
)
from sc_print.ontology import LabelHierarchy

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData

    from sc_print.nn import ScPrintNet

logger = logging.getLogger(__name__)

#: ``(mode, max_len)`` of :meth:`~sc_print.model.ScPrint.embed_cells` for a model that records none (scPRINT's)
DEFAULT_CONTEXT: tuple[str, int] = ("random_expr", 2000)
#: gene contexts of the denoiser
DENOISE_GENE_SETS: tuple[str, ...] = ("expressed", "hvg", "all")
#: expectations of the denoiser
DENOISE_EXPECTATIONS: tuple[str, ...] = ("nb_mean", "zinb_mean")


def panel_positions(panel: Sequence[str], vocab: Any, mapping: Any) -> np.ndarray:
    """Positions (in the mapped genes of the data) of the genes of a recorded panel that the data measure.

    Genes of the panel the data do not measure are left out of the context (a gene that was not measured is
    not a zero count), with a warning; none measured is an error.
    """
    pos = mapping.mapper.positions(vocab.index(list(panel)))
    have = pos >= 0
    if not have.any():
        msg = (
            f"None of the {len(panel)} genes of the model's context panel is measured in these data; the model "
            "was fine-tuned on a gene panel (context='hvg') that this data set does not share."
        )
        raise ValueError(msg)
    if not have.all():
        logger.warning(
            "%d of the %d genes of the model's context panel are not measured in these data and are left out of "
            "every cell's context.",
            int((~have).sum()),
            len(panel),
        )
    return np.sort(pos[have]).astype(np.int64)


@dataclass
class CellOutputs:
    """Everything one pass of :meth:`ScPrintInferenceMixin.embed_cells` computes (numpy, float32).

    Attributes
    ----------
    embedding
        ``[n_obs, d_model]`` cell embedding (mean of the ``embedding_tokens``).
    embedding_tokens
        Cell tokens averaged into ``embedding``.
    tokens
        ``{label: [n_obs, d_model]}`` output token of each requested label.
    proba
        ``{label: [n_obs, n_leaves]}`` leaf probabilities of each label with a classifier.
    inputs
        The validated counts (gene mapping, depth).
    context
        ``mode``, ``n_genes``, ``seed`` and, for a fixed context, ``positions`` (in the mapped genes).
    gene_sum, gene_count
        With ``gene_embeddings``: ``[U, d_model]`` sum of the last-layer gene outputs over the cells holding each
        mapped gene, and ``[U]`` the number of those cells.
    gene_outputs
        With ``gene_outputs``: ``[n_obs, n_context, d_model]`` float16 last-layer outputs of each cell's gene
        tokens, in context order (what a pooling classifier reads).
    context_genes, context_counts
        With ``gene_outputs``: ``[n_obs, n_context]`` vocabulary index and raw count of each cell's genes in
        context, in the same order (what an expression read-out reads).
    """

    embedding: np.ndarray
    embedding_tokens: list[str]
    inputs: CountInputs
    context: dict[str, Any]
    tokens: dict[str, np.ndarray] = field(default_factory=dict)
    proba: dict[str, np.ndarray] = field(default_factory=dict)
    gene_sum: np.ndarray | None = None
    gene_count: np.ndarray | None = None
    gene_outputs: np.ndarray | None = None
    context_genes: np.ndarray | None = None
    context_counts: np.ndarray | None = None


@dataclass
class DenoiseOutputs:
    """Result of :meth:`ScPrintInferenceMixin.denoise_cells`.

    Attributes
    ----------
    values
        ``[n_obs, n_vars]`` expected counts (CSR when the counts are sparse, else dense), zero outside the context.
    inputs
        The validated counts.
    context
        ``gene_set``, ``n_genes``, ``seed``, ``expectation``, ``depth_mult`` or ``target_depth`` and, for a fixed
        context, ``positions`` (in the mapped genes).
    """

    values: sparse.csr_matrix | np.ndarray
    inputs: CountInputs
    context: dict[str, Any]


def _as_list(value: str | Sequence[str] | None, name: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence | np.ndarray | pd.Index):
        msg = f"`{name}` must be a label name or a list of label names, got {type(value).__name__}."
        raise TypeError(msg)
    return [str(v) for v in value]


def _positive_number(value: Any, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.number)
        or not math.isfinite(value)
        or value <= 0
    ):
        msg = f"`{name}` must be a positive finite number, got {value!r}."
        raise ValueError(msg)
    return float(value)


class ScPrintInferenceMixin:
    """Getters over the data path of :mod:`sc_print.data` (mixed into :class:`~sc_print.model.ScPrint`)."""

    # ------------------------------------------------------------------ helpers
    def _inference_data(self, adata: AnnData | MuData | None, indices: Sequence[int] | None, mod: str) -> AnnData:
        if adata is None:
            adata = getattr(self, "adata", None)
            if adata is None:
                msg = "Pass `adata`: this model has no registered AnnData."
                raise ValueError(msg)
        data = resolve_adata(adata, mod)
        if indices is not None:
            idx = np.asarray(indices)
            if idx.dtype == bool or idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                msg = "`indices` must be a 1-d array of integer row positions."
                raise TypeError(msg)
            if idx.size and (idx.min() < -data.n_obs or idx.max() >= data.n_obs):
                msg = f"`indices` out of range for {data.n_obs} cells."
                raise IndexError(msg)
            data = data[idx]
        return data

    def _device_dtype(self, accelerator: str, device: int | str, dtype: Any) -> tuple[torch.device, torch.dtype]:
        self._check_if_trained(warn=True)  # random weights run, with scvi-tools' warning
        torch_device = resolve_device(accelerator, device)
        self.module.to(torch_device)
        return torch_device, resolve_dtype(dtype, torch_device)

    def label_hierarchy(self, label: str) -> LabelHierarchy:
        """The class hierarchy of ``label``; a flat one named by class index when the model has none."""
        found = getattr(self, "hierarchies", {}).get(label)
        if found is not None:
            return found
        return LabelHierarchy(label, [str(i) for i in range(int(self.net.config.labels[label]))])

    def label_names(self, label: str) -> list[str]:
        """Readable leaf names of ``label`` in class order, made unique by appending the id to shared names."""
        hierarchy = self.label_hierarchy(label)
        counts = Counter(hierarchy.names)
        return [
            name if counts[name] == 1 else f"{name} ({leaf})"
            for name, leaf in zip(hierarchy.names, hierarchy.leaves, strict=True)
        ]

    def _resolve_tokens(
        self, labels: Sequence[str] | None, embedding_labels: Sequence[str] | None
    ) -> tuple[list[str], list[str], list[str]]:
        net: ScPrintNet = self.net
        token_names, classifiers = list(net.token_names), list(net.config.labels)
        token_labels = classifiers if labels is None else list(labels)
        unknown = [name for name in token_labels if name not in token_names]
        if unknown:
            msg = f"Unknown labels {unknown}; this model has the tokens {token_names} (classifiers: {classifiers})."
            raise KeyError(msg)
        embedding_tokens = list(embedding_labels or net.config.pred_embedding or classifiers or ["cell"])
        unknown = [name for name in embedding_tokens if name not in token_names]
        if unknown:
            msg = f"Unknown embedding_labels {unknown}; this model has the tokens {token_names}."
            raise KeyError(msg)
        return token_labels, [n for n in token_labels if n in classifiers], embedding_tokens

    # ------------------------------------------------------------------ embeddings and predictions
    def embedding_context(self, mode: str | None = None, max_len: int | None = None) -> tuple[str, int]:
        """The context of :meth:`embed_cells` for ``mode``/``max_len`` (``None``: the model's default).

        A model records the context it should be embedded with in ``metadata_["context"]``
        (:meth:`~sc_print.model.ScPrint.finetune` records the one it was trained with); otherwise the default is
        scPRINT's: ``"random_expr"`` with 2,000 genes.

        Parameters
        ----------
        mode, max_len
            Requested context mode and length; ``None`` takes the model's default.

        Returns
        -------
        ``(mode, max_len)``.
        """
        recorded = (getattr(self, "metadata_", None) or {}).get("context") or {}
        default_mode = str(recorded.get("mode", DEFAULT_CONTEXT[0]))
        default_len = int(recorded.get("max_len", DEFAULT_CONTEXT[1]))
        mode = default_mode if mode is None else mode
        if mode not in CONTEXT_MODES:
            msg = f"Unknown mode {mode!r}; choose one of {list(CONTEXT_MODES)}."
            raise ValueError(msg)
        if max_len is None:
            max_len = default_len if mode == default_mode else DEFAULT_CONTEXT[1]
        return mode, check_positive_int(max_len, "max_len")

    def context_panel(self) -> list[str] | None:
        """The gene panel (vocabulary gene ids) of a model whose recorded context is ``"fixed"``, else ``None``.

        :meth:`~sc_print.model.ScPrint.finetune` with ``context="hvg"`` records the highly variable genes of the
        reference it was trained on; :meth:`embed_cells` shows every cell these genes (those the data measure)
        when no ``genes`` are passed.

        Returns
        -------
        Gene ids in vocabulary order, or ``None``.
        """
        recorded = (getattr(self, "metadata_", None) or {}).get("context") or {}
        panel = recorded.get("genes") if recorded.get("mode") == "fixed" else None
        return None if panel is None else [str(g) for g in panel]

    def embed_cells(
        self,
        adata: AnnData | MuData | None = None,
        *,
        indices: Sequence[int] | None = None,
        layer: str | None = None,
        labels: str | Sequence[str] | None = None,
        embedding_labels: str | Sequence[str] | None = None,
        mode: Literal["random_expr", "top_expr", "fixed", "all"] | None = None,
        max_len: int | None = None,
        genes: Sequence[str] | None = None,
        gene_embeddings: bool = False,
        gene_outputs: bool = False,
        batch_size: int = 64,
        accelerator: str = "auto",
        device: int | str = "auto",
        dtype: torch.dtype | str | None = None,
        seed: int | np.random.Generator | None = 0,
        mod: str = "rna",
    ) -> CellOutputs:
        """Run the model over the cells once: embedding, label tokens, leaf probabilities (what ``sp.tl.embed`` writes).

        Parameters
        ----------
        adata
            AnnData (or MuData, modality ``mod``) with raw counts; ``None``: the registered AnnData.
        indices
            Row positions of the cells to use (``None``: all), outputs in that order.
        layer
            Layer with the raw counts (``None``: ``.X`` when it holds counts, else ``.raw.X``).
        labels
            Label tokens to return (``None``: every label with a classifier).
        embedding_labels
            Cell tokens averaged into the embedding (``None``: the model's ``pred_embedding``).
        mode
            Genes in context: ``"random_expr"`` (per cell, up to ``max_len`` expressed genes drawn with ``seed``
            from the cell's own counts, completed with unexpressed genes), ``"top_expr"`` (per cell, its ``max_len``
            most expressed genes, ties broken with ``seed``), ``"fixed"`` (the same genes for every cell:
            ``genes``; else the model's recorded panel, :meth:`context_panel`; else the ``max_len`` most variable
            genes of **this object** — data-set dependent, the chosen genes are returned in ``context``) or
            ``"all"`` (every mapped gene). ``None``: the model's default (:meth:`embedding_context`).
        max_len
            Context length (``"random_expr"``, ``"top_expr"``) or number of variable genes (``"fixed"`` without
            ``genes``); ``None``: the model's default.
        genes
            Gene names (``var_names``) for ``mode="fixed"``.
        gene_embeddings
            Also sum the last-layer gene outputs per gene.
        gene_outputs
            Also return every cell's last-layer gene outputs (``n_obs * n_context * d_model`` float16 values in
            memory: for a few thousand cells), and the genes and counts of its context.
        batch_size
            Cells per forward pass; results do not depend on it.
        accelerator
            ``"auto"``, ``"cpu"``, ``"gpu"``/``"cuda"`` or ``"mps"``.
        device
            ``"auto"`` or a device index.
        dtype
            Autocast dtype (``None``: float32 on CPU, bfloat16 on CUDA).
        seed
            Seed of the per-cell random contexts (an int; a Generator or ``None`` draws one, returned in
            ``context``).
        mod
            Modality of a MuData.

        Returns
        -------
        The :class:`CellOutputs`.
        """
        mode, max_len = self.embedding_context(mode, max_len)
        batch_size = check_positive_int(batch_size, "batch_size")
        if genes is not None and mode != "fixed":
            msg = f"`genes` is only used with mode='fixed' (got mode={mode!r}); pass mode='fixed'."
            raise ValueError(msg)
        token_labels, pred_labels, embedding_tokens = self._resolve_tokens(
            _as_list(labels, "labels"), _as_list(embedding_labels, "embedding_labels")
        )
        seed = resolve_seed(seed, "seed")
        data = self._inference_data(adata, indices, mod)
        inputs = load_counts(data, self.vocab, layer=layer, chunk_size=batch_size)
        mapping = inputs.mapping
        positions = None
        panel = self.context_panel() if mode == "fixed" and genes is None else None
        if panel is not None:
            positions = panel_positions(panel, self.vocab, mapping)
        elif mode == "fixed":
            positions = (
                genes_from_names(data, genes, mapping)
                if genes is not None
                else hvg_positions(inputs.X, mapping, max_len, chunk_size=max(batch_size, 1024))
            )
        elif mode == "all":
            positions = np.arange(mapping.n_genes, dtype=np.int64)
        torch_device, compute_dtype = self._device_dtype(accelerator, device, dtype)
        net: ScPrintNet = self.net
        n_obs, d_model = inputs.n_obs, int(net.config.d_model)
        result = CellOutputs(
            embedding=np.empty((n_obs, d_model), dtype=np.float32),
            embedding_tokens=embedding_tokens,
            inputs=inputs,
            context={
                "mode": mode,
                "n_genes": int(min(max_len, mapping.n_genes) if positions is None else len(positions)),
                "seed": seed,
                "positions": positions,
            },
        )
        token_index = {label: net.token_names.index(label) for label in token_labels}
        for label in token_labels:
            result.tokens[label] = np.empty((n_obs, d_model), dtype=np.float32)
        for label in pred_labels:
            result.proba[label] = np.empty((n_obs, int(net.config.labels[label])), dtype=np.float32)
        if gene_embeddings:
            vocab_sorted = torch.as_tensor(mapping.mapper.vocab_idx, device=torch_device)
            gene_sum = torch.zeros(mapping.n_genes, d_model, device=torch_device)
            gene_count = torch.zeros(mapping.n_genes, device=torch_device)
        if gene_outputs:
            shape = (n_obs, result.context["n_genes"])
            result.gene_outputs = np.empty((*shape, d_model), dtype=np.float16)
            result.context_genes = np.empty(shape, dtype=np.int64)
            result.context_counts = np.empty(shape, dtype=np.float32)
        batches = iter_tokens(
            inputs,
            mode="fixed" if positions is not None else mode,
            max_len=max_len,
            genes=positions,
            seed=seed,
            batch_size=batch_size,
            device=torch_device,
            description="sc_print embed",
        )
        with inference_mode(net, torch_device, compute_dtype):
            for start, stop, tokens in batches:
                out = net(
                    tokens.gene_idx,
                    tokens.expr,
                    tokens.depth,
                    decode=False,
                    classify=bool(pred_labels),
                    cell_tokens_only=not (gene_embeddings or gene_outputs),
                )
                cell = out.cell_tokens.float()
                result.embedding[start:stop] = net.embed(cell, list(embedding_tokens)).cpu().numpy()
                for label, idx in token_index.items():
                    result.tokens[label][start:stop] = cell[:, idx].cpu().numpy()
                for label in pred_labels:
                    result.proba[label][start:stop] = out.cls_logits[label].float().softmax(-1).cpu().numpy()
                if gene_outputs:
                    result.gene_outputs[start:stop] = out.gene_out.float().cpu().numpy().astype(np.float16)
                    result.context_genes[start:stop] = tokens.gene_idx.cpu().numpy()
                    result.context_counts[start:stop] = tokens.expr.float().cpu().numpy()
                if gene_embeddings:
                    cols = torch.searchsorted(vocab_sorted, tokens.gene_idx).reshape(-1)
                    gene_sum.index_add_(0, cols, out.gene_out.float().reshape(-1, d_model))
                    gene_count.index_add_(0, cols, torch.ones_like(cols, dtype=torch.float32))
        if gene_embeddings:
            result.gene_sum, result.gene_count = gene_sum.cpu().numpy(), gene_count.cpu().numpy()
        return result

    def get_latent_representation(
        self,
        adata: AnnData | MuData | None = None,
        *,
        indices: Sequence[int] | None = None,
        embedding_labels: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Cell embeddings ``[n_obs, d_model]`` (scvi-tools' getter; the ``.obsm['X_scprint']`` of ``sp.tl.embed``).

        Parameters
        ----------
        adata
            AnnData or MuData with raw counts (``None``: the registered AnnData).
        indices
            Row positions of the cells (``None``: all).
        embedding_labels
            Cell tokens averaged into the embedding (``None``: the model's default).
        **kwargs
            Options of :meth:`embed_cells` (``layer``, ``mode``, ``max_len``, ``genes``, ``batch_size``,
            ``accelerator``, ``device``, ``dtype``, ``seed``, ``mod``).

        Returns
        -------
        ``float32`` array, one row per cell.
        """
        out = self.embed_cells(adata, indices=indices, labels=[], embedding_labels=embedding_labels, **kwargs)
        return out.embedding

    def predict(
        self,
        adata: AnnData | MuData | None = None,
        *,
        indices: Sequence[int] | None = None,
        labels: str | Sequence[str] | None = None,
        soft: bool = False,
        **kwargs: Any,
    ) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Predicted labels of the cells (scvi-tools' ``predict``).

        Parameters
        ----------
        adata
            AnnData or MuData with raw counts (``None``: the registered AnnData).
        indices
            Row positions of the cells (``None``: all).
        labels
            Labels to predict (``None``: every label with a classifier).
        soft
            Return the leaf probabilities instead of the predicted leaves.
        **kwargs
            Options of :meth:`embed_cells`.

        Returns
        -------
        ``soft=False``: a DataFrame (index ``obs_names``) with one categorical column per label holding the readable
        name of the most probable leaf. ``soft=True``: ``{label: DataFrame}`` of leaf probabilities (columns: readable
        leaf names, rows sum to 1).
        """
        label_list = _as_list(labels, "labels")
        classifiers = list(self.net.config.labels)
        if not classifiers:
            msg = "This model has no classifier; train or fine-tune one with labels first."
            raise ValueError(msg)
        wanted = classifiers if label_list is None else label_list
        missing = [name for name in wanted if name not in classifiers]
        if missing:
            msg = f"No classifier for {missing}; this model predicts {classifiers}."
            raise KeyError(msg)
        data = self._inference_data(adata, indices, kwargs.pop("mod", "rna"))  # resolved once, used twice
        out = self.embed_cells(data, labels=wanted, **kwargs)
        index = data.obs_names.copy()
        if soft:
            return {
                label: pd.DataFrame(out.proba[label], index=index, columns=self.label_names(label)) for label in wanted
            }
        frame = {}
        for label in wanted:
            names = self.label_names(label)
            frame[label] = pd.Categorical(np.asarray(names, dtype=object)[out.proba[label].argmax(1)], categories=names)
        return pd.DataFrame(frame, index=index)

    # ------------------------------------------------------------------ denoising
    def denoise_cells(
        self,
        adata: AnnData | MuData | None = None,
        *,
        indices: Sequence[int] | None = None,
        layer: str | None = None,
        genes: Literal["expressed", "hvg", "all"] | Sequence[str] = "expressed",
        n_genes: int = 2000,
        depth_mult: float = 4.0,
        target_depth: float | None = None,
        expectation: Literal["nb_mean", "zinb_mean"] = "nb_mean",
        batch_size: int = 32,
        accelerator: str = "auto",
        device: int | str = "auto",
        dtype: torch.dtype | str | None = None,
        seed: int | np.random.Generator | None = 0,
        mod: str = "rna",
    ) -> DenoiseOutputs:
        """Expected counts of each cell at a requested depth (what ``sp.tl.denoise`` writes).

        Each cell is shown to the model with its genes in context and asked for a depth ``m`` times its own: the
        depth token sees ``depth * m`` and the decoded mean over the context sums to ``m`` times the context's
        observed total (``m = depth_mult``, or ``target_depth / depth``).

        Parameters
        ----------
        adata
            AnnData or MuData with raw counts (``None``: the registered AnnData).
        indices
            Row positions of the cells (``None``: all).
        layer
            Layer with the raw counts.
        genes
            Context: ``"expressed"`` (per cell, up to ``n_genes`` expressed genes drawn with ``seed`` from the cell's
            own counts, completed with unexpressed genes; the default, a function of each cell alone), ``"hvg"``
            (the ``n_genes`` most variable genes of **this object**, the same for every cell — data-set dependent;
            the chosen genes are returned), ``"all"`` (every mapped gene) or a list of ``var_names``.
        n_genes
            Context length (``"expressed"``) or number of variable genes (``"hvg"``).
        depth_mult
            Requested depth as a multiple of each cell's depth.
        target_depth
            Requested depth as a fixed total per cell (overrides ``depth_mult``).
        expectation
            ``"nb_mean"``: the negative-binomial mean ``mu``; ``"zinb_mean"``: ``mu * (1 - sigmoid(pi))`` (needs a
            ZINB decoder).
        batch_size, accelerator, device, dtype, seed, mod
            As in :meth:`embed_cells`.

        Returns
        -------
        The :class:`DenoiseOutputs`.
        """
        if isinstance(genes, str):
            if genes not in DENOISE_GENE_SETS:
                msg = f"Unknown gene set {genes!r}; use one of {list(DENOISE_GENE_SETS)} or a list of gene names."
                raise ValueError(msg)
            gene_set = genes
        else:
            gene_set = "list"
        n_genes = check_positive_int(n_genes, "n_genes")
        batch_size = check_positive_int(batch_size, "batch_size")
        depth_mult = _positive_number(depth_mult, "depth_mult")
        target = None if target_depth is None else _positive_number(target_depth, "target_depth")
        if expectation not in DENOISE_EXPECTATIONS:
            msg = f"Unknown mode {expectation!r}; choose one of {list(DENOISE_EXPECTATIONS)}."
            raise ValueError(msg)
        net: ScPrintNet = self.net
        if expectation == "zinb_mean" and net.config.expr_decoder != "zinb":
            msg = (
                f"mode='zinb_mean' needs a model with a ZINB expression decoder; this one has "
                f"{net.config.expr_decoder!r}. Use mode='nb_mean'."
            )
            raise ValueError(msg)
        seed = resolve_seed(seed, "seed")
        data = self._inference_data(adata, indices, mod)
        inputs = load_counts(data, self.vocab, layer=layer, chunk_size=batch_size)
        mapping = inputs.mapping
        if gene_set == "list":
            positions = genes_from_names(data, genes, mapping)  # type: ignore[arg-type]
        elif gene_set == "all":
            positions = np.arange(mapping.n_genes, dtype=np.int64)
        elif gene_set == "hvg":
            positions = hvg_positions(inputs.X, mapping, n_genes, chunk_size=max(batch_size, 1024))
        else:
            positions = None
        torch_device, compute_dtype = self._device_dtype(accelerator, device, dtype)
        out_columns = mapping.column_of_vocab(int(net.config.n_genes))
        n_obs, n_vars = inputs.n_obs, int(data.n_vars)
        as_sparse = is_sparse_matrix(inputs.X)
        dense_out = None if as_sparse else np.zeros((n_obs, n_vars), dtype=np.float32)
        blocks: list[sparse.csr_matrix] = []
        batches = iter_tokens(
            inputs,
            mode="random_expr" if positions is None else "fixed",
            max_len=n_genes,
            genes=positions,
            seed=seed,
            batch_size=batch_size,
            device=torch_device,
            description="sc_print denoise",
        )
        with inference_mode(net, torch_device, compute_dtype):
            for start, stop, tokens in batches:
                mult = torch.full_like(tokens.depth, depth_mult) if target is None else target / tokens.depth
                out = net(
                    tokens.gene_idx,
                    tokens.expr,
                    tokens.depth,
                    depth_mult=tokens.expr.sum(1) * mult,
                    req_depth=tokens.depth * mult,
                    classify=False,
                )
                mean = out.mu.float()
                if expectation == "zinb_mean":
                    mean = mean * (1.0 - torch.sigmoid(out.pi_logits.float()))
                values = mean.cpu().numpy()
                cols = out_columns[tokens.gene_idx.cpu().numpy()]
                rows_idx = np.broadcast_to(np.arange(stop - start)[:, None], cols.shape)
                if dense_out is not None:
                    dense_out[start + rows_idx, cols] = values
                else:
                    block = sparse.csr_matrix(
                        (values.ravel(), (rows_idx.ravel(), cols.ravel())),
                        shape=(stop - start, n_vars),
                        dtype=np.float32,
                    )
                    block.eliminate_zeros()
                    block.sort_indices()
                    blocks.append(block)
        if dense_out is not None:
            values_out: sparse.csr_matrix | np.ndarray = dense_out
        else:
            values_out = sparse.vstack(blocks, format="csr", dtype=np.float32)
        context = {
            "gene_set": gene_set,
            "n_genes": int(min(n_genes, mapping.n_genes) if positions is None else len(positions)),
            "seed": seed,
            "expectation": expectation,
            "positions": positions,
        }
        context["depth_mult" if target is None else "target_depth"] = depth_mult if target is None else target
        return DenoiseOutputs(values=values_out, inputs=inputs, context=context)

    def get_normalized_expression(
        self,
        adata: AnnData | MuData | None = None,
        *,
        indices: Sequence[int] | None = None,
        return_numpy: bool = False,
        **kwargs: Any,
    ) -> pd.DataFrame | np.ndarray | sparse.csr_matrix:
        """Denoised expression (scvi-tools' getter; the ``.layers['scprint_denoised']`` of ``sp.tl.denoise``).

        Parameters
        ----------
        adata
            AnnData or MuData with raw counts (``None``: the registered AnnData).
        indices
            Row positions of the cells (``None``: all).
        return_numpy
            Return the matrix (CSR for sparse counts, else dense) instead of a DataFrame. A DataFrame is dense:
            for many cells use ``return_numpy=True``.
        **kwargs
            Options of :meth:`denoise_cells` (``genes``, ``n_genes``, ``depth_mult``, ``target_depth``,
            ``expectation``, ``layer``, ``batch_size``, ``accelerator``, ``device``, ``dtype``, ``seed``, ``mod``).

        Returns
        -------
        Expected counts, cells x genes (zero outside each cell's context).
        """
        data = self._inference_data(adata, indices, kwargs.pop("mod", "rna"))  # resolved once, used twice
        out = self.denoise_cells(data, **kwargs)
        if return_numpy:
            return out.values
        dense = out.values.toarray() if sparse.issparse(out.values) else out.values
        return pd.DataFrame(dense, index=data.obs_names.copy(), columns=data.var_names.copy())
