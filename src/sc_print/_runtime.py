"""How a model runs: compute dtype, eval/no-grad/autocast context and seeds (a leaf module: torch and numpy only)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from collections.abc import Iterator

#: seeds live in [0, 2**63)
MAX_SEED = 2**63 - 1

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "16": torch.float16,
}


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """Compute dtype of the forward passes.

    Parameters
    ----------
    dtype
        A :class:`torch.dtype`, a name (``"float32"``/``"fp32"``, ``"bfloat16"``/``"bf16"``,
        ``"float16"``/``"fp16"``) or ``None``: float32 on CPU/MPS; bfloat16 on CUDA (float16 on GPUs without
        bfloat16 support).
    device
        The device the model runs on.

    Returns
    -------
    The :class:`torch.dtype` of the autocast context.

    Raises
    ------
    ValueError
        For any other value.
    """
    if dtype is None:
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            msg = f"`dtype` must be float32, bfloat16 or float16, got {dtype}."
            raise ValueError(msg)
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.lower().removeprefix("torch.")]
    msg = f"Unknown `dtype` {dtype!r}; use None, 'float32', 'bfloat16' or 'float16' (or a torch dtype)."
    raise ValueError(msg)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (for the params record)."""
    return str(dtype).removeprefix("torch.")


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` for ``dtype`` on ``device`` (a no-op context for float32/None)."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def inference_mode(net: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Eval mode, ``torch.no_grad`` and autocast to ``dtype``; the module's train/eval flag is restored after."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), autocast(device, dtype):
            yield
    finally:
        net.train(was_training)


def resolve_seed(rng: int | np.random.Generator | None, name: str = "rng") -> int:
    """The integer seed of a call.

    Parameters
    ----------
    rng
        An integer seed in ``[0, 2**63)`` (used as is), a :class:`numpy.random.Generator` (one integer is drawn
        from it) or ``None`` (a fresh random seed). The seed actually used is recorded with the results, so any
        call can be repeated exactly.
    name
        Name of the option, for the message.

    Returns
    -------
    The seed.

    Raises
    ------
    ValueError
        For a negative or too large integer, or another type.
    """
    if rng is None:
        return int(np.random.default_rng().integers(0, MAX_SEED))
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, MAX_SEED))
    if isinstance(rng, bool) or not isinstance(rng, int | np.integer) or not 0 <= int(rng) <= MAX_SEED:
        msg = f"`{name}` must be an integer seed in [0, 2**63), a numpy Generator or None, got {rng!r}."
        raise ValueError(msg)
    return int(rng)
