"""CPU benchmarks of the methods' reach: a transformer, and the pytorch-grad-cam compat layer.

    python -m bench.reach [--rounds N] [--quick] [--out bench/results/cpu_reach.json]

Random weights (seed 0), eval mode, batch 8 of 224 x 224 inputs, each image's top class; the
same model and input for every case of a group, timed interleaved round by round (min and
median; ratios from the minima).

- vit-b16-gradcam-b8: torchvision ViT-B/16 (head drawn from N(0, 0.02); torchvision zeroes it),
  target layer ``encoder.layers.encoder_layer_11.ln_1`` (the last block's first LayerNorm, pytorch-grad-cam's
  choice for ViTs): a plain ``torch.no_grad()`` forward (baseline) vs ``ac.GradCAM(...,
  reshape="vit")`` vs pytorch-grad-cam's GradCAM with ``vit_reshape_transform``.
- compat-r50-b8: torchvision ResNet-50 at ``layer4[-1]``: pytorch-grad-cam's GradCAM (baseline)
  vs ``actcam_ext.compat.pytorch_grad_cam.GradCAM``, the same call with the import changed.
- memory: the extra peak resident memory of one call on top of the loaded model and input,
  each case in a fresh process (as bench/methods.py: ``MALLOC_MMAP_THRESHOLD_`` fixed so glibc
  returns large blocks to the OS; a warm-up call; the kernel's peak mark reset through
  ``/proc/self/clear_refs``; the call again; VmHWM - VmRSS before it).

Targets: ViT Grad-CAM <= 1.2x a forward and >= 2.5x faster than pytorch-grad-cam; the compat
layer >= 2x faster than pytorch-grad-cam on ResNet-50; ViT Grad-CAM's extra peak memory <= 1.3x
a forward's. The results file says which are met, with the load average around the run.
"""

from __future__ import annotations

import functools
import json
import os
import warnings

import torch
import torchvision

import actcam_ext as ac

from ._common import arguments, extra_peak_mib, group, interleaved, memory_in_fresh_process, save

B = 8
VIT_LAYER = "encoder.layers.encoder_layer_11.ln_1"
MEMORY_CASES = {"vit": ["plain_forward", "actcam_gradcam", "pytorch_grad_cam"],
                "r50": ["plain_forward", "compat_gradcam", "pytorch_grad_cam"]}
TARGETS = {"vit_gradcam_vs_forward_max": 1.2, "vit_speedup_vs_pytorch_grad_cam_min": 2.5,
           "compat_speedup_vs_pytorch_grad_cam_min": 2.0, "vit_memory_vs_forward_max": 1.3}


def models(net: str, size: int):
    """(model, input) with seed 0: ``net`` "vit" or "r50"."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if net == "vit":
            model = torchvision.models.vit_b_16(image_size=size)
            torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zeroes the head
        else:
            model = torchvision.models.resnet50()
        return model.eval(), torch.randn(B, 3, size, size)


def cases(net: str, model, x) -> dict:
    """name -> zero-argument callable, shared by the timings and the memory subprocesses."""
    from pytorch_grad_cam import GradCAM as PGC
    from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform

    from actcam_ext.compat.pytorch_grad_cam import GradCAM as CompatGradCAM

    def plain():
        with torch.no_grad():
            return model(x)

    if net == "vit":
        side = x.shape[-1] // 16
        layer = model.get_submodule(VIT_LAYER)
        ours = ac.GradCAM(model, VIT_LAYER, reshape="vit")
        reshape = functools.partial(vit_reshape_transform, height=side, width=side)
        targets_layers, extra = [layer], {"reshape_transform": reshape}
        mine = {"actcam_gradcam": lambda: ours(x)}
    else:
        targets_layers, extra = [model.layer4[-1]], {}

        def compat():
            with CompatGradCAM(model=model, target_layers=targets_layers) as cam:
                return cam(input_tensor=x, targets=None)
        mine = {"compat_gradcam": compat}

    def pgc():
        with PGC(model=model, target_layers=targets_layers, **extra) as cam:
            out = cam(input_tensor=x, targets=None)
        model.zero_grad(set_to_none=True)  # its loss.backward() leaves parameter gradients
        return out

    return {"plain_forward": plain, **mine, "pytorch_grad_cam": pgc}


def memory_case(net: str, name: str, size: int) -> dict:
    """One case's extra peak resident memory in this (fresh) process."""
    warnings.simplefilter("ignore", RuntimeWarning)
    model, x = models(net, size)
    return {"net": net, "case": name, "extra_peak_mib": extra_peak_mib(cases(net, model, x)[name])}


