"""``actcam info``: the version, and which backend serves each op on each device."""

from __future__ import annotations

import torch

from .._version import __version__
from ..ops import cpu_capability, native_available

OPS = ("cam", "gradcampp_weights", "overlay")


def huge_pages() -> str:
    """"on" when this process's tensors of 2 MiB or more are advised into transparent huge pages
    (the VmFlags of the mapping holding a fresh 4 MiB tensor name MADV_HUGEPAGE: "hg"), "off"
    when not, "unknown" without /proc/self/smaps (not Linux)."""
    t = torch.empty(4 << 20, dtype=torch.uint8)
    addr = t.data_ptr()
    try:
        with open("/proc/self/smaps") as f:
            lines = f.read().splitlines()
    except OSError:
        return "unknown"
    inside = False
    for line in lines:
        head = line.split(" ", 1)[0]
        if "-" in head and not head.endswith(":"):  # a mapping's first line: "lo-hi perms ..."
            lo, hi = (int(v, 16) for v in head.split("-"))
            inside = lo <= addr < hi
        elif inside and line.startswith("VmFlags:"):
            return "on" if "hg" in line.split()[1:] else "off"
    return "unknown"


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="show the ops and which backend (native or fallback) serves each device",
                              description="Print the version of actcam_ext and torch, for the CPU and CUDA "
                                          "whether the fused native kernels or the pure-torch fallback serve the "
                                          "ops, and whether tensors of 2 MiB or more are allocated in huge pages.")
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
    print(f"  huge pages for tensors of 2 MiB or more: {huge_pages()} (THP_MEM_ALLOC_ENABLE; the actcam command "
          "turns it on where the kernel offers them)")
    return 0
