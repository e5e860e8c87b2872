"""``actcam evaluate``: score CAM, Grad-CAM and Grad-CAM++ with the papers' metrics.

Datasets: ``synthetic`` (default; the seeded localisation benchmark with its small GAP+FC CNN,
trained on first use and cached: exact boxes, so every column is filled); ``photos``
(scikit-image's bundled photos on EfficientNet-Lite0 or ``--model``; no boxes); a directory of
images (the same, for your own pictures). The table goes to stdout; ``--out DIR`` gets
``evaluate.md`` and ``evaluate.json`` (per-image values included). Formulas: docs/evaluate.md.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import torch

from .._files import atomic_write_text, write_json
from ..errors import PREFIX, UserError
from ..evaluation import benchmark, synthetic
from ..images import DEMO_IMAGES, IMAGE_EXTS, demo_photos, read_image
from ..methods import HEATMAP_METHODS, method_name
from ..models import load_model, require_classifier, resolve_device
from ._args import (batch_option, device_option, model_kwargs, model_options, positive_int, quiet_option, say,
                    threshold_option)

SYNTHETIC_N = 200


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", parents=[model_options(None, "; for --dataset photos or DIR (the synthetic dataset has its "
                                                 "own small CNN)"), device_option(), threshold_option(),
                             batch_option(32, "images"), quiet_option()],
        help="score CAM, Grad-CAM and Grad-CAM++ with faithfulness and localisation metrics",
        description="Score explanation methods the papers' way: Average Drop, Increase in Confidence and "
                    "Win % (Grad-CAM++ sec. 4.1), RISE deletion/insertion AUC, pointing game and box "
                    "localisation (IoU >= 0.5). Prints a markdown table and writes evaluate.md and "
                    "evaluate.json to --out.")
    p.add_argument("--methods", default="cam,gradcam,gradcam++", metavar="NAME,...",
                   help=f"comma-separated: {', '.join(HEATMAP_METHODS)} (default: cam,gradcam,gradcam++)")
    p.add_argument("--dataset", default="synthetic", metavar="synthetic|photos|DIR",
                   help="synthetic (seeded shapes with exact boxes, default), photos (scikit-image's bundled "
                        "photos, no boxes) or a directory of images (no boxes)")
    p.add_argument("--n", type=positive_int, default=None, metavar="N",
                   help=f"number of images (synthetic: default {SYNTHETIC_N}; photos/DIR: default all)")
    p.add_argument("--out", default="actcam-evaluate", metavar="DIR",
                   help="output directory (default: actcam-evaluate)")
    p.add_argument("--steps", type=positive_int, default=50, metavar="N",
                   help="deletion/insertion steps: pixels move in n equal shares (default 50)")
    p.add_argument("--seed", type=int, default=1, metavar="S",
                   help="seed of the synthetic test images (default 1; the model trains on seed 0)")
    p.add_argument("--train-images", type=positive_int, default=synthetic.SyntheticConfig.n_train, metavar="N",
                   help=f"synthetic model: training images (default {synthetic.SyntheticConfig.n_train})")
    p.add_argument("--train-epochs", type=positive_int, default=synthetic.SyntheticConfig.epochs, metavar="N",
                   help=f"synthetic model: training epochs (default {synthetic.SyntheticConfig.epochs})")
    p.set_defaults(func=run)


def _methods(text: str) -> list[str]:
    names = list(dict.fromkeys(method_name(raw, HEATMAP_METHODS) for raw in text.split(",") if raw.strip()))
    if not names:
        raise UserError(f"{PREFIX}--methods is empty; choose from {', '.join(HEATMAP_METHODS)}")
    return names


def _synthetic(args, device):
    if args.model is not None:
        raise UserError(f"{PREFIX}--dataset synthetic uses its own small CNN (5 shape classes, 64x64 inputs); "
                        "--model applies to --dataset photos or a directory")
    config = synthetic.SyntheticConfig(n_train=args.train_images, epochs=args.train_epochs)
    model = synthetic.load_model(config, device=device, progress=not args.quiet)
    n = args.n or SYNTHETIC_N
    data = synthetic.generate(n, seed=args.seed, size=config.size)
    desc = (f"synthetic benchmark: {n} images {config.size}x{config.size} (seed {args.seed}), "
            f"{len(synthetic.CLASSES)} classes ({', '.join(synthetic.CLASSES)}), one object each at an exact box; "
            f"model: SmallCNN (GAP+FC) trained on {config.n_train} images x {config.epochs} epochs (seed "
            f"{config.train_seed})")
    return model, data["images"].to(device), data["boxes"], data["labels"].to(device), "synthetic SmallCNN", desc


def _photos(args, device):
    if args.dataset == "photos":
        names = list(DEMO_IMAGES)[:args.n] if args.n else list(DEMO_IMAGES)
        images = [rgb for rgb, _ in demo_photos(names)]
        what = f"scikit-image photos ({', '.join(names)})"
    else:
        folder = Path(args.dataset)
        if not folder.is_dir():
            raise UserError(f"{PREFIX}--dataset {args.dataset!r} is neither synthetic, photos nor a directory")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        if not files:
            raise UserError(f"{PREFIX}no images ({', '.join(sorted(IMAGE_EXTS))}) in directory {args.dataset!r}")
        files = files[:args.n] if args.n else files
        images = [read_image(p) for p in files]
        what = f"{len(files)} images from {args.dataset}"
    model, pre = load_model(args.model, device, **model_kwargs(args))
    require_classifier(model, "evaluate")
    x = pre(images, device=device)
    spec = args.model or "efficientnet-lite0"
    desc = f"{what}; model: {spec}, input {x.shape[-1]}x{x.shape[-2]}; no boxes (faithfulness only)"
    return model, x, None, None, spec, desc


def _command_line(args) -> str:
    parts = ["actcam", "evaluate", "--methods", args.methods, "--dataset", args.dataset]
    if args.model:
        parts += ["--model", args.model]
    if args.layer:
        parts += ["--layer", args.layer]
    if args.n:
        parts += ["--n", str(args.n)]
    parts += ["--steps", str(args.steps)]
    if args.dataset == "synthetic":
        parts += ["--seed", str(args.seed)]
        if (args.train_images, args.train_epochs) != (synthetic.SyntheticConfig.n_train,
                                                      synthetic.SyntheticConfig.epochs):
            parts += ["--train-images", str(args.train_images), "--train-epochs", str(args.train_epochs)]
    if args.threshold != 0.2:
        parts += ["--threshold", str(args.threshold)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args) -> int:
    names = _methods(args.methods)
    device = resolve_device(args.device)
    t_start = time.perf_counter()
    if args.dataset == "synthetic":
        model, x, boxes, labels, model_name, desc = _synthetic(args, device)
        layer = args.layer or "features"
    else:
        model, x, boxes, labels, model_name, desc = _photos(args, device)
        layer = args.layer
    per, info = benchmark.evaluate(model, x, names, boxes=boxes, labels=labels, layer=layer, reshape=args.reshape,
                                   steps=args.steps, threshold=args.threshold, batch=args.batch,
                                   progress=not args.quiet)
    rows = benchmark.rows(per)
    table = benchmark.markdown(rows)
    command = _command_line(args)
    header = [f"Dataset: {desc}.",
              "Explained class: the model's top-1" +
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
        atomic_write_text(out / "evaluate.md", md)
        write_json(out / "evaluate.json", {
            "command": command, "dataset": args.dataset, "description": desc, "model": model_name,
            "device": device.type, "torch": torch.__version__, "steps": args.steps, "threshold": args.threshold,
            "total_seconds": total, **info, "rows": rows,
            "per_image": {name: {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in r.items()}
                          for name, r in per.items()}})
    except OSError as exc:
        raise UserError(f"{PREFIX}cannot write to --out {args.out!r}: {exc.strerror or exc}") from None
    if not args.quiet:
        say(f"wrote {out / 'evaluate.md'} and {out / 'evaluate.json'}")
    return 0
