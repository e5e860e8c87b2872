"""Reading images: the one list of image extensions, the one reader, the bundled demo photos.

``read_image`` returns uint8 RGB ``[H,W,3]`` or raises ``UserError`` naming the file and the
problem; everything that reads a user's image (``actcam explain``, ``batch``, ``evaluate``)
goes through it, so every command accepts and refuses the same files. Images above
``MAX_PIXELS`` (width x height) are refused before they are decoded, unless the caller raises
the limit: a huge image costs gigabytes (its maps and overlays are made at its own size).
"""

from __future__ import annotations

import os
from pathlib import Path

import warnings

import cv2
import numpy as np
import torch
from PIL import Image

from .errors import PREFIX, UserError

__all__ = ["IMAGE_EXTS", "read_image", "as_rgb", "list_images", "DEMO_IMAGES", "demo_photos", "MAX_PIXELS",
           "check_pixels"]

# 100 megapixels: above any camera's photo; a 12000x12000 scan (144 MP) needs the limit raised.
MAX_PIXELS = 100_000_000

# What OpenCV decodes that people keep photos in; matched case-insensitively.
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2",
                        ".gif"})

# scikit-image's bundled photos: a cat (ImageNet 281-285), an espresso (967), a person, a rocket.
DEMO_IMAGES = ("chelsea", "coffee", "astronaut", "rocket")


def check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    """A UserError when an image of ``width`` x ``height`` is above ``max_pixels``."""
    if width * height > max_pixels:
        raise UserError(f"{PREFIX}{what} is {width}x{height} = {width * height / 1e6:.1f} megapixels, above the "
                        f"limit of {max_pixels / 1e6:g} (--max-pixels; Python: max_pixels=)")


def _header_size(path: str):
    """(width, height) from the file's header without decoding it, or None when Pillow cannot
    read the header (OpenCV then decodes and the size is checked after)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except Image.DecompressionBombError:  # larger than Pillow's own limit: certainly larger than ours
        return (2 ** 31, 1)
    except Exception:
        return None


def read_image(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an 8-bit colour image file as uint8 RGB ``[H,W,3]``.

    Refuses, with a UserError naming the file, what would silently lose information or explain
    the wrong thing: missing or unreadable files, folders, greyscale, images with an alpha
    channel and 16-bit images; and images above ``max_pixels`` (checked from the header, before
    decoding). EXIF orientation is applied, as image viewers do.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise UserError(f"{PREFIX}image {p!r} does not exist")
    if os.path.isdir(p):
        raise UserError(f"{PREFIX}image {p!r} is a directory, expected an image file")
    size = _header_size(p)
    if size is not None:
        check_pixels(*size, max_pixels, f"image {p!r}")
    try:
        data = np.fromfile(p, dtype=np.uint8)  # np.fromfile + imdecode: any path encoding works
    except OSError as exc:
        raise UserError(f"{PREFIX}cannot read image {p!r}: {exc.strerror or exc}") from None
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if raw is None:
        raise UserError(f"{PREFIX}cannot decode image {p!r}: not an image format OpenCV can read")
    channels = 1 if raw.ndim == 2 else raw.shape[2]
    if raw.dtype != np.uint8:
        raise UserError(f"{PREFIX}image {p!r} has {raw.dtype.itemsize * 8}-bit samples; actcam needs an 8-bit "
                        "RGB image")
    if channels == 1:
        raise UserError(f"{PREFIX}image {p!r} is greyscale (1 channel); actcam needs an 8-bit RGB image")
    if channels == 4:
        raise UserError(f"{PREFIX}image {p!r} has an alpha channel (RGBA); actcam needs an 8-bit RGB image "
                        "without alpha")
    if channels != 3:
        raise UserError(f"{PREFIX}image {p!r} has {channels} channels; actcam needs an 8-bit RGB image")
    check_pixels(raw.shape[1], raw.shape[0], max_pixels, f"image {p!r}")
    del raw
    # Decode again as colour so OpenCV applies the EXIF orientation; swap to RGB in place (a
    # copy of a large photo would double its memory).
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)


def as_rgb(src, index: int, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str | None]:
    """``(rgb, path)`` for a file path (read with ``read_image``) or ``(array, None)`` for a
    uint8 RGB array/tensor ``[H,W,3]``; ``index`` names the item in errors."""
    if isinstance(src, (str, os.PathLike)):
        return read_image(src, max_pixels), os.fspath(src)
    arr = src.detach().cpu().numpy() if isinstance(src, torch.Tensor) else src
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        got = f"{arr.dtype} {list(arr.shape)}" if isinstance(arr, np.ndarray) else type(src).__name__
        raise UserError(f"{PREFIX}image {index}: expected a file path or a uint8 RGB array [H,W,3], got {got}")
    return np.ascontiguousarray(arr), None


def list_images(root, exclude=None) -> list[str]:
    """Paths (relative to root, '/'-separated, sorted) of the image files under root, recursively.

    ``IMAGE_EXTS``, case-insensitive; hidden files and folders are skipped, and so is
    ``exclude`` (e.g. an output folder inside root).
    """
    root = Path(root)
    ex = Path(exclude).resolve() if exclude is not None else None
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and (d / n).resolve() != ex)
        for n in filenames:
            if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_EXTS:
                found.append((d / n).relative_to(root).as_posix())
    return sorted(found)


def demo_photos(names=DEMO_IMAGES) -> list[tuple[np.ndarray, str]]:
    """``(rgb, "skimage.data.NAME")`` for scikit-image's bundled photos (no download)."""
    try:
        import skimage.data
    except ImportError:
        raise UserError(f"{PREFIX}the demo photos come from scikit-image; pip install scikit-image") from None
    return [(getattr(skimage.data, name)(), f"skimage.data.{name}") for name in names]
