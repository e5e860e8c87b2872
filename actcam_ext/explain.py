"""``actcam_ext.explain``: heatmaps, overlays, localisation boxes and results.json for images.

Each image is explained at its own size: the method's ``cam`` op upsamples the feature-map
heatmap straight to the image's height and width. ``batch`` images (any sizes: each is
resized to the model's input) share one forward and one backward; the methods' per-image
``size=[(H, W), ...]`` then gives each map its own image's size. The activation methods
return the logits of the forward they explain, so the class scores (softmax probabilities),
the ranking and the maps of the chosen classes cost one pass (top-k classes are batched
inside the method); guided-gradcam adds a forward for the ranking and its guided pass.

Files (when ``out_dir`` is given), all relative to ``out_dir``:

* ``NNN_STEM_RANK_CLASS_heatmap.png`` -- the map as 8-bit grey, ``floor(255 * map)`` (the
  colour index the overlay uses); for guided-gradcam the guided Grad-CAM picture instead
* ``NNN_STEM_RANK_CLASS_overlay.jpg`` -- JET heatmap blended on the image, box in green
* ``NNN_STEM_sheet.jpg`` -- the image and its top-k overlays side by side (CAM paper, Fig. 4)
* ``results.json`` -- the returned structure

The directory appears complete or not at all: everything is written into a temporary
sibling directory that is renamed to ``out_dir`` at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ops
from .imagenet_classes import IMAGENET_CLASSES
from .localize import boxes_from_maps
from .methods import CAM, GradCAM, GradCAMPlusPlus, GuidedGradCAM

__all__ = ["explain", "demo", "DEMO_IMAGES", "METHODS", "read_image"]

METHODS = {"cam": CAM, "gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "guided-gradcam": GuidedGradCAM}
_ALIASES = {"gradcampp": "gradcam++", "grad-cam": "gradcam", "grad-cam++": "gradcam++",
            "guided-grad-cam": "guided-gradcam"}
_BOX_RGB = (0, 255, 0)


def _user_error(message: str) -> Exception:
    """An ``actcam_ext.cli.UserError`` (one stderr line and exit 2 in the CLI).

    Imported lazily: ``import actcam_ext`` loads this module, and importing the CLI there would
    give ``python -m actcam_ext.cli`` a second copy of the cli module (and of UserError).
    """
    from .cli import UserError
    return UserError(message)
_SHEET_HEIGHT = 224


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def read_image(path) -> np.ndarray:
    """Read an 8-bit RGB (or RGB-coded JPEG/PNG/...) file as uint8 [H,W,3] RGB.

    Refuses, with a UserError naming the file, what would silently lose information or
    explain the wrong thing: missing/unreadable files, directories, greyscale, images with an
    alpha channel and 16-bit images.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise _user_error(f"image {p!r} does not exist")
    if os.path.isdir(p):
        raise _user_error(f"image {p!r} is a directory, expected an image file")
    try:
        data = np.fromfile(p, dtype=np.uint8)  # np.fromfile + imdecode: any path encoding works
    except OSError as exc:
        raise _user_error(f"cannot read image {p!r}: {exc.strerror or exc}") from None
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if raw is None:
        raise _user_error(f"cannot decode image {p!r}: not an image format OpenCV can read")
    channels = 1 if raw.ndim == 2 else raw.shape[2]
    if raw.dtype != np.uint8:
        raise _user_error(f"image {p!r} has {raw.dtype.itemsize * 8}-bit samples; actcam needs an 8-bit RGB image")
    if channels == 1:
        raise _user_error(f"image {p!r} is greyscale (1 channel); actcam needs an 8-bit RGB image")
    if channels == 4:
        raise _user_error(f"image {p!r} has an alpha channel (RGBA); actcam needs an 8-bit RGB image without alpha")
    if channels != 3:
        raise _user_error(f"image {p!r} has {channels} channels; actcam needs an 8-bit RGB image")
    # Decode again as colour so OpenCV applies the EXIF orientation, as image viewers do.
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _load(src, index: int) -> tuple[np.ndarray, str | None]:
    if isinstance(src, (str, os.PathLike)):
        return read_image(src), os.fspath(src)
    arr = src.detach().cpu().numpy() if isinstance(src, torch.Tensor) else src
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        got = f"{arr.dtype} {list(arr.shape)}" if isinstance(arr, np.ndarray) else type(src).__name__
        raise _user_error(f"image {index}: expected a file path or a uint8 RGB array [H,W,3], got {got}")
    return np.ascontiguousarray(arr), None


