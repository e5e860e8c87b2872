"""``actcam video`` against the peer and against the limit, whole processes, steady state.

    python -m bench.video [--frames 48,336] [--rounds 3] [--quick] [--out bench/results/cpu_video.json]

Each case is a whole process over the same 640x360 clip of real content (a pan and zoom over
scikit-image's astronaut photo, ``bench._common.make_clip``), EfficientNet-Lite0, Grad-CAM on
its pooled feature map, batches of 8 frames:

- decode+encode: cv2.VideoCapture -> cv2.VideoWriter (mp4v) only: the pipeline's ceiling;
- forward (the limit): decode, BGR -> RGB (cv2.cvtColor, as every case here), preprocess
  and a no-grad forward of the same model as
  ``actcam video`` runs it (``models.load_model``: on the CPU NHWC weights, BatchNorm folded)
  over the same frames at the same batch: what any explanation costs at least;
- forward, no huge pages: the limit without the huge-page setting (below): what it is worth;
- actcam video: ``actcam video CLIP OUT --batch 8``;
- actcam video --compile: the same with the opt-in compiled explain step (docs/precision.md),
  still float32; compilation is start-up and cancels out of the steady state;
- peer, same model: pytorch-grad-cam's GradCAM on the same model, layer and preprocessing,
  maps resized to the frame, ``show_cam_on_image`` + VideoWriter: the fair comparison;
- peer, packaged model: the same loop on the model as efficientnet-lite-pytorch builds it, as
  the peer's users have it.

The limit runs with the allocator setting the actcam command gives itself (huge pages for
tensors of 2 MiB or more where the kernel offers them, ``actcam_ext.cli.main.use_huge_pages``):
it makes the bare forward much faster, and the limit is the fastest forward. The peers run
without it, as their users run them; measured here, it slows them down (the peer on the same
model: 20-24 frames/s with it, 27 without), so leaving it out is their better case.

Every case runs on two clip lengths; frames/s in steady state = (N2 - N1) / (t2 - t1) with the
minimum time of the interleaved rounds at each length, so start-up (imports, model load) cancels.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from actcam_ext.cli.main import HUGE_PAGES_VARIABLE, use_huge_pages

from ._common import arguments, make_clip, save

SIZE = (640, 360)

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

_FORWARD = r"""
import sys, cv2, torch
from actcam_ext.models import load_model
model, pre = load_model(None, "cpu")
cap = cv2.VideoCapture(sys.argv[1])
batch = []
def flush(frames):
    with torch.no_grad():
        model(pre([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames], "cpu"))
while True:
    ok, f = cap.read()
    if not ok:
        break
    batch.append(f)
    if len(batch) == 8:
        flush(batch); batch = []
if batch:
    flush(batch)
"""

# The peer as its users write it (pytorch-grad-cam's README), on the same layer and
# preprocessing as actcam: only the explanation, overlay and pipeline differ.
_PEER = r"""
import sys, cv2, numpy as np, torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from actcam_ext.models import load_model
model, pre = load_model(None, "cpu", optimize=sys.argv[3] == "optimized")
cam = GradCAM(model=model, target_layers=[model._head_act])
cap = cv2.VideoCapture(sys.argv[1])
w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
out = cv2.VideoWriter(sys.argv[2], cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS), (w, h))

def flush(frames):
    rgbs = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    maps = cam(input_tensor=pre(rgbs, "cpu"), targets=None)          # [B,224,224], top-1 class
    for rgb, m in zip(rgbs, maps):
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        vis = show_cam_on_image(rgb.astype(np.float32) / 255, m, use_rgb=True, image_weight=0.5)
        out.write(cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))

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


