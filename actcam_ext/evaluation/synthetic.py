"""A localisation benchmark that ships as code: seeded images with exact boxes, and a small CNN.

Why: the papers measure localisation on ImageNet's annotated boxes, which this package cannot
ship or download. Instead, ``generate`` draws cluttered images, each holding one object of one
of ``CLASSES`` at a known place; the ground-truth box is the tight box of the object's pixel
mask, so it is exact by construction. ``load_model`` returns a small GAP+FC network (the CAM
structure) trained on such images in about a minute on two CPU cores, cached in the user's
cache directory under a key that covers everything the weights depend on. Nothing here is a
file that ships: the weights are regenerated from the code whenever the cache lacks them.

Images are float32 ``[N,3,S,S]`` in [0, 1] and are fed to the model as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._files import atomic_write
from .._progress import progress_bar
from .._validate import positive_int
from ..errors import PREFIX, UserError

__all__ = ["CLASSES", "SyntheticConfig", "generate", "SmallCNN", "load_model", "train", "cache_dir"]

CLASSES = ("disk", "square", "triangle", "cross", "ring")

# Bump when the drawing code changes: cached weights trained on other pictures must not be reused.
_GENERATOR_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Everything the trained weights depend on (hashed into the cache key).

    The defaults train in about a minute on two CPU cores; tests use a smaller config.
    """

    size: int = 64              # image side in pixels
    n_train: int = 3000         # training images (seeded, indices 0..n_train-1 of train_seed)
    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-2
    train_seed: int = 0         # seed of the training images
    init_seed: int = 0          # seed of the weight init and the shuffling
    width: int = 32             # channels of the last conv layer

    def key(self) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "generator": _GENERATOR_VERSION,
                           "torch": torch.__version__}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------

def _object_mask(kind: int, yy: np.ndarray, xx: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = xx - cx, yy - cy
    d2 = dx * dx + dy * dy
    if kind == 0:                                   # disk
        return d2 <= r * r
    if kind == 1:                                   # square (a bit smaller: similar area to the disk)
        h = 0.85 * r
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if kind == 2:                                   # triangle, apex up
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2.0)
    if kind == 3:                                   # plus-shaped cross
        t = r / 3.0
        return ((np.abs(dx) <= t) & (np.abs(dy) <= r)) | ((np.abs(dy) <= t) & (np.abs(dx) <= r))
    if kind == 4:                                   # ring
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    raise ValueError(kind)


def _segment_mask(yy, xx, x0, y0, x1, y1, half_width) -> np.ndarray:
    vx, vy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * vx + (yy - y0) * vy) / max(vx * vx + vy * vy, 1e-9), 0.0, 1.0)
    px, py = x0 + t * vx - xx, y0 + t * vy - yy
    return px * px + py * py <= half_width * half_width


def _render(seed: int, index: int, size: int, with_object: bool = True):
    """One image, its class and its box; every random draw happens whether or not the object is
    drawn, so the image without the object differs from the full one exactly on the object."""
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # Background: a smooth random colour field (4x4 colours, bilinearly upsampled).
    coarse = torch.from_numpy(rng.uniform(0.0, 1.0, (1, 3, 4, 4)))
    img = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0].numpy()
    # Clutter: thin lines in random colours (also in colours like the object's), so colour alone
    # does not tell where the object is.
    for _ in range(int(rng.integers(6, 13))):
        x0, y0 = rng.uniform(0, size, 2)
        angle, length = rng.uniform(0, np.pi), rng.uniform(6, 20)
        x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
        m = _segment_mask(yy, xx, x0, y0, x1, y1, rng.uniform(0.5, 1.2))
        img[:, m] = rng.uniform(0.0, 1.0, (3, 1))
    # The object, on top of everything: fully inside the image.
    kind = int(rng.integers(0, len(CLASSES)))
    r = rng.uniform(0.13, 0.22) * size
    cx, cy = rng.uniform(r + 1, size - 2 - r, 2)
    mask = _object_mask(kind, yy, xx, cx, cy, r)
    bg = img[:, int(cy), int(cx)]
    for _ in range(100):  # a colour that stands out from the background under the object
        colour = rng.uniform(0.0, 1.0, 3)
        if np.linalg.norm(colour - bg) >= 0.4:
            break
    if with_object:
        img[:, mask] = colour[:, None]
    noise = rng.normal(0.0, 0.04, img.shape)
    img = np.clip(img + noise, 0.0, 1.0)
    ys, xs = np.nonzero(mask)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # [x0, y0, x1, y1), exact
    return img.astype(np.float32), kind, box, mask


