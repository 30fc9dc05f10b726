"""Registry of the published scPRINT weights and their download through pooch.

The official checkpoints live in the Hugging Face model repository ``jkobject/scPRINT`` (Apache-2.0).
Every entry names the file, its size and, where it is known, its SHA-256 (checked by pooch after the
download). Files land in ``<sp.settings.cache_dir>/weights/`` (``$SC_PRINT_CACHE`` or the OS cache);
a file already there is used as it is, so the weights can be placed there by hand on an offline machine.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from sc_print._io import file_downloader, file_sha256

logger = logging.getLogger(__name__)

#: environment variable overriding the base URL of the weights (``https://...``, ``http://...`` or ``file://...``)
HUB_URL_ENV = "SC_PRINT_HUB_URL"
#: where the official checkpoints are published
DEFAULT_HUB_URL = "https://huggingface.co/jkobject/scPRINT/resolve/main/"
#: seconds to wait for the server to accept the connection (offline machines fail after this)
CONNECT_TIMEOUT = 10.0
#: seconds without data before a started download is abandoned
READ_TIMEOUT = 120.0
#: sub-folder of the cache directory that holds the weights
WEIGHTS_SUBDIR = "weights"


@dataclass(frozen=True)
class OfficialWeights:
    """One published checkpoint.

    Attributes
    ----------
    name
        Registry name passed to :func:`sc_print.load_model`.
    filename
        File name in the Hugging Face repository (and in the cache).
    size
        Size in bytes when known (informative; a mismatch is logged).
    sha256
        Full SHA-256 when known: pooch refuses a file that does not match. ``None`` = not published.
    sha256_prefix
        Leading hex digits of the SHA-256 when only those are known (a mismatch is logged).
    description
        What the model is.
    """

    name: str
    filename: str
    size: int | None
    sha256: str | None
    sha256_prefix: str | None
    description: str


_ENTRIES = (
    OfficialWeights(
        "small",
        "small.ckpt",
        111_120_529,
        None,
        "269bc14b",
        "paper small model (d_model 128, 4 layers), uploaded 2024-07-28; about 0.8 M transformer parameters",
    ),
    OfficialWeights(
        "medium",
        "medium.ckpt",
        303_000_000,
        None,
        None,
        "paper medium model (d_model 256, 8 layers), uploaded 2024-07-28; about 6 M transformer parameters",
    ),
    OfficialWeights(
        "large",
        "large.ckpt",
        1_240_000_000,
        None,
        None,
        "paper large model (d_model 512, 16 layers), uploaded 2024-07-28; about 50 M transformer parameters",
    ),
    OfficialWeights(
        "small-v1",
        "small-v1.ckpt",
        None,
        None,
        None,
        "scPRINT-1 small, the name used by the current scPRINT README (presumably the paper small model)",
    ),
    OfficialWeights(
        "medium-v1",
        "medium-v1.ckpt",
        None,
        None,
        None,
        "scPRINT-1 medium, the name used by the current scPRINT README (presumably the paper medium model)",
    ),
    OfficialWeights(
        "large-v1",
        "large-v1.ckpt",
        None,
        None,
        None,
        "scPRINT-1 large, the name used by the current scPRINT README (presumably the paper large model)",
    ),
    OfficialWeights(
        "medium-v1.5",
        "medium-v1.5.ckpt",
        None,
        None,
        None,
        "scPRINT-1 medium retrained with the 2.x code: 8 label classes (tissue and age group added), about 44.7k genes",
    ),
    OfficialWeights(
        "v2-medium",
        "v2-medium.ckpt",
        None,
        None,
        None,
        "medium model from the 2.x code (v2 configuration); layout read from the file when loaded",
    ),
)

#: the published checkpoints by registry name
REGISTRY: dict[str, OfficialWeights] = {entry.name: entry for entry in _ENTRIES}
_ALIAS_PREFIX = "scprint-"


def resolve_name(name: str) -> OfficialWeights:
    """Registry entry of ``name`` (``"medium"``, ``"scprint-medium"`` or a file name ``"medium.ckpt"``).

    Parameters
    ----------
    name
        Registry name, with or without the ``scprint-`` prefix, or its file name.

    Returns
    -------
    The registry entry.
    """
    key = name.strip()
    if key.lower().startswith(_ALIAS_PREFIX):
        key = key[len(_ALIAS_PREFIX) :]
    if key in REGISTRY:
        return REGISTRY[key]
    for entry in _ENTRIES:
        if entry.filename == key:
            return entry
    msg = f"Unknown model {name!r}. Published weights: {', '.join(REGISTRY)}; or pass the path to a checkpoint."
    raise KeyError(msg)


def available_models() -> pd.DataFrame:
    """Table of the published scPRINT weights.

    Returns
    -------
    One row per registry name with ``filename``, ``size_mb``, ``sha256`` (``None`` where not published),
    ``url``, ``cached`` (whether the file is already in the cache) and ``description``.
    """
    rows = []
    for entry in _ENTRIES:
        rows.append(
            {
                "name": entry.name,
                "filename": entry.filename,
                "size_mb": None if entry.size is None else round(entry.size / 1e6, 1),
                "sha256": entry.sha256,
                "url": weights_url(entry.name),
                "cached": cached_path(entry.name).exists(),
                "description": entry.description,
            }
        )
    return pd.DataFrame(rows).set_index("name")


def hub_url() -> str:
    """Base URL of the weights: ``$SC_PRINT_HUB_URL`` or the Hugging Face repository (ends with ``/``)."""
    base = os.environ.get(HUB_URL_ENV) or DEFAULT_HUB_URL
    return base if base.endswith("/") else base + "/"


def weights_url(name: str) -> str:
    """Download URL of a registry entry."""
    return hub_url() + resolve_name(name).filename


def weights_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder holding downloaded weights: ``<cache_dir>/weights`` (default ``sp.settings.cache_dir``)."""
    from sc_print._settings import settings

    base = Path(cache_dir).expanduser() if cache_dir is not None else Path(settings.cache_dir)
    return base / WEIGHTS_SUBDIR


