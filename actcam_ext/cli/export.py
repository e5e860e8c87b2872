"""``actcam export``: a model's CAM as an AOTInductor package (.pt2) or an ONNX file."""

from __future__ import annotations

import argparse

from .. import export as ax
from ..errors import PREFIX, UserError
from ..methods import method_name
from ..models import DEFAULT_MODEL, load_model, require_classifier
from ._args import batch_option, input_size, model_kwargs, model_options, positive_int, targets_option

FORMATS = (".pt2", ".onnx")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", parents=[model_options(default=None), targets_option(), batch_option(1, "images")],
        help="write a model's CAM (logits and heatmaps) as an AOTInductor .pt2 or an ONNX file",
        usage="actcam export [options] [MODEL_SPEC] OUT",
        description="Export x -> (logits, maps): the model and its CAM heatmaps, with the actcam op inside, for "
                    "Python-free deployment. OUT.pt2 is an AOTInductor package (torch._inductor.aoti_load_package, "
                    "or AOTIModelPackageLoader in C++ with libactcam.so); OUT.onnx is standard ONNX (the op as "
                    "MatMul, Relu, Resize, ReduceMin/Max). Inputs are normalised images [N,3,H,W]; the file's "
                    "metadata records the layer, sizes, mean and std. Only CAM can be exported (Grad-CAM needs a "
                    "backward pass that torch.export cannot capture).",
        epilog="examples: actcam export efficientnet-lite0 cam.pt2 --batch 8 | "
               "actcam export cam.onnx --model torchvision:resnet50 --layer layer4 --dynamic-batch")
    p.add_argument("paths", nargs="+", metavar="[MODEL_SPEC] OUT",
                   help=f"the model ({DEFAULT_MODEL} | torchvision:NAME | PATH; or --model; default {DEFAULT_MODEL}) "
                        "and the output file, ending in .pt2 or .onnx")
    p.add_argument("--method", default="cam", metavar="NAME",
                   help="cam (default; the only exportable method: the gradient methods need a backward pass)")
    p.add_argument("--size", default=None, type=input_size, metavar="N|H,W",
                   help="heatmap size (default: the model's input size)")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="accept any batch size (default: exactly --batch images per call)")
    p.add_argument("--opset", default=ax.MIN_OPSET, type=positive_int, metavar="N",
                   help=f"ONNX opset, at least {ax.MIN_OPSET} (default {ax.MIN_OPSET}; .onnx only)")
    p.set_defaults(func=run)


def _spec_and_out(args) -> tuple[str, str]:
    if len(args.paths) > 2:
        raise UserError(f"{PREFIX}expected [MODEL_SPEC] OUT, got {len(args.paths)} paths: {' '.join(args.paths)}")
    out = args.paths[-1]
    spec = args.paths[0] if len(args.paths) == 2 else None
    if spec is not None and args.model is not None and spec != args.model:
        raise UserError(f"{PREFIX}the model is given twice ({spec!r} and --model {args.model!r}); give it once")
    if not out.endswith(FORMATS):
        raise UserError(f"{PREFIX}OUT must end with .pt2 (AOTInductor) or .onnx, got {out!r}")
    return spec or args.model or DEFAULT_MODEL, out


def run(args: argparse.Namespace) -> int:
    spec, out = _spec_and_out(args)
    method_name(args.method)  # an unknown name is reported before the model loads
    if args.opset < ax.MIN_OPSET:
        raise UserError(f"{PREFIX}--opset must be at least {ax.MIN_OPSET}, got {args.opset}")
    model, pre = load_model(spec, "cpu", **model_kwargs(args))
    require_classifier(model, "export")
    # One id gives one map per image [N,H,W]; several give [N,C,H,W].
    targets = None if not args.targets else args.targets[0] if len(args.targets) == 1 else list(args.targets)
    common = dict(method=args.method, target_layer=args.layer, size=args.size or pre.size, batch=args.batch,
                  input_size=pre.size, targets=targets, dynamic_batch=args.dynamic_batch,
                  metadata={"actcam.model": spec, "actcam.mean": ",".join(repr(float(v)) for v in pre.mean),
                            "actcam.std": ",".join(repr(float(v)) for v in pre.std)})
    if out.endswith(".onnx"):
        path = ax.onnx(model, out, opset=args.opset, **common)
    else:
        path = ax.pt2(model, out, **common)
    n = "N" if args.dynamic_batch else str(args.batch)
    c = f"{len(targets)}," if isinstance(targets, list) else ""
    H, W = common["size"]
    mean, std = (", ".join(f"{v:.4f}" for v in values) for values in (pre.mean, pre.std))
    print(f"wrote {path}: images [{n},3,{pre.size[0]},{pre.size[1]}] normalised with mean ({mean}) and std ({std}) "
          f"-> logits [{n},classes], maps [{n},{c}{H},{W}]")
    return 0
