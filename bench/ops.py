"""CPU benchmarks of the fused ops against the torch chain they replace, OpenCV, and a plain copy.

    python -m bench.ops [--rounds N] [--quick] [--threads N] [--out bench/results/cpu_ops.json]

Every group times its cases interleaved round by round (the first case is the baseline) and
reports minimum and median; outputs are checked against the baseline's before timing.

- cam-B32 / cam-B1: Grad-CAM post-processing from (activations [B,2048,7,7], gradients) to
  224x224 maps: the torch chain (mean of grads, einsum, ReLU, interpolate, amin/amax,
  normalise) vs grads.mean + ops.cam.
- cam-op-B32: the same once the weights exist: what ops.cam replaces on its own.
- cam-bandwidth: ops.cam (weights given) against a plain copy of as many bytes as the op must
  move (activations read + maps written): the fraction of the machine's copy bandwidth.
- cam-bandwidth-<capability>: the same under each CPU capability this machine supports.
- cam_from_grads-B1: Grad-CAM of one image from (activations [1,2048,7,7], gradients) to
  224x224: the torch chain vs ops.cam_from_grads(..., "gradcam", ...), one fused pass.
- cam_from_grads-video: a video batch, B=8, K=1280, 12x20 -> 360x640, likewise.
- cam-dtypes: ops.cam at B=32 with float32, float16 and bfloat16 activations (the same
  number of elements): the cost per element of the narrower inputs.
- cam-backward-B32: the gradient of ops.cam's maps with respect to activations and weights at
  B=32, K=2048, 7x7 -> 224x224, the backward alone (the graph recorded once and kept): autograd
  through the pure-torch reference vs the fused C++ backward (which recomputes what it needs
  of the forward); cam-forward+backward-B32: the same with the forward included.
- gradcampp: Grad-CAM++ Eq. 19 weights at B=32, K=512, 14x14: the torch expression vs the op.
- overlay: 16 x 224x224 JET overlays: a per-image cv2.applyColorMap + cv2.addWeighted loop vs
  ops.overlay.
"""

import os

import cv2
import numpy as np
import torch

import actcam_ext as ac

from ._common import arguments, eq19_torch, fused, group, interleaved, save, torch_chain, torch_chain_from_weights


def _inputs(B, K=2048, h=7, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, K, h, w, generator=g).relu(), torch.randn(B, K, h, w, generator=g)


def cv2_loop(maps_np, images_np, w):
    out = np.empty_like(images_np)
    for i, (m, img) in enumerate(zip(maps_np, images_np)):
        heat = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * m), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        out[i] = cv2.addWeighted(heat, 1 - w, img, w, 0)
    return out


