"""Evaluation: the shipped synthetic localisation benchmark and the engine that scores methods."""

from . import synthetic
from .benchmark import evaluate, markdown, rows

__all__ = ["synthetic", "evaluate", "rows", "markdown"]
