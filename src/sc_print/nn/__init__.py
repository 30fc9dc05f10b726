"""Pure-torch building blocks of scPRINT (no AnnData here)."""

from ._attention import BACKENDS, attention, flash_attn_available
from ._config import PRESETS, ScPrintConfig
from ._decoders import ClsDecoder, ExprDecoder, ExpressionReadout, ExprParams, GenePool
from ._encoders import (
    CategoryValueEncoder,
    ContinuousValueEncoder,
    GeneEncoder,
    PositionalEncoding,
    normalize_expression,
    sinusoid_table,
)
from ._losses import (
    contrastive_loss,
    expression_loss,
    mse_loss,
    nb_log_likelihood,
    nb_loss,
    token_dissimilarity,
    zinb_log_likelihood,
    zinb_loss,
)
from ._scprint import ScPrintNet, ScPrintOutput
from ._transformer import MHA, Block, DropPath, Transformer

__all__ = [
    "BACKENDS",
    "MHA",
    "PRESETS",
    "Block",
    "CategoryValueEncoder",
    "ClsDecoder",
    "GenePool",
    "ContinuousValueEncoder",
    "DropPath",
    "ExprDecoder",
    "ExpressionReadout",
    "ExprParams",
    "GeneEncoder",
    "PositionalEncoding",
    "ScPrintConfig",
    "ScPrintNet",
    "ScPrintOutput",
    "Transformer",
    "attention",
    "contrastive_loss",
    "expression_loss",
    "flash_attn_available",
    "mse_loss",
    "nb_log_likelihood",
    "nb_loss",
    "normalize_expression",
    "sinusoid_table",
    "token_dissimilarity",
    "zinb_log_likelihood",
    "zinb_loss",
]
