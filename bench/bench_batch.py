"""`actcam batch` throughput: batch 1 versus 8, one process versus two ranks under torchrun (gloo, CPU).

    python bench/bench_batch.py [--images 24]

Builds a folder of real photos (scikit-image's chelsea, coffee, astronaut, rocket, cropped
and rescaled into N distinct images of different sizes), then times whole processes on fresh
output folders: `actcam batch DIR --out OUT` with `--batch 1` and `--batch 8`, and `torchrun
--standalone --nproc_per_node=2 --no-python actcam batch DIR --out OUT --batch 8`, and prints
images/s of each and the ratios. Process start-up (torch
import, model load, and for torchrun the process-group set-up) is included, as a user sees it.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import skimage.data


def make_folder(root: Path, n: int) -> None:
    photos = [getattr(skimage.data, name)() for name in ("chelsea", "coffee", "astronaut", "rocket")]
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        f = 0.6 + 0.4 * ((i // len(photos)) % 5) / 4  # distinct crops of each photo
        crop = img[: int(h * f), : int(w * f)]
        cv2.imwrite(str(root / f"img{i:03d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))


def timed(cmd, env) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    args = parser.parse_args(argv)
    bindir = Path(sys.executable).parent
    actcam = str(bindir / "actcam")
    two_ranks = [str(bindir / "torchrun"), "--standalone", "--nproc_per_node=2", "--no-python"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "images"
        src.mkdir()
        make_folder(src, args.images)
        # Two ranks on two cores: one intra-op thread each, as torchrun sets by default.
        env = dict(os.environ)
        runs = {}
        for label, launcher, batch in (("1 process, --batch 1", [], 1), ("1 process, --batch 8", [], 8),
                                       ("torchrun 2 ranks, --batch 8", two_ranks, 8)):
            out = tmp / f"out{len(runs)}"
            runs[label] = timed(launcher + [actcam, "batch", str(src), "--out", str(out), "--batch", str(batch),
                                            "--quiet"], env)
            lines = (out / "results.jsonl").read_text().splitlines()
            assert len(lines) == args.images, f"{label}: {len(lines)} records for {args.images} images"
        shutil.rmtree(src)
    print(f"{args.images} images (whole processes, start-up included)")
    for label, sec in runs.items():
        print(f"  {label:30s} {sec:6.1f} s  {args.images / sec:5.2f} images/s")
    one, eight, two = runs.values()
    print(f"  --batch 8 / --batch 1 (1 process): {one / eight:.2f}x images/s; "
          f"2 ranks / 1 process (--batch 8): {eight / two:.2f}x images/s")


if __name__ == "__main__":
    main()
