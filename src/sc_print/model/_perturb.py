"""In-silico perturbation of :class:`~sc_print.model.ScPrint`: gene knock-out and over-expression.

Each cell is run twice through the model, unperturbed (the *baseline*) and with the counts of the perturbed genes
changed, with the **same gene context and the same random draws**: the per-cell seeds come from the hash of the
*unperturbed* counts (:func:`sc_print.data.cell_seeds`), the context is chosen once on the unperturbed counts and
both passes use it. Only the values of the perturbed genes (and, with ``depth="recompute"``, the depth) differ.
A cell whose counts the perturbation does not change (a knock-out of a gene it does not express, a factor of 1)
is not run a second time: its perturbed outputs *are* its baseline outputs, bit for bit.

Choices, all options:

- ``knockout="zero"`` (default): the gene stays in the context with a count of 0, as a gene the cell does not
  express — what the model saw in training for unexpressed genes, so the input stays in-distribution.
  ``knockout="remove"``: the gene's token is dropped from the context (only in cells that express it).
- ``depth="recompute"`` (default): the depth token sees the total of the perturbed counts over the mapped genes,
  the package's one definition of depth (:data:`sc_print.data.DEPTH_DEFINITION`), so the perturbed cell is exactly
  a cell with those counts. ``depth="keep"``: the depth of the unperturbed cell.
- ``force_context=True`` (default): in ``mode="random_expr"`` the perturbed genes are always part of the context
  (of both passes), so the perturbation reaches every cell whatever its number of expressed genes.

Effects on the other genes are measured on the decoded expression (the negative-binomial mean) of the genes in
context other than the perturbed ones, renormalised to 10,000 over those genes in both passes (the decoder's
output is a composition: without this, removing or zeroing a gene would raise every other gene trivially).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch

from sc_print._runtime import inference_mode, resolve_seed
from sc_print._utils import track
from sc_print._validation import check_positive_int
from sc_print.data import (
    cell_hashes,
    cell_seeds,
    gene_keys,
    genes_from_names,
    iter_row_chunks,
    load_counts,
    select_genes,
)

from ._perturb_stats import EffectStats, group_codes

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData

    from sc_print.nn import ScPrintNet

PERTURB_KINDS: tuple[str, ...] = ("knockout", "overexpress")
KNOCKOUT_MODES: tuple[str, ...] = ("zero", "remove")
DEPTH_MODES: tuple[str, ...] = ("recompute", "keep")
PERTURB_CONTEXTS: tuple[str, ...] = ("random_expr", "all")


@dataclass(frozen=True)
class PerturbSpec:
    """One perturbation: genes changed together in every cell.

    Attributes
    ----------
    name
        Name of the perturbation (suffix of the keys written by ``sp.tl.perturb``).
    genes
        ``var_names`` of the perturbed genes.
    kind
        ``"knockout"`` or ``"overexpress"``.
    factor
        Over-expression: counts multiplied by ``factor``.
    quantile
        Over-expression: counts raised to this quantile of the gene's non-zero counts in the data.
    """

    name: str
    genes: tuple[str, ...]
    kind: str
    factor: float | None = None
    quantile: float | None = None


@dataclass
class PerturbResult:
    """Outputs of one perturbation (numpy; rows in the order of the cells).

    Attributes
    ----------
    spec
        The perturbation.
    baseline, embedding
        ``[n_obs, d_model]`` embedding of the unperturbed and of the perturbed cells (same context and draws).
    shift
        ``[n_obs]`` cosine distance between the two (0 where the counts did not change).
    changed
        ``[n_obs]`` bool, cells whose counts the perturbation changed.
    proba_baseline, proba
        ``{label: [n_obs, n_leaves]}`` leaf probabilities of both passes, per classifier.
    effects
        Per-gene effects over all cells (the ``effects`` table of :func:`sc_print.tl.perturb`).
    group_effects
        ``{group: effects}`` per category of ``groupby``.
    values
        ``{gene: count}`` the count set by a ``quantile`` over-expression.
    """

    spec: PerturbSpec
    baseline: np.ndarray
    embedding: np.ndarray
    shift: np.ndarray
    changed: np.ndarray
    proba_baseline: dict[str, np.ndarray] = field(default_factory=dict)
    proba: dict[str, np.ndarray] = field(default_factory=dict)
    effects: pd.DataFrame | None = None
    group_effects: dict[str, pd.DataFrame] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class PerturbOutputs:
    """Result of :meth:`ScPrint.perturb_cells <sc_print.model.ScPrint.perturb_cells>`, one entry per perturbation.

    Attributes
    ----------
    results
        ``{name: PerturbResult}``.
    inputs
        The validated counts (:class:`~sc_print.data.CountInputs`).
    context
        ``mode``, ``n_genes``, ``seed``, ``knockout``, ``depth``, ``force_context``.
    groups
        Stored (safe) names of the ``groupby`` categories, or ``None``.
    """

    results: dict[str, PerturbResult]
    inputs: Any
    context: dict[str, Any]
    groups: list[str] | None = None


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value):
        msg = f"`{name}` must be a finite number, got {value!r}."
        raise ValueError(msg)
    return float(value)


def parse_perturbations(
    genes: str | Sequence[str] | Sequence[Sequence[str]] | Mapping[str, str | Sequence[str]],
    *,
    kind: str = "knockout",
    factor: float | None = None,
    quantile: float | None = None,
) -> list[PerturbSpec]:
    """Validate the perturbations of a call (no data needed).

    ``genes``: one gene, a list of genes perturbed together, a list of such lists (several perturbations) or a
    ``{name: genes}`` dict. Default names: the genes joined by ``+`` with ``_ko`` / ``_oe`` appended.
    """
    if kind not in PERTURB_KINDS:
        msg = f"Unknown kind {kind!r}; choose one of {list(PERTURB_KINDS)}."
        raise ValueError(msg)
    if kind == "knockout":
        if factor is not None or quantile is not None:
            msg = "`factor` and `quantile` are for kind='overexpress'; a knock-out takes neither."
            raise ValueError(msg)
    elif (factor is None) == (quantile is None):
        msg = "kind='overexpress' needs exactly one of `factor` (counts x factor) or `quantile` (e.g. 0.9)."
        raise ValueError(msg)
    if factor is not None:
        factor = _check_number(factor, "factor")
        if factor <= 0:
            msg = f"`factor` must be > 0 (counts are multiplied by it), got {factor!r}; use kind='knockout' for 0."
            raise ValueError(msg)
    if quantile is not None:
        quantile = _check_number(quantile, "quantile")
        if not 0 < quantile <= 1:
            msg = f"`quantile` must be in (0, 1], got {quantile!r}."
            raise ValueError(msg)
    if isinstance(genes, Mapping):
        named = [(str(k), v) for k, v in genes.items()]
    elif isinstance(genes, str):
        named = [(None, [genes])]
    elif isinstance(genes, Sequence | np.ndarray | pd.Index) and len(genes) and all(isinstance(g, str) for g in genes):
        named = [(None, list(genes))]
    elif isinstance(genes, Sequence) and len(genes):
        named = [(None, g) for g in genes]
    else:
        msg = f"`genes` must be a gene name, a non-empty list of gene names, a list of lists or a dict, got {genes!r}."
        raise ValueError(msg)
    specs: list[PerturbSpec] = []
    suffix = "ko" if kind == "knockout" else "oe"
    for name, value in named:
        group = [value] if isinstance(value, str) else value
        if not isinstance(group, Sequence | np.ndarray | pd.Index) or not all(isinstance(g, str) for g in group):
            msg = f"Each perturbation must be a gene name or a list of gene names, got {value!r}."
            raise ValueError(msg)
        group = list(dict.fromkeys(str(g) for g in group))
        if not group:
            msg = "A perturbation has an empty gene list; pass at least one gene from `var_names`."
            raise ValueError(msg)
        label = name if name is not None else f"{'+'.join(group)}_{suffix}"
        specs.append(PerturbSpec(label, tuple(group), kind, factor, quantile))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        msg = f"Several perturbations are named {dupes}; pass a dict {{name: genes}} with distinct names."
        raise ValueError(msg)
    return specs


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = (a64 * b64).sum(1)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    out = 1.0 - num / np.where(den > 0, den, 1.0)
    out[(a == b).all(1)] = 0.0
    return out


class ScPrintPerturbMixin:
    """In-silico perturbation (mixed into :class:`~sc_print.model.ScPrint`)."""

    def perturb_cells(
        self,
        adata: AnnData | MuData | None = None,
        *,
        genes: str | Sequence[str] | Sequence[Sequence[str]] | Mapping[str, str | Sequence[str]],
        kind: Literal["knockout", "overexpress"] = "knockout",
        factor: float | None = None,
        quantile: float | None = None,
        knockout: Literal["zero", "remove"] = "zero",
        depth: Literal["recompute", "keep"] = "recompute",
        force_context: bool = True,
        readout_genes: Sequence[str] | None = None,
        groupby: str | None = None,
        min_group_size: int = 5,
        layer: str | None = None,
        mode: Literal["random_expr", "all"] = "random_expr",
        max_len: int = 2000,
        embedding_labels: str | Sequence[str] | None = None,
        batch_size: int = 32,
        accelerator: str = "auto",
        device: int | str = "auto",
        dtype: torch.dtype | str | None = None,
        seed: int | np.random.Generator | None = 0,
        mod: str = "rna",
    ) -> PerturbOutputs:
        """Knock out or over-express genes in silico and compare each cell with its unperturbed self.

        See the module documentation for the design (paired contexts and draws, knock-out and depth choices).

        Parameters
        ----------
        adata
            AnnData (or MuData, modality ``mod``) with raw counts; ``None``: the registered AnnData.
        genes
            One gene, a list of genes perturbed together, a list of such lists, or ``{name: genes}``.
        kind
            ``"knockout"`` or ``"overexpress"``.
        factor
            Over-expression: counts multiplied by ``factor`` (> 0; 1 changes nothing).
        quantile
            Over-expression: counts raised to the ``quantile`` of the gene's non-zero counts in this object
            (*data-set dependent*; the values are returned), cells above it unchanged.
        knockout
            ``"zero"``: count set to 0, gene kept in context; ``"remove"``: token dropped from the context.
        depth
            ``"recompute"``: the depth of the perturbed counts; ``"keep"``: the unperturbed depth.
        force_context
            Always put the perturbed genes in the context (``mode="random_expr"``).
        readout_genes
            Genes (``var_names``) always put in the context of both passes, expressed or not (``mode="random_expr"``),
            so that their response is measured in every cell (e.g. the expected targets of a regulator).
        groupby
            ``.obs`` column: effects also per category.
        min_group_size
            Fewest cells of a category of ``groupby`` (smaller ones are an error).
        layer, mode, max_len, embedding_labels, batch_size, accelerator, device, dtype, seed, mod
            As in :meth:`~sc_print.model.ScPrint.embed_cells` (``mode``: ``"random_expr"`` or ``"all"``).

        Returns
        -------
        The :class:`~sc_print.model.PerturbOutputs`.
        """
        specs = parse_perturbations(genes, kind=kind, factor=factor, quantile=quantile)
        for value, name, allowed in (
            (knockout, "knockout", KNOCKOUT_MODES),
            (depth, "depth", DEPTH_MODES),
            (mode, "mode", PERTURB_CONTEXTS),
        ):
            if value not in allowed:
                msg = f"Unknown {name} {value!r}; choose one of {list(allowed)}."
                raise ValueError(msg)
        if not isinstance(force_context, bool):
            msg = f"`force_context` must be True or False, got {force_context!r}."
            raise TypeError(msg)
        max_len = check_positive_int(max_len, "max_len")
        batch_size = check_positive_int(batch_size, "batch_size")
        min_group_size = check_positive_int(min_group_size, "min_group_size")
        emb_list = [embedding_labels] if isinstance(embedding_labels, str) else embedding_labels
        _, pred_labels, embedding_tokens = self._resolve_tokens(None, None if emb_list is None else list(emb_list))
        seed = resolve_seed(seed, "seed")
        data = self._inference_data(adata, None, mod)
        codes, groups = group_codes(data, groupby, min_group_size)
        inputs = load_counts(data, self.vocab, layer=layer, chunk_size=batch_size)
        mapper = inputs.mapping.mapper
        positions = {
            s.name: genes_from_names(data, list(s.genes), inputs.mapping, param=f"genes of {s.name!r}") for s in specs
        }
        readout = (
            np.zeros(0, dtype=np.int64)
            if readout_genes is None
            else genes_from_names(data, readout_genes, inputs.mapping, param="readout_genes")
        )
        forced = {
            s.name: np.union1d(positions[s.name] if force_context else np.zeros(0, np.int64), readout) for s in specs
        }
        too_many = [s.name for s in specs if mode == "random_expr" and len(forced[s.name]) > max_len]
        if too_many:
            msg = f"Perturbations {too_many} force more genes (perturbed + readout) than max_len={max_len}; raise it."
            raise ValueError(msg)
        targets = {s.name: _quantile_counts(inputs, positions[s.name], s, batch_size) for s in specs}
        torch_device, compute_dtype = self._device_dtype(accelerator, device, dtype)
        n_obs, d_model, n_genes = inputs.n_obs, int(self.net.config.d_model), mapper.n_genes
        n_leaves = {lab: int(self.net.config.labels[lab]) for lab in pred_labels}
        results = {
            s.name: PerturbResult(
                spec=s,
                baseline=np.empty((n_obs, d_model), dtype=np.float32),
                embedding=np.empty((n_obs, d_model), dtype=np.float32),
                shift=np.zeros(n_obs, dtype=np.float64),
                changed=np.zeros(n_obs, dtype=bool),
                proba_baseline={lab: np.empty((n_obs, n), np.float32) for lab, n in n_leaves.items()},
                proba={lab: np.empty((n_obs, n), np.float32) for lab, n in n_leaves.items()},
            )
            for s in specs
        }
        stats = {s.name: EffectStats(len(groups or []), n_genes) for s in specs}
        vocab_np = mapper.vocab_idx
        run = _Run(
            self,
            torch.as_tensor(vocab_np, dtype=torch.long, device=torch_device),
            torch_device,
            embedding_tokens,
            pred_labels,
        )
        with inference_mode(self.net, torch_device, compute_dtype):
            for start, stop, block in track(
                iter_row_chunks(inputs.X, batch_size), total=-(-n_obs // batch_size), description="sc_print perturb"
            ):
                x0 = mapper.collapse(block)
                # the draws of both passes: seeds from the hash of the UNPERTURBED counts
                keys = (
                    gene_keys(cell_seeds(cell_hashes(x0, vocab_np), seed), vocab_np) if mode == "random_expr" else None
                )
                for s in specs:
                    pos = positions[s.name]
                    x1 = x0.copy()
                    if s.kind == "knockout":
                        x1[:, pos] = 0.0
                    elif s.factor is not None:
                        x1[:, pos] = x0[:, pos] * np.float32(s.factor)
                    else:
                        x1[:, pos] = np.maximum(x0[:, pos], targets[s.name][None, :])
                    run.chunk(
                        results[s.name], stats[s.name], slice(start, stop), x0, x1, pos, keys,
                        max_len=max_len, remove=s.kind == "knockout" and knockout == "remove",
                        keep_depth=depth == "keep", forced=forced[s.name],
                        codes=None if codes is None else codes[start:stop],
                    )  # fmt: skip
        var_names = data.var_names[inputs.mapping.first_col].astype(str)
        for s in specs:
            res, pos = results[s.name], positions[s.name]
            res.shift = _cosine_distance(res.baseline, res.embedding)
            res.shift[~res.changed] = 0.0
            excluded = np.zeros(n_genes, dtype=bool)
            excluded[pos] = True
            res.effects = stats[s.name].table(0, var_names, excluded)
            for i, group in enumerate(groups or []):
                res.group_effects[group] = stats[s.name].table(i + 1, var_names, excluded)
            if s.quantile is not None:
                res.values = {str(var_names[p]): float(v) for p, v in zip(pos, targets[s.name], strict=True)}
        context = {"mode": mode, "n_genes": int(min(max_len, n_genes) if mode == "random_expr" else n_genes)}
        context.update(seed=seed, knockout=knockout, depth=depth, force_context=bool(force_context))
        if readout_genes is not None:
            context["readout_genes"] = [str(g) for g in readout_genes]
        return PerturbOutputs(results=results, inputs=inputs, context=context, groups=groups)


def _quantile_counts(inputs: Any, pos: np.ndarray, spec: PerturbSpec, batch_size: int) -> np.ndarray:
    """``[len(pos)]`` count set by a quantile over-expression (quantile of the non-zero counts); empty otherwise."""
    if spec.quantile is None:
        return np.zeros(0, dtype=np.float32)
    mapper = inputs.mapping.mapper
    chunks: list[np.ndarray] = []
    for _, _, block in iter_row_chunks(inputs.X, max(batch_size, 1024)):
        chunks.append(mapper.collapse_sparse(block)[:, pos].toarray())
    x = np.concatenate(chunks, axis=0)
    out = np.empty(len(pos), dtype=np.float32)
    for j in range(len(pos)):
        nonzero = x[:, j][x[:, j] > 0]
        if nonzero.size == 0:
            msg = f"No cell of {spec.name!r} expresses one of {list(spec.genes)}: its quantile is undefined; use `factor`."
            raise ValueError(msg)
        out[j] = np.quantile(nonzero, spec.quantile, method="higher")
    return out


class _Run:
    """The two passes of one chunk of cells for one perturbation."""

    def __init__(
        self, model: Any, vocab_t: torch.Tensor, device: torch.device, embedding_tokens: list[str], labels: list[str]
    ) -> None:
        self.net: ScPrintNet = model.net
        self.vocab_t, self.device = vocab_t, device
        self.embedding_tokens, self.labels = embedding_tokens, labels

    def forward(self, cols: torch.Tensor, x: torch.Tensor, depth: torch.Tensor) -> tuple[np.ndarray, dict, np.ndarray]:
        """Embedding, leaf probabilities and decoded composition (softmax over the context) of ``x`` at ``cols``."""
        expr = torch.gather(x, 1, cols)
        out = self.net(self.vocab_t[cols], expr, depth, depth_mult=torch.ones_like(depth), classify=bool(self.labels))
        emb = self.net.embed(out.cell_tokens.float(), self.embedding_tokens).cpu().numpy()
        proba = {lab: out.cls_logits[lab].float().softmax(-1).cpu().numpy() for lab in self.labels}
        return emb, proba, out.mu.float().cpu().numpy().astype(np.float64)

    def chunk(
        self, res: PerturbResult, stats: EffectStats, rows: slice, x0: np.ndarray, x1: np.ndarray, pos: np.ndarray,
        keys: np.ndarray | None, *, max_len: int, remove: bool, keep_depth: bool, forced: np.ndarray, codes: np.ndarray | None,
    ) -> None:  # fmt: skip
        x0_t = torch.from_numpy(x0).to(self.device)
        b, u = x0.shape
        if keys is None:
            cols = torch.arange(u, device=self.device).expand(b, u)
        else:
            ranked = keys.copy()
            ranked[:, forced] += 2.0  # above every expressed gene: always drawn, in both passes
            cols = select_genes(x0_t, mode="random_expr", max_len=max_len, keys=ranked)
        cols_np = cols.cpu().numpy()
        emb0, proba0, mu0 = self.forward(cols, x0_t, x0_t.sum(1))
        emb1, proba1, mu1 = emb0.copy(), {k: v.copy() for k, v in proba0.items()}, mu0.copy()
        changed = (x1[:, pos] != x0[:, pos]).any(1)
        idx = np.flatnonzero(changed)
        if idx.size:
            x1_t = torch.from_numpy(x1[idx]).to(self.device)
            depth1 = x0_t[idx].sum(1) if keep_depth else x1_t.sum(1)
            if not remove:
                part = [(np.arange(idx.size), np.ones(cols_np.shape[1:], bool)[None].repeat(idx.size, 0))]
            else:  # drop the tokens of the knocked-out genes the cell expresses
                sub = cols_np[idx]
                drop = np.isin(sub, pos) & (np.take_along_axis(x0[idx], sub, 1) > 0)
                n_drop = drop.sum(1)
                part = [(np.flatnonzero(n_drop == k), ~drop[n_drop == k]) for k in np.unique(n_drop)]
            for which, keep in part:
                width = int(keep[0].sum())
                if width == 0:
                    msg = "A knock-out removed every gene of a cell's context; use knockout='zero' or a longer context."
                    raise ValueError(msg)
                c = torch.as_tensor(cols_np[idx[which]][keep].reshape(which.size, width), device=self.device)
                e, p, m = self.forward(c, x1_t[which], depth1[which])
                rows_w = idx[which]
                emb1[rows_w] = e
                for lab in p:
                    proba1[lab][rows_w] = p[lab]
                full = np.zeros((which.size, cols_np.shape[1]))
                full[keep] = m.reshape(-1)
                mu1[rows_w] = full
        res.baseline[rows], res.embedding[rows], res.changed[rows] = emb0, emb1, changed
        for lab in proba0:
            res.proba_baseline[lab][rows], res.proba[lab][rows] = proba0[lab], proba1[lab]
        other = ~np.isin(cols_np, pos)
        stats.add(cols_np, other, _shares(mu0, other), _shares(mu1, other), codes)


def _shares(mu: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Decoded expression of the other genes in context, renormalised to 10,000 over them."""
    vals = np.where(other, mu, 0.0)
    total = vals.sum(1, keepdims=True)
    return vals / np.where(total > 0, total, 1.0) * 1e4