def main(argv=None):
    parser = arguments(__doc__, "bench/results/cpu_ops.json", rounds=30)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rounds = 2 if args.quick else args.rounds
    size = (56, 56) if args.quick else (224, 224)
    K = 256 if args.quick else 2048
    groups = []
    for B in (32, 1):
        A, grads = _inputs(B, K)
        torch.testing.assert_close(fused(A, grads, size), torch_chain(A, grads, size), rtol=1e-5, atol=1e-5)
        reps = 1 if B == 32 else 20  # B=1 calls take microseconds: time 20 per sample
        stats = interleaved({"torch-chain": lambda: [torch_chain(A, grads, size) for _ in range(reps)],
                             "actcam": lambda: [fused(A, grads, size) for _ in range(reps)]}, rounds, warmup=2)
        for s in stats.values():  # per call
            s.update(min=s["min"] / reps, median=s["median"] / reps, times=[t / reps for t in s["times"]])
        groups.append(group(f"cam-B{B}", stats, B=B, K=K, size=list(size), calls_per_sample=reps))

    A, grads = _inputs(32, K)
    weights = grads.mean(dim=(2, 3))
    torch.testing.assert_close(ac.ops.cam(A, weights, size), torch_chain_from_weights(A, weights, size),
                               rtol=1e-5, atol=1e-5)
    nbytes = A.numel() * A.element_size() + 32 * size[0] * size[1] * 4  # must read A, must write the maps
    src = torch.empty(nbytes // 8, dtype=torch.float32).uniform_()  # a copy reads + writes nbytes
    dst = torch.empty_like(src)
    stats = interleaved({"torch-chain": lambda: torch_chain_from_weights(A, weights, size),
                         "actcam": lambda: ac.ops.cam(A, weights, size)}, rounds, warmup=2)
    groups.append(group("cam-op-B32", stats))
    stats = interleaved({"copy": lambda: dst.copy_(src), "actcam": lambda: ac.ops.cam(A, weights, size)},
                        rounds, warmup=2)
    groups.append(group("cam-bandwidth", stats, bytes=nbytes,
                        notes={n: f"{nbytes / s['min'] / 1e9:.1f} GB/s (min)" for n, s in stats.items()}))

    live = ac.ops.cpu_capability()
    for cap in ("default", "avx2", "avx512"):
        try:
            torch.ops.actcam._set_cpu_capability(cap)
        except ValueError:  # not supported by this CPU
            continue
        stats = interleaved({"copy": lambda: dst.copy_(src), "actcam": lambda: ac.ops.cam(A, weights, size)},
                            rounds, warmup=2)
        groups.append(group(f"cam-bandwidth-{cap}", stats, bytes=nbytes, capability=cap,
                            notes={n: f"{nbytes / s['min'] / 1e9:.1f} GB/s (min)" for n, s in stats.items()}))
    torch.ops.actcam._set_cpu_capability(live)

    for name, (B, K_, h, w, out) in {"cam_from_grads-B1": (1, K, 7, 7, size),
                                     "cam_from_grads-video": (8, 160 if args.quick else 1280, 12, 20,
                                                              (90, 160) if args.quick else (360, 640))}.items():
        Av, Gv = _inputs(B, K_, h, w, seed=1)
        torch.testing.assert_close(ac.ops.cam_from_grads(Av, Gv, "gradcam", out), torch_chain(Av, Gv, out),
                                   rtol=1e-5, atol=1e-5)
        reps = 20 if B == 1 else 1
        stats = interleaved({"torch-chain": lambda: [torch_chain(Av, Gv, out) for _ in range(reps)],
                             "actcam": lambda: [ac.ops.cam_from_grads(Av, Gv, "gradcam", out) for _ in range(reps)]},
                            rounds, warmup=2)
        for st in stats.values():  # per call
            st.update(min=st["min"] / reps, median=st["median"] / reps, times=[t / reps for t in st["times"]])
        groups.append(group(name, stats, B=B, K=K_, low=[h, w], size=list(out), calls_per_sample=reps))

    # The backward of cam (maps -> activations and weights): autograd through the reference
    # chain against the fused C++ cam_backward, both from the same upstream gradient.
    Ab, Wb = A.clone().requires_grad_(True), weights.clone().requires_grad_(True)
    upstream = torch.randn(32, *size, generator=torch.Generator().manual_seed(2))

    def backward(fn):
        return torch.autograd.grad(fn(Ab, Wb, size), (Ab, Wb), upstream)

    for got, want in zip(backward(ac.ops.cam), backward(ac.reference.cam)):
        # Sums over 224x224 pixels: float32 rounding scales with the gradient's magnitude.
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    # The backward alone: each graph is recorded once and kept, so only the backward is timed.
    outs = {"reference-autograd": ac.reference.cam(Ab, Wb, size), "actcam": ac.ops.cam(Ab, Wb, size)}
    stats = interleaved({name: (lambda o=o: torch.autograd.grad(o, (Ab, Wb), upstream, retain_graph=True))
                         for name, o in outs.items()}, rounds, warmup=2)
    groups.append(group("cam-backward-B32", stats, B=32, K=K, size=list(size)))
    stats = interleaved({"reference-autograd": lambda: backward(ac.reference.cam),
                         "actcam": lambda: backward(ac.ops.cam)}, rounds, warmup=2)
    groups.append(group("cam-forward+backward-B32", stats, B=32, K=K, size=list(size)))

    by_dtype = {str(dt)[6:]: A.to(dt) for dt in (torch.float32, torch.float16, torch.bfloat16)}
    stats = interleaved({name: (lambda a=a: ac.ops.cam(a, weights, size)) for name, a in by_dtype.items()},
                        rounds, warmup=2)
    groups.append(group("cam-dtypes", stats, elements=A.numel(), capability=live))

    A2, g2 = _inputs(32, K=64 if args.quick else 512, h=14, w=14)
    g2 = g2 * 1e-2
    torch.testing.assert_close(ac.ops.gradcampp_weights(A2, g2), eq19_torch(A2, g2), rtol=1e-4, atol=1e-6)
    groups.append(group("gradcampp", interleaved({"torch-eq19": lambda: eq19_torch(A2, g2),
                                                   "actcam": lambda: ac.ops.gradcampp_weights(A2, g2)}, rounds)))

    g = torch.Generator().manual_seed(0)
    maps = torch.rand(16, *size, generator=g)
    images = torch.randint(0, 256, (16, *size, 3), generator=g, dtype=torch.uint8)
    assert np.array_equal(ac.ops.overlay(maps, images, 0.5).numpy(), ac.reference.overlay(maps, images, 0.5).numpy())
    m_np, i_np = maps.numpy(), images.numpy()
    groups.append(group("overlay", interleaved({"cv2-loop": lambda: cv2_loop(m_np, i_np, 0.5),
                                                 "actcam": lambda: ac.ops.overlay(maps, images, 0.5)}, rounds)))
    save(args.out, groups, rounds=rounds, quick=args.quick, cpu_capability=live, load_before=os.getloadavg())


if __name__ == "__main__":
    main()
