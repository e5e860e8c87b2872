"""Exported CAM (an AOTInductor .pt2 of actcam_ext.export) against the eager actcam_ext.CAM and
against a plain no-grad forward of the same model (the limit: CAM costs one inference).

    python -m bench.export [--rounds 30] [--warmup 3] [--batch 8] [--out bench/results/cpu_export.json]

EfficientNet-Lite0 as load_model gives it on the CPU (BatchNorm folded, NHWC weights), the
bundled photos repeated to the batch, 224x224 inputs and maps. The package is compiled first
(its time is reported apart), checked against the eager maps, then the three cases run
interleaved: every round times each case once, in an order rotated from round to round, so the
drift of a shared machine hits every case alike. Reports min and median per case and their
ratios, and writes them with the command, CPU model and torch version to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import actcam_ext as ac
import actcam_ext.export as ax
from actcam_ext.models import load_model

from ._common import PHOTOS

SIZE = (224, 224)
CASES = ("exported_pt2", "eager_cam", "forward_no_grad")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: how busy the (shared) machine was."""
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return None


def photos_batch(pre, batch: int) -> torch.Tensor:
    import skimage.data
    images = [getattr(skimage.data, name)() for name in PHOTOS]
    return pre([images[i % len(images)] for i in range(batch)])


def interleaved(cases: dict, rounds: int, warmup: int) -> dict[str, list[float]]:
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out", default="bench/results/cpu_export.json")
    args = p.parse_args(argv)
    command = "python -m bench.export" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))

    model, pre = load_model(None, "cpu")
    x = photos_batch(pre, args.batch)
    cam = ac.CAM(model)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = ax.pt2(model, Path(tmp) / "cam.pt2", size=SIZE, batch=args.batch)
        compile_s = time.perf_counter() - t0
        runner = torch._inductor.aoti_load_package(path)

    logits, maps = runner(x)
    eager_maps = cam(x, size=SIZE)
    with torch.no_grad():
        eager_logits = model(x)
    diff_maps = float((maps - eager_maps).abs().max())
    diff_logits = float((logits - eager_logits).abs().max())

    def forward():
        with torch.no_grad():
            return model(x)

    cases = {"exported_pt2": lambda: runner(x), "eager_cam": lambda: cam(x, size=SIZE), "forward_no_grad": forward}
    load_before = load_average()
    times = interleaved(cases, args.rounds, args.warmup)
    load_after = load_average()
    summary = {name: {"min_ms": min(t) * 1e3, "median_ms": statistics.median(t) * 1e3,
                      "times_ms": [round(v * 1e3, 3) for v in t]} for name, t in times.items()}

    def ratio(a: str, b: str, stat: str) -> float:
        return summary[a][stat] / summary[b][stat]

    ratios = {f"{a}/{b}": {"median": ratio(a, b, "median_ms"), "min": ratio(a, b, "min_ms")}
              for a, b in (("exported_pt2", "eager_cam"), ("exported_pt2", "forward_no_grad"),
                           ("eager_cam", "forward_no_grad"))}
    result = {
        "command": command,
        "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(),
        "load_average_before": load_before, "load_average_after": load_after,
        "model": "efficientnet-lite0 (load_model on cpu: BatchNorm folded, NHWC weights)",
        "input": [args.batch, 3, *pre.size], "map_size": list(SIZE), "rounds": args.rounds, "warmup": args.warmup,
        "compile_s": compile_s, "max_abs_diff_maps_vs_eager": diff_maps, "max_abs_diff_logits_vs_eager": diff_logits,
        "cases": summary, "ratios": ratios,
        "exported_no_slower_than_eager": summary["exported_pt2"]["median_ms"] <= summary["eager_cam"]["median_ms"],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, out)

    print(f"EfficientNet-Lite0, batch {args.batch}, {pre.size[0]}x{pre.size[1]} -> maps {SIZE[0]}x{SIZE[1]}; "
          f"{args.rounds} interleaved rounds after {args.warmup} warm-ups; {result['cpu']}, torch {torch.__version__}; "
          f"load average {load_before} -> {load_after}")
    print(f"  .pt2 compile {compile_s:.1f} s; max |maps - eager| {diff_maps:.2e}, max |logits - eager| "
          f"{diff_logits:.2e}")
    for name in CASES:
        s = summary[name]
        print(f"  {name:<16} min {s['min_ms']:8.1f} ms   median {s['median_ms']:8.1f} ms")
    for key, r in ratios.items():
        print(f"  {key:<32} {r['median']:.3f}x (median)  {r['min']:.3f}x (min)")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
