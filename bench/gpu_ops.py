"""GPU benchmarks of the fused ops against the pure-torch chain (CUDA events, warm-up, medians).

    python -m bench.gpu_ops --out results.json            # on a CUDA machine
    python -m bench.gpu_ops --out results.json --dry-run  # anywhere: CPU, tiny sizes, 2 repeats

For each batch size B in 1, 8, 64, 256:
- cam: Grad-CAM post-processing from (activations [B,2048,7,7], grads): the torch chain (mean,
  einsum, ReLU, interpolate to 224x224, amin/amax, normalise) vs grads.mean + ops.cam; plus
  ops.cam alone with its achieved bandwidth against a device copy of the same bytes.
- gradcampp_weights: [B,512,14,14] torch expression of Eq. 19 vs the op.
- overlay: B x 224x224 torch colour-lookup + blend vs the op.
Each entry records median milliseconds and the speed-up over the torch version.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import actcam_ext as ac

from ._common import command, eq19_torch, fused, machine, torch_chain


def median_ms(fn, *args, repeats, warmup=3):
    for _ in range(warmup):
        fn(*args)
    times = []
    if torch.cuda.is_available():
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(*args)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(*args)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run(device, batches, repeats, K=2048, size=224):
    results = []
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=device)

    for B in batches:
        A, grads = randn(B, K, 7, 7).relu(), randn(B, K, 7, 7)
        weights = grads.mean(dim=(2, 3))
        t_torch = median_ms(torch_chain, A, grads, (size, size), repeats=repeats)
        t_ours = median_ms(fused, A, grads, (size, size), repeats=repeats)
        t_op = median_ms(ac.ops.cam, A, weights, (size, size), repeats=repeats)
        nbytes = A.numel() * 4 + B * size * size * 4
        src = torch.empty(nbytes // 8, device=device)
        dst = torch.empty_like(src)
        t_copy = median_ms(dst.copy_, src, repeats=repeats)
        results.append(dict(op="cam", B=B, K=K, torch_ms=t_torch, actcam_ms=t_ours, speedup=t_torch / t_ours,
                            op_only_ms=t_op, op_GBps=nbytes / t_op / 1e6, copy_GBps=nbytes / t_copy / 1e6,
                            bandwidth_fraction=t_copy / t_op))

        A2, g2 = randn(B, 512, 14, 14).relu(), randn(B, 512, 14, 14) * 1e-2
        t_torch = median_ms(eq19_torch, A2, g2, repeats=repeats)
        t_ours = median_ms(ac.ops.gradcampp_weights, A2, g2, repeats=repeats)
        results.append(dict(op="gradcampp_weights", B=B, K=512, torch_ms=t_torch, actcam_ms=t_ours,
                            speedup=t_torch / t_ours))

        maps = torch.rand(B, size, size, generator=gen, device=device)
        images = torch.randint(0, 256, (B, size, size, 3), generator=gen, device=device, dtype=torch.uint8)
        t_torch = median_ms(ac.reference.overlay, maps, images, 0.5, repeats=repeats)
        t_ours = median_ms(ac.ops.overlay, maps, images, 0.5, repeats=repeats)
        results.append(dict(op="overlay", B=B, torch_ms=t_torch, actcam_ms=t_ours, speedup=t_torch / t_ours))
        for r in results[-3:]:
            print(f"{r['op']:>18} B={B:<4} torch {r['torch_ms']:8.3f} ms  actcam {r['actcam_ms']:8.3f} ms  "
                  f"x{r['speedup']:.2f}" + (f"  op {r['op_GBps']:.0f} GB/s = {r['bandwidth_fraction']:.0%} of copy"
                                            if r["op"] == "cam" else ""), flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dry-run", action="store_true", help="CPU, small sizes: checks the script, not speed")
    args = parser.parse_args(argv)
    if args.dry_run:
        device, batches, repeats = "cpu", [1, 2], 2
    else:
        if not torch.cuda.is_available():
            sys.exit("bench.gpu_ops: no CUDA GPU visible (use --dry-run to check the script on a CPU)")
        if not ac.native_available("cuda"):
            sys.exit("bench.gpu_ops: the CUDA kernels are not built")
        device, batches, repeats = "cuda", [1, 8, 64, 256], 50
    info = dict(device=torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
                torch=torch.__version__, dry_run=args.dry_run, command=command(), machine=machine())
    results = run(device, batches, repeats)
    Path(args.out).write_text(json.dumps(dict(info=info, results=results), indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
