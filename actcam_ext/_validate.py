"""Argument checks shared by the library's entry points: one rule per kind of value.

Each function returns the value in its canonical type or raises ``UserError`` naming the
argument. ``name`` is what the caller knows the argument as (``top_k`` in Python; the command
line passes ``--top-k`` through its argparse types, which call these same functions).
"""

from __future__ import annotations

import math
import numbers

from .errors import PREFIX, UserError

__all__ = ["positive_int", "fraction", "class_ids", "finite_floats", "int_at_most"]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(value, name: str) -> int:
    """An int >= 1 (bools refused: ``True`` is not a count)."""
    if not _is_int(value) or value < 1:
        raise UserError(f"{PREFIX}{name} must be a positive integer, got {value!r}")
    return int(value)


def int_at_most(value, name: str, limit: int) -> int:
    """A positive int no larger than ``limit``."""
    value = positive_int(value, name)
    if value > limit:
        raise UserError(f"{PREFIX}{name} must be at most {limit}, got {value}")
    return value


def fraction(value, name: str) -> float:
    """A finite number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) \
            or not 0 <= value <= 1:
        raise UserError(f"{PREFIX}{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def class_ids(values, name: str = "targets") -> tuple[int, ...]:
    """One class id or several, as a tuple of ints without repeats (order kept)."""
    items = [values] if _is_int(values) else values
    try:
        items = list(items)
    except TypeError:
        items = None
    if not items or not all(_is_int(v) for v in items):
        raise UserError(f"{PREFIX}{name} must be one or more class ids (integers), got {values!r}")
    if any(v < 0 for v in items):
        raise UserError(f"{PREFIX}{name} must be class ids >= 0, got {values!r}")
    return tuple(dict.fromkeys(int(v) for v in items))


def finite_floats(values, name: str, count: int, positive: bool = False) -> tuple[float, ...]:
    """Exactly ``count`` finite numbers (all > 0 with ``positive``)."""
    try:
        items = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        items = ()
    ok = len(items) == count and all(math.isfinite(v) and (v > 0 or not positive) for v in items)
    if not ok or any(isinstance(v, bool) for v in values):
        need = f"{count} finite numbers" + (" > 0" if positive else "")
        raise UserError(f"{PREFIX}{name} must be {need}, got {values!r}")
    return items
