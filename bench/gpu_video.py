"""GPU rows of the video and folder benchmarks (run by bench/gpu_check.sh).

* 720p video frames/s at batch 1, 8, 32, and at batch 8 with the model optimised as on the
  CPU (``load_model(optimize=True)``: NHWC, BatchNorm folded), to decide the CUDA default;
* ``actcam batch`` images/s on 48 photos at batch 1, 8, 32.

    python -m bench.gpu_video --out results.json [--dry-run]

A 1280x720 pan-and-zoom clip made from a bundled photo, explained by ``explain_video``
(EfficientNet-Lite0, Grad-CAM) on the GPU at each batch size; the rate counts the whole
stream (decode thread, model, fused overlay, encode thread) after one untimed warm-up run.
--dry-run: CPU, a 160x90 clip and 8 photos, batch 1 and 8 (checks the script, not speed).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from actcam_ext.models import load_model
from actcam_ext.pipeline import ExplainOptions, Explainer, VideoOptions, explain_folder, explain_video

from ._common import command, machine, make_clip, make_photo_folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if args.dry_run:
        device, size, frames, batches, photos = "cpu", (160, 90), 16, [1, 8], 8
    else:
        if not torch.cuda.is_available():
            sys.exit("bench.gpu_video: no CUDA GPU visible (use --dry-run to check the script on a CPU)")
        device, size, frames, batches, photos = "cuda", (1280, 720), 96, [1, 8, 32], 48
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", frames=frames, size=size)
        explainer = Explainer.load("gradcam", device=device)
        explain_video(clip, Path(tmp) / "warm.mp4", explainer, VideoOptions(batch=batches[0]))  # kernels, allocator
        for batch in batches:
            summary = explain_video(clip, Path(tmp) / f"out{batch}.mp4", explainer, VideoOptions(batch=batch))
            row = dict(kind="video", batch=batch, frames=summary.frames, seconds=summary.seconds,
                       frames_per_second=summary.frames_per_second, width=size[0], height=size[1])
            results.append(row)
            print(f"video {size[0]}x{size[1]} batch {batch:>2}: {row['frames_per_second']:7.1f} frames/s", flush=True)
        for optimize in (False, True):  # the CUDA default leaves the model as packaged
            model, pre = load_model(None, device, optimize=optimize)
            e = Explainer.load("gradcam", model, preprocess=pre, device=device)
            summary = explain_video(clip, Path(tmp) / "opt.mp4", e, VideoOptions(batch=8))
            row = dict(kind="video", batch=8, optimize=optimize, frames=summary.frames, seconds=summary.seconds,
                       frames_per_second=summary.frames_per_second, width=size[0], height=size[1])
            results.append(row)
            print(f"video {size[0]}x{size[1]} batch  8, optimize={optimize}: {row['frames_per_second']:7.1f} frames/s",
                  flush=True)
        folder = Path(tmp) / "photos"
        make_photo_folder(folder, photos)
        explain_folder(folder, Path(tmp) / "warm", explainer, ExplainOptions(batch=batches[0]), log=lambda m: None)
        for batch in batches:
            s = explain_folder(folder, Path(tmp) / f"folder{batch}", explainer, ExplainOptions(batch=batch),
                               log=lambda m: None)
            row = dict(kind="batch", batch=batch, images=s["explained"], seconds=s["seconds"],
                       images_per_second=s["explained"] / s["seconds"])
            results.append(row)
            print(f"actcam batch, {photos} photos, batch {batch:>2}: {row['images_per_second']:7.1f} images/s", flush=True)
    info = dict(device=torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)", torch=torch.__version__,
                model="efficientnet-lite0", method="gradcam", command=command(), machine=machine())
    Path(args.out).write_text(json.dumps(dict(info=info, results=results), indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
