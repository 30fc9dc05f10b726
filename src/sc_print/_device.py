"""Device policy of sc_print (a leaf module): which torch device to run on.

One policy for every entry point (:func:`sc_print.load_model`, :meth:`sc_print.model.ScPrint.load`,
``sp.tl.*``), in the style of scvi-tools' ``parse_device_args``: an ``accelerator`` (``"auto"``, ``"cpu"``,
``"gpu"``/``"cuda"``, ``"mps"``) and a ``device`` (``"auto"``, an index, or a full device such as ``"cuda:1"``
or a :class:`torch.device`). ``"auto"`` never picks MPS.
"""

from __future__ import annotations

import torch

#: accelerator names accepted by :func:`resolve_device` (``"gpu"`` is an alias of ``"cuda"``)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")

DeviceLike = int | str | torch.device


def _n_cuda() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _check_index(kind: str, index: int, *, accelerator: str) -> int:
    """A device index of ``kind`` that exists on this machine."""
    if kind == "cuda":
        n = _n_cuda()
        if n == 0:
            msg = f"accelerator={accelerator!r} was requested but CUDA is not available; use accelerator='cpu'."
            raise ValueError(msg)
        if not 0 <= index < n:
            msg = (
                f"CUDA device index {index} does not exist: this machine has {n} CUDA device(s) "
                f"(indices 0..{n - 1}). Pass device='auto' or an index in that range."
            )
            raise ValueError(msg)
        return index
    if kind == "mps":
        if not _mps_available():
            msg = "accelerator='mps' was requested but MPS is not available; use accelerator='cpu'."
            raise ValueError(msg)
        if index != 0:
            msg = f"MPS has a single device (index 0), got device index {index}."
            raise ValueError(msg)
        return 0
    if index != 0:  # cpu
        msg = f"The CPU has no device index {index}; pass device='auto' (or 0) with accelerator='cpu'."
        raise ValueError(msg)
    return 0


def _parse_device(device: DeviceLike) -> tuple[str | None, int | None]:
    """``(kind or None, index or None)`` of a ``device`` argument; ``(None, None)`` for ``"auto"``."""
    if isinstance(device, torch.device):
        return device.type, device.index
    if isinstance(device, bool) or not isinstance(device, int | str):
        msg = (
            f"`device` must be 'auto', a device index (int), a device string such as 'cuda:1' or a "
            f"torch.device, got {device!r}."
        )
        raise TypeError(msg)
    if isinstance(device, int):
        if device < 0:
            msg = f"A device index must be >= 0, got {device}."
            raise ValueError(msg)
        return None, device
    text = device.strip().lower()
    if text == "auto":
        return None, None
    if text.isdigit():
        return None, int(text)
    try:
        parsed = torch.device(text.replace("gpu", "cuda", 1) if text.startswith("gpu") else text)
    except RuntimeError:
        msg = f"Unknown device {device!r}; use 'auto', an index, 'cpu', 'cuda', 'cuda:<index>' or 'mps'."
        raise ValueError(msg) from None
    if parsed.type not in ("cpu", "cuda", "mps"):
        msg = f"Unsupported device type {parsed.type!r} in {device!r}; use 'cpu', 'cuda' or 'mps'."
        raise ValueError(msg)
    return parsed.type, parsed.index


def resolve_device(accelerator: str = "auto", device: DeviceLike = "auto") -> torch.device:
    """Pick one torch device like scvi-tools does (never MPS unless asked for).

    Parameters
    ----------
    accelerator
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"gpu"``/``"cuda"`` or ``"mps"``.
    device
        ``"auto"`` (device 0 of the accelerator), a device index, or a full device (``"cpu"``, ``"cuda:1"``,
        ``"mps"`` or a :class:`torch.device`), which then must agree with ``accelerator`` unless that is
        ``"auto"``.

    Returns
    -------
    The :class:`torch.device`.

    Raises
    ------
    ValueError
        Unknown accelerator or device, an accelerator that is not available, a device index that does not
        exist on this machine, or a device that contradicts ``accelerator``.
    TypeError
        ``device`` is not a string, an integer or a :class:`torch.device`.
    """
    if not isinstance(accelerator, str) or accelerator.strip().lower() not in ACCELERATORS:
        msg = f"Unknown accelerator {accelerator!r}; use 'auto', 'cpu', 'gpu' (or 'cuda') or 'mps'."
        raise ValueError(msg)
    acc = accelerator.strip().lower()
    acc = "cuda" if acc == "gpu" else acc
    kind, index = _parse_device(device)
    if kind is not None and acc != "auto" and kind != acc:
        msg = f"device={device!r} contradicts accelerator={accelerator!r}; pass one of them (the other as 'auto')."
        raise ValueError(msg)
    if kind is None:
        kind = acc if acc != "auto" else ("cuda" if _n_cuda() > 0 else "cpu")
    index = _check_index(kind, 0 if index is None else index, accelerator=accelerator)
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        return torch.device("mps")
    return torch.device("cuda", index)
