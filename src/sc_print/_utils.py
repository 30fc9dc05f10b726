"""Shared helpers: devices, progress bars, random generators, model resolution, shared docstring text."""

from __future__ import annotations

import logging
import re
import sys
import textwrap
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from ._device import resolve_device  # noqa: F401
from ._settings import settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from .model import ScPrint

logger = logging.getLogger("sc_print")
T = TypeVar("T")

RngLike = int | np.random.Generator | None


def track(iterable: Iterable[T], *, total: int | None = None, description: str = "") -> Iterator[T]:
    """Iterate over ``iterable`` with a progress bar (tqdm, on stderr), as scvi-tools' ``track`` does.

    Shown by default; hidden when ``sp.settings.show_progress`` is False (``sp.settings.progress_bar = False``,
    or a verbosity of ``"error"`` or above, set on ``sp.settings`` or followed from scanpy).

    Parameters
    ----------
    iterable
        What to iterate over.
    total
        Number of items (default ``len(iterable)`` when it has one).
    description
        Text in front of the bar.

    Yields
    ------
    The items of ``iterable``.
    """
    if not settings.show_progress:
        yield from iterable
        return
    from tqdm.auto import tqdm

    with tqdm(iterable, total=total, desc=description, leave=False, file=sys.stderr, dynamic_ncols=True) as bar:
        yield from bar


def make_rng(rng: RngLike) -> np.random.Generator:
    """``numpy.random.Generator`` from a seed, a generator or ``None``."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """CPU torch generator seeded from ``rng`` (so numpy and torch sampling follow one seed)."""
    return torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))


def seed_record(rng: RngLike) -> int | str | None:
    """What to store in ``.uns[...]['params']`` for ``rng``."""
    return rng if (rng is None or isinstance(rng, int)) else "Generator"


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
    """Log one AnnData slot written (squidpy's ``_save_data`` pattern).

    The one message of every writer, ``added `.uns['key']```, shown at verbosity ``"info"`` and below.
    """
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
