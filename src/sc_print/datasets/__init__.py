"""Example datasets: bundled (:func:`example`), synthetic (:func:`toy`) and fetched with pooch (PBMC sets).

The PBMC sets are downloaded from the base URL in the environment variable ``SC_PRINT_DATA_URL`` (they have no
public address yet), checked against the sha256 of :data:`REGISTRY` and cached in
``sc_print.settings.cache_dir``.
"""

from ._datasets import DATA_URL_ENV, REGISTRY, example, pbmc_chemistries, pbmc_donor_a, pbmc_sorted, toy

__all__ = ["DATA_URL_ENV", "REGISTRY", "example", "pbmc_chemistries", "pbmc_donor_a", "pbmc_sorted", "toy"]
