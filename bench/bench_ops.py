"""CPU benchmarks of the fused ops against the pure-torch chain and OpenCV, in one run.

    python -m pytest bench/bench_ops.py --benchmark-json=bench/results/cpu_ops.json
    python bench/report.py bench/results/cpu_ops.json

Groups (ratios are taken within a group against its "baseline"):
- cam-B32 / cam-B1: Grad-CAM post-processing from (activations, grads): mean of grads,
  weighted sum, ReLU, bilinear 7x7 -> 224x224, min-max; the torch chain vs grads.mean + ops.cam.
- cam-op-B32: the same after the weights exist (both sides skip the mean): what ops.cam
  replaces on its own.
- cam-bandwidth: ops.cam alone (weights given) against a plain copy of the same number of
  bytes (activations read + maps written), for the achieved fraction of memory bandwidth.
- gradcampp: Eq. 19 weights at B=32, K=512, 14x14, torch expression vs ops.gradcampp_weights.
- overlay: 16 x 224x224, a per-image cv2.applyColorMap + cv2.addWeighted loop vs ops.overlay.
"""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import actcam_ext as ac


def torch_chain(A, grads, size):
    """The tutorial's Grad-CAM lines, batched: what a user writes without this library."""
    weights = grads.mean(dim=(2, 3))
    maps = torch.einsum("bk,bkhw->bhw", weights, A)[:, None]
    maps = F.interpolate(torch.relu(maps), size=size, mode="bilinear", align_corners=False)
    lo = maps.amin(dim=(2, 3), keepdim=True)
    hi = maps.amax(dim=(2, 3), keepdim=True)
    return ((maps - lo) / (hi - lo))[:, 0]


def fused(A, grads, size):
    return ac.ops.cam(A, grads.mean(dim=(2, 3)), size)


def torch_chain_from_weights(A, weights, size):
    """The chain after the weights exist: what ops.cam replaces on its own."""
    maps = torch.einsum("bk,bkhw->bhw", weights, A)[:, None]
    maps = F.interpolate(torch.relu(maps), size=size, mode="bilinear", align_corners=False)
    lo = maps.amin(dim=(2, 3), keepdim=True)
    hi = maps.amax(dim=(2, 3), keepdim=True)
    return ((maps - lo) / (hi - lo))[:, 0]


def _inputs(B, K=2048, h=7, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, K, h, w, generator=g).relu(), torch.randn(B, K, h, w, generator=g)


@pytest.mark.parametrize("B", [32, 1])
@pytest.mark.parametrize("impl", ["torch-chain", "actcam"])
def test_cam(bench, benchmark, B, impl):
    benchmark.group = f"cam-B{B}"
    A, grads = _inputs(B)
    fn, role = (torch_chain, "baseline") if impl == "torch-chain" else (fused, "ours")
    out = bench(role, fn, A, grads, (224, 224), rounds=100 if B == 32 else 1000, warmup_rounds=2 if B == 32 else 50)
    torch.testing.assert_close(out, torch_chain(A, grads, (224, 224)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["torch-chain", "actcam"])
def test_cam_op(bench, benchmark, impl):
    benchmark.group = "cam-op-B32"
    A, grads = _inputs(32)
    weights = grads.mean(dim=(2, 3))
    fn, role = (torch_chain_from_weights, "baseline") if impl == "torch-chain" else (ac.ops.cam, "ours")
    out = bench(role, fn, A, weights, (224, 224), rounds=30)
    torch.testing.assert_close(out, torch_chain_from_weights(A, weights, (224, 224)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["copy", "actcam"])
def test_cam_bandwidth(bench, benchmark, impl):
    benchmark.group = "cam-bandwidth"
    B = 32
    A, grads = _inputs(B)
    weights = grads.mean(dim=(2, 3))
    nbytes = A.numel() * A.element_size() + B * 224 * 224 * 4  # must read A, must write the maps
    if impl == "copy":
        src = torch.empty(nbytes // 8, dtype=torch.float32).uniform_()  # copy reads + writes nbytes
        dst = torch.empty_like(src)
        bench("baseline", dst.copy_, src, rounds=30, bytes=nbytes)
    else:
        bench("ours", ac.ops.cam, A, weights, (224, 224), rounds=30, bytes=nbytes)


def eq19_torch(A, g):
    """Grad-CAM++ Eq. 19 as a user writes it in torch (the same algebra as reference.gradcampp_weights)."""
    s = A.sum(dim=(2, 3), keepdim=True)
    g2 = g.pow(2)
    denom = 2 * g2 + s * g.pow(3)
    alpha = torch.where(denom != 0, g2 / denom, torch.zeros_like(g))
    return (alpha * torch.relu(g)).sum(dim=(2, 3))


@pytest.mark.parametrize("impl", ["torch-eq19", "actcam"])
def test_gradcampp_weights(bench, benchmark, impl):
    benchmark.group = "gradcampp"
    A, grads = _inputs(32, K=512, h=14, w=14)
    grads = grads * 1e-2
    if impl == "torch-eq19":
        out = bench("baseline", eq19_torch, A, grads, rounds=30)
    else:
        out = bench("ours", ac.ops.gradcampp_weights, A, grads, rounds=30)
    torch.testing.assert_close(out, eq19_torch(A, grads), rtol=1e-4, atol=1e-6)


def cv2_loop(maps_np, images_np, w):
    out = np.empty_like(images_np)
    for i, (m, img) in enumerate(zip(maps_np, images_np)):
        heat = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * m), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        out[i] = cv2.addWeighted(heat, 1 - w, img, w, 0)
    return out


@pytest.mark.parametrize("impl", ["cv2-loop", "actcam"])
def test_overlay(bench, benchmark, impl):
    benchmark.group = "overlay"
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(16, 224, 224, generator=g)
    images = torch.randint(0, 256, (16, 224, 224, 3), generator=g, dtype=torch.uint8)
    if impl == "cv2-loop":
        out = bench("baseline", cv2_loop, maps.numpy(), images.numpy(), 0.5, rounds=50)
        out = torch.from_numpy(out)
    else:
        out = bench("ours", ac.ops.overlay, maps, images, 0.5, rounds=50)
    assert (out.int() - ac.reference.overlay(maps, images, 0.5).int()).abs().max() <= 1
