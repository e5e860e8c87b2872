"""Helpers shared by the benchmarks (and the tests that need real media): real clips and photo
folders made from scikit-image's bundled photos, interleaved timing, and results files that
state the command that produced them."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import skimage.data

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def make_clip(path, frames: int = 48, size=(640, 360), fps: float = 24.0, photo: str = "astronaut",
              fourcc: str = "mp4v") -> str:
    """Write a clip of real content: a slow pan and zoom across a scikit-image photo; size = (W, H)."""
    img = getattr(skimage.data, photo)()[:, :, ::-1]  # RGB -> BGR for OpenCV
    W, H = size
    ih, iw = img.shape[:2]
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {os.fspath(path)!r} with fourcc {fourcc!r}")
    for i in range(frames):
        t = i / max(1, frames - 1)
        cw = int(iw * (1.0 - 0.45 * t))                 # zoom in by up to 45 %
        ch = min(ih, int(cw * H / W))
        x0 = int((iw - cw) * t)                          # pan left to right
        y0 = int((ih - ch) * (0.5 + 0.3 * np.sin(2 * np.pi * t)))  # and bob up and down
        writer.write(cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (W, H), interpolation=cv2.INTER_AREA))
    writer.release()
    return os.fspath(path)


def make_photo_folder(root: Path, n: int) -> list[Path]:
    """``n`` JPEG files ``img000.jpg`` ... under ``root``: distinct crops of the bundled photos."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    paths = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        f = 0.6 + 0.4 * ((i // len(photos)) % 5) / 4
        crop = img[: int(h * f), : int(w * f)]
        p = root / f"img{i:03d}.jpg"
        cv2.imwrite(str(p), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        paths.append(p)
    return paths
