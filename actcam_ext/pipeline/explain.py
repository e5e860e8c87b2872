"""``explain`` and ``demo``: heatmaps, overlays, boxes and ``results.json`` for images.

Output folder (when ``out_dir`` is given): the pictures of ``outputs.image_record`` for each
image, ``results.json`` = ``{"model", "method", "layer", "images": [record, ...]}`` and
``index.html``, the results page (``page.write_index``). The folder appears complete or not at
all: everything is written into a temporary sibling that is renamed to ``out_dir`` at the end
(``_files.atomic_dir``).
"""

from __future__ import annotations

from .._files import atomic_dir, write_json
from .._progress import progress_bar
from ..errors import PREFIX, UserError
from ..images import DEMO_IMAGES, as_rgb, demo_photos
from .explainer import Explainer
from .options import ExplainOptions
from .outputs import image_record, output_name
from .page import write_index

__all__ = ["explain", "demo", "DEMO_METHODS"]

DEMO_METHODS = ("cam", "gradcam", "gradcam++")


def _explainer(explainer) -> Explainer:
    if isinstance(explainer, str):
        explainer = Explainer.load(explainer)
    elif callable(explainer) and not isinstance(explainer, Explainer):
        explainer = explainer()
    if not isinstance(explainer, Explainer):
        raise UserError(f"{PREFIX}explainer must be an Explainer, a method name such as 'gradcam' or a function "
                        f"returning an Explainer, got {type(explainer).__name__}")
    return explainer


def _run(explainer: Explainer, items: list, options: ExplainOptions, *, dest, prefix: str, bar,
         return_maps: bool = False) -> list:
    """Records of ``items`` ((rgb, path) pairs), ``options.batch`` images per forward/backward."""
    records = []
    for start in range(0, len(items), options.batch):
        chunk = items[start:start + options.batch]
        preds = explainer.predict([rgb for rgb, _ in chunk], options)
        for i, ((rgb, path), pred) in enumerate(zip(chunk, preds), start):
            name = prefix + output_name(path if path is not None else f"array:{i}",
                                        path if path is not None else f"array{i:03d}")
            records.append(image_record(rgb, path, pred, dest=dest, name=name, image_weight=options.image_weight,
                                        return_maps=return_maps))
            if bar is not None:
                bar.update(1)
    return records


def _plain(obj):
    """The result without the numpy maps that ``return_maps`` adds (they are not JSON)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if k != "map"}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def explain(images, explainer="gradcam", options: ExplainOptions = ExplainOptions(), out_dir=None, *,
            progress: bool = False, return_maps: bool = False) -> dict:
    """Explain images; returns the ``results.json`` structure (module docstring).

    images: a path, a uint8 RGB array [H,W,3], or a list of them (any sizes); every file is
    read and checked before any work. explainer: an ``Explainer``; a method name (on the
    built-in EfficientNet-Lite0); or a function returning an Explainer, called once the images
    are read (so a bad file is reported before a model is loaded). out_dir: where to write
    pictures, results.json and index.html (None: write nothing; the picture paths are then
    None). return_maps: also put each float32 map [H,W] under ``prediction["map"]`` (kept out of
    results.json). Raises UserError for bad input.
    """
    srcs = list(images) if isinstance(images, (list, tuple)) else [images]
    if not srcs:
        raise UserError(f"{PREFIX}no images given")
    items = [as_rgb(s, i, options.max_pixels) for i, s in enumerate(srcs)]
    explainer = _explainer(explainer)
    bar = progress_bar(len(items), progress)
    try:
        if out_dir is None:
            records = _run(explainer, items, options, dest=None, prefix="", bar=bar, return_maps=return_maps)
            return {**explainer.describe(), "images": records}
        with atomic_dir(out_dir) as tmp:
            records = _run(explainer, items, options, dest=tmp, prefix="", bar=bar, return_maps=return_maps)
            result = {**explainer.describe(), "images": records}
            write_json(tmp / "results.json", _plain(result))
            write_index(tmp, [_plain(result)])
        return result
    finally:
        if bar is not None:
            bar.close()


def demo(out_dir="actcam-demo", *, top_k: int = 3, threshold: float = 0.2, device=None,
         progress: bool = False) -> dict:
    """Explain the bundled photos with CAM, Grad-CAM and Grad-CAM++ on EfficientNet-Lite0.

    Writes one sub-folder per method (``cam/``, ``gradcam/``, ``gradcampp/``),
    ``out_dir/results.json`` = ``{"model", "runs": [one explain() result per method]}``, with
    every picture path relative to ``out_dir``, and ``out_dir/index.html``. Returns that structure.
    """
    options = ExplainOptions(top_k=top_k, threshold=threshold)
    items = demo_photos(DEMO_IMAGES)
    base = Explainer.load(DEMO_METHODS[0], device=device)
    bar = progress_bar(len(items) * len(DEMO_METHODS), progress)
    try:
        with atomic_dir(out_dir) as tmp:
            runs = []
            for method in DEMO_METHODS:
                sub = method.replace("++", "pp")
                (tmp / sub).mkdir()
                explainer = base if method == DEMO_METHODS[0] else Explainer.load(
                    method, base.model, device=base.device, preprocess=base.preprocess)
                explainer.model_name = base.model_name
                runs.append({**explainer.describe(),
                             "images": _run(explainer, items, options, dest=tmp, prefix=f"{sub}/", bar=bar)})
            result = {"model": base.model_name, "runs": runs}
            write_json(tmp / "results.json", result)
            write_index(tmp, runs, title="actcam demo")
        return result
    finally:
        if bar is not None:
            bar.close()
