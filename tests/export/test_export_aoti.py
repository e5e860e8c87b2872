"""The AOTInductor package (.pt2) of EfficientNet-Lite0's CAM, written by `actcam export`, loaded
in Python and in C++ (torch::inductor::AOTIModelPackageLoader + libactcam.so), against the
eager CAM on the bundled photos.

One package is compiled for the whole module (about half a minute on 2 cores); the C++ check
builds the LibTorch targets with tests/cpp/run_ctest.sh (about a minute and a half the first
time) and is skipped, with the reason, without cmake.
"""

import io
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

import actcam_ext as ac
from actcam_ext import cli

ROOT = Path(__file__).resolve().parents[2]
SIZE = (224, 224)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """(path, stdout) of `actcam export efficientnet-lite0 cam.pt2 --batch 4 --dynamic-batch`."""
    out = tmp_path_factory.mktemp("pt2") / "cam.pt2"
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = cli.main(["export", "efficientnet-lite0", str(out), "--batch", "4", "--dynamic-batch"])
    assert rc == 0
    return out, buf.getvalue()


@pytest.fixture(scope="module")
def expected(effnet, effnet_photos):
    model, _ = effnet
    with torch.no_grad():
        logits = model(effnet_photos)
    return {"x": effnet_photos, "logits": logits, "maps": ac.CAM(model)(effnet_photos, size=SIZE)}


def test_cli_writes_one_package(package):
    path, stdout = package
    assert os.listdir(path.parent) == ["cam.pt2"]  # no temporary sibling left
    assert stdout.startswith(f"wrote {path}: images [N,3,224,224] normalised with mean (0.4980, 0.4980, 0.4980)")
    assert stdout.rstrip().endswith("-> logits [N,classes], maps [N,224,224]")


def test_pt2_in_python_equals_eager_cam(package, expected):
    runner = torch._inductor.aoti_load_package(str(package[0]))
    meta = runner.get_metadata()
    assert meta["actcam.target_layer"] == "_avg_pooling:input" and meta["actcam.batch"] == "dynamic"
    assert meta["actcam.model"] == "efficientnet-lite0" and meta["actcam.std"] == ",".join([repr(128 / 255)] * 3)
    x = expected["x"]
    for rows in (slice(0, 4), slice(1, 2)):  # the batch it was traced at, and another
        logits, maps = runner(x[rows])
        torch.testing.assert_close(maps, expected["maps"][rows], atol=1e-5, rtol=0)
        torch.testing.assert_close(logits, expected["logits"][rows], atol=1e-4, rtol=1e-4)
    assert logits.argmax(1).item() in (967, 968)  # coffee: espresso or cup


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed: the C++ runner cannot be built")
def test_pt2_in_cpp_equals_eager_cam(package, expected, tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    build = subprocess.run(["bash", str(ROOT / "tests" / "cpp" / "run_ctest.sh")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, (build.stdout + build.stderr)[-6000:]
    assert "test_pt2 ...." in build.stdout and "100% tests passed" in build.stdout
    torch.save({k: v.contiguous() for k, v in expected.items()}, tmp_path / "expected.pt")
    run = subprocess.run([str(ROOT / "build" / "cmake" / "test_pt2"), str(package[0]), str(tmp_path / "expected.pt")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS maps equal the eager actcam_ext.CAM maps" in run.stdout and "OK: 0 check(s) failed" in run.stdout
