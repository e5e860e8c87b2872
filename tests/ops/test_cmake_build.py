"""The LibTorch build (CMakeLists.txt): configure, build and ctest it, then load libactcam.so
into a fresh Python process with torch.ops.load_library.

Slow (a full CMake build); skipped without cmake.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "cpp" / "run_ctest.sh"
LIBRARY = ROOT / "build" / "cmake" / "libactcam.so"

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


@pytest.fixture(scope="module")
def ctest_run():
    # The script builds with the torch of this interpreter, the one the tests run against.
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)


def test_cmake_build_and_ctest_pass(ctest_run):
    output = ctest_run.stdout + ctest_run.stderr
    assert ctest_run.returncode == 0, output[-6000:]
    assert "100% tests passed" in output, output[-6000:]


# Runs in its own process: importing actcam_ext would register TORCH_LIBRARY(actcam) from
# actcam_ext._C, and a second registration from libactcam.so in the same process is an error.
# The reference is written out here for the same reason (actcam_ext.reference imports the package).
_LOAD_AND_COMPARE = textwrap.dedent("""
    import sys
    import torch
    import torch.nn.functional as F

    torch.ops.load_library(sys.argv[1])
    assert "actcam_ext" not in sys.modules

    def reference(acts, weights, size):
        per_class = weights.dim() == 3
        w = weights if per_class else weights[:, None]
        maps = torch.relu(torch.einsum("bck,bkhw->bchw", w, acts))
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        lo = maps.amin(dim=(-2, -1), keepdim=True)
        hi = maps.amax(dim=(-2, -1), keepdim=True)
        constant = hi - lo <= 1e-6 * torch.maximum(lo.abs(), hi.abs())
        maps = torch.where(constant, torch.zeros_like(maps), (maps - lo) / (hi - lo))
        return maps if per_class else maps[:, 0]

    torch.manual_seed(0)
    acts = torch.randn(2, 4, 7, 7)
    for weights in (torch.randn(2, 4), torch.randn(2, 3, 4)):
        got = torch.ops.actcam.cam(acts, weights, [32, 48])
        torch.testing.assert_close(got, reference(acts, weights, (32, 48)), rtol=1e-5, atol=1e-5)
    print("load_library OK")
""")


def test_built_library_loads_in_python(ctest_run):
    assert ctest_run.returncode == 0, "the CMake build failed; see test_cmake_build_and_ctest_pass"
    assert LIBRARY.is_file(), f"{LIBRARY} was not built"
    run = subprocess.run([sys.executable, "-c", _LOAD_AND_COMPARE, str(LIBRARY)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "load_library OK" in run.stdout
