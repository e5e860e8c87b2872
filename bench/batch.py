"""``actcam batch`` on a folder of photos: one process at --batch 1 and 8, and two torchrun ranks.

    python -m bench.batch [--images 192] [--rounds 1] [--quick] [--out bench/results/cpu_batch.json]

Whole processes as a user runs them (start-up included: imports, model load and, for torchrun,
the process-group set-up), on ``--images`` distinct crops of the bundled photos.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from ._common import arguments, group, interleaved, make_photo_folder, save


def main(argv=None):
    parser = arguments(__doc__, "bench/results/cpu_batch.json", rounds=1)
    parser.add_argument("--images", type=int, default=192)
    args = parser.parse_args(argv)
    n = 8 if args.quick else args.images
    bindir = Path(sys.executable).parent
    actcam = [str(bindir / "actcam")]
    two_ranks = [str(bindir / "torchrun"), "--standalone", "--nproc_per_node=2", "--no-python"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "images"
        make_photo_folder(src, n)
        runs = {"1 process, --batch 1": ([], 1), "1 process, --batch 8": ([], 8),
                "torchrun 2 ranks, --batch 8": (two_ranks, 8)}
        counter = iter(range(10 ** 6))

        def case(launcher, batch):
            def run():
                out = tmp / f"out{next(counter)}"
                subprocess.run(launcher + actcam + ["batch", str(src), "--out", str(out), "--batch", str(batch),
                                                    "--quiet"], check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                lines = (out / "results.jsonl").read_text().splitlines()
                assert len(lines) == n, f"{len(lines)} records for {n} images"
            return run

        stats = interleaved({name: case(*spec) for name, spec in runs.items()}, 1 if args.quick else args.rounds,
                            warmup=0)
    notes = {name: f"{n / s['min']:.2f} images/s" for name, s in stats.items()}
    save(args.out, [group(f"actcam batch, {n} images, whole processes", stats, notes=notes)], images=n)


if __name__ == "__main__":
    main()
