"""Registry keys of the scvi-tools data registration of :class:`~sc_print.model.ScPrint`."""

from __future__ import annotations

from typing import NamedTuple


class _RegistryKeys(NamedTuple):
    X_KEY: str = "X"
    BATCH_KEY: str = "batch"
    LABEL_PREFIX: str = "label_"

    def label(self, name: str) -> str:
        """Registry key of one label column."""
        return f"{self.LABEL_PREFIX}{name}"


REGISTRY_KEYS = _RegistryKeys()

#: version of the on-disk format written by ``ScPrint.save``
SAVE_FORMAT_VERSION = 1
#: file name of a saved model inside its directory
MODEL_FILE = "model.pt"
#: file name of the AnnData written by ``ScPrint.save(save_anndata=True)``
ADATA_FILE = "adata.h5ad"
