"""scvi-tools model API: :class:`ScPrint` (user API), :class:`ScPrintModule` (torch), training plan."""

from ._constants import REGISTRY_KEYS
from ._inference import DENOISE_EXPECTATIONS, DENOISE_GENE_SETS, CellOutputs, DenoiseOutputs
from ._model import ScPrint
from ._module import ScPrintModule
from ._training import ScPrintDataSplitter, ScPrintTrainingPlan

__all__ = [
    "DENOISE_EXPECTATIONS",
    "DENOISE_GENE_SETS",
    "REGISTRY_KEYS",
    "CellOutputs",
    "DenoiseOutputs",
    "ScPrint",
    "ScPrintDataSplitter",
    "ScPrintModule",
    "ScPrintTrainingPlan",
]
