"""CPU benchmarks of the explanation methods against a plain inference and the peer libraries.

    python -m bench.methods [--rounds N] [--quick] [--out bench/results/cpu_methods.json]

torchvision ResNet-50 (random weights, eval), batch 8, 224x224, target layer4 (last block); the
same model and input for every case, timed interleaved round by round (min and median).

- gradcam-r50-b8: a plain ``torch.no_grad()`` forward (the limit, baseline) vs our GradCAM vs
  pytorch-grad-cam GradCAM vs torchcam GradCAM (torchcam returns the layer's 7x7 maps, not
  resized or normalised: it skips that work).
- top5-r50-b8: five separate GradCAM calls (baseline) vs one call with top_k=5.
- optimize-effnet-b8 / optimize-r50-b8: our GradCAM on the model as its package builds it
  (baseline) vs the model as ``models.load_model`` runs it on the CPU (NHWC weights; for
  EfficientNet-Lite0 also BatchNorm folded), on 8 photos.
- memory: the extra peak resident memory of one call on top of the loaded model and input,
  each case in a fresh process (``MALLOC_MMAP_THRESHOLD_`` fixed so glibc returns large
  tensors to the OS; warm-up call, then the kernel's peak mark is reset with
  ``/proc/self/clear_refs`` and the case runs again: VmHWM - VmRSS before it).
"""

import json
import os
import warnings

import skimage.data
import torch
import torchvision

import actcam_ext as ac
from actcam_ext.models import load_model

from ._common import PHOTOS, arguments, extra_peak_mib, group, interleaved, memory_in_fresh_process, save

B = 8
MEMORY_CASES = ["plain_forward", "actcam_gradcam", "pytorch_grad_cam", "torchcam_7x7"]


def model_and_input(size: int = 224, batch: int = B):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet50().eval(), torch.randn(batch, 3, size, size)


def cases(model, x) -> dict:
    """name -> zero-argument callable, shared by the timings and the memory subprocesses."""
    ours = ac.GradCAM(model, "layer4")

    def plain():
        with torch.no_grad():
            return model(x)

    def pgc():
        from pytorch_grad_cam import GradCAM as PGC
        with PGC(model=model, target_layers=[model.layer4]) as cam:
            out = cam(input_tensor=x, targets=None)
        model.zero_grad(set_to_none=True)
        return out

    def torchcam():
        from torchcam.methods import GradCAM as TCGradCAM
        extractor = TCGradCAM(model, target_layer="layer4")
        try:
            scores = model(x)
            return extractor(scores.argmax(1).tolist(), scores)
        finally:
            extractor.remove_hooks()

    with torch.no_grad():
        top5 = model(x).topk(5, dim=1).indices
    return {"plain_forward": plain, "actcam_gradcam": lambda: ours(x), "pytorch_grad_cam": pgc,
            "torchcam_7x7": torchcam, "actcam_5_calls": lambda: [ours(x, top5[:, c]) for c in range(5)],
            "actcam_top5_one_call": lambda: ours(x, top_k=5)}


def _memory_case(name: str, size: int) -> dict:
    warnings.simplefilter("ignore", RuntimeWarning)
    model, x = model_and_input(size)
    return {"case": name, "extra_peak_mib": extra_peak_mib(cases(model, x)[name])}


def memory_table(size: int) -> list[dict]:
    rows = [memory_in_fresh_process("bench.methods", name, size) for name in MEMORY_CASES]
    for r in rows:
        r["ratio_vs_plain_forward"] = r["extra_peak_mib"] / rows[0]["extra_peak_mib"]
    return rows


def main(argv=None):
    parser = arguments(__doc__, "bench/results/cpu_methods.json", rounds=8)
    parser.add_argument("--memory-case", help="(internal) measure one case's peak memory in this process")
    parser.add_argument("--size", type=int, default=224, help="input side (default 224)")
    args = parser.parse_args(argv)
    size = 64 if args.quick else args.size
    if args.memory_case:
        print(json.dumps(_memory_case(args.memory_case, size)))
        return
    warnings.simplefilter("ignore", RuntimeWarning)
    rounds = 2 if args.quick else args.rounds
    model, x = model_and_input(size)
    c = cases(model, x)
    groups = [
        group("gradcam-r50-b8", interleaved({k: c[k] for k in MEMORY_CASES}, rounds),
              notes={"torchcam_7x7": "maps stay 7x7", "pytorch_grad_cam": "numpy maps, full backward"}),
        group("top5-r50-b8", interleaved({k: c[k] for k in ("actcam_5_calls", "actcam_top5_one_call")}, rounds)),
    ]
    packaged, pre = load_model(None, "cpu", optimize=False)
    optimized, _ = load_model(None, "cpu", optimize=True)
    photos = pre([getattr(skimage.data, n)() for n in PHOTOS] * 2, "cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        r50 = torchvision.models.resnet50().eval()
    r50_nhwc = torchvision.models.resnet50().eval()
    r50_nhwc.load_state_dict(r50.state_dict())
    r50_nhwc = r50_nhwc.to(memory_format=torch.channels_last)
    for net, (plain_model, fast_model, layer) in {"effnet": (packaged, optimized, "_head_act"),
                                                  "r50": (r50, r50_nhwc, "layer4")}.items():
        a, b = ac.GradCAM(plain_model, layer), ac.GradCAM(fast_model, layer)
        groups.append(group(f"optimize-{net}-b8", interleaved({"packaged": lambda: a(photos),
                                                                "optimized": lambda: b(photos)}, rounds),
                            notes={"optimized": "NHWC + BN folded" if net == "effnet" else "NHWC"}))
    memory = memory_table(size) if os.path.exists("/proc/self/clear_refs") else []
    for r in memory:
        print(f"memory  {r['case']:<20} {r['extra_peak_mib']:8.1f} MiB  {r['ratio_vs_plain_forward']:.2f}x plain forward")
    save(args.out, groups, rounds=rounds, quick=args.quick, size=size, memory=memory)


if __name__ == "__main__":
    main()
