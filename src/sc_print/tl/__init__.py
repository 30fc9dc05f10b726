"""sc_print.tl."""

__all__: list[str] = []

from ._denoise import denoise
from ._embed import embed
from ._grn import grn
from ._heads import select_heads
from ._hubs import communities, diff_hubs, hubs
from ._perturb import perturb
from ._spatial import niches, regulon_activity, spatial_regulons

__all__ += ["communities", "diff_hubs", "grn", "hubs", "select_heads"]
__all__ += ["denoise", "embed"]
__all__ += ["niches", "regulon_activity", "spatial_regulons"]
__all__ += ["perturb"]
