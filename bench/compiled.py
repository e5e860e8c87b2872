"""The opt-in compiled explain step: Grad-CAM with ``compile=True`` against the compiled model's
own no-grad forward (the limit), and the eager method against the eager forward, same model,
same batch, interleaved.

    python -m bench.compiled [--rounds 20] [--batch 8] [--model resnet50] [--quick]

torchvision's ResNet-50 (random weights: the cost does not depend on them) in eval mode, a batch
of 224x224 inputs. The compiled cases are compiled (and checked against the eager maps) before
timing; their first-call time is reported apart. The figure that matters is
``compiled_gradcam / compiled_forward``: what an explanation costs over an inference.
"""

from __future__ import annotations

import time

import torch
import torchvision

import actcam_ext as ac

from ._common import arguments, group, interleaved, save


def main(argv=None) -> None:
    p = arguments(__doc__, "bench/results/cpu_compiled.json", rounds=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--model", default="resnet50", help="a torchvision model name (default resnet50)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.batch, args.model = 2, 2, "resnet18"
    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model).eval()
    x = torch.randn(args.batch, 3, 224, 224)
    compiled = torch.compile(model)
    eager_cam = ac.GradCAM(model)
    compiled_cam = ac.GradCAM(model, compile=True)

    def forward(m):
        with torch.no_grad():
            return m(x)

    first = {}
    for name, fn in (("compiled_forward", lambda: forward(compiled)), ("compiled_gradcam", lambda: compiled_cam(x))):
        t0 = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t0
    diff = float((compiled_cam(x) - eager_cam(x)).abs().max())
    print(f"compiled vs eager Grad-CAM maps: max |diff| {diff:.2e}; first calls (compilation): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in first.items()))
    stats = interleaved({"compiled_forward": lambda: forward(compiled), "compiled_gradcam": lambda: compiled_cam(x),
                         "eager_forward": lambda: forward(model), "eager_gradcam": lambda: eager_cam(x)},
                        args.rounds, warmup=2)
    limit = {k: stats[k] for k in ("compiled_forward", "compiled_gradcam")}
    eager = {k: stats[k] for k in ("eager_forward", "eager_gradcam")}
    ratio = {s: stats["compiled_gradcam"][s] / stats["compiled_forward"][s] for s in ("min", "median")}
    print(f"compiled Grad-CAM / compiled no-grad forward: {ratio['min']:.3f}x (min), {ratio['median']:.3f}x (median)")
    save(args.out, [group(f"{args.model} batch {args.batch}, compiled: Grad-CAM vs its forward", limit),
                    group(f"{args.model} batch {args.batch}, eager: Grad-CAM vs its forward", eager)],
         model=args.model, batch=args.batch, max_abs_diff_vs_eager=diff, first_call_s=first,
         compiled_gradcam_over_forward=ratio)


if __name__ == "__main__":
    main()
