"""Pictures from maps: the public helpers every pipeline of the package draws with.

All take and return uint8 RGB numpy arrays ``[H,W,3]`` (maps as float tensors or arrays in
[0, 1]), so they compose into pipelines of your own::

    maps = ac.GradCAM(model)(x, size=rgb.shape[:2])             # [1,H,W]
    pic = ac.render.overlays(maps, rgb)[0]                       # JET blend, as cv2
    ac.render.draw_box(pic, ac.boxes_from_maps(maps)[0])
    sheet = ac.render.contact_sheet(rgb, [pic], ["Egyptian cat 0.79"])
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from . import ops
from ._validate import fraction
from .errors import PREFIX, UserError

__all__ = ["heatmap_picture", "overlays", "draw_box", "caption", "contact_sheet", "guided_picture",
           "BOX_RGB", "SHEET_HEIGHT", "MAX_SHEET_WIDTH"]

BOX_RGB = (0, 255, 0)
SHEET_HEIGHT = 224          # tile height of a contact sheet, before its caption bar
MAX_SHEET_WIDTH = 4096      # a sheet wraps into rows beyond this width
_CAPTION_HEIGHT = 26
_GAP = 6


def _as_tensor(maps) -> torch.Tensor:
    return maps if isinstance(maps, torch.Tensor) else torch.from_numpy(np.asarray(maps))


def heatmap_picture(m) -> np.ndarray:
    """A map in [0, 1] as 8-bit grey, ``floor(255 * map)`` clamped (NaN -> 0): the colour index
    the overlay uses."""
    t = _as_tensor(m).detach().float() * 255  # one temporary: a map may have 100 million pixels
    return t.nan_to_num_(nan=0.0).floor_().clamp_(0, 255).to(torch.uint8).cpu().numpy()


def overlays(maps, rgb, image_weight: float = 0.5) -> np.ndarray:
    """JET-coloured ``maps`` ``[C,H,W]`` blended over one RGB image ``[H,W,3]`` (``ops.overlay``:
    byte-identical to cv2.applyColorMap + cv2.addWeighted); returns uint8 ``[C,H,W,3]``."""
    image_weight = fraction(image_weight, "image_weight")
    maps = _as_tensor(maps)
    if maps.dim() != 3:
        raise UserError(f"{PREFIX}maps must have shape [C,H,W] for one image, got {list(maps.shape)}")
    img = torch.as_tensor(np.ascontiguousarray(rgb)).to(maps.device)
    return ops.overlay(maps, img.expand(maps.shape[0], *img.shape), image_weight).cpu().numpy()


def draw_box(rgb: np.ndarray, box, color=BOX_RGB) -> np.ndarray:
    """Draw the box ``[x0, y0, x1, y1)`` on ``rgb`` in place (line width from the image size) and
    return it; an empty box draws nothing."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 > x0 and y1 > y0:
        thick = max(2, round(min(rgb.shape[:2]) / 150))
        cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), tuple(int(c) for c in color), thick)
    return rgb


def caption(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` with a white bar of black text below it (the text shrinks to fit the width)."""
    bar = np.full((_CAPTION_HEIGHT, tile.shape[1], 3), 255, np.uint8)
    scale = 0.45
    while scale > 0.25 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > tile.shape[1] - 8:
        scale -= 0.05
    cv2.putText(bar, text, (4, 18), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([tile, bar])


def contact_sheet(rgb: np.ndarray, pictures: list, captions: list, height: int = SHEET_HEIGHT) -> np.ndarray:
    """The image and its pictures (e.g. one overlay per class) as captioned tiles of one height,
    left to right, wrapping into rows so that no sheet is wider than MAX_SHEET_WIDTH (the CAM
    paper's Fig. 4 layout). ``captions`` has one text per picture; the image is "input"."""
    if len(pictures) != len(captions):
        raise UserError(f"{PREFIX}contact_sheet needs one caption per picture, got {len(pictures)} pictures "
                        f"and {len(captions)} captions")
    h, w = rgb.shape[:2]
    tw = max(1, round(w * height / h))
    if tw > MAX_SHEET_WIDTH:  # a panorama: shrink the tiles instead of making one very wide one
        height, tw = max(1, round(height * MAX_SHEET_WIDTH / tw)), MAX_SHEET_WIDTH
    tiles = [caption(cv2.resize(np.ascontiguousarray(t), (tw, height), interpolation=cv2.INTER_AREA), c)
             for t, c in zip([rgb, *pictures], ["input", *captions])]
    cols = max(1, min(len(tiles), (MAX_SHEET_WIDTH + _GAP) // (tw + _GAP)))
    rows = math.ceil(len(tiles) / cols)
    th = tiles[0].shape[0]
    sheet = np.full((rows * th + (rows - 1) * _GAP, cols * tw + (cols - 1) * _GAP, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = r * (th + _GAP), c * (tw + _GAP)
        sheet[y:y + th, x:x + tw] = t
    return sheet


def guided_picture(g) -> np.ndarray:
    """Guided (Grad-CAM) input gradients ``[3,H,W]`` as uint8 RGB ``[H,W,3]``: centred on the mean,
    scaled so that 0.1 is one standard deviation, shifted to 0.5 and clipped (the usual
    deprocessing of the Grad-CAM authors' code)."""
    g = _as_tensor(g).detach().float()
    g = (g - g.mean()) / (g.std() + 1e-5) * 0.1 + 0.5
    return (g.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
