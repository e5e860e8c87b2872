"""Right for the right reasons: a CAM penalty in training removes a spurious cue.

The synthetic benchmark's images get a spurious cue: an 8x8 mark in the top-left corner whose
colour names the class. A small GAP+FC CNN trained on them with cross-entropy alone learns the
mark; trained with a penalty on the share of its CAM mass outside the object's box ("right for
the right reasons", Ross et al. 2017, here on CAM maps made differentiable with
``create_graph=True``), it learns the shapes. ``compare`` trains both from the same seeds and
measures accuracy on test images whose mark names the wrong class (the cue flipped) and the
pointing game (the CAM maximum inside the box). docs/training.md has the figures.

    python -m actcam_ext.evaluation.right_reasons [--seeds 0,1,2] [--out results.json] [--figure picture.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import warnings

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics, render
from .._progress import progress_bar
from ..methods import CAM
from .synthetic import CLASSES, SmallCNN, generate

__all__ = ["CUE_COLOURS", "add_cue", "RightReasonsConfig", "train", "evaluate", "compare", "outside_share", "figure"]

# One saturated colour per class (RGB in [0, 1]).
CUE_COLOURS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
CUE_SIZE = 8


def add_cue(images: torch.Tensor, labels: torch.Tensor, flipped: bool = False) -> torch.Tensor:
    """A copy of ``images`` [N,3,S,S] with the class mark in the top-left corner: the colour of
    each image's class, or with ``flipped`` the colour of the next class (the cue lies)."""
    out = images.clone()
    cls = (labels + 1) % len(CLASSES) if flipped else labels
    out[:, :, :CUE_SIZE, :CUE_SIZE] = CUE_COLOURS[cls][:, :, None, None]
    return out


