"""`actcam demo` / `actcam explain` / `ac.explain` / `ac.boxes_from_maps` on the real model.

Everything runs the pretrained EfficientNet-Lite0 on scikit-image's bundled photos; nothing is
mocked. The console script runs once as a real subprocess (demo); the other CLI scenarios call
``actcam_ext.cli.main`` in-process, which is the console script's entry point (it returns the
exit code and prints the one-line error), to save a torch import per scenario.
"""

import json
import os
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import ndimage

import actcam_ext as ac
from actcam_ext import cli

CAT_IDS = range(281, 286)          # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_IDS = {967, 968}            # espresso, cup
SCHEMA_IMAGE = {"path", "width", "height", "predictions"}
SCHEMA_PRED = {"class_id", "label", "score", "box", "heatmap", "overlay"}


# --------------------------------------------------------------------------------------------
# Fixtures: photos as files, bad files
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    import skimage.data
    d = tmp_path_factory.mktemp("photos")
    paths = {}
    for name, ext in (("chelsea", ".png"), ("coffee", ".jpg")):
        p = d / f"{name}{ext}"
        assert cv2.imwrite(str(p), getattr(skimage.data, name)()[:, :, ::-1])
        paths[name] = str(p)
    return paths


def _run_cli(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _check_results(result, out_dir, n_preds):
    assert set(result) >= {"model", "method", "layer", "images"}
    for img in result["images"]:
        assert SCHEMA_IMAGE <= set(img)
        w, h = img["width"], img["height"]
        assert len(img["predictions"]) == n_preds
        scores = [p["score"] for p in img["predictions"]]
        assert scores == sorted(scores, reverse=True)
        for p in img["predictions"]:
            assert set(p) == SCHEMA_PRED
            assert isinstance(p["class_id"], int) and isinstance(p["label"], str) and 0 <= p["score"] <= 1
            x0, y0, x1, y1 = p["box"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, p["box"]
            for key in ("heatmap", "overlay"):
                assert not os.path.isabs(p[key])
                pic = cv2.imread(os.path.join(out_dir, p[key]), cv2.IMREAD_UNCHANGED)
                assert pic is not None and pic.shape[:2] == (h, w), (p[key], pic.shape)
        assert cv2.imread(os.path.join(out_dir, img["sheet"])) is not None


def _no_leftovers(parent, name):
    # Nothing half-written: neither the output directory nor a temporary sibling remains.
    return not any(e == name or e.startswith(f".{name}.") for e in os.listdir(parent))


# --------------------------------------------------------------------------------------------
# CLI end to end
# --------------------------------------------------------------------------------------------

def test_demo_console_script(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "results.json").write_text("{}")  # an earlier actcam output: replaced as a whole
    (out / "stale.txt").write_text("old")
    exe = [sys.executable, "-m", "actcam_ext.cli"]
    proc = subprocess.run(exe + ["demo", "--out", str(out), "--top-k", "2"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    assert "chelsea" in proc.stdout and "Egyptian cat" in proc.stdout and "espresso" in proc.stdout
    assert not (out / "stale.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["demo"]  # no temporary sibling left
    result = json.loads((out / "results.json").read_text())
    assert result["model"] == "efficientnet-lite0"
    assert [r["method"] for r in result["runs"]] == ["cam", "gradcam", "gradcam++"]
    for run in result["runs"]:
        _check_results(run, out, n_preds=2)
        by_name = {img["path"]: img for img in run["images"]}
        assert set(by_name) == {f"skimage.data.{n}" for n in ("chelsea", "coffee", "astronaut", "rocket")}
        assert by_name["skimage.data.chelsea"]["predictions"][0]["class_id"] in CAT_IDS
        assert by_name["skimage.data.coffee"]["predictions"][0]["class_id"] in COFFEE_IDS
        cat = by_name["skimage.data.chelsea"]
        assert (cat["width"], cat["height"]) == (451, 300)
    # CAM and Grad-CAM coincide on a GAP + linear head (same feature map, weights = FC row / hw).
    cam, gradcam = result["runs"][0], result["runs"][1]
    for a, b in zip(cam["images"], gradcam["images"]):
        for pa, pb in zip(a["predictions"], b["predictions"]):
            assert pa["class_id"] == pb["class_id"]
            assert np.abs(np.array(pa["box"]) - np.array(pb["box"])).max() <= 2


def test_closed_stdout_pipe_exits_quietly(photos, tmp_path):
    """`actcam explain ... | head`: the reader is gone before anything is printed; the command
    still writes its files and exits like a tool killed by SIGPIPE, with no traceback."""
    r, w = os.pipe()
    os.close(r)  # closed before the child (seconds of imports) writes a byte
    out = tmp_path / "o"
    with os.fdopen(w, "wb") as wf:
        proc = subprocess.run([sys.executable, "-m", "actcam_ext.cli", "explain", photos["coffee"], "--out",
                               str(out), "--top-k", "1"], stdout=wf, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    assert proc.returncode == 141 and "Traceback" not in proc.stderr and "Exception" not in proc.stderr, proc.stderr
    assert (out / "results.json").is_file()


def test_explain_cli_topk_gradcampp(photos, tmp_path, capsys):
    out = tmp_path / "ex"
    rc, stdout, err = _run_cli(["explain", photos["chelsea"], photos["coffee"], "--method", "gradcam++",
                                "--top-k", "2", "--out", str(out), "--json"], capsys)
    assert rc == 0, err
    result = json.loads(stdout)
    assert result == json.loads((out / "results.json").read_text())
    assert result["model"] == "efficientnet-lite0" and result["method"] == "gradcam++"
    assert result["layer"] == "_head_act"
    _check_results(result, out, n_preds=2)
    chelsea, coffee = result["images"]
    assert chelsea["path"] == photos["chelsea"] and (chelsea["width"], chelsea["height"]) == (451, 300)
    assert chelsea["predictions"][0]["class_id"] in CAT_IDS
    assert coffee["predictions"][0]["class_id"] in COFFEE_IDS
    assert coffee["predictions"][0]["label"] in ("espresso", "cup")


def test_explain_cli_targets_cam_and_guided(photos, tmp_path, capsys):
    out = tmp_path / "ex"
    rc, _, err = _run_cli(["explain", photos["chelsea"], "--method", "cam", "--targets", "967,281",
                           "--out", str(out), "--quiet"], capsys)
    assert rc == 0, err
    result = json.loads((out / "results.json").read_text())
    _check_results(result, out, n_preds=2)
    preds = result["images"][0]["predictions"]
    assert [p["class_id"] for p in preds] == [281, 967]  # sorted by score: the cat class first
    out2 = tmp_path / "guided"
    rc, _, err = _run_cli(["explain", photos["coffee"], "--method", "guided-gradcam", "--out", str(out2),
                           "--quiet"], capsys)
    assert rc == 0, err
    result = json.loads((out2 / "results.json").read_text())
    _check_results(result, out2, n_preds=1)
    heat = cv2.imread(str(out2 / result["images"][0]["predictions"][0]["heatmap"]), cv2.IMREAD_UNCHANGED)
    assert heat.ndim == 3  # the guided picture is colour, the plain maps are grey


# --------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit 2, nothing written
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    import skimage.data
    d = tmp_path_factory.mktemp("bad")
    rgb = skimage.data.chelsea()[:64, :64]
    cv2.imwrite(str(d / "grey.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    cv2.imwrite(str(d / "rgba.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))
    cv2.imwrite(str(d / "deep.png"), rgb.astype(np.uint16) * 257)
    (d / "text.png").write_text("not an image")
    (d / "folder.jpg").mkdir()
    # A whole pickled model without global pooling: CAM cannot apply (Grad-CAM could).
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 28 * 28, 10)),
               d / "nogap.pt")
    torch.save(nn.Linear(2, 2).state_dict(), d / "weights_only.pt")
    gap = nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 10)).eval()
    with warnings.catch_warnings():  # torch.jit's deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(gap, torch.zeros(1, 3, 224, 224)).save(str(d / "scripted.pt"))
    return d


BAD = [
    # (argv after "explain IMAGE" or a full replacement, substring of the message)
    ("missing", ["{d}/nope.png"], "does not exist"),
    ("directory", ["{d}/folder.jpg"], "is a directory"),
    ("undecodable", ["{d}/text.png"], "cannot decode"),
    ("grey", ["{d}/grey.png"], "greyscale"),
    ("rgba", ["{d}/rgba.png"], "alpha"),
    ("16-bit", ["{d}/deep.png"], "16-bit"),
    ("method", ["{cat}", "--method", "lime"], "unknown method 'lime'"),
    ("model", ["{cat}", "--model", "resnet-9000"], "unknown model 'resnet-9000'"),
    ("torchvision name", ["{cat}", "--model", "torchvision:resnet9000"], "unknown torchvision"),
    ("torchvision uncached", ["{cat}", "--model", "torchvision:resnet18"], "not in the local cache"),
    ("state_dict", ["{cat}", "--model", "{d}/weights_only.pt"], "not a whole nn.Module"),
    ("layer", ["{cat}", "--layer", "_conv_haed"], "no target_layer named '_conv_haed'"),
    ("class id", ["{cat}", "--targets", "5,1000"], "class id 1000 is out of range"),
    ("negative class id", ["{cat}", "--targets", "-1"], "class id -1 is out of range"),
    ("top-k", ["{cat}", "--top-k", "two"], "--top-k must be an integer"),
    ("torchscript", ["{cat}", "--model", "{d}/scripted.pt"], "TorchScript does not support"),
    ("cam without gap", ["{cat}", "--method", "cam", "--model", "{d}/nogap.pt"], "use GradCAM"),
]


@pytest.mark.parametrize("argv,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(argv, message, bad_files, photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty weights cache
    argv = [a.format(d=bad_files, cat=photos["chelsea"]) for a in argv]
    out = tmp_path / "out"
    rc, stdout, err = _run_cli(["explain", *argv, "--out", str(out)], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("actcam explain: error: "), err
    assert message in err and "Traceback" not in err
    assert _no_leftovers(tmp_path, "out")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_without_gpu(photos, tmp_path, capsys):
    rc, _, err = _run_cli(["explain", photos["chelsea"], "--device", "cuda", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "no CUDA GPU" in err
    assert _no_leftovers(tmp_path, "o")


def test_foreign_output_directory_is_not_overwritten(photos, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    rc, _, err = _run_cli(["explain", photos["chelsea"], "--out", str(mine)], capsys)
    assert rc == 2 and "not empty" in err and err.count("\n") == 1
    assert (mine / "thesis.tex").read_text() == "precious" and os.listdir(mine) == ["thesis.tex"]
    assert sorted(os.listdir(tmp_path)) == ["mine"]


def test_torchvision_weights_from_the_local_cache(photos, tmp_path, capsys, monkeypatch):
    """torchvision:NAME loads the cached file (here: our own resnet18 state_dict under the
    expected file name, since nothing may be downloaded) and uses the weights' preprocessing."""
    import torchvision
    from actcam_ext.models import load_model
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    cache = tmp_path / "th" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), cache / os.path.basename(url))
    model, pre = load_model("torchvision:resnet18", "cpu")
    assert pre.size == (224, 224) and pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)
    assert torch.equal(model.fc.weight, reference.fc.weight) and not model.training
    rc, stdout, err = _run_cli(["explain", photos["coffee"], "--model", "torchvision:resnet18", "--layer", "layer4",
                                "--out", str(tmp_path / "o"), "--json", "--quiet"], capsys)
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["model"] == "torchvision:resnet18" and result["layer"] == "layer4"
    _check_results(result, tmp_path / "o", n_preds=1)


# --------------------------------------------------------------------------------------------
# Python API
# --------------------------------------------------------------------------------------------

def test_api_explain_arrays_without_files():
    import skimage.data
    from actcam_ext.models import load_model
    model, pre = load_model("efficientnet-lite0", "cpu")
    img = skimage.data.coffee()
    result = ac.explain([img], method="gradcam", model=model, preprocess=pre, top_k=2, return_maps=True)
    assert result["method"] == "gradcam" and len(result["images"]) == 1
    entry = result["images"][0]
    assert entry["path"] is None and (entry["height"], entry["width"]) == img.shape[:2]
    p0 = entry["predictions"][0]
    assert p0["class_id"] in COFFEE_IDS and p0["heatmap"] is None and p0["overlay"] is None
    m = p0["map"]
    assert m.shape == img.shape[:2] and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
    # the box is boxes_from_maps of the returned map
    assert p0["box"] == ac.boxes_from_maps(torch.from_numpy(m)[None])[0].tolist()
    # The model is left as found (hooks removed, eval mode, no parameter grads).
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


def test_optimized_default_model_equals_the_packaged_one():
    """load_model on the CPU folds BatchNorm and uses NHWC weights: same logits and maps (up
    to float rounding) as the model exactly as efficientnet-lite-pytorch builds it, BN layer
    names kept and hooking them gives the BN output."""
    import skimage.data
    from actcam_ext.models import load_model
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
    for layer in ("_head_act", "_bn1", "_blocks.12._bn1"):
        mf = ac.GradCAM(fast, layer)(x, lp.argmax(1), size=(120, 160))
        mp = ac.GradCAM(plain, layer)(x, lp.argmax(1), size=(120, 160))
        assert (mf - mp).abs().max() <= 1e-4, layer
    fast.fold_batchnorm()  # folding twice changes nothing
    with torch.no_grad():
        assert torch.equal(fast(x), lf)


def test_batched_explain_equals_one_image_at_a_time(photos, tmp_path):
    """batch=N: images of different sizes share a forward/backward, every map at its own
    image's size; the records equal the one-at-a-time run's (scores to float rounding)."""
    import skimage.data
    paths = [photos["coffee"], photos["chelsea"], skimage.data.astronaut()]
    one = ac.explain(paths, top_k=2, return_maps=True, device="cpu")
    many = ac.explain(paths, top_k=2, return_maps=True, device="cpu", batch=3)
    for a, b in zip(one["images"], many["images"]):
        assert (a["path"], a["width"], a["height"]) == (b["path"], b["width"], b["height"])
        for pa, pb in zip(a["predictions"], b["predictions"]):
            assert pa["class_id"] == pb["class_id"] and abs(pa["score"] - pb["score"]) <= 1e-4
            assert pa["map"].shape == (a["height"], a["width"]) == pb["map"].shape
            assert np.abs(pa["map"] - pb["map"]).max() <= 1e-4
            assert np.abs(np.subtract(pa["box"], pb["box"])).max() <= 1
    for method in ("cam", "guided-gradcam"):
        r1 = ac.explain(paths[:2], method=method, targets=[967, 281], return_maps=True, device="cpu")
        r2 = ac.explain(paths[:2], method=method, targets=[967, 281], return_maps=True, device="cpu", batch=2)
        for a, b in zip(r1["images"], r2["images"]):
            for pa, pb in zip(a["predictions"], b["predictions"]):
                assert pa["class_id"] == pb["class_id"] and np.abs(pa["map"] - pb["map"]).max() <= 1e-4
    with pytest.raises(cli.UserError, match="batch must be a positive integer, got 0"):
        ac.explain(paths, batch=0)


# --------------------------------------------------------------------------------------------
# boxes_from_maps against independent connected-component labellings
# --------------------------------------------------------------------------------------------

def _reference_box(m, threshold):
    """scipy.ndimage (8-connectivity) labelling: box of the largest component, first on ties."""
    mask = m >= threshold * m.max()
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return [0, 0, 0, 0]
    areas = ndimage.sum_labels(mask, labels, index=range(1, n + 1))
    sl = ndimage.find_objects(labels)[int(np.argmax(areas))]
    return [sl[1].start, sl[0].start, sl[1].stop, sl[0].stop]


def _cv2_box(m, threshold):
    mask = (m >= threshold * m.max()).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = stats[k, :4]
    return [int(x), int(y), int(x + w), int(y + h)]


def _blob(h, w, cy, cx, r, peak):
    yy, xx = np.mgrid[:h, :w]
    return peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * r * r))


def _synthetic_maps():
    h, w = 60, 80
    two = np.maximum(_blob(h, w, 15, 15, 4, 1.0), _blob(h, w, 40, 55, 9, 0.8))  # small high, big low
    diag = np.zeros((h, w))
    for i in range(20):
        diag[10 + i, 5 + i] = 1.0  # touching only at corners: one 8-connected component
    diag[50:55, 60:64] = 0.5       # a 5x4 block (20 px) ties the diagonal's 20 px: first in raster order wins
    rng = np.random.default_rng(0)
    noisy = ndimage.gaussian_filter(rng.random((h, w)), 3)
    noisy = (noisy - noisy.min()) / (noisy.max() - noisy.min())
    edge = np.zeros((h, w))
    edge[:, 70:] = 1.0             # component touching the right and bottom borders
    return np.stack([two, diag, noisy, edge]).astype(np.float32)


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.9])
def test_boxes_match_connected_components_references(threshold):
    maps = _synthetic_maps()
    got = ac.boxes_from_maps(torch.from_numpy(maps), threshold)
    assert got.dtype == torch.int64 and got.shape == (len(maps), 4)
    for m, box in zip(maps, got.tolist()):
        assert box == _reference_box(m, threshold) == _cv2_box(m, threshold)