def memory_table(size: int) -> list[dict]:
    rows = []
    for net, names in MEMORY_CASES.items():
        first = None
        for name in names:
            row = memory_in_fresh_process("bench.reach", f"{net}:{name}", size)
            first = first or row
            row["ratio_vs_plain_forward"] = row["extra_peak_mib"] / first["extra_peak_mib"]
            rows.append(row)
    return rows


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: how busy the (shared) machine was."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def verdict(groups: list, memory: list) -> dict:
    """Each target's measured ratio (from the minima) and whether it is met."""
    mins = {(g["group"], c["name"]): c["min"] for g in groups for c in g["cases"]}
    vit, r50 = "vit-b16-gradcam-b8", "compat-r50-b8"
    measured = {
        "vit_gradcam_vs_forward_max": mins[vit, "actcam_gradcam"] / mins[vit, "plain_forward"],
        "vit_speedup_vs_pytorch_grad_cam_min": mins[vit, "pytorch_grad_cam"] / mins[vit, "actcam_gradcam"],
        "compat_speedup_vs_pytorch_grad_cam_min": mins[r50, "pytorch_grad_cam"] / mins[r50, "compat_gradcam"],
    }
    for r in memory:
        if r["net"] == "vit" and r["case"] == "actcam_gradcam":
            measured["vit_memory_vs_forward_max"] = r["ratio_vs_plain_forward"]
    out = {}
    for key, value in measured.items():
        target = TARGETS[key]
        met = value <= target if key.endswith("_max") else value >= target
        out[key] = {"measured": round(value, 3), "target": target, "met": met}
    return out


def main(argv=None):
    parser = arguments(__doc__, "bench/results/cpu_reach.json", rounds=5)
    parser.add_argument("--memory-case", help="(internal) measure NET:CASE's peak memory in this process")
    parser.add_argument("--size", type=int, default=224, help="input side (default 224)")
    args = parser.parse_args(argv)
    size = 96 if args.quick else args.size  # 96: one token grid fits (64 would be ambiguous)
    if args.memory_case:
        net, name = args.memory_case.split(":")
        print(json.dumps(memory_case(net, name, size)))
        return
    warnings.simplefilter("ignore", RuntimeWarning)
    rounds = 2 if args.quick else args.rounds
    load_before = load_average()
    groups = []
    for net, title, notes in [("vit", "vit-b16-gradcam-b8", {"pytorch_grad_cam": "full backward, numpy maps"}),
                              ("r50", "compat-r50-b8", {"compat_gradcam": "import changed, same call"})]:
        model, x = models(net, size)
        c = cases(net, model, x)
        if net == "r50":  # pytorch-grad-cam is this group's baseline
            c = {k: c[k] for k in ("pytorch_grad_cam", "compat_gradcam", "plain_forward")}
        groups.append(group(title, interleaved(c, rounds), notes=notes))
        del model, x, c
    memory = memory_table(size) if os.path.exists("/proc/self/clear_refs") else []
    load_after = load_average()
    for r in memory:
        print(f"memory  {r['net']:<4} {r['case']:<18} {r['extra_peak_mib']:8.1f} MiB  "
              f"{r['ratio_vs_plain_forward']:.2f}x plain forward")
    targets = verdict(groups, memory)
    for key, v in targets.items():
        print(f"target  {key:<40} {v['measured']:.3f} (target {v['target']}): {'met' if v['met'] else 'NOT met'}")
    print(f"load average before {load_before}, after {load_after}")
    save(args.out, groups, rounds=rounds, quick=args.quick, size=size, batch=B, vit_layer=VIT_LAYER,
         load_average_before=load_before, load_average_after=load_after, memory=memory, targets=targets)


if __name__ == "__main__":
    main()
