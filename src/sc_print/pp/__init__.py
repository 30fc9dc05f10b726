"""Preprocessing: validate raw counts and map genes onto a model vocabulary."""

from ._prepare import prepare

__all__ = ["prepare"]