def test_boxes_two_blobs_picks_the_larger_component():
    maps = _synthetic_maps()[:1]
    x0, y0, x1, y1 = ac.boxes_from_maps(maps, 0.2)[0].tolist()
    assert x0 < 55 < x1 and y0 < 40 < y1  # the big blob (centre 55,40), not the higher small one
    assert not (x0 <= 15 < x1 and y0 <= 15 < y1)


def test_boxes_edge_cases_and_types():
    zero = np.zeros((2, 5, 7), np.float32)
    assert ac.boxes_from_maps(zero).tolist() == [[0, 0, 7, 5]] * 2  # no evidence: the whole image
    nan = np.full((1, 5, 7), np.nan, np.float32)
    assert ac.boxes_from_maps(nan).tolist() == [[0, 0, 0, 0]]      # nothing passes: empty box
    single = np.zeros((1, 5, 7), np.float32)
    single[0, 2, 3] = 1
    out = ac.boxes_from_maps(single)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64 and out.tolist() == [[3, 2, 4, 3]]
    half = torch.from_numpy(_synthetic_maps()).half()
    assert ac.boxes_from_maps(half).tolist() == ac.boxes_from_maps(half.float()).tolist()
    for bad in (np.zeros((5, 7)), ):
        with pytest.raises(ValueError, match=r"\[B,H,W\]"):
            ac.boxes_from_maps(bad)
    with pytest.raises(ValueError, match="threshold"):
        ac.boxes_from_maps(zero, 1.5)
