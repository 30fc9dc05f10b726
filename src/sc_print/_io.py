"""Files on disk (a leaf module): safe checkpoint reading, writes that never destroy user files, local downloads.

- :func:`read_torch_file` reads a ``torch.save`` file with ``weights_only=True`` and turns every failure into
  an error that names the file and says what it is, never torch's own advice to retry with
  ``weights_only=False``;
- :func:`check_free` / :func:`atomic_target` implement "nothing existing is overwritten without
  ``overwrite=True``, and a failed write leaves nothing half-written";
- :func:`file_downloader` is the pooch downloader of ``file://`` mirrors and :func:`file_sha256` the one file
  hash (pooch's), shared by :mod:`sc_print.hub` and :mod:`sc_print.datasets`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

#: what torch's weights-only unpickler says when a pickle needs a Python object it does not allow
_UNSAFE_GLOBAL = re.compile(r"\bGLOBAL ([\w.]+)")
#: ... or an object it may not build (no name given)
_UNSAFE_OBJECT = re.compile(r"allowlisted")


# ------------------------------------------------------------------------------------------------ reading
def _torch_error(path: Path, what: str, err: BaseException) -> ValueError:
    """A clear error for a file ``torch.load(weights_only=True)`` could not read."""
    text = f"{err}\n{err.__context__}" if err.__context__ is not None else str(err)
    unsafe = _UNSAFE_GLOBAL.search(text)
    if unsafe is not None or _UNSAFE_OBJECT.search(text):
        needs = f" ({unsafe.group(1)})" if unsafe is not None else ""
        msg = (
            f"Refused to load {path}: it is a pickle that would import and run Python code{needs} to be read, "
            f"and sc_print only reads {what} made of tensors and plain "
            "containers, so that opening a file never executes code from it. This refusal is for your safety "
            "and is not bypassed: do not open this file unless you know exactly who wrote it and why."
        )
        return ValueError(msg)
    if isinstance(err, EOFError):
        msg = f"{path} is not {what}: the file ends early (truncated or not written by torch.save)."
        return ValueError(msg)
    msg = (
        f"{path} is not {what}: it cannot be read as a torch.save file ({type(err).__name__}). "
        "Check the path; a download may be incomplete, in which case delete the file and fetch it again."
    )
    return ValueError(msg)


def read_torch_file(path: str | os.PathLike, *, what: str = "a model checkpoint", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU with errors that name the file.

    Parameters
    ----------
    path
        The file.
    what
        What the file should be, for the messages (``"an official scPRINT checkpoint"``).
    mmap
        Memory-map the tensors when the file is in torch's zip format (large checkpoints).

    Returns
    -------
    The unpickled object (tensors and plain Python containers only).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is empty, not a ``torch.save`` file, or a pickle that needs arbitrary code (refused).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        msg = f"No file at {path}." if not path.exists() else f"{path} is not a file."
        raise FileNotFoundError(msg)
    if path.stat().st_size == 0:
        msg = f"{path} is not {what}: the file is empty."
        raise ValueError(msg)
    is_zip = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=bool(mmap and is_zip))
    except (MemoryError, OSError):  # out of memory, permission denied, I/O error: already clear
        raise
    except Exception as err:  # noqa: BLE001 - every failure of the unpickler becomes one clear error
        raise _torch_error(path, what, err) from None


def require_keys(state: Any, keys: Iterable[str], *, path: Path, what: str) -> dict[str, Any]:
    """``state`` as a dict holding ``keys``; else a ValueError naming ``path`` and what is missing."""
    if not isinstance(state, dict):
        msg = f"{path} is not {what}: it holds a {type(state).__name__}, not a dict."
        raise ValueError(msg)
    missing = [k for k in keys if k not in state]
    if missing:
        found = sorted(str(k) for k in state)[:10]
        msg = f"{path} is not {what}: it has no {missing} (found keys {found})."
        raise ValueError(msg)
    return state


# ------------------------------------------------------------------------------------------------ writing
def check_free(paths: Iterable[str | os.PathLike], *, overwrite: bool) -> None:
    """Refuse to write when any of ``paths`` exists and ``overwrite`` is off (call before writing anything).

    Raises
    ------
    FileExistsError
        A path exists (and ``overwrite=False``), or it is a directory (never replaced).
    """
    paths = [Path(p) for p in paths]
    dirs = [p for p in paths if p.is_dir()]
    if dirs:
        msg = f"{', '.join(map(str, dirs))} is a directory; choose a file name (directories are never replaced)."
        raise FileExistsError(msg)
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        names = ", ".join(str(p) for p in existing)
        msg = f"{names} already exist{'s' if len(existing) == 1 else ''}; pass overwrite=True to replace it."
        raise FileExistsError(msg)


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed onto ``path`` only when the block succeeds.

    A failure (or an interrupt) deletes the temporary file and leaves ``path`` as it was.
    """
    path = Path(path)
    # not created here (mkstemp would make it private, 0600): the writer creates it with the usual permissions
    tmp_path = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ downloads
def file_downloader(url: str, output_file: Any, pooch: Any = None, *, check_only: bool = False) -> bool | None:
    """Pooch downloader for ``file://`` URLs (a local mirror): copies the file; pooch checks the hash after.

    Parameters
    ----------
    url
        ``file:///absolute/path`` (host empty or ``localhost``).
    output_file
        Path or open binary file that pooch hands over (pooch then moves it into its cache atomically).
    pooch
        The :class:`pooch.Pooch` instance (unused).
    check_only
        Only say whether the source exists (``Pooch.is_available``).

    Returns
    -------
    With ``check_only``, whether the source file exists; else ``None``.
    """
    parsed = urlparse(url)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        msg = f"Only local file:// URLs are supported here, got {url!r}."
        raise ValueError(msg)
    source = Path(url2pathname(unquote(parsed.path)))
    if check_only:
        return source.is_file()
    if not source.is_file():
        msg = f"{source} does not exist (from {url!r})."
        raise FileNotFoundError(msg)
    if hasattr(output_file, "write"):
        with source.open("rb") as handle:
            shutil.copyfileobj(handle, output_file)
    else:
        shutil.copyfile(source, output_file)
    return None


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file (hex), computed by pooch (the hash pooch checks downloads with)."""
    import pooch

    return pooch.file_hash(str(path), alg="sha256")