def cached_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the file of a registry entry is (or will be) stored."""
    return weights_dir(cache_dir) / resolve_name(name).filename


def _offline_message(entry: OfficialWeights, url: str, target: Path, reason: BaseException) -> str:
    return (
        f"Could not download the scPRINT weights {entry.name!r} from {url} ({type(reason).__name__}: {reason}). "
        f"On a machine without internet access, fetch {url} elsewhere and copy it to {target} "
        f"(or pass the file path to sp.load_model). Set ${HUB_URL_ENV} to use a mirror."
    )


def _check_integrity(entry: OfficialWeights, path: Path, digest: str) -> None:
    """Log what cannot be enforced: the partial hash and the size (files are sometimes re-uploaded)."""
    if entry.sha256_prefix is not None and not digest.startswith(entry.sha256_prefix):
        logger.warning(
            "%s has sha256 %s..., the published one starts with %s: the file may have been re-uploaded or "
            "corrupted. Delete %s to download it again.",
            entry.filename,
            digest[:12],
            entry.sha256_prefix,
            path,
        )
    size = path.stat().st_size
    if entry.size is not None and abs(size - entry.size) > 0.02 * entry.size:
        logger.warning("%s is %d bytes, about %d were expected.", entry.filename, size, entry.size)


def fetch_weights(
    name: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    progressbar: bool | None = None,
) -> Path:
    """Path of the checkpoint of a registry entry, downloading it into the cache when absent.

    Parameters
    ----------
    name
        Registry name (see :func:`available_models`).
    cache_dir
        Cache directory (default ``sp.settings.cache_dir``, i.e. ``$SC_PRINT_CACHE`` or the OS cache);
        the file goes to ``<cache_dir>/weights/<filename>``.
    progressbar
        Show a download progress bar (default: ``sp.settings.show_progress``).

    Returns
    -------
    Local path of the checkpoint.
    """
    import pooch
    import requests

    from sc_print._settings import settings

    entry = resolve_name(name)
    target = cached_path(entry.name, cache_dir)
    url = weights_url(entry.name)
    if target.exists():
        logger.info("using cached weights %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if progressbar is None:
        progressbar = settings.show_progress
    scheme = urlparse(url).scheme
    if scheme == "file":
        downloader = file_downloader
    elif scheme in ("http", "https"):
        downloader = pooch.HTTPDownloader(
            progressbar=bool(progressbar), chunk_size=1 << 20, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
        )
    else:
        msg = f"Unsupported URL scheme {scheme!r} in {url}; use https://, http:// or file:// in ${HUB_URL_ENV}."
        raise ValueError(msg)
    known_hash = f"sha256:{entry.sha256}" if entry.sha256 else None
    logger.info("downloading %s from %s to %s", entry.filename, url, target)
    try:
        path = pooch.retrieve(
            url, known_hash=known_hash, fname=entry.filename, path=target.parent, downloader=downloader
        )
    except (requests.exceptions.RequestException, OSError) as err:
        raise ConnectionError(_offline_message(entry, url, target, err)) from err
    path = Path(path)
    _check_integrity(entry, path, file_sha256(path))
    return path
