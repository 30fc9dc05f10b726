"""Plots of stored results (they never compute): hub scores and gene networks."""

from __future__ import annotations

from ._hubs import diff_hubs, hubs
from ._network import network
from ._perturb import perturb
from ._spatial import spatial

__all__ = ["diff_hubs", "hubs", "network", "perturb", "spatial"]
