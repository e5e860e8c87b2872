"""The opt-in speed switches (bf16, --compile) against exact fp32 on the CPU: what each gains
and what it costs in faithfulness.

    python -m bench.precision [--rounds 5] [--frames 48,336] [--quick] [--out bench/results/cpu_precision.json]

The default model (EfficientNet-Lite0, as ``actcam video`` runs it), Grad-CAM:

- faithfulness on the four bundled photos and on 48 frames of the 640x360 clip: top-1 agreement,
  mean absolute difference of the maps, IoU of the boxes (threshold 0.2), each switch against fp32;
- speed: one Grad-CAM call on a batch of 8 frames, fp32 vs bf16 vs compiled, interleaved (min and
  median); and ``actcam video --batch 8`` in steady state (two clip lengths, so start-up and
  compilation cancel) with ``--precision fp32``, ``--precision bf16`` and ``--compile``.

bf16 needs a CPU with bfloat16 instructions (AVX512-BF16 or AMX); elsewhere the command refuses.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch

import actcam_ext as ac
from actcam_ext.metrics import box_iou

from ._common import PHOTOS, arguments, group, interleaved, make_clip, save

SIZE = (640, 360)


def _frames(path, n):
    cap = cv2.VideoCapture(str(path))
    out = []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        out.append(np.ascontiguousarray(f[:, :, ::-1]))
    return out


def _faithfulness(e32, e16, images) -> dict:
    opts = ac.ExplainOptions(top_k=1)
    agree, diffs, ious = [], [], []
    for i in range(0, len(images), 8):
        for p, q in zip(e32.predict(images[i:i + 8], opts), e16.predict(images[i:i + 8], opts)):
            agree.append(p.class_ids[0] == q.class_ids[0])
            diffs.append(float((p.maps[0] - q.maps[0]).abs().mean()) if agree[-1] else float("nan"))
            ious.append(float(box_iou(torch.tensor(p.boxes[0]), torch.tensor(q.boxes[0]))))
    d = [v for v in diffs if v == v]
    return {"images": len(agree), "top1_agreement": float(np.mean(agree)), "mean_abs_map_difference": float(np.mean(d)),
            "max_mean_abs_map_difference": float(np.max(d)), "mean_box_iou": float(np.mean(ious))}


VARIANTS = {"fp32": {}, "bf16": {"precision": "bf16"}, "compiled": {"compile": True}}
FLAGS = {"fp32": [], "bf16": ["--precision", "bf16"], "compiled": ["--compile"]}


def _video_seconds(clip, out, variant) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "actcam_ext", "video", str(clip), str(out), "--batch", "8", "--device", "cpu",
                    *FLAGS[variant], "--quiet"], check=True)
    return time.perf_counter() - t


def main(argv=None):
    parser = arguments(__doc__, "bench/results/cpu_precision.json", rounds=5)
    parser.add_argument("--frames", default="48,336", help="the two clip lengths of the video rows")
    parser.add_argument("--video-rounds", type=int, default=2, help="runs of each actcam video row (default 2)")
    args = parser.parse_args(argv)
    n1, n2 = (8, 16) if args.quick else tuple(int(v) for v in args.frames.split(","))
    rounds = 1 if args.quick else args.rounds
    video_rounds = 1 if args.quick else args.video_rounds
    e32 = ac.Explainer.load("gradcam", device="cpu")
    explainers = {name: e32 if not kw else ac.Explainer.load("gradcam", e32.model, preprocess=e32.preprocess,
                                                             device="cpu", **kw)
                  for name, kw in VARIANTS.items()}
    with tempfile.TemporaryDirectory() as d:
        clips = {n: make_clip(Path(d) / f"clip{n}.mp4", frames=n, size=SIZE) for n in (n1, n2)}
        photos = [getattr(skimage.data, n)() for n in PHOTOS]
        frames = _frames(clips[n2], 48 if not args.quick else 8)
        faith = {name: {"photos": _faithfulness(e32, e, photos), "clip frames": _faithfulness(e32, e, frames)}
                 for name, e in explainers.items() if e is not e32}
        batch = torch.from_numpy(np.stack(frames[:8]))
        stats = interleaved({name: (lambda e=e: e.heatmaps(batch)) for name, e in explainers.items()}, rounds)
        groups = [group("Grad-CAM, 8 frames 640x360, EfficientNet-Lite0", stats)]
        times = {v: {n: [] for n in (n1, n2)} for v in VARIANTS}
        for _ in range(video_rounds):
            for n, clip in clips.items():
                for v in times:
                    times[v][n].append(_video_seconds(clip, Path(d) / f"o_{v}.mp4", v))
    steady = {v: (n2 - n1) / (min(t[n2]) - min(t[n1])) for v, t in times.items()}
    for name, f in faith.items():
        print(f"{name} against fp32: {f}")
    print("actcam video steady state: " + ", ".join(
        f"{v} {fps:.1f} frames/s ({fps / steady['fp32']:.2f}x)" for v, fps in steady.items()))
    save(args.out, groups, faithfulness=faith, video_steady_frames_per_second=steady, video_seconds=times,
         frames=[n1, n2], rounds=rounds, video_rounds=video_rounds, quick=args.quick)


if __name__ == "__main__":
    main()
