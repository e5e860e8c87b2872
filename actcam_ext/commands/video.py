"""`actcam video` (docs/video.md): heatmap overlays on every frame of a video, streamed."""

from __future__ import annotations

import sys

from .explain import _number


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "video", help="overlay each frame's heatmap on a video (streamed, same frames/size/fps)",
        description="Decode IN in a background thread, explain frames in batches on the device, overlay each "
                    "frame's heatmap with the fused op and encode OUT (mp4v) in another thread. OUT keeps IN's "
                    "frame count, size and frame rate.")
    p.add_argument("input", metavar="IN", help="input video (anything OpenCV/FFmpeg decodes)")
    p.add_argument("output", metavar="OUT", help="output video (.mp4, .avi or .mov; mp4v codec)")
    p.add_argument("--method", default="gradcam", help="cam | gradcam | gradcam++ (default gradcam)")
    p.add_argument("--model", default="efficientnet-lite0",
                   help="efficientnet-lite0 (default) | torchvision:NAME | PATH (as in actcam explain)")
    p.add_argument("--layer", default=None, metavar="NAME", help="target layer (dotted module name)")
    p.add_argument("--targets", default=None, metavar="ID", help="explain this class id in every frame "
                   "(default: each frame's own top-1 class)")
    p.add_argument("--batch", default="8", metavar="N", help="frames per model call (default 8)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when visible, else cpu)")
    p.add_argument("--image-weight", default="0.5", metavar="W",
                   help="weight of the frame in the blend, 0..1 (default 0.5)")
    p.add_argument("--every", default="1", metavar="K",
                   help="explain every K-th frame and reuse its map for the frames in between (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    p.set_defaults(func=_video)


def _video(args) -> int:
    from ..video import explain_video
    summary = explain_video(args.input, args.output, method=args.method, model=args.model, layer=args.layer,
                            batch=_number(args.batch, "--batch", int), device=args.device,
                            image_weight=_number(args.image_weight, "--image-weight"),
                            every=_number(args.every, "--every", int),
                            targets=None if args.targets is None else _number(args.targets, "--targets", int),
                            progress=not args.quiet)
    # The summary goes to stderr with the progress bar; a broken input or Ctrl-C is said even
    # with --quiet, since the output is then shorter than the input.
    if not args.quiet or summary.lost or summary.interrupted:
        print(f"actcam video: {summary.line()}", file=sys.stderr)
    if summary.interrupted:
        return 130
    return 1 if summary.lost else 0
