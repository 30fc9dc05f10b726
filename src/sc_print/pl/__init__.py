"""Plots of stored results (they never compute): hub scores and gene networks."""

from __future__ import annotations

from ._hubs import diff_hubs, hubs
from ._network import network

__all__ = ["diff_hubs", "hubs", "network"]