def generate(n: int, seed: int = 1, size: int = 64, start: int = 0) -> dict:
    """Images ``start .. start+n-1`` of the seeded benchmark.

    Returns a dict of CPU tensors: ``images`` float32 [n,3,size,size] in [0,1], ``labels`` int64
    [n] (indices into CLASSES), ``boxes`` int64 [n,4] as [x0, y0, x1, y1) in pixels (the tight box
    of the object's mask), ``masks`` bool [n,size,size] (the object's pixels). Image i depends only
    on (seed, i, size), so any n gives a prefix of the same sequence. The model trains on seed 0;
    evaluate on another seed (the default 1).
    """
    n = positive_int(n, "n")
    if isinstance(size, bool) or not isinstance(size, int) or size < 24:
        raise UserError(f"{PREFIX}size must be an int >= 24, got {size!r}")
    images = np.empty((n, 3, size, size), np.float32)
    labels = np.empty(n, np.int64)
    boxes = np.empty((n, 4), np.int64)
    masks = np.empty((n, size, size), bool)
    for i in range(n):
        images[i], labels[i], boxes[i], masks[i] = _render(seed, start + i, size)
    return {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels),
            "boxes": torch.from_numpy(boxes), "masks": torch.from_numpy(masks)}


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

class SmallCNN(nn.Module):
    """conv-BN-ReLU x4 (two 2x2 max-pools) -> global average pooling -> linear: the CAM structure.

    The last feature map is size/4 on a side (16x16 for 64x64 images), fine enough to localise.
    ``features`` is the layer to explain (its output is what the pooling averages).
    """

    def __init__(self, num_classes: int = len(CLASSES), width: int = 32):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(*block(3, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2),
                                      *block(32, width), *block(width, width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/actcam_ext``, else ``~/.cache/actcam_ext``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "actcam_ext"


def train(config: SyntheticConfig = SyntheticConfig(), progress: bool = True) -> SmallCNN:
    """Train a SmallCNN on ``config.n_train`` generated images; returns it in eval mode (CPU).

    Deterministic for a config up to floating-point reduction order. The global torch RNG is
    left as it was (fork_rng), since a library must not reseed its caller's randomness.
    """
    data = generate(config.n_train, seed=config.train_seed, size=config.size)
    x, y = data["images"], data["labels"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.init_seed)
        model = SmallCNN(width=config.width)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        steps_per_epoch = (config.n_train + config.batch_size - 1) // config.batch_size
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr,
                                                    total_steps=config.epochs * steps_per_epoch)
        bar = progress_bar(config.epochs * steps_per_epoch, progress, unit="step", desc="training the synthetic model")
        model.train()
        for _ in range(config.epochs):
            order = torch.randperm(config.n_train)
            for s in range(steps_per_epoch):
                idx = order[s * config.batch_size:(s + 1) * config.batch_size]
                xb = x[idx]
                # Random flips: the classes are flip-symmetric except the triangle, whose
                # vertical orientation is fixed, so flip left-right only.
                flip = torch.rand(len(idx)) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
                loss = F.cross_entropy(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if bar is not None:
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                    bar.update()
        if bar is not None:
            bar.close()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_model(config: SyntheticConfig = SyntheticConfig(), device="cpu", progress: bool = True,
               directory: str | os.PathLike | None = None) -> SmallCNN:
    """The trained SmallCNN for ``config``, from the cache or trained now and cached.

    The cache file is ``<cache_dir()>/synthetic-<key>.pt`` where key hashes the config, the
    generator version and the torch version. It is written to a temporary file and renamed, so
    a concurrent or interrupted run never leaves a half-written file under the final name.
    """
    directory = Path(directory) if directory is not None else cache_dir()
    path = directory / f"synthetic-{config.key()}.pt"
    model = SmallCNN(width=config.width)
    state = None
    if path.exists():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:  # a corrupt or foreign file: retrain rather than fail
            print(f"actcam: ignoring unreadable cache file {path} ({exc}); retraining", file=sys.stderr)
            state = None
    if state is None:
        t0 = time.perf_counter()
        model = train(config, progress=progress)
        if progress:
            print(f"actcam: trained the synthetic model in {time.perf_counter() - t0:.0f} s; "
                  f"cached at {path}", file=sys.stderr)
        directory.mkdir(parents=True, exist_ok=True)
        state = model.state_dict()
        atomic_write(path, lambda f: torch.save(state, f))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)
