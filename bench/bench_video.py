"""`actcam video` against a pytorch-grad-cam loop and a plain decode+encode loop (issue 5).

Each row times a whole process on the same 640x360 clip of real content (a pan and zoom over
scikit-image's astronaut photo, made by ``actcam_ext.video.make_demo_clip``):

* baseline -- decode + encode only (cv2.VideoCapture -> cv2.VideoWriter mp4v): the ceiling
* ours     -- ``actcam video CLIP OUT --batch 8`` (default model EfficientNet-Lite0, Grad-CAM)
* peer     -- pytorch-grad-cam's GradCAM on the same model and layer, batches of 8 frames,
              map resized to the frame, ``show_cam_on_image`` + VideoWriter; the model in the
              form efficientnet-lite-pytorch gives it (``optimize=False``), as the peer's users have it
* peer_opt -- the same loop on the model as ``actcam video`` runs it on the CPU
              (``models.load_model``: NHWC weights, BatchNorm folded): the share of the
              speed-up that comes from the model optimisation alone, which a peer user could
              also get by loading the model through actcam_ext

Run either way (frames/s = frames / median seconds of the whole process):

    python -m pytest bench/bench_video.py --benchmark-json bench/results/cpu_video.json && \
        python bench/report.py bench/results/cpu_video.json
    python bench/bench_video.py [--frames 48]      # one timed run of each, prints frames/s and ratios
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

FRAMES = int(os.environ.get("ACTCAM_BENCH_FRAMES", "48"))
SIZE = (640, 360)
ACTCAM = [sys.executable, "-m", "actcam_ext.cli"]

_PLAIN = r"""
import sys, cv2
cap = cv2.VideoCapture(sys.argv[1])
w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
out = cv2.VideoWriter(sys.argv[2], cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS), (w, h))
while True:
    ok, f = cap.read()
    if not ok:
        break
    out.write(f)
out.release()
"""

# The peer as its users write it (README of pytorch-grad-cam): the same model, layer and
# preprocessing as actcam, so only the explanation/overlay/pipeline differ.
_PEER = r"""
import sys, cv2, numpy as np, torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from actcam_ext.models import load_model
model, pre = load_model(None, "cpu", optimize=sys.argv[3] == "optimized")
layer = dict(model.named_modules())[pre.target_layer]
cam = GradCAM(model=model, target_layers=[layer])
cap = cv2.VideoCapture(sys.argv[1])
w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
out = cv2.VideoWriter(sys.argv[2], cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS), (w, h))

def flush(frames):
    rgbs = [f[:, :, ::-1].copy() for f in frames]
    x = pre(rgbs, "cpu")
    maps = cam(input_tensor=x, targets=None)          # [B,224,224], top-1 class
    for rgb, m in zip(rgbs, maps):
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        vis = show_cam_on_image(rgb.astype(np.float32) / 255, m, use_rgb=True, image_weight=0.5)
        out.write(vis[:, :, ::-1])

batch = []
while True:
    ok, f = cap.read()
    if not ok:
        break
    batch.append(f)
    if len(batch) == 8:
        flush(batch); batch = []
if batch:
    flush(batch)
out.release()
"""


def _commands(clip: str, outdir: str) -> dict:
    return {
        "baseline": ("decode+encode", [sys.executable, "-c", _PLAIN, clip, f"{outdir}/plain.mp4"]),
        "ours": ("actcam video", ACTCAM + ["video", clip, f"{outdir}/ours.mp4", "--batch", "8", "--device", "cpu",
                                           "--quiet"]),
        "peer": ("pytorch-grad-cam loop", [sys.executable, "-c", _PEER, clip, f"{outdir}/peer.mp4", "as-packaged"]),
        "peer_opt": ("pytorch-grad-cam, optimised", [sys.executable, "-c", _PEER, clip, f"{outdir}/peer2.mp4",
                                                     "optimized"]),
    }


def _run(cmd) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t


def _clip(folder, frames=FRAMES) -> str:
    from actcam_ext.video import make_demo_clip
    return make_demo_clip(Path(folder) / "clip640x360.mp4", frames=frames, size=SIZE, fps=24)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return _clip(tmp_path_factory.mktemp("video"))


@pytest.mark.benchmark(group=f"video 640x360, {FRAMES} frames, whole process (CPU)")
@pytest.mark.parametrize("role", ["baseline", "ours", "peer", "peer_opt"])
def test_video_fps(bench, clip, tmp_path, role):
    name, cmd = _commands(clip, str(tmp_path))[role]
    bench(role, _run, cmd, rounds=3, warmup_rounds=0, frames=FRAMES, note=name)


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=FRAMES)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        clip = _clip(d, args.frames)
        fps = {}
        for role, (name, cmd) in _commands(clip, d).items():
            sec = _run(cmd)
            fps[role] = args.frames / sec
            print(f"{name:30s} ({role:9s}) {sec:7.2f} s  {fps[role]:7.2f} frames/s", flush=True)
    print(f"actcam video / pytorch-grad-cam loop: {fps['ours'] / fps['peer']:.2f}x frames/s "
          f"({fps['ours'] / fps['peer_opt']:.2f}x with the peer on the optimised model too); "
          f"actcam video reaches {fps['ours'] / fps['baseline']:.1%} of plain decode+encode")


if __name__ == "__main__":
    main(sys.argv[1:])
