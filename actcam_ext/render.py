"""Pictures from maps: the public helpers every pipeline of the package draws with.

All take and return uint8 RGB numpy arrays ``[H,W,3]`` (maps as float tensors or arrays in
[0, 1]), so they compose into pipelines of your own::

    maps = ac.GradCAM(model)(x, size=rgb.shape[:2])             # [1,H,W]
    pic = ac.render.overlays(maps, rgb)[0]                       # JET blend, as cv2
    ac.render.draw_box(pic, ac.boxes_from_maps(maps)[0])
    sheet = ac.render.contact_sheet(rgb, [pic], ["Egyptian cat 0.79"])

Grids for looking inside a network: ``activation_grid`` (a layer's channel maps, from
``ac.activation_maps``), ``filter_grid`` (the first convolution's filters as colour patches)
and ``show`` (an ``Explanation`` as one picture: rows = images, columns = classes; what an
Explanation displays in Jupyter). ``png_bytes`` encodes any of them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from . import ops
from ._validate import fraction, positive_int
from .errors import PREFIX, UserError

__all__ = ["heatmap_picture", "overlays", "draw_box", "caption", "contact_sheet", "guided_picture",
           "activation_grid", "filter_grid", "show", "png_bytes", "BOX_RGB", "SHEET_HEIGHT", "MAX_SHEET_WIDTH"]

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


def png_bytes(rgb: np.ndarray) -> bytes:
    """A uint8 RGB ``[H,W,3]`` (or grey ``[H,W]``) picture encoded as PNG (for notebooks, web
    pages, ``IPython.display.Image``)."""
    img = np.ascontiguousarray(rgb[:, :, ::-1] if rgb.ndim == 3 else rgb)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise UserError(f"{PREFIX}cannot encode a picture of shape {list(rgb.shape)} as PNG")
    return buf.tobytes()


def _jet(maps: torch.Tensor) -> np.ndarray:
    """JET colours of maps ``[N,h,w]`` in [0, 1]: ``ops.overlay`` over a black image with no image
    weight, so a tile has exactly the colours of every overlay of the package."""
    maps = maps.detach().float()
    blank = torch.zeros((*maps.shape, 3), dtype=torch.uint8, device=maps.device)
    return ops.overlay(maps, blank, 0.0).cpu().numpy()


def _fit(pic: np.ndarray, height: int, interpolation=cv2.INTER_AREA) -> np.ndarray:
    """``pic`` scaled to ``height`` rows, keeping its aspect ratio."""
    h, w = pic.shape[:2]
    if h == height:
        return np.ascontiguousarray(pic)
    return cv2.resize(np.ascontiguousarray(pic), (max(1, round(w * height / h)), height), interpolation=interpolation)


def _layout(rows: list) -> np.ndarray:
    """Rows of tiles on white, _GAP pixels apart, left-aligned (rows may differ in width and
    tiles in height; a row is as high as its highest tile)."""
    strips = []
    for row in rows:
        h = max(t.shape[0] for t in row)
        strip = np.full((h, sum(t.shape[1] for t in row) + _GAP * (len(row) - 1), 3), 255, np.uint8)
        x = 0
        for t in row:
            strip[:t.shape[0], x:x + t.shape[1]] = t
            x += t.shape[1] + _GAP
        strips.append(strip)
    out = np.full((sum(s.shape[0] for s in strips) + _GAP * (len(strips) - 1), max(s.shape[1] for s in strips), 3),
                  255, np.uint8)
    y = 0
    for s in strips:
        out[y:y + s.shape[0], :s.shape[1]] = s
        y += s.shape[0] + _GAP
    return out


def _grid_cols(cols, n: int) -> int:
    """Columns of a grid of n tiles: ``cols`` (at most n) or, by default, a near-square grid."""
    if cols is None:
        return math.ceil(math.sqrt(n))
    return min(positive_int(cols, "cols"), n)


def activation_grid(maps, labels=None, cols=None, tile: int = 96) -> np.ndarray:
    """One image's channel maps ``[N,h,w]`` in [0, 1] as a grid of JET tiles, uint8 RGB ``[H,W,3]``.

    Each map is coloured exactly as the overlays are (``ops.overlay``'s JET) and enlarged with
    nearest-neighbour interpolation to ``tile`` pixels high, so every cell of the layer shows as
    a block: the grid has the layer's own resolution. Tiles run left to right, ``cols`` per row
    (default: a near-square grid); ``labels`` (one text per map, e.g.
    ``ActivationMaps.labels(i)``: ``"ch 123 · 0.87"``) go in a caption bar under each tile.
    """
    m = _as_tensor(maps)
    if m.dim() != 3 or m.shape[0] == 0 or not m.is_floating_point():
        raise UserError(f"{PREFIX}activation_grid needs one image's channel maps, a float array [N,h,w] with N >= 1 "
                        f"(e.g. activation_maps(...).maps[0]), got {str(m.dtype).removeprefix('torch.')} "
                        f"{list(m.shape)}")
    n, h, w = m.shape
    if labels is not None:
        labels = [str(t) for t in labels]
        if len(labels) != n:
            raise UserError(f"{PREFIX}activation_grid needs one label per map, got {len(labels)} labels for {n} maps")
    cols = _grid_cols(cols, n)
    tile = positive_int(tile, "tile")
    tiles = [_fit(c, tile, cv2.INTER_NEAREST) for c in _jet(m)]
    if labels is not None:
        tiles = [caption(t, text) for t, text in zip(tiles, labels)]
    return _layout([tiles[i:i + cols] for i in range(0, n, cols)])


def filter_grid(conv, cols=None, tile: int = 48) -> np.ndarray:
    """The filters of a convolution that reads an RGB image (a model's first ``nn.Conv2d``) as a
    grid of colour patches, uint8 RGB ``[H,W,3]``.

    Filter k ``[3,kh,kw]`` is min-max normalised over all its values (a constant filter is
    black) and drawn with input channels 0, 1, 2 as red, green, blue (the order the model's
    input has after an RGB preprocessing), enlarged with nearest-neighbour interpolation to
    ``tile`` pixels high and captioned ``"ch k"``; ``cols`` per row (default: near-square).
    A convolution without exactly 3 input channels per filter is refused with a UserError.
    """
    if not isinstance(conv, torch.nn.Conv2d):
        raise UserError(f"{PREFIX}filter_grid needs an nn.Conv2d (the model's first convolution), "
                        f"got {type(conv).__name__}")
    w = conv.weight.detach()
    if w.shape[1] != 3:
        raise UserError(f"{PREFIX}filter_grid draws each filter's 3 input channels as RGB, and this convolution's "
                        f"filters have {w.shape[1]}; pass the model's first nn.Conv2d, the one that reads the image")
    w = w.float().cpu()
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    norm = torch.where(hi > lo, (w - lo) / (hi - lo), torch.zeros_like(w))
    pics = (norm * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    cols = _grid_cols(cols, len(pics))
    tiles = [caption(_fit(p, positive_int(tile, "tile"), cv2.INTER_NEAREST), f"ch {k}") for k, p in enumerate(pics)]
    return _layout([tiles[i:i + cols] for i in range(0, len(tiles), cols)])


def _explained(explanation) -> list:
    """``(maps, class ids or None, guided)`` per image of an explanation: maps ``[C,H,W]`` in
    [0, 1] for heatmaps, ``[C,3,H,W]`` input gradients for the guided family."""
    maps, ids = getattr(explanation, "maps", None), getattr(explanation, "class_ids", None)
    if maps is None:
        raise UserError(f"{PREFIX}show needs an Explanation (a method's explain(...) result), "
                        f"got {type(explanation).__name__}")
    if isinstance(maps, tuple):  # the guided family on several inputs: the first input's gradients
        maps = maps[0]
    items = [_as_tensor(m) for m in maps] if isinstance(maps, list) else list(_as_tensor(maps).unbind(0))
    if not items:
        raise UserError(f"{PREFIX}nothing to show: the explanation holds no images")
    out = []
    for i, m in enumerate(items):
        m = m.detach()
        row_ids = None if ids is None else _as_tensor(ids)[i].reshape(-1).tolist()
        if ids is not None:
            guided = m.dim() - (_as_tensor(ids).dim() - 1) == 3
        else:  # a callable target: heatmaps lie in [0, 1], gradients (almost) never do
            guided = m.dim() == 4 or (m.dim() == 3 and m.shape[0] == 3 and bool(((m < 0) | (m > 1)).any()))
        m = m.unsqueeze(0) if m.dim() == (3 if guided else 2) else m
        if m.dim() != (4 if guided else 3):
            raise UserError(f"{PREFIX}show: the maps of image {i} have shape {list(m.shape)}, which is neither "
                            "heatmaps [C,H,W] nor input gradients [C,3,H,W]")
        out.append((m, row_ids, guided))
    return out


def _images(images, n: int) -> list:
    batch = isinstance(images, (list, tuple)) or (isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4)
    items = list(images) if batch else [images]
    if len(items) != n:
        raise UserError(f"{PREFIX}show needs one image per explained image: {n} explained, {len(items)} images given")
    out = []
    for i, img in enumerate(items):
        arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else img
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            got = f"{arr.dtype} {list(arr.shape)}" if isinstance(arr, np.ndarray) else type(img).__name__
            raise UserError(f"{PREFIX}show: image {i} must be a uint8 RGB array [H,W,3], got {got}")
        out.append(np.ascontiguousarray(arr))
    return out


def _resize_maps(maps: torch.Tensor, size: tuple) -> torch.Tensor:
    """Maps ``[C,H,W]`` resized bilinearly as ``ops.cam`` resizes (``align_corners=False``)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps.float()
    return torch.nn.functional.interpolate(maps.float()[None], size=size, mode="bilinear", align_corners=False)[0]


def show(explanation, images=None, image_weight: float = 0.5, height: int = SHEET_HEIGHT) -> np.ndarray:
    """An ``Explanation`` as one uint8 RGB picture ``[H,W,3]``: a row per image, a column per
    explained class, each tile ``height`` pixels high and captioned ``"class C"``.

    With ``images`` (one uint8 RGB ``[H,W,3]`` per explained image, a list or a ``[B,H,W,3]``
    array; any sizes) a row starts with the image and each heatmap is resized to the image
    (bilinearly, as ``ops.cam``) and overlaid on it (``overlays``, ``image_weight`` as there).
    Without, the maps themselves are drawn in JET (what an Explanation shows in Jupyter). The
    guided family's input gradients (and Guided Grad-CAM's) are drawn with ``guided_picture``.
    An explanation of a callable target has no class ids: columns are captioned ``"score j"``,
    and 3-channel maps count as gradients when a value lies outside [0, 1].
    """
    per = _explained(explanation)
    height = positive_int(height, "height")
    image_weight = fraction(image_weight, "image_weight")
    rgbs = _images(images, len(per)) if images is not None else [None] * len(per)
    rows = []
    for i, ((maps, ids, guided), rgb) in enumerate(zip(per, rgbs)):
        names = [f"class {c}" for c in ids] if ids is not None and len(ids) == maps.shape[0] else \
            [f"score {j}" for j in range(maps.shape[0])]
        if rgb is None:
            names = [f"#{i} {t}" for t in names]
            pics = [guided_picture(g) for g in maps] if guided else list(_jet(maps))
            row = []
        else:
            rgb = _fit(rgb, height)
            size = rgb.shape[:2]
            if guided:
                pics = [guided_picture(_resize_maps(g, size)) for g in maps]
            else:
                pics = list(overlays(_resize_maps(maps, size), rgb, image_weight))
            row = [caption(rgb, "input")]
        rows.append(row + [caption(_fit(p, height), t) for p, t in zip(pics, names)])
    return _layout(rows)
