"""Gene-network machinery: mean-Q/K attention aggregation, head selection, network scores."""

from ._aggregate import QKAccumulator, attention_network
from ._heads import fit_head_classifier
from ._metrics import network_scores, truth_matrix
from ._stream import accumulate_qk, row_hashes, select_cells

__all__ = [
    "QKAccumulator",
    "accumulate_qk",
    "attention_network",
    "fit_head_classifier",
    "network_scores",
    "row_hashes",
    "select_cells",
    "truth_matrix",
]
