"""The scPRINT network: tokens → transformer → expression, class and embedding outputs (pure torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from ._decoders import ClsDecoder, ExprDecoder
from ._encoders import (
    CategoryValueEncoder,
    ContinuousValueEncoder,
    GeneEncoder,
    PositionalEncoding,
    normalize_expression,
)
from ._transformer import QKHook, Transformer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._config import ScPrintConfig


@dataclass
class ScPrintOutput:
    """What one forward pass returns (fields are ``None`` when not requested).

    Attributes
    ----------
    cell_tokens
        ``[B, T, d]`` transformer outputs at the cell-token positions, in ``net.token_names`` order.
    gene_out
        ``[B, S, d]`` transformer outputs at the gene positions.
    mu, theta, pi_logits
        ``[B, S]`` expression parameters (see :class:`~sc_print.nn.ExprParams`).
    cls_logits
        ``{label: [B, n_leaves]}`` leaf logits of every classifier.
    cls_deep_logits
        ``{label: [B, n_leaves]}`` of the classifiers with an expression read-out: their logits without it
        (:meth:`~sc_print.nn.ClsDecoder.deep_logits`), for deep supervision in training.
    """

    cell_tokens: torch.Tensor | None = None
    gene_out: torch.Tensor | None = None
    mu: torch.Tensor | None = None
    theta: torch.Tensor | None = None
    pi_logits: torch.Tensor | None = None
    cls_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    cls_deep_logits: dict[str, torch.Tensor] = field(default_factory=dict)


class ScPrintNet(nn.Module):
    """The scPRINT bidirectional transformer over the genes of one cell.

    Each gene token is ``gene_encoder(gene) + expr_encoder(norm(count)) + pos_encoder(gene)``; cell tokens
    (base cell token, depth token, one placeholder per predicted label) precede the genes. Module names
    mirror the official checkpoint keys (see ``docs/contributing/architecture.md``).

    Parameters
    ----------
    config
        Architecture hyper-parameters.
    gene_pos
        ``[G]`` 1-based genomic locus-cluster index of each vocabulary gene (10 kb rule); ``None`` gives
        every gene its own position.
    """

    def __init__(self, config: ScPrintConfig, gene_pos: torch.Tensor | Sequence[int] | None = None) -> None:
        super().__init__()
        self.config = config
        c = config
        if gene_pos is None:
            gene_pos = torch.arange(1, c.n_genes + 1)
        gene_pos = torch.as_tensor(gene_pos, dtype=torch.long)
        if len(gene_pos) != c.n_genes:
            msg = f"gene_pos has {len(gene_pos)} entries for a vocabulary of {c.n_genes} genes."
            raise ValueError(msg)
        self.gene_encoder = GeneEncoder(c.n_genes, c.d_model, freeze=c.freeze_gene_embeddings)
        self.expr_encoder = ContinuousValueEncoder(c.d_model, layers=c.expr_encoder_layers, dropout=c.dropout)
        self.pos_encoder = PositionalEncoding(c.d_model, gene_pos)
        if c.depth_atinput:
            self.depth_encoder = ContinuousValueEncoder(c.d_model, layers=c.expr_encoder_layers, dropout=c.dropout)
        self.class_encoder = CategoryValueEncoder(len(c.labels) + 1, c.d_model)
        self.transformer = Transformer(
            c.d_model,
            c.nhead,
            c.nlayers,
            num_heads_kv=c.num_heads_kv,
            dim_feedforward=c.dim_feedforward,
            dropout=c.dropout,
            drop_path_rate=c.drop_path_rate,
            backend=c.attention,
        )
        self.expr_decoder = ExprDecoder(
            c.d_model, kind=c.expr_decoder, depth_input=not c.depth_atinput, dropout=c.dropout
        )
        self.cls_decoders = nn.ModuleDict(
            {
                label: ClsDecoder(
                    c.d_model,
                    n,
                    layers=c.layers_cls,
                    dropout=c.dropout,
                    gene_pool=c.gene_pool if label in c.pooled_labels else None,
                    readout_genes=c.n_genes if label in c.readout_labels else None,
                )
                for label, n in c.labels.items()
            }
        )
        for field_name in ("pooled_labels", "readout_labels"):
            unknown = sorted(set(getattr(c, field_name)) - set(c.labels))
            if unknown:
                msg = f"{field_name} {unknown} are not labels of this network ({list(c.labels)})."
                raise ValueError(msg)
        self.token_names: list[str] = c.token_names
        self.n_cell_tokens = len(self.token_names)
        self._init_weights()

    # ------------------------------------------------------------------ init
    def _init_weights(self) -> None:
        """GPT-2 style init: N(0, 0.02) Linear weights, zero biases, scaled residual projections."""
        std_out = 0.02 / (2 * self.config.nlayers) ** 0.5
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = std_out if name.endswith(("out_proj", "fc2")) else 0.02
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        for dec in self.cls_decoders.values():
            nn.init.constant_(dec.out_layer.bias, -0.13)
            if dec.readout is not None:
                nn.init.zeros_(dec.readout.weight)
                nn.init.zeros_(dec.readout.bias)

    # ------------------------------------------------------------------ tokens
    def gene_tokens(
        self, gene_idx: torch.Tensor, expr: torch.Tensor | None, *, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[B, S, d]`` gene tokens; ``expr=None`` gives identity + position only (bottleneck pass)."""
        tokens = self.gene_encoder(gene_idx) + self.pos_encoder(gene_idx)
        if expr is not None:
            tokens = tokens + self.expr_encoder(normalize_expression(expr, self.config.normalization), mask)
        return tokens

    def cell_tokens(self, batch_size: int, req_depth: torch.Tensor) -> torch.Tensor:
        """``[B, T, d]`` input cell tokens in ``token_names`` order."""
        idx = torch.arange(len(self.config.labels) + 1, device=req_depth.device)
        classes = self.class_encoder(idx).unsqueeze(0).expand(batch_size, -1, -1)
        parts = []
        for name in self.token_names[: self.n_cell_tokens - len(self.config.labels)]:
            if name == "cell":
                parts.append(classes[:, :1])
            else:  # depth
                parts.append(self.depth_encoder(torch.log2(1 + req_depth.float())).unsqueeze(1))
        parts.append(classes[:, 1:])
        return torch.cat(parts, dim=1)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        gene_idx: torch.Tensor,
        expr: torch.Tensor,
        depth: torch.Tensor,
        *,
        depth_mult: torch.Tensor | float | None = None,
        req_depth: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        qk_hook: QKHook | None = None,
        qk_layers: Sequence[int] | None = None,
        decode: bool = True,
        classify: bool = True,
        cell_tokens_only: bool = False,
    ) -> ScPrintOutput:
        """Run the network on one batch of tokenised cells.

        Parameters
        ----------
        gene_idx
            ``[B, S]`` vocabulary index of each gene in context.
        expr
            ``[B, S]`` raw counts of those genes.
        depth
            ``[B]`` total raw counts of each cell (over all of its mapped genes).
        depth_mult
            Total of the decoded mean per cell (``[B]`` or a scalar factor applied to the default);
            ``None`` = the sum of the counts in context (reference behaviour).
        req_depth
            Depth shown to the model (depth token or decoder input); ``None`` = ``depth``.
        mask
            ``[B, S]`` True where the expression value is hidden (masked-gene training).
        qk_hook, qk_layers
            Hand per-layer Q and K to ``qk_hook`` (see :class:`~sc_print.nn.Transformer`).
        decode, classify
            Compute the expression parameters / the class logits. With both False and a ``qk_hook``
            the pass stops after the last requested layer's Q and K.
        cell_tokens_only
            Compute the outputs of the cell tokens only (embedding and classification): the last block
            skips the attention output and MLP of the gene tokens, and ``gene_out`` is ``None``. Needs
            ``decode=False``; ignored when ``classify`` and a classifier reads the gene outputs
            (``config.pooled_labels``).

        Returns
        -------
        :class:`ScPrintOutput`
        """
        if cell_tokens_only and decode:
            msg = "cell_tokens_only=True computes no gene outputs, so it needs decode=False."
            raise ValueError(msg)
        if classify and self.config.pooled_labels:
            cell_tokens_only = False
        req_depth = depth if req_depth is None else req_depth
        tokens = self.gene_tokens(gene_idx, expr, mask=mask)
        x = torch.cat([self.cell_tokens(gene_idx.shape[0], req_depth).to(tokens.dtype), tokens], dim=1)
        stop = qk_hook is not None and not (decode or classify)
        n_outputs = self.n_cell_tokens if cell_tokens_only else None
        h = self.transformer(x, qk_hook=qk_hook, qk_layers=qk_layers, stop_after_qk=stop, n_outputs=n_outputs)
        if h is None:
            return ScPrintOutput()
        return self._heads(
            h,
            expr=expr,
            depth_mult=depth_mult,
            req_depth=req_depth,
            decode=decode,
            classify=classify,
            context=(gene_idx, expr),
        )

    def generate(
        self,
        cell_tokens: torch.Tensor,
        gene_idx: torch.Tensor,
        depth_mult: torch.Tensor,
        *,
        req_depth: torch.Tensor | None = None,
    ) -> ScPrintOutput:
        """Bottleneck pass: decode a profile from cell-token outputs alone.

        The genes enter with identity and position only (no expression); the cell tokens are the outputs
        of a previous pass (``out.cell_tokens``). This is the "bottleneck reconstruction" pretraining task.
        """
        if req_depth is None:
            req_depth = depth_mult
        tokens = self.gene_tokens(gene_idx, None)
        x = torch.cat([cell_tokens.to(tokens.dtype), tokens], dim=1)
        h = self.transformer(x)
        return self._heads(h, expr=None, depth_mult=depth_mult, req_depth=req_depth, decode=True, classify=False)

    def _heads(
        self,
        h: torch.Tensor,
        *,
        expr: torch.Tensor | None,
        depth_mult: torch.Tensor | float | None,
        req_depth: torch.Tensor,
        decode: bool,
        classify: bool,
        context: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> ScPrintOutput:
        t = self.n_cell_tokens
        out = ScPrintOutput(cell_tokens=h[:, :t], gene_out=h[:, t:] if h.shape[1] > t else None)
        if decode:
            if depth_mult is None or not torch.is_tensor(depth_mult):
                base = expr.sum(-1).float() if expr is not None else req_depth.float()
                depth_mult = base * (1.0 if depth_mult is None else float(depth_mult))
            log_depth = torch.log2(1 + req_depth.float())
            out.mu, out.theta, out.pi_logits = self.expr_decoder(out.gene_out, depth_mult.float(), log_depth)
        if classify:
            first = t - len(self.config.labels)
            pooled = set(self.config.pooled_labels)
            for i, (label, dec) in enumerate(self.cls_decoders.items()):
                deep = dec.deep_logits(h[:, first + i], out.gene_out if label in pooled else None)
                out.cls_logits[label] = dec.add_readout(deep, context)
                if dec.readout is not None:
                    out.cls_deep_logits[label] = deep
        return out

    # ------------------------------------------------------------------ embeddings
    def embed(self, cell_tokens: torch.Tensor, labels: Sequence[str] | None = None) -> torch.Tensor:
        """Cell embedding ``[B, d]``: mean of the output tokens of ``labels``.

        ``labels=None`` uses ``config.pred_embedding``, else every label token, else the base cell token.
        """
        if labels is None:
            labels = self.config.pred_embedding or list(self.config.labels) or ["cell"]
        unknown = [name for name in labels if name not in self.token_names]
        if unknown:
            msg = f"Unknown embedding tokens {unknown}; this model has {self.token_names}."
            raise KeyError(msg)
        idx = [self.token_names.index(name) for name in labels]
        return cell_tokens[:, idx].mean(dim=1)

    @property
    def n_genes(self) -> int:
        """Vocabulary size."""
        return self.config.n_genes
