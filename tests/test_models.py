"""``actcam_ext.models``: the built-in model (offline weights), optimisation, torchvision from the
local cache, model files, preprocessing and labels."""

import os
import warnings

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn as nn
import torchvision

import actcam_ext as ac
from actcam_ext.models import MAX_INPUT_SIZE, Preprocess, imagenet_labels, labels_for, load_model, resolve_device


def test_builtin_model_predicts_the_photos():
    model, pre = load_model(None, "cpu")
    assert not model.training and pre.size == (224, 224)
    x = pre([skimage.data.chelsea(), skimage.data.coffee()], "cpu")
    with torch.no_grad():
        top1 = model(x).argmax(1).tolist()
    labels = imagenet_labels()
    assert top1[0] in range(281, 286) and labels[top1[0]].endswith("cat")
    assert top1[1] in (967, 968)


def test_optimized_default_model_equals_the_packaged_one():
    """load_model on the CPU folds BatchNorm and uses NHWC weights: same logits and maps (up to
    float rounding) as the model exactly as efficientnet-lite-pytorch builds it, BN layer names
    kept and hooking them gives the BN output."""
    fast, pre = load_model(None, "cpu")
    plain, _ = load_model(None, "cpu", optimize=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules()) == 49
    assert dict(fast.named_modules()).keys() == dict(plain.named_modules()).keys()
    assert fast._conv_head.weight.is_contiguous(memory_format=torch.channels_last)
    x = pre([skimage.data.coffee(), skimage.data.chelsea(), skimage.data.astronaut()], "cpu")
    with torch.no_grad():
        lf, lp = fast(x), plain(x)
    assert (lf - lp).abs().max() <= 1e-4 * lp.abs().max()
    assert torch.equal(lf.argmax(1), lp.argmax(1))
    for layer in ("_head_act", "_bn1", "_blocks.12._bn1", None):
        mf = ac.GradCAM(fast, layer)(x, lp.argmax(1), size=(120, 160))
        mp = ac.GradCAM(plain, layer)(x, lp.argmax(1), size=(120, 160))
        assert (mf - mp).abs().max() <= 1e-4, layer
    fast.fold_batchnorm()  # folding twice changes nothing
    with torch.no_grad():
        assert torch.equal(fast(x), lf)


def test_default_layer_is_the_head_activation_on_the_builtin_model():
    """One rule for every method: the input of the last global pooling, which on the built-in
    model is the output of its head activation ``_head_act``."""
    model, pre = load_model(None, "cpu")
    x = pre([skimage.data.chelsea()], "cpu")
    for cls in (ac.CAM, ac.GradCAM, ac.GradCAMPlusPlus):
        assert cls(model).target_layer_name == "_avg_pooling:input"
    assert torch.equal(ac.GradCAM(model)(x), ac.GradCAM(model, "_head_act")(x))


def test_torchvision_weights_from_the_local_cache(tmp_path, monkeypatch):
    """torchvision:NAME loads the cached file (here: our own resnet18 state_dict under the
    expected file name, since nothing may be downloaded) and uses the weights' preprocessing."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(ac.UserError, match="not in the local cache"):
        load_model("torchvision:resnet18", "cpu")
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    cache = tmp_path / "th" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), cache / os.path.basename(url))
    model, pre = load_model("torchvision:resnet18", "cpu")
    assert pre.size == (224, 224) and pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)
    assert torch.equal(model.fc.weight, reference.fc.weight) and not model.training
    (cache / os.path.basename(url)).write_bytes(b"truncated")
    with pytest.raises(ac.UserError, match="cannot load the cached weights"):
        load_model("torchvision:resnet18", "cpu")


def test_model_files(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    torch.save(net, tmp_path / "whole.pt")
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    # A whole pickled module runs code when unpickled: refused unless the caller trusts the file.
    with pytest.raises(ac.UserError, match="pickled nn.Module.*--allow-pickle"):
        load_model(str(tmp_path / "whole.pt"), "cpu")
    model, pre = load_model(str(tmp_path / "whole.pt"), "cpu", optimize=False, allow_pickle=True)
    assert isinstance(model, nn.Sequential) and pre == Preprocess()
    with warnings.catch_warnings():  # torch.jit's deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(net.eval(), torch.zeros(1, 3, 8, 8)).save(str(tmp_path / "scripted.pt"))
    assert isinstance(load_model(str(tmp_path / "scripted.pt"), "cpu")[0], torch.jit.ScriptModule)
    with pytest.raises(ac.UserError, match="not a whole nn.Module"):
        load_model(str(tmp_path / "weights.pt"), "cpu")
    with pytest.raises(ac.UserError, match="is a directory"):
        load_model(str(tmp_path), "cpu")
    with pytest.raises(ac.UserError, match="unknown model"):
        load_model(str(tmp_path / "nope.pt"), "cpu")


def test_preprocessing_overrides_are_checked():
    _, pre = load_model(None, "cpu", input_size=(160, 200), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert pre == Preprocess((160, 200), (0.5,) * 3, (0.25,) * 3)
    for kwargs, message in (({"input_size": MAX_INPUT_SIZE + 1}, f"at most {MAX_INPUT_SIZE}"),
                            ({"input_size": 0}, "positive integer"),
                            ({"input_size": (1, 2, 3)}, "one int or"),
                            ({"mean": (0.5, float("nan"), 0.5)}, "3 finite numbers"),
                            ({"std": (0.5, 0.0, 0.5)}, "finite numbers > 0"),
                            ({"std": (0.5, float("inf"), 0.5)}, "finite numbers > 0"),
                            ({"mean": (0.5, 0.5)}, "3 finite numbers")):
        with pytest.raises(ac.UserError, match=message):
            load_model(None, "cpu", **kwargs)


def test_preprocess_resizes_and_normalises():
    pre = Preprocess(size=(8, 10), mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 0.25))
    img = np.full((20, 30, 3), 255, np.uint8)
    x = pre([img, img[:10]], "cpu")
    assert x.shape == (2, 3, 8, 10) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.ones(1)) and torch.allclose(x[:, 1], torch.ones(1))
    assert x[:, 2].abs().max() < 1e-5  # antialiased resize of a constant image: rounding only
    with pytest.raises(ac.UserError, match="uint8 RGB"):
        pre([img.astype(np.float32)], "cpu")


def test_labels_ship_as_package_data():
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[0] == "tench" and labels[285] == "Egyptian cat"
    assert labels_for(1000) is labels and labels_for(5) is None


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ac.UserError, match="unknown device"):
        resolve_device("gpu0")
    with pytest.raises(ac.UserError, match="use cpu or cuda"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ac.UserError, match="no CUDA GPU"):
            resolve_device("cuda")
