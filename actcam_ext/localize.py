"""Localisation boxes from heatmaps (CAM paper, Zhou et al. 2016, section 3).

Connected components run on the CPU with ``cv2.connectedComponentsWithStats``: labelling is
a sequential scan with no torch equivalent, and one [H,W] uint8 mask per image is tiny next
to the model pass, so a GPU map is copied to the host for this step only and the boxes go
back to the map's device.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ._validate import fraction
from .errors import PREFIX, UserError

__all__ = ["boxes_from_maps"]


def _box(m: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    peak = m.max()
    mask = (m >= threshold * peak).astype(np.uint8)  # NaN compares False: not in the mask
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:  # label 0 is the background: nothing passed the threshold
        return (0, 0, 0, 0)
    areas = stats[1:, cv2.CC_STAT_AREA]
    # argmax takes the first of equal areas: cv2 numbers components in raster-scan order of
    # their first pixel, so a tie goes to the component that starts highest, then leftmost.
    k = 1 + int(np.argmax(areas))
    x, y = int(stats[k, cv2.CC_STAT_LEFT]), int(stats[k, cv2.CC_STAT_TOP])
    return (x, y, x + int(stats[k, cv2.CC_STAT_WIDTH]), y + int(stats[k, cv2.CC_STAT_HEIGHT]))


def boxes_from_maps(maps, threshold: float = 0.2):
    """One box per map around the largest 8-connected component of ``map >= threshold * max``.

    maps: [B,H,W] float tensor or numpy array (e.g. the output of a CAM method).
    Returns int64 [B,4] boxes ``[x0, y0, x1, y1)`` in pixels, x1/y1 exclusive, as a tensor on
    the maps' device (a numpy array for numpy input).

    Edge cases follow the definition: an all-zero (constant) map passes the test everywhere,
    so its box is the whole image ``[0, 0, W, H]`` (no localisation evidence); a map where no
    pixel passes (all NaN, or a negative maximum) gets the empty box ``[0, 0, 0, 0]``.
    """
    threshold = fraction(threshold, "threshold")
    is_tensor = isinstance(maps, torch.Tensor)
    arr = maps.detach().float().cpu().numpy() if is_tensor else np.asarray(maps)
    if arr.ndim != 3:
        raise UserError(f"{PREFIX}maps must have shape [B,H,W], got {list(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    boxes = np.array([_box(m, float(threshold)) for m in arr], dtype=np.int64).reshape(-1, 4)
    return torch.from_numpy(boxes).to(maps.device) if is_tensor else boxes
