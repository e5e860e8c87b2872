"""GPU benchmarks of the explanation methods (run by bench/gpu_check.sh).

    python -m bench.gpu_methods --out results.json [--dry-run]

torchvision ResNet-50 (random weights, eval), 224x224, target layer4, batch 8 and 32: a plain
no-grad forward (the baseline) vs our GradCAM, Grad-CAM++, top-5 in one call, and the peers
(pytorch-grad-cam, torchcam) when installed. The cases are the ones of bench/methods.py
moved to the device. Times are CUDA-event medians; "extra_peak_MiB" is the peak of
torch.cuda.max_memory_allocated during one call minus the memory allocated before it.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

import actcam_ext as ac

from ._common import command, machine
from .gpu_ops import median_ms
from .methods import cases as method_cases
from .methods import model_and_input


def _peak_extra_mib(fn) -> float:
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def run(device: str, batches, repeats: int, size: int):
    import warnings
    warnings.simplefilter("ignore", RuntimeWarning)
    results = []
    for B in batches:
        model, x = model_and_input(size, batch=B)
        model, x = model.to(device), x.to(device)
        cases = method_cases(model, x)
        cases["actcam_gradcampp"] = lambda: ac.GradCAMPlusPlus(model, "layer4")(x)
        for name in ("pytorch_grad_cam", "torchcam_7x7"):
            try:
                cases[name]()
            except ImportError:
                del cases[name]
        base = median_ms(cases["plain_forward"], repeats=repeats)
        for name, fn in cases.items():
            t = median_ms(fn, repeats=repeats)
            row = dict(case=name, B=B, size=size, median_ms=t, time_vs_plain_forward=t / base)
            if device == "cuda":
                row["extra_peak_MiB"] = _peak_extra_mib(fn)
            results.append(row)
            print(f"{name:>22} B={B:<3} {t:9.3f} ms  {t / base:5.2f}x plain forward"
                  + (f"  peak +{row['extra_peak_MiB']:.0f} MiB" if "extra_peak_MiB" in row else ""), flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dry-run", action="store_true", help="CPU, batch 1, 64x64: checks the script, not speed")
    args = parser.parse_args(argv)
    if args.dry_run:
        device, batches, repeats, size = "cpu", [1], 2, 64
    else:
        if not torch.cuda.is_available():
            sys.exit("bench.gpu_methods: no CUDA GPU visible (use --dry-run to check the script on a CPU)")
        device, batches, repeats, size = "cuda", [8, 32], 20, 224
        torch.backends.cudnn.benchmark = True
    info = dict(device=torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
                torch=torch.__version__, model="torchvision resnet50, random weights, eval", layer="layer4",
                command=command(), machine=machine())
    results = run(device, batches, repeats, size)
    Path(args.out).write_text(json.dumps(dict(info=info, results=results), indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
