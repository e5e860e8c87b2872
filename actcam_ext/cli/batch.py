"""``actcam batch``: every image under a folder, resumable, sharded under torchrun (docs/video.md)."""

from __future__ import annotations

from ..methods import method_name
from ..pipeline import Explainer, explain_folder
from ..pipeline.folder import rank_device
from ._args import (batch_option, device_option, explain_options, image_weight_option, max_pixels_option,
                    method_option, model_kwargs, model_options, quiet_option, say, speed_options, targets_option,
                    task_options, threshold_option, top_k_option)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch", parents=[method_option(), model_options(), device_option(), speed_options(), top_k_option(),
                          task_options(), targets_option(), threshold_option(), image_weight_option(),
                          max_pixels_option(), batch_option(8, "images"), quiet_option()],
        help="explain every image under a folder into OUT/results.jsonl (resumable; torchrun shards)",
        description="Explain every image under DIR (recursive; jpg, png, bmp, tif, webp, ...). One line per image "
                    "in OUT/results.jsonl (explain's per-image record), overlay and heatmap per image. Unreadable "
                    "files are reported in OUT/errors.jsonl and skipped; a rerun skips images already done. Under "
                    "torchrun each process takes a disjoint shard and rank 0 merges the results; on a GPU each "
                    "process uses cuda:LOCAL_RANK.")
    p.add_argument("dir", metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder (created; reused to resume)")
    p.set_defaults(func=run)


def run(args) -> int:
    method_name(args.method)
    options = explain_options(args)
    explainer = Explainer.load(args.method, args.model, layer=args.layer, reshape=args.reshape,
                               device=rank_device(args.device), precision=args.precision, compile=args.compile,
                               task=args.task, **model_kwargs(args))
    s = explain_folder(args.dir, args.out, explainer, options, progress=not args.quiet)
    if not args.quiet:
        who = f"rank {s['rank']}/{s['world']}: " if s["world"] > 1 else ""
        rate = s["explained"] / s["seconds"] if s["seconds"] > 0 else 0.0
        say(f"actcam batch: {who}{s['explained']} images explained, {s['errors']} unreadable, "
            f"{s['done_before']} done before (of {s['images']}) in {s['seconds']:.1f} s ({rate:.2f} images/s)"
            + (f"; {args.out}/results.jsonl has {s['total']} images" if s["total"] is not None else ""))
    return 0
