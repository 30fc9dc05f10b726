"""Package settings: verbosity and progress bars, cache directory, default model.

Logging bridge: the ``sc_print`` logger has one handler (stderr, scanpy's message format) and, like the
loggers of scanpy and scvi-tools, does not propagate to the root logger. The handler drops records below
``sp.settings.verbosity``, read at every record, so with ``sp.settings.verbosity = None`` (the default)
messages follow ``scanpy.settings.verbosity`` even when it changes after ``import sc_print``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger("sc_print")

#: environment variable overriding the cache of downloaded weights and data
CACHE_ENV = "SC_PRINT_CACHE"
#: scanpy's verbosity (0 error, 1 warning, 2 info, 3 hint, 4 debug) as a :mod:`logging` level
_SCANPY_LEVELS: dict[int, int] = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: 15, 4: logging.DEBUG}
_NAMES: dict[str, int] = {
    "debug": logging.DEBUG,
    "hint": 15,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("sc_print"))


def _scanpy_level() -> int:
    """``scanpy.settings.verbosity`` as a logging level (WARNING when scanpy is missing or odd)."""
    try:
        import scanpy as sc

        return _SCANPY_LEVELS.get(int(sc.settings.verbosity), logging.DEBUG)
    except Exception:  # noqa: BLE001 - scanpy missing or an unexpected value: scanpy's default
        return logging.WARNING


def _parse_level(value: object) -> int | None:
    """A verbosity given by the user as a logging level (None: follow scanpy)."""
    if value is None:
        return None
    if isinstance(value, str):
        level = _NAMES.get(value.lower())
        if level is None:
            msg = f"Unknown verbosity {value!r}; use one of {list(_NAMES)}, a logging level, or None to follow scanpy."
            raise ValueError(msg)
        return level
    if hasattr(value, "level") and not isinstance(value, bool | int):  # scanpy.Verbosity
        value = int(value)  # type: ignore[call-overload]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = (
            f"Unknown verbosity {value!r}; use a logging level (e.g. logging.INFO), a name such as 'info', "
            "a scanpy verbosity 0-4, or None to follow scanpy."
        )
        raise ValueError(msg)
    return _SCANPY_LEVELS[value] if value in _SCANPY_LEVELS else value


class _Formatter(logging.Formatter):
    """scanpy's format: the message for info and below, ``LEVEL: message`` above."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno <= logging.INFO else f"{record.levelname}: {message}"


class _Handler(logging.Handler):
    """Writes to the current ``sys.stderr`` the records at or above the effective verbosity."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_Formatter())
        self.addFilter(lambda record: record.levelno >= settings.verbosity)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise (logging.Handler.handleError reports it)
            self.handleError(record)


class _Settings:
    """Global options of sc_print (``sp.settings``), set as attributes (``sp.settings.verbosity = "info"``).

    ``verbosity``
        Threshold of the messages of sc_print, as a :mod:`logging` level. ``None`` (default) follows
        :attr:`scanpy.settings.verbosity <scanpy.settings>` at every message (scanpy's default shows warnings
        only); otherwise a logging level, a name (``"debug"``, ``"info"``, ``"warning"``, ``"error"``) or a
        scanpy verbosity 0-4. At ``"error"`` and above progress bars are hidden too.
    ``progress_bar``
        Show progress bars for long work (model inference, networks, downloads). On by default (like
        scvi-tools); they are hidden when ``verbosity`` is ``"error"`` or above.
    ``cache_dir``
        Where downloaded weights and example data go (``$SC_PRINT_CACHE`` or the OS cache).
    ``default_model``
        Name or path of the model used when a function gets ``model=None``.
    """

    def __init__(self) -> None:
        self._verbosity: int | None = None
        self.progress_bar: bool = True
        self._cache_dir: Path | None = None
        self.default_model: str = "default"

    # ------------------------------------------------------------------ verbosity
    @property
    def verbosity(self) -> int:
        """Effective threshold (a :mod:`logging` level) of the ``sc_print`` messages."""
        return self._verbosity if self._verbosity is not None else _scanpy_level()

    @verbosity.setter
    def verbosity(self, value: int | str | None) -> None:
        self._verbosity = _parse_level(value)

    @property
    def show_progress(self) -> bool:
        """Whether progress bars are shown now (:attr:`progress_bar` and a verbosity below ``"error"``)."""
        return bool(self.progress_bar) and self.verbosity < logging.ERROR

    # ------------------------------------------------------------------ cache
    @property
    def cache_dir(self) -> Path:
        """Directory for downloaded files."""
        return self._cache_dir if self._cache_dir is not None else _default_cache_dir()

    @cache_dir.setter
    def cache_dir(self, value: str | os.PathLike | None) -> None:
        self._cache_dir = None if value is None else Path(value).expanduser()


settings = _Settings()


def _install_handler() -> None:
    """Attach the one handler of the ``sc_print`` logger (once, also when this module is reloaded)."""
    for handler in list(logger.handlers):
        if type(handler).__name__ in {"_Handler", "NullHandler"}:
            logger.removeHandler(handler)
    logger.addHandler(_Handler())
    logger.setLevel(logging.DEBUG)  # records are created; the handler applies the threshold when they are written
    logger.propagate = False


_install_handler()
