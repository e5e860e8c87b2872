"""``actcam activations`` end to end on the real EfficientNet-Lite0 and photos: the pictures, the
record, the layer and top options, and errors that write nothing."""

import json
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import actcam_ext as ac
from actcam_ext import render
from actcam_ext.models import load_model
from cli_helpers import run_cli

CAT_IDS = range(281, 286)
COFFEE_IDS = {967, 968}
IMAGE_KEYS = {"path", "width", "height", "layer", "class_id", "label", "score", "activations", "sheet", "channels",
              "scores", "class_channels", "contributions"}


def _nothing_written(parent, name):
    return not any(e == name or e.startswith(f".{name}.") for e in os.listdir(parent))


def _rgb(path):
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


def test_activations_end_to_end(photos, tmp_path, capsys):
    out = tmp_path / "act"
    rc, stdout, err = run_cli(["activations", photos["chelsea"], photos["coffee"], "--top", "6", "--out", str(out)],
                              capsys)
    assert rc == 0, err
    result = json.loads((out / "activations.json").read_text())
    assert result["model"] == "efficientnet-lite0" and result["layer"] == "_avg_pooling:input" and result["top"] == 6
    assert result["filters"] == "filters.png"
    assert [img["path"] for img in result["images"]] == [photos["chelsea"], photos["coffee"]]
    chelsea, coffee = result["images"]
    assert chelsea["class_id"] in CAT_IDS and coffee["class_id"] in COFFEE_IDS
    assert (chelsea["width"], chelsea["height"]) == (451, 300)
    for img in result["images"]:
        assert set(img) == IMAGE_KEYS and img["layer"] == "_avg_pooling:input"
        assert len(img["channels"]) == len(img["scores"]) == 6 and len(set(img["channels"])) == 6
        assert img["scores"] == sorted(img["scores"], reverse=True)
        assert len(img["class_channels"]) == 6 and img["contributions"] == sorted(img["contributions"], reverse=True)
        assert 0 < img["score"] <= 1
        grid = _rgb(out / img["activations"])
        assert grid.shape == (2 * (96 + 26) + 6, 3 * 96 + 2 * 6, 3)             # 6 tiles of 7 x 7 cells, 3 x 2
        sheet = _rgb(out / img["sheet"])
        tw = round(img["width"] * 224 / img["height"])
        assert sheet.shape == (224 + 26, 8 * tw + 7 * 6, 3)                      # input, Grad-CAM, 6 channels
    filters = _rgb(out / "filters.png")
    stem = load_model(None, "cpu", optimize=False)[0]._conv_stem              # the learned, unfolded filters
    assert np.array_equal(filters, render.filter_grid(stem))
    # The grid is the API's picture of the same activations, pixel for pixel.
    model, pre = load_model(None, "cpu", optimize=False)
    am = ac.activation_maps(model, pre([_rgb(photos["chelsea"])]), top=6)
    assert am.channels[0].tolist() == chelsea["channels"]
    assert np.array_equal(_rgb(out / chelsea["activations"]), am.picture(0))
    assert "layer _avg_pooling:input" in err and f"wrote {out}/activations.json and filters.png" in err
    assert stdout == ""


def test_layer_and_top_beyond_the_channels(photos, tmp_path, capsys):
    out = tmp_path / "act"
    rc, _, err = run_cli(["activations", photos["chelsea"], "--layer", "_blocks.0", "--top", "1000", "--out",
                          str(out), "--quiet"], capsys)
    assert rc == 0 and err == ""
    img = json.loads((out / "activations.json").read_text())["images"][0]
    assert img["layer"] == "_blocks.0" and sorted(img["channels"]) == list(range(16))   # _blocks.0 has 16
    # A second run replaces the earlier output (its activations.json marks it as ours).
    rc, _, err = run_cli(["activations", photos["coffee"], "--top", "2", "--out", str(out), "--quiet"], capsys)
    assert rc == 0 and err == ""
    assert [i["path"] for i in json.loads((out / "activations.json").read_text())["images"]] == [photos["coffee"]]
    assert len(os.listdir(out)) == 4                                            # json, filters, grid, sheet


@pytest.mark.parametrize("extra, needle", [
    (["--top", "0"], "argument --top: must be a positive integer, got 0"),
    (["--layer", "_blocks.99"], "the model has no target_layer named '_blocks.99'"),
    (["--layer", "_fc"], "the output of target layer '_fc' must be a 4-D tensor [B,K,h,w], got [1, 1000]"),
    (["--model", "torchvision:nonesuch"], "unknown torchvision model 'nonesuch'"),
])
def test_errors_are_one_line_and_write_nothing(photos, tmp_path, capsys, extra, needle):
    rc, stdout, err = run_cli(["activations", photos["chelsea"], "--out", str(tmp_path / "out"), *extra], capsys)
    assert rc == 2 and err.count("\n") == 1 and needle in err, err
    assert err.startswith("actcam activations: error: ")
    assert _nothing_written(tmp_path, "out")


def test_unreadable_image_and_foreign_folder(photos, tmp_path, capsys):
    rc, _, err = run_cli(["activations", photos["chelsea"], str(tmp_path / "missing.png"), "--out",
                          str(tmp_path / "out")], capsys)
    assert rc == 2 and "missing.png' does not exist" in err and _nothing_written(tmp_path, "out")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    rc, _, err = run_cli(["activations", photos["chelsea"], "--out", str(mine)], capsys)
    assert rc == 2 and "holds no activations.json" in err
    assert os.listdir(mine) == ["notes.txt"]


class Grey(nn.Module):
    """A classifier that reads the image as grey: its first convolution has 1 input channel."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, stride=4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x.mean(1, keepdim=True)))).flatten(1))


def test_python_api_and_a_model_without_rgb_filters(photos, tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Grey().eval()
    result = ac.save_activations([photos["chelsea"]], model, tmp_path / "g", top=3)
    assert result["model"] == "Grey" and result["filters"] is None and result["layer"] == "pool:input"
    img = result["images"][0]
    assert img["label"] == f"class {img['class_id']}" and len(img["channels"]) == 3
    assert sorted(os.listdir(tmp_path / "g")) == sorted(["activations.json", img["activations"], img["sheet"]])
    with pytest.raises(ac.UserError, match="top must be a positive integer, got 0"):
        ac.save_activations([photos["chelsea"]], model, tmp_path / "h", top=0)
    assert _nothing_written(tmp_path, "h")
