"""Writes the inputs of the C++ .pt2 test (test_pt2.cpp): OUT/cam.pt2 and OUT/expected.pt.

    python tests/cpp/make_pt2.py OUT

cam.pt2 is actcam_ext.export.pt2 of a small seeded GAP + linear CNN (a few seconds to
compile); expected.pt is {"x", "logits", "maps"} with the eager model's logits and the eager
actcam_ext.CAM maps for x, which the C++ runner must reproduce. CMakeLists.txt runs this as
the setup of the test_pt2 ctest.
"""

import sys
from pathlib import Path

import torch
import torch.nn as nn

import actcam_ext as ac
import actcam_ext.export as ax

SIZE = (40, 48)  # maps larger than the input and not square: a real resize


def small_cnn() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model = small_cnn()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ax.pt2(model, out / "cam.pt2", size=SIZE, batch=3, input_size=(32, 32))
    with torch.no_grad():
        logits = model(x)
    maps = ac.CAM(model)(x, size=SIZE)
    torch.save({"x": x, "logits": logits, "maps": maps}, out / "expected.pt")
    print(f"wrote {out / 'cam.pt2'} and {out / 'expected.pt'}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/cpp/make_pt2.py OUT_DIR")
    main(Path(sys.argv[1]))
