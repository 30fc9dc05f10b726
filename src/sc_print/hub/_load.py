"""``sp.load_model``: one entry point for the embedded model, published weights and local files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sc_print._device import resolve_device
from sc_print._io import read_torch_file

from ._official import _read, is_saved_model, read_official_checkpoint
from ._registry import REGISTRY, fetch_weights, resolve_name

if TYPE_CHECKING:
    import torch

    from sc_print.model import ScPrint

logger = logging.getLogger(__name__)

#: name of the small model shipped inside the package (``sp.settings.default_model``)
DEFAULT_MODEL_NAME = "default"
#: file name of a model saved by ``ScPrint.save`` (``sc_print.model`` is imported lazily: it imports this package)
_SAVED_FILE = "model.pt"


def _default_model_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "_resources" / "default_model"


def _load_saved(path: Path) -> ScPrint:
    from sc_print.model import ScPrint

    return ScPrint.load(path, accelerator="cpu")


def _load_file(path: Path) -> ScPrint:
    """A model from one file: the ``ScPrint.save`` layout or an official checkpoint, told apart by content."""
    if path.name == _SAVED_FILE:
        return _load_saved(path)
    content = read_torch_file(path, what="a model file (an official scPRINT .ckpt or a saved model.pt)", mmap=True)
    if is_saved_model(content):
        return _load_saved(path)
    return _read(path, content).to_model()  # the file is read once


def load_model(
    name_or_path: str | os.PathLike,
    *,
    accelerator: str = "auto",
    device: int | str | torch.device = "auto",
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
          :meth:`sc_print.model.ScPrint.save`; a file is recognised by its content, not its name.
    accelerator
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"gpu"`` or ``"mps"``, as in
        :meth:`sc_print.model.ScPrint.load`.
    device
        ``"auto"``, a device index, or a device such as ``"cpu"``, ``"cuda:1"`` or a :class:`torch.device`.
    cache_dir
        Cache directory for downloads (default ``sp.settings.cache_dir``: ``$SC_PRINT_CACHE`` or the OS
        cache).

    Returns
    -------
    A new model in eval mode on the chosen device (every call returns a new object). Its ``metadata_``
    records ``name``, ``sha256`` and, for official weights, ``generation`` and ``layout``.

    Raises
    ------
    FileNotFoundError
        A path that does not exist, or the embedded model missing from the installation.
    ValueError
        An unknown name, a file that is not a model (the message names it), a pickle that would run code
        (refused for safety), or a device that does not exist.

    Examples
    --------
    >>> import sc_print as sp
    >>> model = sp.load_model("medium")  # doctest: +SKIP
    >>> model = sp.load_model("/data/weights/medium.ckpt", accelerator="gpu")  # doctest: +SKIP
    """
    if isinstance(name_or_path, bytes) or not isinstance(name_or_path, str | os.PathLike):
        msg = f"`name_or_path` must be a model name or a path, got {type(name_or_path).__name__}."
        raise TypeError(msg)
    torch_device = resolve_device(accelerator, device)  # a bad device fails before anything is read
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
        if (folder / "calibration.json").is_file():  # abstention thresholds (scripts/calibrate_default_model.py)
            model.metadata_.setdefault("calibration", json.loads((folder / "calibration.json").read_text()))
    else:
        path = Path(name_or_path).expanduser()
        if path.is_dir():
            model = _load_saved(path)
        elif path.exists():
            model = _load_file(path)
        else:
            name = str(name_or_path)
            try:
                entry = resolve_name(name)
            except KeyError:
                looks_like_path = (
                    isinstance(name_or_path, os.PathLike) or os.sep in name or name.endswith((".ckpt", ".pt"))
                )
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
    model.module.to(torch_device)
    return model
