"""scvi-tools model API: :class:`ScPrint` (user API), :class:`ScPrintModule` (torch), training plan."""

from ._constants import REGISTRY_KEYS
from ._inference import DENOISE_EXPECTATIONS, DENOISE_GENE_SETS, CellOutputs, DenoiseOutputs
from ._model import ScPrint
from ._module import ScPrintModule
from ._perturb import PerturbOutputs, PerturbResult, PerturbSpec, parse_perturbations
from ._training import ScPrintDataSplitter, ScPrintTrainingPlan

__all__ = [
    "DENOISE_EXPECTATIONS",
    "DENOISE_GENE_SETS",
    "REGISTRY_KEYS",
    "CellOutputs",
    "DenoiseOutputs",
    "PerturbOutputs",
    "PerturbResult",
    "PerturbSpec",
    "ScPrint",
    "ScPrintDataSplitter",
    "ScPrintModule",
    "ScPrintTrainingPlan",
    "parse_perturbations",
]
