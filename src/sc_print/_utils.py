"""Shared helpers: devices, progress bars, random generators, model resolution, shared docstring text."""

from __future__ import annotations

import logging
import re
import textwrap
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from ._settings import settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from .model import ScPrint

logger = logging.getLogger("sc_print")
T = TypeVar("T")

RngLike = int | np.random.Generator | None
#: models resolved from ``model=None``, by name (loaded once per session)
_MODEL_CACHE: dict[str, Any] = {}


def resolve_device(accelerator: str = "auto", device: int | str = "auto") -> torch.device:
    """Pick one torch device like scvi-tools does (never MPS unless asked for).

    Parameters
    ----------
    accelerator
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"gpu"``/``"cuda"`` or ``"mps"``.
    device
        ``"auto"`` or a device index.

    Returns
    -------
    The :class:`torch.device`.
    """
    acc = accelerator.lower()
    if acc == "auto":
        acc = "cuda" if torch.cuda.is_available() else "cpu"
    if acc in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            msg = "accelerator='gpu' was requested but CUDA is not available; use accelerator='cpu'."
            raise ValueError(msg)
        return torch.device("cuda", 0 if device == "auto" else int(device))
    if acc == "mps":
        return torch.device("mps")
    if acc == "cpu":
        return torch.device("cpu")
    msg = f"Unknown accelerator {accelerator!r}; use 'auto', 'cpu', 'gpu' or 'mps'."
    raise ValueError(msg)


def track(iterable: Iterable[T], *, total: int | None = None, description: str = "") -> Iterator[T]:
    """Progress bar (tqdm) shown when ``sp.settings.show_progress`` (follows scanpy's verbosity)."""
    if not settings.show_progress:
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, total=total, desc=description, leave=False)


def make_rng(rng: RngLike) -> np.random.Generator:
    """``numpy.random.Generator`` from a seed, a generator or ``None``."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """CPU torch generator seeded from ``rng`` (so numpy and torch sampling follow one seed)."""
    return torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))


def seed_record(rng: RngLike) -> int | str | None:
    """What to store in ``.uns[...]['params']`` for ``rng``."""
    return rng if (rng is None or isinstance(rng, int)) else "Generator"


def resolve_model(model: ScPrint | str | Any | None = None, *, device: torch.device | None = None) -> ScPrint:
    """Return an :class:`~sc_print.model.ScPrint` for ``model``.

    ``None`` is the embedded default model (loaded once per session); otherwise a model, a registry name or a
    path (see :func:`sc_print.load_model`).
    """
    from .model import ScPrint

    if isinstance(model, ScPrint):
        out = model
    elif model is None:  # the default model is loaded once per session
        name = settings.default_model
        if name not in _MODEL_CACHE:
            from .hub import load_model

            _MODEL_CACHE[name] = load_model(name)
        out = _MODEL_CACHE[name]
    else:
        from .hub import load_model

        out = load_model(model)
    if device is not None:
        out.module.to(device)
    return out


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` for ``dtype`` on ``device`` (a no-op context for float32/None)."""
    import contextlib

    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def model_record(model: ScPrint) -> dict[str, Any]:
    """Name / size / checksum of a model for ``.uns[...]['model']``."""
    meta = getattr(model, "metadata_", {}) or {}
    return {
        "name": str(meta.get("name", "custom")),
        "sha256": str(meta.get("sha256", "")),
        "n_genes": len(model.genes),
        "d_model": int(model.module.config.d_model),
        "nlayers": int(model.module.config.nlayers),
        "nhead": int(model.module.config.nhead),
    }


def log_written(kind: str, key: str) -> None:
    """Log one AnnData slot written (the squidpy pattern)."""
    logger.info("added `.%s[%r]`", kind, key)


def doc_params(**snippets: str) -> Callable[[T], T]:
    """Decorator filling docstring placeholders with shared text (scanpy's ``_doc_params``).

    A placeholder ``{name}`` stands alone on its line; it is replaced by ``snippets[name]`` (written without
    indentation), indented like the placeholder. Other braces of the docstring are left as they are.

    Parameters
    ----------
    **snippets
        Text of each placeholder, e.g. the numpydoc entries of parameters shared by several functions.

    Returns
    -------
    The decorator; it raises a ``ValueError`` at import time when a placeholder is missing from the docstring.
    """

    def decorate(obj: T) -> T:
        doc = obj.__doc__
        if doc is None:  # docstrings stripped (python -OO)
            return obj
        for name, text in snippets.items():
            placeholder = re.compile(rf"^([ \t]*){{{re.escape(name)}}}[ \t]*$", flags=re.MULTILINE)
            if placeholder.search(doc) is None:
                msg = f"The docstring of {obj.__qualname__} has no line {{{name}}} to fill."
                raise ValueError(msg)
            doc = placeholder.sub(lambda match, text=text: textwrap.indent(text.strip("\n"), match.group(1)), doc)
        obj.__doc__ = doc
        return obj

    return decorate
