"""``actcam demo`` and ``actcam explain``: pictures, boxes and results.json for images."""

from __future__ import annotations

import functools
import json
import sys

from ..methods import method_name
from ..pipeline import Explainer, demo, explain
from ._args import (batch_option, device_option, explain_options, image_weight_option, json_option,
                    max_pixels_option, method_option, model_kwargs, model_options, quiet_option, speed_options,
                    targets_option, task_options, threshold_option, top_k_option)


def register(subparsers) -> None:
    d = subparsers.add_parser(
        "demo", parents=[top_k_option(3), device_option(), threshold_option(), json_option(), quiet_option()],
        help="explain scikit-image's bundled photos with CAM, Grad-CAM and Grad-CAM++ (offline)",
        description="Explain the bundled photos (chelsea, coffee, astronaut, rocket) with CAM, Grad-CAM and "
                    "Grad-CAM++ on EfficientNet-Lite0; write pictures and results.json to DIR and print each "
                    "photo's best class.")
    d.add_argument("--out", default="actcam-demo", metavar="DIR", help="output directory (default ./actcam-demo)")
    d.set_defaults(func=run_demo)

    e = subparsers.add_parser(
        "explain", parents=[method_option(), model_options(), device_option(), speed_options(), top_k_option(),
                            task_options(), targets_option(), threshold_option(), image_weight_option(),
                            max_pixels_option(), batch_option(1, "images"), json_option(), quiet_option()],
        help="heatmaps, overlays and localisation boxes for your images",
        description="For each image and each of its top-k classes (or the --targets class ids): the heatmap, "
                    "the overlay at the image's size with the localisation box, and a contact sheet per image; "
                    "results.json lists them all.")
    e.add_argument("images", nargs="+", metavar="IMAGE", help="8-bit RGB image files")
    e.add_argument("--out", default="actcam-explain", metavar="DIR",
                   help="output directory (default ./actcam-explain)")
    e.set_defaults(func=run_explain)


def table(result: dict) -> str:
    """image | method | class | score | box, one line per explained class."""
    rows = [("image", "method", "class", "score", "box [x0,y0,x1,y1)")]
    for run in result.get("runs", [result]):
        for img in run["images"]:
            name = (img["path"] or "array").removeprefix("skimage.data.")
            for p in img["predictions"]:
                rows.append((name, run["method"], f"{p['class_id']} {p['label'].split(',')[0]}",
                             f"{p['score']:.3f}", "[" + ", ".join(map(str, p["box"])) + "]"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _print_json(result: dict) -> None:
    json.dump(result, sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def run_demo(args) -> int:
    result = demo(args.out, top_k=args.top_k, threshold=args.threshold, device=args.device,
                  progress=not args.quiet)
    if args.json:
        _print_json(result)
    elif not args.quiet:  # the demo shows each photo's best class only
        top1 = {"runs": [dict(r, images=[dict(i, predictions=i["predictions"][:1]) for i in r["images"]])
                         for r in result["runs"]]}
        print(table(top1))
        print(f"wrote {args.out}/results.json (top-{args.top_k} per photo, pictures and contact sheets)")
    return 0


def run_explain(args) -> int:
    method_name(args.method)  # an unknown name is reported before any image is read
    options = explain_options(args)
    explainer = functools.partial(Explainer.load, args.method, args.model, layer=args.layer, reshape=args.reshape,
                                  device=args.device, precision=args.precision, compile=args.compile,
                                  task=args.task, **model_kwargs(args))
    result = explain(args.images, explainer, options, args.out, progress=not args.quiet)
    if args.json:
        _print_json(result)
    elif not args.quiet:
        print(table(result))
        print(f"wrote {args.out}/results.json")
    return 0
