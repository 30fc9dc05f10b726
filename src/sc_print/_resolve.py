"""Resolve the ``model=`` and device options of a call (a leaf module: nothing below it imports it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._device import resolve_device
from ._settings import settings
from .hub import load_model
from .model import ScPrint

if TYPE_CHECKING:
    import torch

#: models resolved from ``model=None``, by name (loaded once per session)
_MODEL_CACHE: dict[str, ScPrint] = {}


def resolve_model(model: ScPrint | str | Any | None = None, *, device: torch.device | None = None) -> ScPrint:
    """Return an :class:`~sc_print.model.ScPrint` for ``model``.

    ``None`` is the embedded default model (loaded once per session); otherwise a model, a registry name or a
    path (see :func:`sc_print.load_model`). With ``device``, the model's weights are moved there.
    """
    if isinstance(model, ScPrint):
        out = model
    elif model is None:
        name = settings.default_model
        if name not in _MODEL_CACHE:
            _MODEL_CACHE[name] = load_model(name)
        out = _MODEL_CACHE[name]
    elif isinstance(model, str | bytes) or hasattr(model, "__fspath__"):
        out = load_model(model)
    else:
        msg = f"`model` must be None, a sc_print ScPrint model, a registry name or a path, got {type(model).__name__}."
        raise TypeError(msg)
    if device is not None:
        out.module.to(device)
    return out


def resolve_run(model: Any, accelerator: str = "auto", device: int | str = "auto") -> tuple[ScPrint, torch.device]:
    """Resolve the device, then the model, and move the model's weights there.

    Parameters
    ----------
    model
        ``None`` (the default model), a :class:`~sc_print.model.ScPrint`, a registry name or a path.
    accelerator, device
        Where to run (see :meth:`sc_print.model.ScPrint.get_latent_representation`).

    Returns
    -------
    The model and the :class:`torch.device` its weights are on.
    """
    torch_device = resolve_device(accelerator, device)
    return resolve_model(model, device=torch_device), torch_device
