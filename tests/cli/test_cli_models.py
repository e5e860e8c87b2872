"""Models beyond the built-in one on the command line: torchvision and timm architectures with a
weights file, transformers with --reshape, several layers, the CAM family."""

import json

import cv2
import pytest
import skimage.data
import timm
import torch
import torchvision

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
