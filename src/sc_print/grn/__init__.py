"""Gene-network machinery: mean-Q/K and mean-attention aggregation, head selection, network scores."""

from ._aggregate import QKAccumulator, attention_network, place_network, triton_usable
from ._heads import fit_head_classifier
from ._mean_attention import AttentionAccumulator, mean_attention_network
from ._metrics import network_scores, truth_matrix
from ._stream import accumulate_attention, accumulate_qk, row_hashes, select_cells

__all__ = [
    "AttentionAccumulator",
    "QKAccumulator",
    "accumulate_attention",
    "accumulate_qk",
    "attention_network",
    "fit_head_classifier",
    "mean_attention_network",
    "network_scores",
    "place_network",
    "row_hashes",
    "select_cells",
    "triton_usable",
    "truth_matrix",
]
