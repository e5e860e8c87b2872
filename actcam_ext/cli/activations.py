"""``actcam activations``: a layer's channel maps, the first convolution's filters, and the
channels a class map is built from (docs/seeing.md)."""

from __future__ import annotations

from ..pipeline.activations import MARKER, save_activations
from ._args import device_option, model_kwargs, model_options, positive_int, quiet_option, say


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "activations", parents=[model_options(), device_option(), quiet_option()],
        help="a layer's channel activation maps and the first convolution's filters, as pictures",
        description="For each image: NAME_activations.png, the layer's TOP channels by mean activation, and "
                    "NAME_sheet.jpg, the Grad-CAM overlay of the image's top class next to the TOP channels that "
                    "contribute most to it (Grad-CAM weight x the channel's sum: what the class map is built from). "
                    "Once: "
                    "filters.png, the first convolution's filters (when it reads 3 channels), and activations.json "
                    "listing channels, scores and files.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="8-bit RGB image files")
    p.add_argument("--top", default=16, type=positive_int, metavar="N",
                   help="channels per picture (default 16; at most the layer's number of channels)")
    p.add_argument("--out", default="actcam-activations", metavar="DIR",
                   help="output directory (default ./actcam-activations)")
    p.set_defaults(func=run)


def run(args) -> int:
    result = save_activations(args.images, args.model, args.out, layer=args.layer, reshape=args.reshape, top=args.top,
                              device=args.device, progress=not args.quiet, **model_kwargs(args))
    if not args.quiet:
        for img in result["images"]:
            top = ", ".join(str(c) for c in img["channels"][:5]) + (", ..." if len(img["channels"]) > 5 else "")
            label = img["label"].split(",")[0]
            say(f"{img['path']}: layer {img['layer']}, top channels {top}; {label} ({img['class_id']}) is built most "
                f"from channel {img['class_channels'][0]}")
        say(f"wrote {args.out}/{MARKER}" + (" and filters.png" if result["filters"] else ""))
    return 0
