"""Models beyond the built-in one on the command line: torchvision and timm architectures with a
weights file, transformers with --reshape, several layers, the CAM family."""

import json

import cv2
import pytest
import skimage.data
import timm
import torch
import torchvision

import dense_models
from bench._common import make_clip
from cli_helpers import run_cli


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    p = tmp_path_factory.mktemp("photo") / "coffee.jpg"
    cv2.imwrite(str(p), cv2.resize(skimage.data.coffee(), (160, 120))[:, :, ::-1])
    return str(p)


def test_timm_vit_with_weights_reshape_and_several_layers(photo, tmp_path, capsys):
    """A timm ViT from a local state_dict: tokens need --reshape vit and an explicit layer; the
    grid (14x14 after the class token) is inferred from the input size."""
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    torch.save(net.state_dict(), tmp_path / "vit.pth")
    out = tmp_path / "o"
    rc, stdout, err = run_cli(["explain", photo, "--model", "timm:vit_tiny_patch16_224", "--weights",
                               str(tmp_path / "vit.pth"), "--layer", "blocks.10.norm1,blocks.11.norm1", "--reshape",
                               "vit", "--method", "layercam", "--top-k", "2", "--out", str(out), "--json", "--quiet"],
                              capsys)
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["model"] == "timm:vit_tiny_patch16_224" and result["method"] == "layercam"
    assert result["layer"] == "blocks.10.norm1,blocks.11.norm1"
    img = result["images"][0]
    assert (img["width"], img["height"]) == (160, 120) and len(img["predictions"]) == 2
    assert cv2.imread(str(out / img["predictions"][0]["overlay"])).shape == (120, 160, 3)
    rc, _, err = run_cli(["explain", photo, "--model", "timm:vit_tiny_patch16_224", "--weights",
                          str(tmp_path / "vit.pth"), "--layer", "blocks.11.norm1", "--out", str(tmp_path / "p")], capsys)
    assert rc == 2 and "pass reshape='vit' for tokens" in err and err.count("\n") == 1


def test_torchvision_with_a_weights_file_and_refusals(photo, tmp_path, capsys):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    rc, stdout, err = run_cli(["explain", photo, "--model", "torchvision:resnet18", "--weights", str(tmp_path / "r18.pth"),
                               "--method", "xgradcam", "--out", str(tmp_path / "o"), "--json", "--quiet"], capsys)
    assert rc == 0, err
    assert json.loads(stdout)["layer"] == "avgpool:input"
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    for argv, needle in (
            (["--model", "torchvision:resnet18", "--weights", str(tmp_path / "r34.pth")], "do not fit torchvision:resnet18"),
            (["--model", "timm:vit_tiny_patch16_224"], "needs its weights as a file"),
            (["--model", "timm:no_such_net", "--weights", str(tmp_path / "r18.pth")], "unknown timm model"),
            (["--weights", str(tmp_path / "r18.pth")], "--weights applies to torchvision:NAME and timm:NAME"),
            (["--reshape", "tokens"], "argument --reshape: invalid choice")):
        rc, _, err = run_cli(["explain", photo, *argv, "--out", str(tmp_path / "x")], capsys)
        assert rc == 2 and needle in err and err.count("\n") == 1, (argv, err)


def test_a_torchvision_detector_explains_its_detections(photo, tmp_path, capsys):
    """A detector from a state_dict: the task, its backbone with reshape fpn, COCO names, the
    detector's own boxes and scores; video refuses it in one line."""
    torch.save(dense_models.frcnn().state_dict(), tmp_path / "frcnn.pth")
    model = ["--model", "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", "--weights", str(tmp_path / "frcnn.pth")]
    out = tmp_path / "o"
    rc, stdout, err = run_cli(["explain", photo, *model, "--top-k", "3", "--min-score", "0.3", "--out", str(out),
                               "--json", "--quiet"], capsys)
    assert rc == 0, err
    result = json.loads(stdout)
    assert (result["task"], result["layer"]) == ("detection", "backbone")
    preds = result["images"][0]["predictions"]
    assert len(preds) == 3 and all(p["score"] >= 0.3 for p in preds)
    assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)
    names = torchvision.models.detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.DEFAULT.meta["categories"]
    assert all(p["label"] == names[p["class_id"]] for p in preds)
    assert all(0 <= p["box"][0] <= p["box"][2] <= 160 and 0 <= p["box"][1] <= p["box"][3] <= 120 for p in preds)
    assert cv2.imread(str(out / preds[0]["overlay"])).shape == (120, 160, 3)
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=2, size=(64, 48))
    rc, _, err = run_cli(["video", str(clip), str(tmp_path / "v.mp4"), *model, "--quiet"], capsys)
    assert rc == 2 and "video works with classifiers" in err and err.count("\n") == 1, err
    assert not (tmp_path / "v.mp4").exists()
    for argv in (["evaluate", "--dataset", "photos", *model], ["export", *model[1:2], str(tmp_path / "d.pt2"),
                                                               *model[2:]],
                 ["activations", photo, *model, "--out", str(tmp_path / "a")]):
        rc, _, err = run_cli(argv, capsys)
        assert rc == 2 and f"{argv[0]} works with classifiers" in err and err.count("\n") == 1, err
    assert not (tmp_path / "d.pt2").exists() and not (tmp_path / "a").exists()


def test_a_torchvision_segmenter_over_a_folder(photo, tmp_path, capsys):
    """A segmenter in `actcam batch`: each image's largest classes (background excluded) with
    their share of the pixels; a classifier declared a segmenter is refused in one line."""
    torch.save(dense_models.deeplab_with_aux().state_dict(), tmp_path / "deeplab.pth")
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        cv2.imwrite(str(folder / name), cv2.imread(photo))
    rc, _, err = run_cli(["batch", str(folder), "--model", "torchvision:deeplabv3_resnet50", "--weights",
                          str(tmp_path / "deeplab.pth"), "--input-size", "96", "--top-k", "2", "--batch", "2",
                          "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert rc == 0, err
    records = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for rec in records:
        preds = rec["predictions"]
        assert len(preds) == 2 and all(p["class_id"] != 0 and 0 < p["score"] <= 1 for p in preds)
        assert preds[0]["score"] >= preds[1]["score"]
    names = torchvision.models.segmentation.DeepLabV3_ResNet50_Weights.DEFAULT.meta["categories"]
    assert all(p["label"] == names[p["class_id"]] for rec in records for p in rec["predictions"])
    rc, _, err = run_cli(["explain", photo, "--task", "segmentation", "--out", str(tmp_path / "x")], capsys)
    assert rc == 2 and "segmentation() targets need per-pixel logits" in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()
