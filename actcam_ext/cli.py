"""The `actcam` command line."""

import argparse
import sys

import torch

from . import __version__
from ._native import native_available

OPS = ("cam", "gradcampp_weights", "overlay")


def _info(args) -> int:
    print(f"actcam_ext {__version__} (torch {torch.__version__})")
    for device in ("cpu", "cuda"):
        if device == "cuda" and not torch.cuda.is_available():
            kernel = "native kernels built" if native_available("cuda") else "no native kernels"
            print(f"  cuda: no GPU visible ({kernel})")
            continue
        path = "native fused kernels" if native_available(device) else "pure-torch fallback"
        print(f"  {device}: {path} for {', '.join(OPS)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="actcam", description="Class-activation heatmaps for PyTorch CNNs.")
    parser.add_argument("--version", action="version", version=f"actcam_ext {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="show the ops and which backend (native or fallback) serves each device")
    args = parser.parse_args(argv)
    return {"info": _info}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
