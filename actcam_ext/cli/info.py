"""``actcam info``: the version, and which backend serves each op on each device."""

from __future__ import annotations

import torch

from .._version import __version__
from ..ops import cpu_capability, native_available

OPS = ("cam", "gradcampp_weights", "overlay")


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="show the ops and which backend (native or fallback) serves each device",
                              description="Print the version of actcam_ext and torch, and for the CPU and CUDA "
                                          "whether the fused native kernels or the pure-torch fallback serve the "
                                          "ops.")
    p.set_defaults(func=run)


def run(args) -> int:
    print(f"actcam_ext {__version__} (torch {torch.__version__})")
    for device in ("cpu", "cuda"):
        if device == "cuda" and not torch.cuda.is_available():
            kernel = "native kernels built" if native_available("cuda") else "no native kernels"
            print(f"  cuda: no GPU visible ({kernel})")
            continue
        path = "native fused kernels" if native_available(device) else "pure-torch fallback"
        print(f"  {device}: {path} for {', '.join(OPS)}")
        if device == "cpu" and native_available(device):
            print(f"  cpu kernels: {cpu_capability()} instructions "
                  "(ACTCAM_CPU_CAPABILITY=default|avx2|avx512 caps them)")
    print("  cam_from_grads: native on the cpu, the pure-torch reference on other devices")
    return 0
