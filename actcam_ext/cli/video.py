"""``actcam video``: heatmap overlays on every frame of a video, streamed (docs/video.md)."""

from __future__ import annotations

from ..methods import HEATMAP_METHODS, method_name
from ..pipeline import Explainer, VideoOptions, explain_video
from ._args import (batch_option, device_option, image_weight_option, method_option, model_kwargs,
                    model_options, positive_int, speed_options, quiet_option, say, targets_option)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "video", parents=[method_option(heatmaps_only=True), model_options(), device_option(), speed_options(),
                          targets_option(one=True), image_weight_option(), batch_option(8, "frames"), quiet_option()],
        help="overlay each frame's heatmap on a video (streamed, same frames/size/fps)",
        description="Decode IN in a background thread, explain frames in batches on the device, overlay each "
                    "frame's heatmap with the fused op and encode OUT (mp4v) in another thread. OUT keeps IN's "
                    "frame count, size and frame rate.")
    p.add_argument("input", metavar="IN", help="input video (anything OpenCV/FFmpeg decodes)")
    p.add_argument("output", metavar="OUT", help="output video (.mp4, .avi or .mov; mp4v codec)")
    p.add_argument("--every", default=1, type=positive_int, metavar="K",
                   help="explain every K-th frame and reuse its map for the frames in between (default 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    method_name(args.method, HEATMAP_METHODS)
    options = VideoOptions(batch=args.batch, every=args.every, image_weight=args.image_weight, target=args.targets)
    explainer = Explainer.load(args.method, args.model, layer=args.layer, reshape=args.reshape,
                               device=args.device, precision=args.precision, compile=args.compile,
                               **model_kwargs(args))
    summary = explain_video(args.input, args.output, explainer, options, progress=not args.quiet)
    # The summary goes to stderr with the progress bar; what makes the output differ from the
    # input (frames lost, a signal, a cropped or resized frame) is said even with --quiet.
    if not args.quiet or summary.notable:
        say(f"actcam video: {summary.line()}")
    if summary.interrupted:
        return 128 + summary.signal
    return 1 if summary.lost else 0
