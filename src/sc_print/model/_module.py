"""ScPrintModule: the scvi-tools module running the multi-task scPRINT pretraining step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from sc_print.data import GeneMapper, downsample_profile, random_cell_seeds, tokenize
from sc_print.nn import (
    ScPrintConfig,
    ScPrintNet,
    contrastive_loss,
    expression_loss,
    token_dissimilarity,
)
from sc_print.ontology import hierarchical_classification_loss

from ._constants import REGISTRY_KEYS


class ScPrintModule(BaseModuleClass):
    """Wrap :class:`~sc_print.nn.ScPrintNet` with the pretraining recipe of scPRINT.

    One training step: pick the context of each cell (``context="random_expr"``: ``max_len`` random expressed
    genes, zero filler when fewer; ``"top_expr"``: its ``max_len`` most expressed genes), downsample
    them with zero-inflated Poisson noise (``noise``), run the network on the noisy profile asking for the
    original depth, and sum

    - **denoising**: expression NLL (ZINB by default) of the *original* counts;
    - **bottleneck reconstruction**: the same NLL for a profile decoded from the cell tokens alone
      (:meth:`~sc_print.nn.ScPrintNet.generate`);
    - **classification**: hierarchical loss of every label, times ``class_scale``; a classifier with an
      expression read-out adds, times ``deep_scale`` (default 0), the same loss of its logits without the
      read-out (deep supervision: the label token and the trunk learn the labels too instead of leaving them to
      the read-out);
    - **token dissimilarity**: mean absolute cosine between the cell tokens, times ``dissimilarity_scale``;
    - **contrastive** (optional, ``contrastive_scale > 0``): NT-Xent between the embeddings of two
      independently noised views of each cell.

    Parameters
    ----------
    config
        :class:`~sc_print.nn.ScPrintConfig` as a dict.
    gene_pos
        ``[G]`` genomic positions of the vocabulary.
    parent_matrices
        ``{label: bool [n_parents, n_leaves]}`` for the hierarchical loss.
    max_len, noise, class_scale, deep_scale, generate_scale, dissimilarity_scale, contrastive_scale, temperature
        Pretraining options (see above).
    context
        Context mode of training (``"random_expr"``, ``"top_expr"`` or ``"fixed"``, see
        :func:`~sc_print.data.select_genes`).
    context_genes
        Vocabulary indices of the gene panel of ``context="fixed"`` (the panel's genes measured in the data).
    """

    def __init__(
        self,
        config: dict[str, Any],
        gene_pos: list[int] | np.ndarray | None = None,
        *,
        parent_matrices: dict[str, np.ndarray] | None = None,
        max_len: int = 1024,
        noise: float = 0.6,
        class_scale: float = 1.5,
        deep_scale: float = 0.0,
        generate_scale: float = 1.0,
        dissimilarity_scale: float = 0.2,
        contrastive_scale: float = 0.0,
        temperature: float = 0.2,
        context: str = "random_expr",
        context_genes: list[int] | np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if context not in ("random_expr", "top_expr", "fixed"):
            msg = f"Unknown training context {context!r}; choose 'random_expr', 'top_expr' or 'fixed'."
            raise ValueError(msg)
        if (context == "fixed") != (context_genes is not None):
            msg = "`context_genes` (vocabulary indices) is needed with context='fixed', and only then."
            raise ValueError(msg)
        self.context = context
        self.context_genes = None if context_genes is None else [int(g) for g in context_genes]
        self.config = ScPrintConfig.from_dict(dict(config))
        self.net = ScPrintNet(self.config, None if gene_pos is None else torch.as_tensor(np.asarray(gene_pos)))
        self.max_len, self.noise = max_len, noise
        self.class_scale, self.generate_scale, self.deep_scale = class_scale, generate_scale, deep_scale
        self.dissimilarity_scale, self.contrastive_scale, self.temperature = (
            dissimilarity_scale,
            contrastive_scale,
            temperature,
        )
        for label in self.config.labels:
            pm = (parent_matrices or {}).get(label)
            n = self.config.labels[label]
            pm = np.zeros((0, n), dtype=bool) if pm is None else np.asarray(pm, dtype=bool)
            self.register_buffer(f"_parents_{label}", torch.as_tensor(pm), persistent=False)
        # gene mapping of the registered AnnData (set by the model; not part of the weights)
        self.register_buffer("_mapped_cols", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("_col_to_u", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("_u_vocab", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("_context_pos", torch.zeros(0, dtype=torch.long), persistent=False)
        self._label_lookup: dict[str, torch.Tensor] = {}
        # fine-tuning (sc_print.model.ScPrint.finetune): weight of denoising + bottleneck, batch adversary
        self.ssl_scale = 1.0
        self.batch_adversary: torch.nn.Module | None = None
        self.adversary_scale = 0.0

    # ------------------------------------------------------------------ data mapping
    def set_data_mapping(self, col_vocab: np.ndarray, label_lookup: dict[str, np.ndarray]) -> None:
        """Tell the module how columns and label categories of the registered AnnData map to the model.

        Parameters
        ----------
        col_vocab
            ``[n_vars]`` vocabulary index of each column (``-1`` unmapped).
        label_lookup
            ``{label: [n_categories]}`` hierarchy code of each category of the label column (``-1`` unknown).
        """
        mapper = GeneMapper(col_vocab)
        device = self._mapped_cols.device
        # the same GeneMapper the inference path uses; its index arrays as buffers so they follow the device
        self._mapped_cols = torch.as_tensor(mapper.mapped_cols, device=device)
        self._col_to_u = torch.as_tensor(mapper.col_to_u, device=device)
        self._u_vocab = torch.as_tensor(mapper.vocab_idx, device=device)
        if self.context_genes is not None:  # the fixed panel's genes that these data measure
            pos = mapper.positions(np.asarray(self.context_genes, dtype=np.int64))
            if not (pos >= 0).any():
                msg = "None of the model's context genes (context='fixed') is measured in these data."
                raise ValueError(msg)
            self._context_pos = torch.as_tensor(np.sort(pos[pos >= 0]), device=device)
        self._label_lookup = {k: torch.as_tensor(np.asarray(v, dtype=np.int64)) for k, v in label_lookup.items()}

    def _collapse(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, n_vars]`` dense counts → ``[B, U]`` over the mapped genes (duplicates summed, as ``GeneMapper``)."""
        out = x.new_zeros(x.shape[0], self._u_vocab.numel())
        return out.index_add_(1, self._col_to_u, x[:, self._mapped_cols])

    # ------------------------------------------------------------------ scvi-tools interface
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        labels = {
            label: tensors[REGISTRY_KEYS.label(label)]
            for label in self.config.labels
            if REGISTRY_KEYS.label(label) in tensors
        }
        return {"x": tensors[REGISTRY_KEYS.X_KEY], "labels": labels}

    @auto_move_data
    def inference(self, x: torch.Tensor, labels: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Tokenise, add noise and run the denoising pass."""
        if x.is_sparse or x.layout == torch.sparse_csr:
            x = x.to_dense()
        xu = self._collapse(x.float())
        # the one tokenisation path (sc_print.data.tokenize); fresh per-cell draws from torch's generator
        fixed = self.context == "fixed"
        tokens = tokenize(
            xu,
            self._u_vocab,
            mode=self.context,
            max_len=self.max_len,
            genes=self._context_pos if fixed else None,
            seeds=None if fixed else random_cell_seeds(xu.shape[0]),
        )
        expr, gene_idx, depth = tokens.expr, tokens.gene_idx, tokens.depth
        noisy = downsample_profile(expr, self.noise) if self.training or self.noise > 0 else expr
        context_total = expr.sum(1)
        out = self.net(gene_idx, noisy, depth, depth_mult=context_total, req_depth=depth)
        result = {"out": out, "expr": expr, "gene_idx": gene_idx, "depth": depth, "labels": labels or {}}
        if self.contrastive_scale > 0:
            noisy2 = downsample_profile(expr, self.noise)
            out2 = self.net(
                gene_idx,
                noisy2,
                depth,
                depth_mult=context_total,
                req_depth=depth,
                decode=False,
                classify=False,
                cell_tokens_only=True,
            )
            result["emb2"] = self.net.embed(out2.cell_tokens)
        return result

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "cell_tokens": inference_outputs["out"].cell_tokens,
            "gene_idx": inference_outputs["gene_idx"],
            "context_total": inference_outputs["expr"].sum(1),
            "depth": inference_outputs["depth"],
        }

    @auto_move_data
    def generative(
        self, cell_tokens: torch.Tensor, gene_idx: torch.Tensor, context_total: torch.Tensor, depth: torch.Tensor
    ) -> dict[str, Any]:
        """Bottleneck pass: decode the profile from the cell tokens alone."""
        if self.generate_scale <= 0 or self.ssl_scale <= 0:
            return {"gen": None}
        return {"gen": self.net.generate(cell_tokens, gene_idx, context_total, req_depth=depth)}

    def loss(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict[str, Any], generative_outputs: dict[str, Any]
    ) -> LossOutput:
        """Sum of the pretraining losses (see the class docstring); components in ``extra_metrics``."""
        out, expr = inference_outputs["out"], inference_outputs["expr"]
        per_cell = -self._per_cell_loglik(expr, out)
        denoise = expression_loss(expr, out.mu, out.theta, out.pi_logits)
        total = self.ssl_scale * denoise
        metrics: dict[str, torch.Tensor] = {"denoise": denoise.detach()}
        gen = generative_outputs.get("gen")
        if gen is not None:
            gen_loss = expression_loss(expr, gen.mu, gen.theta, gen.pi_logits)
            total = total + self.ssl_scale * self.generate_scale * gen_loss
            metrics["generate"] = gen_loss.detach()
        if self.config.labels:
            cls = out.cell_tokens.new_zeros(())
            for label, logits in out.cls_logits.items():
                raw = inference_outputs["labels"].get(label)
                if raw is None:
                    continue
                lookup = self._label_lookup[label].to(logits.device)
                codes = lookup[raw.view(-1).long()]
                parents = getattr(self, f"_parents_{label}")
                cls = cls + hierarchical_classification_loss(logits, codes, parents)
                deep = out.cls_deep_logits.get(label)
                if deep is not None and self.deep_scale:
                    cls = cls + self.deep_scale * hierarchical_classification_loss(deep, codes, parents)
            total = total + self.class_scale * cls
            metrics["classification"] = cls.detach()
            diss = token_dissimilarity(out.cell_tokens)
            total = total + self.dissimilarity_scale * diss
            metrics["dissimilarity"] = diss.detach()
        if "emb2" in inference_outputs:
            con = contrastive_loss(self.net.embed(out.cell_tokens), inference_outputs["emb2"], self.temperature)
            total = total + self.contrastive_scale * con
            metrics["contrastive"] = con.detach()
        if self.batch_adversary is not None and REGISTRY_KEYS.BATCH_KEY in tensors:
            batch = tensors[REGISTRY_KEYS.BATCH_KEY].view(-1).long()
            adv = torch.nn.functional.cross_entropy(self.batch_adversary(self.net.embed(out.cell_tokens)), batch)
            total = total + self.adversary_scale * adv
            metrics["batch_adversary"] = adv.detach()
        return LossOutput(loss=total, reconstruction_loss=per_cell, extra_metrics=metrics)

    @staticmethod
    def _per_cell_loglik(expr: torch.Tensor, out: Any) -> torch.Tensor:
        """Per-cell mean log-likelihood of the denoising pass (scvi-tools reports its negative)."""
        from sc_print.nn import nb_log_likelihood, zinb_log_likelihood

        if out.theta is None:
            return -((torch.log2(1 + out.mu) - torch.log2(1 + expr)) ** 2).mean(1).detach()
        if out.pi_logits is None:
            return nb_log_likelihood(expr, out.mu, out.theta).mean(1).detach()
        return zinb_log_likelihood(expr, out.mu, out.theta, out.pi_logits).mean(1).detach()
