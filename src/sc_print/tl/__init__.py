"""sc_print.tl."""

__all__: list[str] = []

from ._denoise import denoise
from ._embed import embed
from ._grn import grn
from ._heads import select_heads
from ._hubs import communities, diff_hubs, hubs

__all__ += ["communities", "diff_hubs", "grn", "hubs", "select_heads"]
__all__ += ["denoise", "embed"]