def _method_name(method: str) -> str:
    key = str(method).lower()
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise _user_error(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    return key


def _clean(exc: Exception) -> str:
    # The methods' ValueErrors start with "actcam: "; the CLI prefixes its own name already.
    return str(exc).removeprefix("actcam: ")


_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2", ".gif"}


def _stem(path: str | None) -> str:
    p = Path(path or "image")
    stem = p.stem if p.suffix.lower() in _IMAGE_EXTS else p.name  # "skimage.data.chelsea" stays whole
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:60] or "image"


# --------------------------------------------------------------------------------------------
# Output directory: complete or absent
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _atomic_dir(out_dir):
    """Yield a temporary sibling directory that replaces ``out_dir`` on success.

    An existing ``out_dir`` is replaced only when it is empty or holds a results.json (an
    earlier actcam output): never delete a directory of the user's own files.
    """
    final = Path(out_dir).resolve()
    if final.exists() and not final.is_dir():
        raise _user_error(f"output {str(out_dir)!r} exists and is not a directory")
    if final.is_dir() and any(final.iterdir()) and not (final / "results.json").is_file():
        raise _user_error(f"output directory {str(out_dir)!r} is not empty and holds no results.json (not an "
                        "actcam output); choose another --out so nothing of yours is overwritten")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        # mkdtemp makes the directory private (0700); the output is an ordinary directory.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
    except OSError as exc:
        raise _user_error(f"cannot create output directory {str(out_dir)!r}: {exc.strerror or exc}") from None
    try:
        yield tmp
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            final.rename(old / "d")
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write(path: Path, rgb: np.ndarray) -> None:
    img = rgb[:, :, ::-1] if rgb.ndim == 3 else rgb
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if path.suffix == ".jpg" else []
    if not cv2.imwrite(str(path), np.ascontiguousarray(img), params):
        raise _user_error(f"cannot write {path}")


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------