def commands(clip: str, outdir: str) -> dict:
    py = [sys.executable, "-c"]
    return {
        "decode+encode": py + [_PLAIN, clip, f"{outdir}/plain.mp4"],
        "forward (the limit)": py + [_FORWARD, clip],
        "forward, no huge pages": py + [_FORWARD, clip],
        "actcam video": [sys.executable, "-m", "actcam_ext", "video", clip, f"{outdir}/ours.mp4", "--batch", "8",
                         "--device", "cpu", "--quiet"],
        "actcam video --compile": [sys.executable, "-m", "actcam_ext", "video", clip, f"{outdir}/ours-compiled.mp4",
                                   "--batch", "8", "--device", "cpu", "--quiet", "--compile"],
        "peer, same model": py + [_PEER, clip, f"{outdir}/peer.mp4", "optimized"],
        "peer, packaged model": py + [_PEER, clip, f"{outdir}/peer2.mp4", "packaged"],
    }


# The cases that run without the huge-page setting (see above).
WITHOUT_HUGE_PAGES = ("forward, no huge pages", "peer, same model", "peer, packaged model")


def _run(cmd, name: str) -> float:
    env = dict(os.environ)
    if name in WITHOUT_HUGE_PAGES:
        env.pop(HUGE_PAGES_VARIABLE, None)
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"bench.video: {cmd[:3]} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t


def main(argv=None):
    parser = arguments(__doc__, "bench/results/cpu_video.json", rounds=3)
    parser.add_argument("--frames", default="48,336", help="the two clip lengths (default 48,336)")
    args = parser.parse_args(argv)
    use_huge_pages()  # inherited by the limit's process (and set by actcam for itself)
    n1, n2 = (8, 24) if args.quick else tuple(int(v) for v in args.frames.split(","))
    rounds = 1 if args.quick else args.rounds
    times: dict = {}
    with tempfile.TemporaryDirectory() as d:
        clips = {n: make_clip(Path(d) / f"clip{n}.mp4", frames=n, size=(160, 90) if args.quick else SIZE, fps=24)
                 for n in (n1, n2)}
        for _ in range(rounds):  # interleaved: every case at both lengths in each round
            for n, clip in clips.items():
                for name, cmd in commands(clip, d).items():
                    times.setdefault(name, {}).setdefault(n, []).append(_run(cmd, name))
    cases = []
    for name, by_n in times.items():
        t1, t2 = min(by_n[n1]), min(by_n[n2])
        cases.append({"name": name, "min": t2, "median": sorted(by_n[n2])[len(by_n[n2]) // 2],
                      "times": by_n[n2], f"seconds_{n1}_frames": by_n[n1],
                      "steady_frames_per_second": (n2 - n1) / (t2 - t1) if t2 > t1 else float("inf"),
                      "whole_process_frames_per_second": n2 / t2})
    fps = {c["name"]: c["steady_frames_per_second"] for c in cases}
    ours = fps["actcam video"]
    for c in cases:
        c["note"] = f"{c['steady_frames_per_second']:.1f} frames/s steady, {c['whole_process_frames_per_second']:.1f} whole"
    print(f"steady state, {n1} -> {n2} frames: actcam video {ours:.1f} frames/s = "
          f"{ours / fps['forward (the limit)']:.2f}x the no-grad forward (the limit); "
          f"{ours / fps['peer, same model']:.2f}x the peer on the same model; "
          f"{ours / fps['peer, packaged model']:.2f}x the peer on the packaged model; with --compile "
          f"{fps['actcam video --compile']:.1f} frames/s = {fps['actcam video --compile'] / fps['forward (the limit)']:.2f}x "
          f"the limit, {fps['actcam video --compile'] / fps['peer, same model']:.2f}x the peer on the same model")
    save(args.out, [{"group": f"video {SIZE[0]}x{SIZE[1]}, batch 8, whole processes ({n2} frames)",
                     "cases": cases}], frames=[n1, n2], rounds=rounds, quick=args.quick,
         ratios={"vs_limit": ours / fps["forward (the limit)"], "vs_peer_same_model": ours / fps["peer, same model"],
                 "vs_peer_packaged": ours / fps["peer, packaged model"],
                 "compiled_vs_limit": fps["actcam video --compile"] / fps["forward (the limit)"],
                 "compiled_vs_peer_same_model": fps["actcam video --compile"] / fps["peer, same model"],
                 "huge_pages_forward_gain": fps["forward (the limit)"] / fps["forward, no huge pages"]})


if __name__ == "__main__":
    main()
