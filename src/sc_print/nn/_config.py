"""Architecture hyper-parameters of an scPRINT network and the size presets of the paper."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._attention import AttentionBackend
    from ._decoders import ExprDecoderKind
    from ._encoders import Normalization

TokenOrder = Literal["paper", "v2"]

#: size presets of the paper (d_model, nlayers, nhead, layers_cls); free sizes are always allowed
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"d_model": 32, "nlayers": 2, "nhead": 2, "layers_cls": [32]},
    "small": {"d_model": 128, "nlayers": 4, "nhead": 4, "layers_cls": [128]},
    "medium": {"d_model": 256, "nlayers": 8, "nhead": 4, "layers_cls": [256]},
    "large": {"d_model": 512, "nlayers": 16, "nhead": 8, "layers_cls": [512]},
}


@dataclass
class ScPrintConfig:
    """Everything needed to build an :class:`~sc_print.nn.ScPrintNet` (JSON-serialisable).

    Parameters
    ----------
    n_genes
        Size of the gene vocabulary ``G``.
    d_model, nhead, nlayers
        Transformer width, heads and depth.
    num_heads_kv
        Key/value heads (grouped-query attention); ``None`` = ``nhead``.
    dim_feedforward
        MLP width; ``None`` = ``4 * d_model``.
    expr_encoder_layers
        Layers of the expression (and depth) MLP.
    normalization
        Input transform of counts: ``"log"`` = ``log2(1+x)``; ``"sum"`` = fraction of the context total.
    depth_atinput
        ``True``: a depth token ``MLP(log2(1+depth))`` among the cell tokens; ``False``: ``log2(1+depth)``
        is concatenated to every gene token at the expression decoder.
    labels
        Predicted labels in class order, ``{label: number of leaf classes}``.
    layers_cls
        Hidden widths of each classifier.
    pooled_labels
        Labels whose classifier also reads an attention pool of the output gene tokens
        (:class:`~sc_print.nn.GenePool`; what :meth:`ScPrint.finetune <sc_print.model.ScPrint.finetune>` gives new
        heads by default). Official checkpoints have none.
    gene_pool
        ``{"width": int, "n_queries": int}`` of those pools.
    readout_labels
        Labels whose classifier adds a linear read-out of the context expression to its logits
        (:class:`~sc_print.nn.ExpressionReadout`). Official checkpoints have none.
    expr_decoder
        ``"zinb"``, ``"nb"`` or ``"mse"``.
    dropout, drop_path_rate
        Residual dropout and stochastic depth.
    token_order
        Order of the cell tokens: ``"paper"`` = ``[cell, depth, labels...]``, ``"v2"`` =
        ``[depth, cell, labels...]`` (without depth token both are ``[cell, labels...]``).
    pred_embedding
        Label tokens averaged into the default cell embedding (``None`` = all labels, or the cell token
        when there are none).
    freeze_gene_embeddings
        Keep the gene table fixed during training (official ESM2 tables are frozen).
    attention
        Attention backend: ``"sdpa"``, ``"flash_attn"`` or ``"math"``.
    """

    n_genes: int
    d_model: int = 128
    nhead: int = 4
    nlayers: int = 4
    num_heads_kv: int | None = None
    dim_feedforward: int | None = None
    expr_encoder_layers: int = 2
    normalization: Normalization = "log"
    depth_atinput: bool = True
    labels: dict[str, int] = field(default_factory=dict)
    layers_cls: list[int] = field(default_factory=list)
    pooled_labels: list[str] = field(default_factory=list)
    gene_pool: dict[str, int] = field(default_factory=lambda: {"width": 256, "n_queries": 4})
    readout_labels: list[str] = field(default_factory=list)
    expr_decoder: ExprDecoderKind = "zinb"
    dropout: float = 0.1
    drop_path_rate: float = 0.0
    token_order: TokenOrder = "v2"
    pred_embedding: list[str] | None = None
    freeze_gene_embeddings: bool = False
    attention: AttentionBackend = "sdpa"

    @classmethod
    def preset(cls, name: str, *, n_genes: int, **overrides: Any) -> ScPrintConfig:
        """Config of a named size (``tiny``, ``small``, ``medium``, ``large``) with ``overrides``.

        The one place where the size presets (``sc_print.nn.PRESETS``) are applied; ``ScPrint(size=...)`` uses it.

        Parameters
        ----------
        name
            Preset name.
        n_genes
            Size of the gene vocabulary.
        **overrides
            Any other field. ``None`` for a preset field (``d_model``, ``nlayers``, ``nhead``,
            ``layers_cls``) keeps the preset's value; a ``d_model`` given without ``layers_cls`` also sets
            the classifier width to ``[d_model]``.

        Returns
        -------
        The config.
        """
        if not isinstance(name, str) or name not in PRESETS:
            msg = f"Unknown size preset {name!r}; choose one of {sorted(PRESETS)} or pass sizes explicitly."
            raise ValueError(msg)
        sizes = dict(PRESETS[name])
        overrides = {k: v for k, v in overrides.items() if not (k in sizes and v is None)}
        if "d_model" in overrides and "layers_cls" not in overrides:
            sizes["layers_cls"] = [overrides["d_model"]]
        return cls(n_genes=n_genes, **{**sizes, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScPrintConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            msg = f"Unknown ScPrintConfig fields: {sorted(unknown)}."
            raise ValueError(msg)
        return cls(**d)

    @property
    def token_names(self) -> list[str]:
        """Names of the cell tokens in the order they precede the genes."""
        base = ["cell", "depth"] if self.token_order == "paper" else ["depth", "cell"]
        if not self.depth_atinput:
            base = ["cell"]
        return base + list(self.labels)
