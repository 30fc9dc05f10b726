"""Package settings: verbosity, cache directory, default model."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger("sc_print")
logger.addHandler(logging.NullHandler())

#: environment variable overriding the cache of downloaded weights and data
CACHE_ENV = "SC_PRINT_CACHE"


def _default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("sc_print"))


class _Settings:
    """Global options of sc_print (``sp.settings``).

    Attributes
    ----------
    verbosity
        ``None`` follows :data:`scanpy.settings.verbosity`; otherwise a :mod:`logging` level or name.
    progress_bar
        Show progress bars for long work (they are also hidden when the effective verbosity is
        below ``info``).
    cache_dir
        Where downloaded weights and example data go (``$SC_PRINT_CACHE`` or the OS cache).
    default_model
        Name or path of the model used when a function gets ``model=None``.
    """

    def __init__(self) -> None:
        self._verbosity: int | None = None
        self._handler: logging.Handler | None = None
        self.progress_bar: bool = True
        self._cache_dir: Path | None = None
        self.default_model: str = "default"

    # ------------------------------------------------------------------ verbosity
    @property
    def verbosity(self) -> int:
        """Effective logging level of the ``sc_print`` logger."""
        if self._verbosity is not None:
            return self._verbosity
        try:
            import scanpy as sc

            # scanpy: 0 error, 1 warning, 2 info, 3 hint, 4 debug
            level = int(sc.settings.verbosity)
        except Exception:  # noqa: BLE001 - scanpy missing or odd value: fall back to warnings
            level = 1
        return {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.INFO}.get(level, logging.DEBUG)

    @verbosity.setter
    def verbosity(self, value: int | str | None) -> None:
        if isinstance(value, str):
            value = logging.getLevelName(value.upper())
            if not isinstance(value, int):
                msg = f"Unknown verbosity {value!r}; use a logging level such as 'info' or 'warning'."
                raise ValueError(msg)
        self._verbosity = value
        self.apply_verbosity()

    def apply_verbosity(self) -> None:
        """Attach a rich handler once and set the logger level from :attr:`verbosity`."""
        if self._handler is None:
            try:
                from rich.logging import RichHandler

                self._handler = RichHandler(show_path=False, show_time=False)
            except ImportError:  # pragma: no cover
                self._handler = logging.StreamHandler()
            logger.addHandler(self._handler)
            logger.propagate = False
        logger.setLevel(self.verbosity)

    @property
    def show_progress(self) -> bool:
        """Whether progress bars are shown now."""
        return self.progress_bar and self.verbosity <= logging.INFO

    # ------------------------------------------------------------------ cache
    @property
    def cache_dir(self) -> Path:
        """Directory for downloaded files."""
        return self._cache_dir if self._cache_dir is not None else _default_cache_dir()

    @cache_dir.setter
    def cache_dir(self, value: str | os.PathLike | None) -> None:
        self._cache_dir = None if value is None else Path(value).expanduser()


settings = _Settings()