def _draw_box(rgb: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 > x0 and y1 > y0:
        thick = max(2, round(min(rgb.shape[:2]) / 150))
        cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), _BOX_RGB, thick)
    return rgb


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((26, tile.shape[1], 3), 255, np.uint8)
    scale = 0.45
    while scale > 0.25 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > tile.shape[1] - 8:
        scale -= 0.05
    cv2.putText(bar, text, (4, 18), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([tile, bar])


def _sheet(rgb: np.ndarray, overlays: list, captions: list) -> np.ndarray:
    h, w = rgb.shape[:2]
    tw = max(1, round(w * _SHEET_HEIGHT / h))
    tiles = [_caption(cv2.resize(t, (tw, _SHEET_HEIGHT), interpolation=cv2.INTER_AREA), c)
             for t, c in zip([rgb] + overlays, ["input"] + captions)]
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    row = []
    for t in tiles:
        row += [t, gap]
    return np.concatenate(row[:-1], axis=1)


def _guided_picture(g: torch.Tensor) -> np.ndarray:
    """Guided Grad-CAM gradients [3,H,W] -> uint8 RGB, the usual deprocessing.

    Centre on the mean, scale so 0.1 is one standard deviation, shift to 0.5 and clip, as in
    the Grad-CAM authors' and the tutorial's visualisation.
    """
    g = g.float()
    g = (g - g.mean()) / (g.std() + 1e-5) * 0.1 + 0.5
    return (g.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


# --------------------------------------------------------------------------------------------
# The explainer
# --------------------------------------------------------------------------------------------

class _Explainer:
    def __init__(self, model: nn.Module, preprocess, method: str, layer, device: torch.device,
                 threshold: float, image_weight: float):
        self.model, self.pre, self.device = model, preprocess, device
        self.method = _method_name(method)
        self.threshold, self.image_weight = threshold, image_weight
        if isinstance(model, torch.jit.ScriptModule):
            # Every method captures the target layer with forward hooks, which TorchScript
            # modules refuse (RuntimeError "not supported on ScriptModules"): say so up front.
            raise _user_error("a TorchScript model cannot be explained: the methods need forward hooks on the "
                              "target layer, which TorchScript does not support; save the Python module with "
                              "torch.save(model, path) and pass that file instead")
        if layer is None and self.method != "cam":
            # The model's preferred feature map (e.g. EfficientNet's head activation); CAM
            # finds the global pooling input itself, which is the same tensor there.
            layer = getattr(preprocess, "target_layer", None)
        try:
            if self.method == "cam":
                self.impl = CAM(model, target_layer=layer)
                self.layer = self.impl.target_layer_name
            elif self.method == "guided-gradcam":
                self.impl = GuidedGradCAM(model, target_layer=layer)
                self.layer = self.impl.gradcam.target_layer_name
            else:
                self.impl = METHODS[self.method](model, target_layer=layer)
                self.layer = self.impl.target_layer_name
        except ValueError as exc:
            raise _user_error(_clean(exc)) from None

    _num_classes: int | None = None

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self.model(x)
        return self._check_logits(out, x)

    def _check_logits(self, out, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise _user_error(f"the model must return class logits [batch, classes], it returned {got}")
        self._num_classes = out.shape[1]
        return out.detach().float()

    def _predict(self, x, targets, top_k, sizes) -> list:
        """Per image of the batch x: (class ids [C] sorted by score, their probabilities, maps
        [C,H_i,W_i] at the image's size, guided pictures [C,3,H_i,W_i] or None). The activation
        methods return the logits of the forward pass they explain, so scores and maps cost
        one forward (and one backward) for the whole batch."""
        n = x.shape[0]
        if self.method == "guided-gradcam":
            logits = self._logits(x)
            ids = self._class_ids(logits, targets, top_k)
            maps, guided = self._maps(x, ids.to(x.device), sizes)
        else:
            chosen = torch.tensor([targets] * n, dtype=torch.long) if targets is not None else None
            try:
                maps, ids, output = self.impl._explain(x, chosen, None if targets is not None else top_k, sizes)
            except ValueError as exc:
                raise _user_error(_clean(exc)) from None
            logits = self._check_logits(output, x)
            guided = [None] * n
        probs = logits.float().softmax(1).gather(1, ids.to(logits.device))  # [n,C]
        out = []
        for i in range(n):
            order = probs[i].argsort(descending=True, stable=True)  # predictions sorted by score
            g = guided[i][order.to(guided[i].device)] if guided[i] is not None else None
            out.append((ids[i][order.to(ids.device)], probs[i][order], maps[i][order.to(maps[i].device)], g))
        return out

    def _class_ids(self, logits: torch.Tensor, targets, top_k) -> torch.Tensor:
        """[n,C] class ids per image: the targets, or each image's top_k classes."""
        n = logits.shape[1]
        if targets is not None:
            bad = [t for t in targets if not 0 <= t < n]
            if bad:
                raise _user_error(f"class id {bad[0]} is out of range: the model has {n} classes (0..{n - 1})")
            return torch.tensor(targets, dtype=torch.long, device=logits.device).expand(logits.shape[0], -1)
        if top_k > n:
            raise _user_error(f"top-k {top_k} exceeds the model's {n} classes")
        return logits.topk(top_k, dim=1).indices

    def _maps(self, x, ids: torch.Tensor, sizes) -> tuple[list, list]:
        """Guided Grad-CAM for the [n,C] class ids: per image, the Grad-CAM maps [C,H_i,W_i]
        (they give the box and the overlay) and the guided pictures [C,3,H_i,W_i]."""
        try:
            # Guided Grad-CAM = guided backprop x Grad-CAM. The guided gradients live at the
            # model's input size and are resized to each image before the product.
            cams = self.impl.gradcam(x, ids, size=sizes)
            gbs = self.impl.guided(x, ids)
        except ValueError as exc:
            raise _user_error(_clean(exc)) from None
        guided = [F.interpolate(gb, size=cam.shape[-2:], mode="bilinear", align_corners=False) * cam[:, None]
                  for cam, gb in zip(cams, gbs)]
        return cams, guided

    def run(self, items, *, top_k, targets, dest: Path | None, prefix: str, bar=None,
            return_maps=False, stems=None, sheets=True, batch: int = 1) -> list:
        """Explain ``items`` ((rgb, path) pairs), ``batch`` images per forward/backward.

        stems: file-name stems per item (default ``{prefix}{i:03d}_{name}``), relative to
        dest; sheets: write the contact sheet (``actcam batch`` writes overlays only).
        Images of any sizes share a batch: each is resized to the model's input, and each map
        is made at its own image's size.
        """
        entries = []
        for start in range(0, len(items), batch):
            chunk = items[start:start + batch]
            x = self.pre([rgb for rgb, _ in chunk], self.device)
            sizes = [tuple(rgb.shape[:2]) for rgb, _ in chunk]
            for j, ((rgb, path), pred) in enumerate(zip(chunk, self._predict(x, targets, top_k, sizes))):
                i = start + j
                stem = stems[i] if stems is not None else f"{prefix}{i:03d}_{_stem(path)}"
                entries.append(self._entry(rgb, path, *pred, dest=dest, stem=stem, return_maps=return_maps,
                                           sheets=sheets))
                if bar is not None:
                    bar.update(1)
        return entries

    def _entry(self, rgb, path, ids, probs, maps, guided, *, dest, stem, return_maps, sheets) -> dict:
        """One image's record (and its files under dest)."""
        h, w = rgb.shape[:2]
        boxes = boxes_from_maps(maps, self.threshold).cpu().tolist()
        labels = IMAGENET_CLASSES if self._num_classes == len(IMAGENET_CLASSES) else None
        preds = []
        overlays = None
        if dest is not None:
            img = torch.from_numpy(rgb).to(maps.device)
            overlays = ops.overlay(maps, img.expand(len(ids), h, w, 3), self.image_weight).cpu().numpy()
        for r, (cid, p, box) in enumerate(zip(ids.tolist(), probs.tolist(), boxes)):
            pred = {"class_id": cid, "label": labels[cid] if labels else f"class {cid}",
                    "score": round(float(p), 6), "box": [int(v) for v in box],
                    "heatmap": None, "overlay": None}
            if dest is not None:
                base = f"{stem}_{r + 1}_{cid}"
                heat = _guided_picture(guided[r]) if guided is not None else \
                    (maps[r] * 255).floor().clamp(0, 255).to(torch.uint8).cpu().numpy()
                pred["heatmap"], pred["overlay"] = f"{base}_heatmap.png", f"{base}_overlay.jpg"
                _write(dest / pred["heatmap"], heat)
                _write(dest / pred["overlay"], _draw_box(overlays[r], box))
            if return_maps:
                pred["map"] = maps[r].cpu().numpy()
            preds.append(pred)
        entry = {"path": path, "width": w, "height": h, "predictions": preds}
        if dest is not None and sheets:
            entry["sheet"] = f"{stem}_sheet.jpg"
            caps = [f"{p['label'].split(',')[0]} {p['score']:.2f}" for p in preds]
            _write(dest / entry["sheet"], _sheet(rgb, [overlays[r] for r in range(len(preds))], caps))
        return entry


def _model_and_preprocess(model, preprocess, device, **overrides):
    from .models import DEFAULT_MODEL, Preprocess, load_model, resolve_device
    if model is None or isinstance(model, (str, os.PathLike)):
        spec = os.fspath(model or DEFAULT_MODEL)
        net, pre = load_model(spec, device, **overrides)
        return net, (preprocess or pre), next(iter(net.parameters()), torch.empty(0)).device, spec
    if not isinstance(model, nn.Module):
        raise _user_error(f"model must be None, a model spec string or an nn.Module, got {type(model).__name__}")
    if device is not None:
        dev = resolve_device(device)
    else:
        dev = next(iter(model.parameters()), torch.empty(0)).device
    return model, (preprocess or Preprocess()), dev, type(model).__name__


def _check_options(top_k, targets, threshold, image_weight, batch=1):
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise _user_error(f"batch must be a positive integer, got {batch!r}")
    if targets is not None:
        if isinstance(targets, int) and not isinstance(targets, bool):
            targets = [targets]
        try:
            targets = [int(t) for t in targets]
            if any(isinstance(t, bool) for t in targets) or not targets:
                raise TypeError
        except (TypeError, ValueError):
            raise _user_error(f"targets must be class ids (ints), got {targets!r}") from None
        targets = list(dict.fromkeys(targets))  # a class asked twice gets one map
    elif isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise _user_error(f"top-k must be a positive integer, got {top_k!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise _user_error(f"threshold must be a number in [0, 1], got {threshold!r}")
    if isinstance(image_weight, bool) or not isinstance(image_weight, (int, float)) or not 0 <= image_weight <= 1:
        raise _user_error(f"image weight must be a number in [0, 1], got {image_weight!r}")
    return targets


def explain(images, method: str = "gradcam", model=None, top_k: int = 1, targets=None, layer=None,
            device=None, out_dir=None, *, threshold: float = 0.2, image_weight: float = 0.5,
            preprocess=None, input_size=None, mean=None, std=None, progress: bool = False,
            return_maps: bool = False, batch: int = 1) -> dict:
    """Explain images with a CAM method; returns the results.json structure.

    images: a path, a uint8 RGB array [H,W,3], or a list of them (any sizes).
    method: "cam", "gradcam", "gradcam++" or "guided-gradcam".
    model: None (EfficientNet-Lite0), a spec for ``models.load_model`` ("torchvision:NAME",
    a file path) or an nn.Module in eval mode (then ``preprocess`` defaults to 224x224 with
    the ImageNet mean/std). input_size/mean/std override a spec'd model's preprocessing
    (``models.load_model``). top_k: explain each image's K best classes; targets: class ids
    explained for every image instead. layer: target layer name (None: the model's default).
    device: "cpu"/"cuda" (None: the model's device, or a GPU when one is visible).
    out_dir: where to write pictures and results.json (None: write nothing; the picture paths
    are then None). threshold: box threshold relative to each map's maximum.
    return_maps: also put each float32 map [H,W] under prediction["map"] (not JSON).
    batch: images per forward/backward (any sizes mix: each map is made at its own image's
    size); more is faster on a GPU and on CPU up to the cache, at the cost of memory.

    Returns ``{"model", "method", "layer", "images": [{"path", "width", "height", "sheet",
    "predictions": [{"class_id", "label", "score", "box", "heatmap", "overlay"}]}]}`` with
    predictions sorted by softmax score and boxes ``[x0, y0, x1, y1)`` in image pixels.
    Raises ``actcam_ext.cli.UserError`` for bad input (files, names, class ids, layers).
    """
    targets = _check_options(top_k, targets, threshold, image_weight, batch)
    srcs = list(images) if isinstance(images, (list, tuple)) else [images]
    if not srcs:
        raise _user_error("no images given")
    items = [_load(s, i) for i, s in enumerate(srcs)]  # every file is checked before any work
    net, pre, dev, name = _model_and_preprocess(model, preprocess, device, input_size=input_size, mean=mean,
                                                std=std)
    explainer = _Explainer(net, pre, method, layer, dev, threshold, image_weight)
    bar = _progress(len(items), progress)
    try:
        if out_dir is None:
            entries = explainer.run(items, top_k=top_k, targets=targets, dest=None, prefix="", bar=bar,
                                    return_maps=return_maps, batch=batch)
            return _result(name, explainer, entries)
        with _atomic_dir(out_dir) as tmp:
            entries = explainer.run(items, top_k=top_k, targets=targets, dest=tmp, prefix="", bar=bar,
                                    return_maps=return_maps, batch=batch)
            result = _result(name, explainer, entries)
            _write_json(tmp / "results.json", result)
        return result
    finally:
        if bar is not None:
            bar.close()


def _result(name: str, explainer: _Explainer, entries: list) -> dict:
    return {"model": name, "method": explainer.method, "layer": explainer.layer, "images": entries}


def _write_json(path: Path, result: dict) -> None:
    def plain(o):  # return_maps arrays stay out of the file
        if isinstance(o, dict):
            return {k: plain(v) for k, v in o.items() if not isinstance(v, np.ndarray)}
        if isinstance(o, list):
            return [plain(v) for v in o]
        return o
    path.write_text(json.dumps(plain(result), indent=2) + "\n")


def _progress(total: int, enabled: bool):
    """A tqdm bar on stderr, only for more than a few steps (a bar for 1-3 steps is noise)."""
    if not enabled or total <= 3:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="img", file=sys.stderr, leave=False)


# scikit-image's bundled photos: a cat (281-285), an espresso (967), a person, a rocket.
DEMO_IMAGES = ("chelsea", "coffee", "astronaut", "rocket")
DEMO_METHODS = ("cam", "gradcam", "gradcam++")


def demo(out_dir="actcam-demo", *, top_k: int = 3, device=None, progress: bool = False,
         threshold: float = 0.2) -> dict:
    """Explain the bundled photos with CAM, Grad-CAM and Grad-CAM++ on EfficientNet-Lite0.

    Writes one sub-directory per method (``cam/``, ``gradcam/``, ``gradcampp/``) and
    ``out_dir/results.json`` = ``{"model", "runs": [one explain() result per method]}``, with
    every picture path relative to ``out_dir``. Returns that structure.
    """
    try:
        import skimage.data
    except ImportError:
        raise _user_error("the demo photos come from scikit-image; pip install scikit-image") from None
    _check_options(top_k, None, threshold, 0.5)
    items = [(getattr(skimage.data, name)(), f"skimage.data.{name}") for name in DEMO_IMAGES]
    net, pre, dev, name = _model_and_preprocess(None, None, device)
    bar = _progress(len(items) * len(DEMO_METHODS), progress)
    try:
        with _atomic_dir(out_dir) as tmp:
            runs = []
            for method in DEMO_METHODS:
                sub = method.replace("++", "pp")
                (tmp / sub).mkdir()
                explainer = _Explainer(net, pre, method, None, dev, threshold, 0.5)
                entries = explainer.run(items, top_k=top_k, targets=None, dest=tmp, prefix=f"{sub}/",
                                        bar=bar)
                runs.append(_result(name, explainer, entries))
            result = {"model": name, "runs": runs}
            _write_json(tmp / "results.json", result)
        return result
    finally:
        if bar is not None:
            bar.close()
