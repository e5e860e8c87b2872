"""`actcam demo` and `actcam explain` (docs/cli.md).

Numeric and name options are parsed here, not by argparse ``type=``/``choices=``: argparse
reports those with a usage block, and a bad value should read as one line naming the problem
(cli.main prints a UserError as one line, exit code 2).
"""

from __future__ import annotations

import json
import sys

from ..cli import UserError

_METHOD_HELP = "cam | gradcam | gradcam++ | guided-gradcam (default gradcam)"


def register(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo", help="explain scikit-image's bundled photos with CAM, Grad-CAM and Grad-CAM++ (offline)",
        description="Explain the bundled photos (chelsea, coffee, astronaut, rocket) with CAM, Grad-CAM and "
                    "Grad-CAM++ on EfficientNet-Lite0; write pictures and results.json to DIR and print a table.")
    demo.add_argument("--out", default="actcam-demo", metavar="DIR", help="output directory (default ./actcam-demo)")
    demo.add_argument("--top-k", default="3", metavar="K", help="classes per photo (default 3)")
    demo.add_argument("--device", default=None, help="cpu or cuda (default: cuda when visible, else cpu)")
    _common(demo)
    demo.set_defaults(func=_demo)

    ex = subparsers.add_parser(
        "explain", help="heatmaps, overlays and localisation boxes for your images",
        description="For each image and each of its top-k classes (or the --targets class ids): the heatmap, "
                    "the overlay at the image's size with the localisation box, and a contact sheet per image.")
    ex.add_argument("images", nargs="+", metavar="IMAGE", help="8-bit RGB image files")
    ex.add_argument("--method", default="gradcam", help=_METHOD_HELP)
    ex.add_argument("--model", default="efficientnet-lite0",
                    help="efficientnet-lite0 (default) | torchvision:NAME (cached weights only) | PATH to a "
                         "torch.save'd nn.Module or TorchScript file")
    ex.add_argument("--layer", default=None, metavar="NAME", help="target layer (dotted module name)")
    ex.add_argument("--top-k", default="1", metavar="K", help="explain the K best classes (default 1)")
    ex.add_argument("--targets", default=None, metavar="ID,...", help="explain these class ids instead of the top-k")
    ex.add_argument("--out", default="actcam-explain", metavar="DIR", help="output directory (default ./actcam-explain)")
    ex.add_argument("--device", default=None, help="cpu or cuda (default: cuda when visible, else cpu)")
    ex.add_argument("--batch", default="1", metavar="N", help="images per forward/backward (default 1)")
    ex.add_argument("--input-size", default=None, metavar="N|H,W", help="model input size (default: the model's)")
    ex.add_argument("--mean", default=None, metavar="R,G,B", help="normalisation mean on the 0..1 scale")
    ex.add_argument("--std", default=None, metavar="R,G,B", help="normalisation std on the 0..1 scale")
    _common(ex)
    ex.set_defaults(func=_explain)


def _common(p) -> None:
    p.add_argument("--threshold", default="0.2", metavar="T",
                   help="box = largest 8-connected region of map >= T * max (default 0.2, CAM paper)")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")


def _number(text: str, what: str, kind=float):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def _numbers(text: str | None, what: str, kind=float, count=None):
    if text is None:
        return None
    values = [_number(v.strip(), what, kind) for v in text.split(",") if v.strip()]
    if not values or (count is not None and len(values) not in count):
        raise UserError(f"{what} must be {'/'.join(map(str, count)) if count else 'one or more'} comma-separated "
                        f"{'integers' if kind is int else 'numbers'}, got {text!r}")
    return values


def _table(result: dict) -> str:
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


def _report(args, result: dict, out: str) -> int:
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        print(_table(result))
        print(f"wrote {out}/results.json")
    return 0


def _demo(args) -> int:
    from ..explain import demo
    top_k = _number(args.top_k, "--top-k", int)
    result = demo(args.out, top_k=top_k, device=args.device, progress=not args.quiet,
                  threshold=_number(args.threshold, "--threshold"))
    if not args.json and not args.quiet:  # the demo shows each photo's best class only
        result_top1 = {"runs": [dict(r, images=[dict(i, predictions=i["predictions"][:1]) for i in r["images"]])
                                for r in result["runs"]]}
        print(_table(result_top1))
        print(f"wrote {args.out}/results.json (top-{top_k} per photo, pictures and contact sheets)")
        return 0
    return _report(args, result, args.out)


def _explain(args) -> int:
    from ..explain import explain
    size = _numbers(args.input_size, "--input-size", int, count=(1, 2))
    result = explain(args.images, method=args.method, model=args.model,
                     top_k=_number(args.top_k, "--top-k", int),
                     targets=_numbers(args.targets, "--targets", int), layer=args.layer, device=args.device,
                     out_dir=args.out, threshold=_number(args.threshold, "--threshold"),
                     input_size=(size * 2)[:2] if size else None, mean=_numbers(args.mean, "--mean", count=(3,)),
                     std=_numbers(args.std, "--std", count=(3,)), progress=not args.quiet,
                     batch=_number(args.batch, "--batch", int))
    return _report(args, result, args.out)
