"""`actcam export` end to end (ONNX here; the .pt2 path is test_export_aoti.py's package), and its
one-line errors. The command runs in-process through actcam_ext.cli.main, the console script's
entry point."""

import os

import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import actcam_ext as ac
from cli_helpers import run_cli




def test_cli_onnx_with_targets_and_map_size(effnet, effnet_photos, tmp_path, capsys):
    out = tmp_path / "cam.onnx"
    rc, stdout, err = run_cli(["export", str(out), "--targets", "281,967", "--size", "112,160", "--opset", "18"],
                              capsys)
    assert rc == 0, err
    assert stdout.rstrip().endswith("-> logits [1,classes], maps [1,2,112,160]") and err == ""
    assert os.listdir(tmp_path) == ["cam.onnx"]
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["actcam.model"] == "efficientnet-lite0" and meta["actcam.targets"] == "281,967"
    assert meta["actcam.mean"] == ",".join([repr(127 / 255)] * 3) and meta["actcam.input_shape"] == "3,224,224"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model, _ = effnet
    x = effnet_photos[:1]
    _, maps = session.run(None, {"images": x.numpy()})
    want = ac.CAM(model)(x, targets=[[281, 967]], size=(112, 160))
    torch.testing.assert_close(torch.from_numpy(maps), want, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def nogap(tmp_path_factory):
    """A whole pickled model without global pooling: CAM cannot apply."""
    path = tmp_path_factory.mktemp("models") / "nogap.pt"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 28 * 28, 10)).eval(), path)
    return str(path)


BAD = [
    ("three paths", ["a", "b", "{out}"], "expected [MODEL_SPEC] OUT, got 3 paths"),
    ("suffix", ["{dir}/cam.pt"], "OUT must end with .pt2 (AOTInductor) or .onnx"),
    ("gradcam", ["{out}", "--method", "gradcam"], "Grad-CAM cannot be exported: it needs the gradient"),
    ("unknown method", ["{out}", "--method", "lime"], "unknown method 'lime'"),
    ("model twice", ["efficientnet-lite0", "{out}", "--model", "torchvision:resnet18"], "the model is given twice"),
    ("opset", ["{out}", "--opset", "16"], "--opset must be at least 17, got 16"),
    ("layer", ["{out}", "--layer", "_blocks.99"], "the model has no target_layer named '_blocks.99'"),
    ("class", ["{out}", "--targets", "1000"], "class id 1000 is out of range (the classifier has 1000 outputs)"),
    ("not CAM", ["{nogap}", "{out}", "--allow-pickle"], "CAM needs the final linear layer to read the global average"),
    ("pickle refused", ["{nogap}", "{out}"], "is a pickled nn.Module, and unpickling it runs code"),
    ("folder", ["{dir}/missing/cam.pt2"], "does not exist; create it first"),
]


@pytest.mark.parametrize("argv, needle", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_cli_errors_are_one_line(argv, needle, nogap, tmp_path, capsys):
    argv = [a.format(out=tmp_path / "cam.onnx", dir=tmp_path, nogap=nogap) for a in argv]
    rc, stdout, err = run_cli(["export", *argv], capsys)
    assert rc == 2 and stdout == ""
    assert err.startswith("actcam export: error: ") and err.count("\n") == 1, err
    assert needle in err, err
    assert os.listdir(tmp_path) == []  # nothing written, no temporary file left
