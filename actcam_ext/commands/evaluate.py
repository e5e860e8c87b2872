"""``actcam evaluate``: compare CAM, Grad-CAM and Grad-CAM++ with the papers' metrics.

Datasets:

- ``synthetic`` (default): the seeded localisation benchmark of ``actcam_ext.synthetic`` with
  its small GAP+FC CNN (trained on first use, about a minute, then cached). Exact boxes, so
  every column is filled.
- ``photos``: scikit-image's bundled photos on EfficientNet-Lite0 (or ``--model``); no boxes,
  so the pointing game and localisation columns stay empty.
- a directory of images: the same, for the user's own pictures.

The table goes to stdout; ``--out DIR`` gets ``evaluate.md`` and ``evaluate.json`` (per-image
values included). Formulas: docs/evaluate.md and ``actcam_ext.metrics``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from ..cli import UserError

METHODS = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}
_ALIASES = {"gradcampp": "gradcam++", "grad-cam": "gradcam", "grad-cam++": "gradcam++"}
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SYNTHETIC_N = 200
# Drops (in %) closer than this are a tie in Win %: CAM and Grad-CAM give the same maps up to
# float rounding on a GAP+FC network, and their ~1e-5 differences must not count as wins.
WIN_ATOL = 1e-3
# The maps are timed on this many passes over the images, keeping the fastest: on a shared
# machine a single pass measures the neighbours' load as much as the method.
TIMING_PASSES = 3


def register(subparsers) -> None:
    from ..synthetic import SyntheticConfig
    p = subparsers.add_parser(
        "evaluate", help="score CAM, Grad-CAM and Grad-CAM++ with faithfulness and localisation metrics",
        description="Score explanation methods the papers' way: Average Drop, Increase in Confidence and "
                    "Win % (Grad-CAM++ sec. 4.1), RISE deletion/insertion AUC, pointing game and box "
                    "localisation (IoU >= 0.5). Prints a markdown table and writes evaluate.md and "
                    "evaluate.json to --out.")
    p.add_argument("--methods", default="cam,gradcam,gradcam++",
                   help="comma-separated: cam, gradcam, gradcam++ (default: all three)")
    p.add_argument("--dataset", default="synthetic",
                   help="synthetic (seeded shapes with exact boxes, default), photos (scikit-image's bundled "
                        "photos, no boxes) or a directory of images (no boxes)")
    p.add_argument("--model", default=None,
                   help="for photos/DIR: efficientnet-lite0 (default), torchvision:NAME or a saved model file; "
                        "the synthetic dataset always uses its own small CNN")
    p.add_argument("--n", type=int, default=None,
                   help=f"number of images (synthetic: default {SYNTHETIC_N}; photos/DIR: default all)")
    p.add_argument("--out", default="actcam-evaluate", help="output directory (default: actcam-evaluate)")
    p.add_argument("--steps", type=int, default=50,
                   help="deletion/insertion steps: pixels move in n equal shares (default 50)")
    p.add_argument("--threshold", type=float, default=0.2,
                   help="box threshold as a fraction of each map's maximum (default 0.2, the CAM paper's)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the synthetic test images (default 1; the model trains on seed 0)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--layer", default=None,
                   help="target layer for Grad-CAM/Grad-CAM++ (default: the model's feature map before pooling)")
    p.add_argument("--train-images", type=int, default=SyntheticConfig.n_train,
                   help=f"synthetic model: training images (default {SyntheticConfig.n_train})")
    p.add_argument("--train-epochs", type=int, default=SyntheticConfig.epochs,
                   help=f"synthetic model: training epochs (default {SyntheticConfig.epochs})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def _parse_methods(text: str) -> list[str]:
    names = []
    for raw in text.split(","):
        name = raw.strip().lower()
        name = _ALIASES.get(name, name)
        if not name:
            continue
        if name not in METHODS:
            raise UserError(f"unknown method {raw.strip()!r} in --methods; choose from {', '.join(METHODS)}")
        if name not in names:
            names.append(name)
    if not names:
        raise UserError("--methods is empty; choose from " + ", ".join(METHODS))
    return names


def _check_args(args) -> None:
    for name, value, low in (("--n", args.n, 1), ("--steps", args.steps, 1), ("--batch-size", args.batch_size, 1),
                             ("--train-images", args.train_images, 1), ("--train-epochs", args.train_epochs, 1)):
        if value is not None and value < low:
            raise UserError(f"{name} must be >= {low}, got {value}")
    if not 0 <= args.threshold <= 1:
        raise UserError(f"--threshold must be in [0, 1], got {args.threshold}")


def _synthetic(args, device):
    from .. import synthetic
    if args.model not in (None, "synthetic"):
        raise UserError("--dataset synthetic uses its own small CNN (5 shape classes, 64x64 inputs); "
                        "--model applies to --dataset photos or a directory")
    config = synthetic.SyntheticConfig(n_train=args.train_images, epochs=args.train_epochs)
    model = synthetic.load_model(config, device=device, progress=not args.no_progress)
    n = args.n or SYNTHETIC_N
    data = synthetic.generate(n, seed=args.seed, size=config.size)
    desc = (f"synthetic benchmark: {n} images {config.size}x{config.size} (seed {args.seed}), "
            f"{len(synthetic.CLASSES)} classes ({', '.join(synthetic.CLASSES)}), one object each at an exact box; "
            f"model: SmallCNN (GAP+FC) trained on {config.n_train} images x {config.epochs} epochs (seed "
            f"{config.train_seed})")
    return model, data["images"].to(device), data["boxes"], data["labels"].to(device), args.layer or "features", \
        "synthetic SmallCNN", desc


def _photos(args, device):
    from ..explain import DEMO_IMAGES, read_image
    from ..models import load_model
    if args.dataset == "photos":
        try:
            import skimage.data
        except ImportError:
            raise UserError("--dataset photos needs scikit-image; pip install scikit-image") from None
        names = list(DEMO_IMAGES)[:args.n] if args.n else list(DEMO_IMAGES)
        images = [getattr(skimage.data, name)() for name in names]
        what = f"scikit-image photos ({', '.join(names)})"
    else:
        folder = Path(args.dataset)
        if not folder.is_dir():
            raise UserError(f"--dataset {args.dataset!r} is neither synthetic, photos nor a directory")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_EXTS and p.is_file())
        if not files:
            raise UserError(f"no images ({', '.join(_IMAGE_EXTS)}) in directory {args.dataset!r}")
        files = files[:args.n] if args.n else files
        images = [read_image(p) for p in files]
        what = f"{len(files)} images from {args.dataset}"
    model, pre = load_model(args.model, device)
    x = pre(images, device=device)
    spec = args.model or "efficientnet-lite0"
    desc = f"{what}; model: {spec}, input {x.shape[-1]}x{x.shape[-2]}; no boxes (faithfulness only)"
    return model, x, None, None, args.layer or pre.target_layer, spec, desc


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

def _make_method(name: str, model, layer):
    from .. import methods
    if name == "cam":
        return methods.CAM(model)  # the input of the model's global pooling: the features CAM weights
    cls = methods.GradCAM if name == "gradcam" else methods.GradCAMPlusPlus
    return cls(model, target_layer=layer)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _evaluate(model, x, boxes, labels, layer, names, args, device) -> tuple[dict, dict]:
    from .. import metrics
    N = x.shape[0]
    bs = args.batch_size
    batches = [(i, min(i + bs, N)) for i in range(0, N, bs)]
    with torch.no_grad():
        logits = torch.cat([model(x[a:b]) for a, b in batches])
    targets = logits.argmax(1)  # every method explains the same class: the model's top-1
    correct = (targets == labels) if labels is not None else None
    bar = None
    if not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=len(names) * N, unit="img", desc="evaluating", file=sys.stderr, leave=False)
    per = {}
    try:
        for name in names:
            method = _make_method(name, model, layer)
            # Warm-up (untimed): first-call costs (allocator, kernels) are not the method's.
            method(x[:min(bs, N)], targets=targets[:min(bs, N)])
            acc = {k: [] for k in ("drops", "increased", "deletion_auc", "insertion_auc", "hits_pg", "iou", "hits_loc")}
            seconds = 0.0
            for a, b in batches:
                xb, tb = x[a:b], targets[a:b]
                _sync(device)
                t0 = time.perf_counter()
                maps = method(xb, targets=tb)
                _sync(device)
                seconds += time.perf_counter() - t0
                cc = metrics.confidence_change(model, xb, maps, tb)
                di = metrics.deletion_insertion(model, xb, maps, tb, steps=args.steps)
                acc["drops"].append(cc["drops"])
                acc["increased"].append(cc["increased"])
                acc["deletion_auc"].append(di["deletion_auc"])
                acc["insertion_auc"].append(di["insertion_auc"])
                if boxes is not None:
                    cb = correct[a:b]
                    pg = metrics.pointing_game(maps, boxes[a:b], correct=cb)
                    loc = metrics.localisation(maps, boxes[a:b], threshold=args.threshold, correct=cb)
                    acc["hits_pg"].append(pg["hits"])
                    acc["iou"].append(loc["iou"])
                    acc["hits_loc"].append(loc["hits"])
                if bar is not None:
                    bar.update(b - a)
            for _ in range(TIMING_PASSES - 1):
                _sync(device)
                t0 = time.perf_counter()
                for a, b in batches:
                    method(x[a:b], targets=targets[a:b])
                _sync(device)
                seconds = min(seconds, time.perf_counter() - t0)
            cat = {k: torch.cat(v).cpu() for k, v in acc.items() if v}
            cat["seconds"] = seconds
            per[name] = cat
    finally:
        if bar is not None:
            bar.close()
    info = {"n": N, "targets": targets.cpu().tolist()}
    if correct is not None:
        info["classification_accuracy"] = float(correct.float().mean() * 100)
    return per, info


def _rows(per: dict) -> list[dict]:
    from .. import metrics
    rows = []
    for name, r in per.items():
        row = {"method": METHODS[name],
               "average_drop": float(r["drops"].mean()),
               "increase_in_confidence": float(r["increased"].float().mean() * 100),
               "win_vs_gradcam": metrics.win_percent(r["drops"], per["gradcam"]["drops"], atol=WIN_ATOL) if "gradcam" in per else None,
               "deletion_auc": float(r["deletion_auc"].mean()),
               "insertion_auc": float(r["insertion_auc"].mean()),
               "pointing_game": float(r["hits_pg"].float().mean() * 100) if "hits_pg" in r else None,
               "localisation_accuracy": float(r["hits_loc"].float().mean() * 100) if "hits_loc" in r else None,
               "mean_iou": float(r["iou"].mean()) if "iou" in r else None,
               "ms_per_image": r["seconds"] / len(r["drops"]) * 1000}
        rows.append(row)
    return rows


_COLUMNS = (("method", "method", None), ("average_drop", "Avg Drop % ↓", 2),
            ("increase_in_confidence", "Increase % ↑", 2), ("win_vs_gradcam", "Win % vs Grad-CAM ↑", 2),
            ("deletion_auc", "Deletion AUC ↓", 4), ("insertion_auc", "Insertion AUC ↑", 4),
            ("pointing_game", "Pointing % ↑", 1), ("localisation_accuracy", "Loc. acc % ↑", 1),
            ("mean_iou", "mean IoU ↑", 3), ("ms_per_image", "ms / image (maps)", 2))


def _markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in _COLUMNS) + " |",
             "|" + "|".join("---" if key == "method" else "---:" for key, _, _ in _COLUMNS) + "|"]
    for row in rows:
        cells = []
        for key, _, digits in _COLUMNS:
            v = row[key]
            cells.append(v if digits is None else ("–" if v is None else f"{v:.{digits}f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _command_line(args) -> str:
    parts = ["actcam", "evaluate", "--methods", args.methods, "--dataset", args.dataset]
    if args.model:
        parts += ["--model", args.model]
    if args.n:
        parts += ["--n", str(args.n)]
    parts += ["--steps", str(args.steps)]
    if args.dataset == "synthetic":
        parts += ["--seed", str(args.seed)]
        from ..synthetic import SyntheticConfig
        if (args.train_images, args.train_epochs) != (SyntheticConfig.n_train, SyntheticConfig.epochs):
            parts += ["--train-images", str(args.train_images), "--train-epochs", str(args.train_epochs)]
    if args.threshold != 0.2:
        parts += ["--threshold", str(args.threshold)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args) -> int:
    from ..models import resolve_device
    _check_args(args)
    names = _parse_methods(args.methods)
    device = resolve_device(args.device)
    t_start = time.perf_counter()
    if args.dataset == "synthetic":
        model, x, boxes, labels, layer, model_name, desc = _synthetic(args, device)
    else:
        model, x, boxes, labels, layer, model_name, desc = _photos(args, device)
    try:
        per, info = _evaluate(model, x, boxes, labels, layer, names, args, device)
    except ValueError as exc:  # e.g. CAM on a model without GAP+FC, or a layer name that is not there
        raise UserError(str(exc).removeprefix("actcam: ")) from None
    rows = _rows(per)
    table = _markdown(rows)
    command = _command_line(args)
    header = [f"Dataset: {desc}.",
              f"Explained class: the model's top-1" +
              (f" (classification accuracy {info['classification_accuracy']:.1f}%; pointing and localisation "
               f"count a wrong class as a miss)" if "classification_accuracy" in info else "") +
              f". Deletion/insertion: {args.steps} steps" +
              (f"; boxes at {args.threshold:g} x max, hit at IoU >= 0.5" if boxes is not None else "") +
              f". Device: {device.type}, torch {torch.__version__}, {torch.get_num_threads()} threads."]
    total = time.perf_counter() - t_start
    md = "\n\n".join([f"`{command}`", *header, table, f"Total time: {total:.1f} s."]) + "\n"
    print(md, end="")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluate.md").write_text(md)
        payload = {"command": command, "dataset": args.dataset, "description": desc, "model": model_name,
                   "device": device.type, "torch": torch.__version__, "steps": args.steps,
                   "threshold": args.threshold, "total_seconds": total, **info, "rows": rows,
                   "per_image": {name: {k: (v.tolist() if isinstance(v, torch.Tensor) else v)
                                        for k, v in r.items()} for name, r in per.items()}}
        tmp = out / ".evaluate.json.tmp"
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, out / "evaluate.json")
    except OSError as exc:
        raise UserError(f"cannot write to --out {args.out!r}: {exc.strerror or exc}") from None
    print(f"wrote {out / 'evaluate.md'} and {out / 'evaluate.json'}", file=sys.stderr)
    return 0
