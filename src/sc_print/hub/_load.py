"""``sp.load_model``: one entry point for the embedded model, published weights and local files."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ._official import read_official_checkpoint
from ._registry import REGISTRY, fetch_weights, resolve_name

if TYPE_CHECKING:
    from sc_print.model import ScPrint

logger = logging.getLogger(__name__)

#: name of the small model shipped inside the package (``sp.settings.default_model``)
DEFAULT_MODEL_NAME = "default"


def _default_model_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "_resources" / "default_model"


def _to_device(model: ScPrint, device: str | torch.device) -> ScPrint:
    if device == "auto":
        from sc_print._utils import resolve_device

        device = resolve_device("auto")
    model.module.to(torch.device(device))
    return model


def _load_saved(path: Path) -> ScPrint:
    from sc_print.model import ScPrint

    return ScPrint.load(path, accelerator="cpu")


def load_model(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> ScPrint:
    """Load an scPRINT model: the embedded default, published weights or a local file.

    Parameters
    ----------
    name_or_path
        - ``"default"``: the small model shipped with sc_print (offline);
        - a registry name of the published weights: ``"small"``, ``"medium"``, ``"large"`` (paper models),
          ``"small-v1"``, ``"medium-v1"``, ``"large-v1"``, ``"medium-v1.5"``, ``"v2-medium"`` (also with a
          ``"scprint-"`` prefix, see :func:`sc_print.hub.available_models`). The file is downloaded once
          into ``<cache_dir>/weights/`` through pooch;
        - a path to an official ``.ckpt`` file, or to a directory (or its ``model.pt``) written by
          :meth:`sc_print.model.ScPrint.save`.
    device
        Where to put the weights: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or a :class:`torch.device`.
    cache_dir
        Cache directory for downloads (default ``sp.settings.cache_dir``: ``$SC_PRINT_CACHE`` or the OS
        cache).

    Returns
    -------
    The model in eval mode. Its ``metadata_`` records ``name``, ``sha256`` and, for official weights,
    ``generation`` and ``layout``.

    Examples
    --------
    >>> import sc_print as sp
    >>> model = sp.load_model("medium")  # doctest: +SKIP
    >>> model = sp.load_model("/data/weights/medium.ckpt", device="cuda")  # doctest: +SKIP
    """
    if isinstance(name_or_path, str) and name_or_path == DEFAULT_MODEL_NAME:
        folder = _default_model_dir()
        if not folder.exists():
            msg = (
                f"The embedded default model is not part of this installation (expected at {folder}). "
                f"Load published weights instead, e.g. sp.load_model('small'), or pass a path."
            )
            raise FileNotFoundError(msg)
        model = _load_saved(folder)
        model.metadata_.setdefault("name", DEFAULT_MODEL_NAME)
        return _to_device(model, device)
    path = Path(name_or_path).expanduser()
    if path.exists():
        if path.is_dir() or path.name == "model.pt":
            model = _load_saved(path)
        else:
            model = read_official_checkpoint(path).to_model()
        return _to_device(model, device)
    name = str(name_or_path)
    try:
        entry = resolve_name(name)
    except KeyError:
        looks_like_path = isinstance(name_or_path, os.PathLike) or os.sep in name or name.endswith((".ckpt", ".pt"))
        if looks_like_path:
            msg = f"No model file at {path}."
            raise FileNotFoundError(msg) from None
        msg = (
            f"{name!r} is neither a file nor a known model. Published weights: {', '.join(REGISTRY)}; "
            f"'{DEFAULT_MODEL_NAME}' is the embedded model."
        )
        raise ValueError(msg) from None
    file = fetch_weights(entry.name, cache_dir=cache_dir)
    model = read_official_checkpoint(file).to_model(name=entry.name)
    return _to_device(model, device)
