"""Read stored results: gene networks (decoupler / networkx views) and hub scores."""

from __future__ import annotations

from ._network import graph, hubs, network
from ._perturb import perturb

__all__ = ["graph", "hubs", "network", "perturb"]
