"""`actcam batch` (docs/video.md): every image under a folder, resumable, sharded under torchrun."""

from __future__ import annotations

import sys

from .explain import _number, _numbers


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch", help="explain every image under a folder into OUT/results.jsonl (resumable; torchrun shards)",
        description="Explain every image under DIR (recursive; jpg, png, bmp, tif, webp, ...). One line per image "
                    "in OUT/results.jsonl (explain's per-image record), overlay and heatmap per image. Unreadable "
                    "files are reported in OUT/errors.jsonl and skipped; a rerun skips images already done. Under "
                    "torchrun each process takes a disjoint shard and rank 0 merges the results.")
    p.add_argument("dir", metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder (created; reused to resume)")
    p.add_argument("--method", default="gradcam", help="cam | gradcam | gradcam++ | guided-gradcam (default gradcam)")
    p.add_argument("--model", default="efficientnet-lite0",
                   help="efficientnet-lite0 (default) | torchvision:NAME | PATH (as in actcam explain)")
    p.add_argument("--layer", default=None, metavar="NAME", help="target layer (dotted module name)")
    p.add_argument("--batch", default="8", metavar="N",
                   help="images per forward/backward (default 8; any sizes mix, each map at its image's size)")
    p.add_argument("--top-k", default="1", metavar="K", help="explain the K best classes (default 1)")
    p.add_argument("--targets", default=None, metavar="ID,...", help="explain these class ids instead of the top-k")
    p.add_argument("--device", default=None,
                   help="cpu or cuda (default: cuda when visible, else cpu; under torchrun cuda:LOCAL_RANK)")
    p.add_argument("--threshold", default="0.2", metavar="T", help="box threshold relative to the map's max")
    p.add_argument("--image-weight", default="0.5", metavar="W", help="weight of the image in the overlay")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    p.set_defaults(func=_batch)


def _batch(args) -> int:
    from ..batch import explain_folder
    s = explain_folder(args.dir, args.out, method=args.method, model=args.model, layer=args.layer,
                       top_k=_number(args.top_k, "--top-k", int), targets=_numbers(args.targets, "--targets", int),
                       device=args.device, threshold=_number(args.threshold, "--threshold"),
                       image_weight=_number(args.image_weight, "--image-weight"),
                       batch=_number(args.batch, "--batch", int), progress=not args.quiet)
    if not args.quiet:
        who = f"rank {s['rank']}/{s['world']}: " if s["world"] > 1 else ""
        rate = s["explained"] / s["seconds"] if s["seconds"] > 0 else 0.0
        print(f"actcam batch: {who}{s['explained']} images explained, {s['errors']} unreadable, "
              f"{s['done_before']} done before (of {s['images']}) in {s['seconds']:.1f} s ({rate:.2f} images/s)"
              + (f"; {args.out}/results.jsonl has {s['total']} images" if s["total"] is not None else ""),
              file=sys.stderr)
    return 0
