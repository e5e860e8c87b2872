"""Progress bars: one rule for every long-running loop of the package.

A bar goes to stderr (stdout carries results), only when asked for and only for more than a
few steps: a bar for one to three images is noise.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["progress_bar"]

MIN_STEPS = 4


def progress_bar(total: int | None, enabled: bool, unit: str = "img", desc: str | None = None,
                 position: int | None = None):
    """A tqdm bar, or None when disabled or when ``total`` is known and below MIN_STEPS.

    ``total=None`` (a length not known in advance, e.g. a video without a frame count) still
    gets a bar, which counts without a percentage.
    """
    if not enabled or (total is not None and total < MIN_STEPS):
        return None
    return tqdm(total=total, unit=unit, desc=desc, position=position, file=sys.stderr, leave=False,
                dynamic_ncols=True)
