"""Scratch memory of the CPU cam kernel stays bounded by its output, not by h x W.

Each case runs in a fresh interpreter and reads the process's peak resident size
(getrusage's ru_maxrss) before and after the op: an assertion on memory, not on time.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import actcam_ext as ac

ROOT = Path(__file__).resolve().parents[2]

_PEAK = textwrap.dedent("""
    import resource, sys
    import torch
    import actcam_ext as ac

    B, K, h, w, H, W = map(int, sys.argv[1:7])
    normalize = sys.argv[7] == "1"
    A = torch.rand(B, K, h, w)
    wts = torch.rand(B, K)
    ac.ops.cam(torch.rand(1, 1, 3, 3), torch.rand(1, 1), (5, 5))  # first-call set-up outside the window
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = ac.ops.cam(A, wts, (H, W), normalize=normalize)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert out.shape == (B, H, W)
    print((after - before) * 1024)  # ru_maxrss is in KiB on Linux
""")

MiB = 1 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units are Linux's")
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape", [
    (1, 1, 16000, 1, 1, 16000),  # a tall map to a wide one: h x W = 256M floats before the fix
    (2, 3, 6000, 40, 3, 6000),   # downsampling a tall map, two maps (two threads)
])
def test_cam_cpu_scratch_is_bounded(shape, normalize):
    assert ac.native_available("cpu")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="2")
    run = subprocess.run([sys.executable, "-c", _PEAK, *map(str, shape), "1" if normalize else "0"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    grown = int(run.stdout.split()[-1])
    B, K, h, w, H, W = shape
    # The output plus scratch of at most 2H source rows of width W and one low-res plane per
    # thread; 32 MiB leaves room for the allocator's own slack.
    assert grown < 32 * MiB, f"peak resident size grew by {grown / MiB:.0f} MiB for a {B * H * W * 4 / MiB:.1f} MiB result"
