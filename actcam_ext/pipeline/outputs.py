"""From predictions to files: output names, pictures and the per-image record.

Record (one per image; the ``results.json`` ``images`` entries and the ``results.jsonl`` lines)::

    {"path", "width", "height", "thumbnail", ["sheet",] "predictions": [
        {"class_id", "label", "score", "box": [x0, y0, x1, y1), "heatmap", "overlay"}, ...]}

Picture paths are relative to the output folder (None when nothing is written). Files per image
(``NAME`` from ``output_name``): ``NAME_thumb.jpg`` (the image, THUMB_HEIGHT pixels high, for the
results page) and ``NAME_sheet.jpg`` (the contact sheet, when asked for); per class (``R`` its
rank, ``C`` its id): ``NAME_R_C_heatmap.png`` (the map as 8-bit grey, or the Guided Grad-CAM
picture) and ``NAME_R_C_overlay.jpg`` (JET overlay with the box).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from .. import render
from ..errors import PREFIX, UserError
from ..images import IMAGE_EXTS
from .explainer import ImagePrediction

__all__ = ["output_name", "write_image", "image_record", "STEM_CHARS", "THUMB_HEIGHT"]

STEM_CHARS = 40  # readable part of a name; the hash makes it unique
THUMB_HEIGHT = 160


def output_name(key: str, display: str | None = None) -> str:
    """A file-name stem that is unique and deterministic for ``key`` (an input's path relative to
    the input folder, its path as given, or ``"array:INDEX"``): the sanitised stem of
    ``display`` (default ``key``), cut to STEM_CHARS, then ``_`` and 8 hex digits of SHA-1(key).

    Distinct keys that sanitise alike (``a.1.jpg``, ``a_1.jpg``, ``a 1.jpg``; long names sharing
    a prefix) get distinct names; the same key always gets the same name (resume relies on it).
    """
    name = PurePosixPath(display if display is not None else key).name
    p = PurePosixPath(name)
    stem = p.stem if p.suffix.lower() in IMAGE_EXTS else name  # "skimage.data.chelsea" stays whole
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:STEM_CHARS] or "image"
    return f"{stem}_{hashlib.sha1(key.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB (or grey) uint8 picture; the format follows the suffix (JPEG at quality 90)."""
    img = rgb[:, :, ::-1] if rgb.ndim == 3 else rgb
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if path.suffix == ".jpg" else []
    try:
        ok = cv2.imwrite(str(path), np.ascontiguousarray(img), params)
    except cv2.error:
        ok = False
    if not ok:
        raise UserError(f"{PREFIX}cannot write {path} (is the disk full, or the picture too large for its format?)")


def image_record(rgb: np.ndarray, path: str | None, pred: ImagePrediction, *, dest: Path | None, name: str,
                 image_weight: float, sheet: bool = True, return_maps: bool = False) -> dict:
    """The record of one image; with ``dest``, its pictures are written under ``dest`` as
    ``name``-prefixed files (``name`` may hold folders, made as needed)."""
    h, w = rgb.shape[:2]
    preds = []
    overlays = None
    if dest is not None:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        overlays = render.overlays(pred.maps, rgb, image_weight)
    for r, (cid, label, score, box) in enumerate(zip(pred.class_ids, pred.labels, pred.scores, pred.boxes)):
        entry = {"class_id": int(cid), "label": label, "score": round(float(score), 6),
                 "box": [int(v) for v in box], "heatmap": None, "overlay": None}
        if dest is not None:
            base = f"{name}_{r + 1}_{cid}"
            picture = render.guided_picture(pred.guided[r]) if pred.guided is not None else \
                render.heatmap_picture(pred.maps[r])
            entry["heatmap"], entry["overlay"] = f"{base}_heatmap.png", f"{base}_overlay.jpg"
            write_image(dest / entry["heatmap"], picture)
            write_image(dest / entry["overlay"], render.draw_box(overlays[r], box))
        if return_maps:
            entry["map"] = pred.maps[r].cpu().numpy()
        preds.append(entry)
    record = {"path": path, "width": w, "height": h, "thumbnail": None, "predictions": preds}
    if dest is not None:
        record["thumbnail"] = f"{name}_thumb.jpg"
        tw = max(1, round(w * THUMB_HEIGHT / h))
        write_image(dest / record["thumbnail"], cv2.resize(rgb, (tw, THUMB_HEIGHT), interpolation=cv2.INTER_AREA))
    if dest is not None and sheet:
        record["sheet"] = f"{name}_sheet.jpg"
        captions = [f"{p['label'].split(',')[0]} {p['score']:.2f}" for p in preds]
        write_image(dest / record["sheet"], render.contact_sheet(rgb, [overlays[r] for r in range(len(preds))],
                                                                 captions))
    return record
