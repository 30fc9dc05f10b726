"""Published scPRINT weights (pooch registry) and the reader of official checkpoints."""

from __future__ import annotations

from ._load import DEFAULT_MODEL_NAME, load_model
from ._official import (
    OfficialCheckpoint,
    UnsupportedCheckpointError,
    detect_generation,
    read_official_checkpoint,
)
from ._registry import (
    HUB_URL_ENV,
    REGISTRY,
    OfficialWeights,
    available_models,
    cached_path,
    fetch_weights,
    hub_url,
    weights_url,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "HUB_URL_ENV",
    "REGISTRY",
    "OfficialCheckpoint",
    "OfficialWeights",
    "UnsupportedCheckpointError",
    "available_models",
    "cached_path",
    "detect_generation",
    "fetch_weights",
    "hub_url",
    "load_model",
    "read_official_checkpoint",
    "weights_url",
]
