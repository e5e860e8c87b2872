"""Helpers shared by the benchmarks (and the tests that need real media): real clips and photo
folders made from scikit-image's bundled photos, interleaved timing, and results files that
state the command that produced them."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch
import torch.nn.functional as F

import actcam_ext as ac

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def make_clip(path, frames: int = 48, size=(640, 360), fps: float = 24.0, photo: str = "astronaut",
              fourcc: str = "mp4v") -> str:
    """Write a clip of real content: a slow pan and zoom across a scikit-image photo; size = (W, H)."""
    img = getattr(skimage.data, photo)()[:, :, ::-1]  # RGB -> BGR for OpenCV
    W, H = size
    ih, iw = img.shape[:2]
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {os.fspath(path)!r} with fourcc {fourcc!r}")
    for i in range(frames):
        t = i / max(1, frames - 1)
        cw = int(iw * (1.0 - 0.45 * t))                 # zoom in by up to 45 %
        ch = min(ih, int(cw * H / W))
        x0 = int((iw - cw) * t)                          # pan left to right
        y0 = int((ih - ch) * (0.5 + 0.3 * np.sin(2 * np.pi * t)))  # and bob up and down
        writer.write(cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (W, H), interpolation=cv2.INTER_AREA))
    writer.release()
    return os.fspath(path)


def make_photo_folder(root: Path, n: int) -> list[Path]:
    """``n`` JPEG files ``img000.jpg`` ... under ``root``: distinct crops of the bundled photos."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    paths = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        f = 0.6 + 0.4 * ((i // len(photos)) % 5) / 4
        crop = img[: int(h * f), : int(w * f)]
        p = root / f"img{i:03d}.jpg"
        cv2.imwrite(str(p), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        paths.append(p)
    return paths


# --------------------------------------------------------------------------------------------
# The torch chains the fused ops replace (what a user writes without the library)
# --------------------------------------------------------------------------------------------

def torch_chain(A, grads, size):
    """The tutorial's Grad-CAM lines, batched: mean of grads, weighted sum, ReLU, bilinear resize,
    min-max."""
    return torch_chain_from_weights(A, grads.mean(dim=(2, 3)), size)


def torch_chain_from_weights(A, weights, size):
    """The chain after the weights exist: what ops.cam replaces on its own."""
    maps = torch.einsum("bk,bkhw->bhw", weights, A)[:, None]
    maps = F.interpolate(torch.relu(maps), size=size, mode="bilinear", align_corners=False)
    lo = maps.amin(dim=(2, 3), keepdim=True)
    hi = maps.amax(dim=(2, 3), keepdim=True)
    return ((maps - lo) / (hi - lo))[:, 0]


def fused(A, grads, size):
    """Grad-CAM post-processing with the library: the mean, then the fused op."""
    return ac.ops.cam(A, grads.mean(dim=(2, 3)), size)


def eq19_torch(A, g):
    """Grad-CAM++ Eq. 19 as a user writes it in torch."""
    s = A.sum(dim=(2, 3), keepdim=True)
    g2 = g.pow(2)
    denom = 2 * g2 + s * g.pow(3)
    alpha = torch.where(denom != 0, g2 / denom, torch.zeros_like(g))
    return (alpha * torch.relu(g)).sum(dim=(2, 3))


# --------------------------------------------------------------------------------------------
# Timing and results
# --------------------------------------------------------------------------------------------

def machine() -> dict:
    """What a reader needs to judge a figure: CPU model, logical CPUs, threads, ISA, versions."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16",
                       "amx_tile") if f in flags]
    info = {"cpu": model, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "isa": isa,
            "python": platform.python_version(), "torch": torch.__version__, "actcam_ext": ac.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def command() -> str:
    """The command line that produced this run, as a reader retypes it."""
    module = sys.modules["__main__"].__spec__.name if getattr(sys.modules["__main__"], "__spec__", None) else None
    head = ["python", "-m", module] if module else ["python", sys.argv[0]]
    return shlex.join(head + sys.argv[1:])


def interleaved(cases: dict, rounds: int, warmup: int = 1, sync=None) -> dict:
    """Time zero-argument callables round by round (each round runs every case once, in turn),
    so a shared machine's drift hits every case alike. Returns ``{name: {"min", "median",
    "times"}}`` in seconds; ``sync`` (e.g. torch.cuda.synchronize) is called around each call."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            if sync:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            times[name].append(time.perf_counter() - t0)
    return {name: {"min": min(t), "median": statistics.median(t), "times": t} for name, t in times.items()}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def extra_peak_mib(fn) -> float:
    """The extra peak resident memory of one call of ``fn`` in this process, in MiB: a warm-up
    call first (one-time allocations — thread pools, kernels, lazy init — are not the call's
    cost), then the kernel's peak mark is reset to the current RSS (``/proc/self/clear_refs``)
    and ``fn`` runs again: VmHWM - VmRSS before it. Linux only."""
    fn()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    fn()
    return (_status_kib("VmHWM") - before) / 1024


def memory_in_fresh_process(module: str, case: str, size: int) -> dict:
    """``python -m MODULE --memory-case CASE --size SIZE`` in a fresh process, whose last stdout
    line is a JSON row; glibc's mmap threshold is fixed so that large tensors go back to the OS
    when freed and every case is measured alike."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-m", module, "--memory-case", case, "--size", str(size)], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def table(groups: list) -> str:
    """Markdown: one row per case, ratios against the group's baseline (its first case) by
    minimum and by median time (> 1: faster than the baseline)."""
    lines = ["| group | case | min | median | speed-up (min) | speed-up (median) | note |",
             "|---|---|---:|---:|---:|---:|---|"]
    for g in groups:
        base = g["cases"][0]
        for c in g["cases"]:
            lines.append(f"| {g['group']} | {c['name']}{' (baseline)' if c is base else ''} | {_fmt(c['min'])} | "
                         f"{_fmt(c['median'])} | {base['min'] / c['min']:.2f}x | {base['median'] / c['median']:.2f}x | "
                         f"{c.get('note', '')} |")
    return "\n".join(lines)


def group(name: str, stats: dict, notes: dict | None = None, **extra) -> dict:
    """A results group from ``interleaved``'s stats, the baseline first (dict order)."""
    notes = notes or {}
    return {"group": name, **extra,
            "cases": [{"name": n, "min": s["min"], "median": s["median"], "times": s["times"],
                       **({"note": notes[n]} if n in notes else {})} for n, s in stats.items()]}


def save(path, groups: list, **extra) -> None:
    """Write the groups, the command and the machine to a JSON file (the README's figures come
    from these files), and print the table."""
    payload = {"command": command(), "machine": machine(), **extra, "groups": groups}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")
    print(table(groups))
    print(f"\nwrote {path}")


def arguments(description: str, out: str, rounds: int):
    """The options every CPU benchmark takes."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=rounds, help=f"interleaved rounds (default {rounds})")
    p.add_argument("--quick", action="store_true", help="2 rounds of small sizes: checks the script, not speed")
    p.add_argument("--out", default=out, help=f"results JSON (default {out})")
    return p
