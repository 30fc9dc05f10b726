"""scvi-tools model API: :class:`ScPrint` (user API), :class:`ScPrintModule` (torch), training plan."""

from sc_print._utils import resolve_model

from ._constants import REGISTRY_KEYS
from ._model import ScPrint
from ._module import ScPrintModule
from ._training import ScPrintDataSplitter, ScPrintTrainingPlan

__all__ = ["REGISTRY_KEYS", "ScPrint", "ScPrintDataSplitter", "ScPrintModule", "ScPrintTrainingPlan", "resolve_model"]