def _inside(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Bool [N,S,S]: the pixels inside each box [x0, y0, x1, y1)."""
    ar = torch.arange(size)
    x0, y0, x1, y1 = (boxes[:, i, None] for i in range(4))
    cols = (ar >= x0) & (ar < x1)
    rows = (ar >= y0) & (ar < y1)
    return rows[:, :, None] & cols[:, None, :]


def outside_share(maps: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Mean over images of the share of each map's mass outside its box (differentiable)."""
    total = maps.sum(dim=(1, 2)) + 1e-6
    return ((maps * ~inside).sum(dim=(1, 2)) / total).mean()


@dataclasses.dataclass(frozen=True)
class RightReasonsConfig:
    """The experiment's settings (defaults: a few minutes on two CPU cores for three seeds)."""

    size: int = 64
    n_train: int = 2000
    n_test: int = 400
    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-2
    width: int = 32
    penalty: float = 1.0        # weight of the outside-the-box share in the loss
    train_seed: int = 0         # images
    test_seed: int = 1


def train(config: RightReasonsConfig, penalty: float, seed: int, progress: bool = False) -> SmallCNN:
    """A SmallCNN trained on cued images, with ``penalty`` x the CAM share outside the box added to
    the cross-entropy (0: cross-entropy alone). Deterministic for (config, penalty, seed)."""
    data = generate(config.n_train, seed=config.train_seed, size=config.size)
    x = add_cue(data["images"], data["labels"])
    y, inside = data["labels"], _inside(data["boxes"], config.size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(width=config.width)
        cam = CAM(model)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        steps = (config.n_train + config.batch_size - 1) // config.batch_size
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps)
        bar = progress_bar(config.epochs * steps, progress, unit="step",
                           desc=f"training (penalty {penalty:g}, seed {seed})")
        model.train()
        with warnings.catch_warnings():  # training mode is the point here
            warnings.filterwarnings("ignore", message=".*training mode.*", category=RuntimeWarning)
            for _ in range(config.epochs):
                order = torch.randperm(config.n_train)
                for s in range(steps):
                    idx = order[s * config.batch_size:(s + 1) * config.batch_size]
                    xb, yb = x[idx], y[idx]
                    if penalty:
                        e = cam.explain(xb, yb, create_graph=True)  # one forward: logits and maps
                        loss = F.cross_entropy(e.logits, yb) + penalty * outside_share(e.maps, inside[idx])
                    else:
                        loss = F.cross_entropy(model(xb), yb)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    if bar is not None:
                        bar.update()
        if bar is not None:
            bar.close()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def evaluate(model: SmallCNN, config: RightReasonsConfig) -> dict:
    """Accuracy with the cue as in training and flipped, the pointing game and the CAM share
    outside the box on the flipped images (the maps of the true class)."""
    data = generate(config.n_test, seed=config.test_seed, size=config.size)
    y, boxes = data["labels"], data["boxes"]
    aligned, flipped = add_cue(data["images"], y), add_cue(data["images"], y, flipped=True)
    with torch.no_grad():
        acc_aligned = float((model(aligned).argmax(1) == y).float().mean() * 100)
        acc_flipped = float((model(flipped).argmax(1) == y).float().mean() * 100)
    maps = CAM(model)(flipped, y)
    return {"accuracy_cue_aligned": acc_aligned, "accuracy_cue_flipped": acc_flipped,
            "pointing_game": metrics.pointing_game(maps, boxes)["accuracy"],
            "outside_share": float(outside_share(maps, _inside(boxes, config.size)))}


def compare(config: RightReasonsConfig = RightReasonsConfig(), seeds=(0, 1, 2), progress: bool = False) -> dict:
    """Train with and without the penalty for every seed; per-seed results and mean/spread."""
    runs = {"cross-entropy": [], "with CAM penalty": []}
    for seed in seeds:
        for name, penalty in (("cross-entropy", 0.0), ("with CAM penalty", config.penalty)):
            runs[name].append(evaluate(train(config, penalty, seed, progress), config))
    summary = {}
    for name, rows in runs.items():
        summary[name] = {k: {"mean": statistics.fmean(r[k] for r in rows),
                             "min": min(r[k] for r in rows), "max": max(r[k] for r in rows)} for k in rows[0]}
    return {"config": dataclasses.asdict(config), "seeds": list(seeds), "runs": runs, "summary": summary}


def figure(plain: SmallCNN, penalised: SmallCNN, config: RightReasonsConfig, n: int = 6, scale: int = 3) -> np.ndarray:
    """A picture: test images with the cue flipped (top row), the CAM of their true class under the
    cross-entropy model (middle) and under the penalised one (bottom), box in green."""
    data = generate(n, seed=config.test_seed, size=config.size)
    y, boxes = data["labels"], data["boxes"]
    x = add_cue(data["images"], y, flipped=True)
    rgb = [(im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for im in x]
    big = [np.kron(im, np.ones((scale, scale, 1), np.uint8)) for im in rgb]
    rows = [list(big)]
    for model in (plain, penalised):
        maps = CAM(model)(x, y)
        up = F.interpolate(maps[:, None], scale_factor=scale, mode="bilinear", align_corners=False)[:, 0]
        rows.append([render.draw_box(render.overlays(up[i:i + 1], big[i])[0], (boxes[i] * scale).tolist())
                     for i in range(n)])
    gap = 4
    h, w = big[0].shape[:2]
    out = np.full((3 * h + 2 * gap, n * w + (n - 1) * gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, pic in enumerate(row):
            out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = pic
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default=None, help="write results.json here")
    parser.add_argument("--figure", default=None, help="write the picture of seed 0's maps here (PNG)")
    args = parser.parse_args(argv)
    if args.figure:
        config = RightReasonsConfig()
        picture = figure(train(config, 0.0, 0, True), train(config, config.penalty, 0, True), config)
        cv2.imwrite(args.figure, picture[:, :, ::-1])
        return 0
    result = compare(seeds=tuple(int(s) for s in args.seeds.split(",")), progress=True)
    for name, row in result["summary"].items():
        print(name, {k: f"{v['mean']:.1f} [{v['min']:.1f}, {v['max']:.1f}]" for k, v in row.items()})
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
