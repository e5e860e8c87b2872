"""``ac.explain`` / ``ac.demo`` and the ``Explainer`` from Python, on the real model and photos."""

import json
import os

import numpy as np
import pytest
import skimage.data
import torch

import actcam_ext as ac
from actcam_ext.models import load_model

COFFEE_IDS = {967, 968}


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    import cv2
    d = tmp_path_factory.mktemp("photos")
    paths = []
    for name, ext in (("coffee", ".jpg"), ("chelsea", ".png")):
        p = d / f"{name}{ext}"
        assert cv2.imwrite(str(p), getattr(skimage.data, name)()[:, :, ::-1])
        paths.append(str(p))
    return paths


@pytest.fixture(scope="module")
def explainer():
    return ac.Explainer.load("gradcam", device="cpu")


def test_arrays_without_files(explainer):
    model = explainer.model
    img = skimage.data.coffee()
    result = ac.explain([img], explainer, ac.ExplainOptions(top_k=2), return_maps=True)
    assert result["method"] == "gradcam" and result["model"] == "efficientnet-lite0"
    assert result["layer"] == "_avg_pooling:input" and len(result["images"]) == 1
    entry = result["images"][0]
    assert entry["path"] is None and (entry["height"], entry["width"]) == img.shape[:2]
    p0 = entry["predictions"][0]
    assert p0["class_id"] in COFFEE_IDS and p0["heatmap"] is None and p0["overlay"] is None
    m = p0["map"]
    assert m.shape == img.shape[:2] and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
    # the box is boxes_from_maps of the returned map
    assert p0["box"] == ac.boxes_from_maps(torch.from_numpy(m)[None])[0].tolist()
    # the model is left as found (hooks removed, eval mode, no parameter grads)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


def test_explainer_from_a_method_object():
    model, pre = load_model(None, "cpu")
    explainer = ac.Explainer(ac.GradCAMPlusPlus(model, "_head_act"), pre)
    assert explainer.describe() == {"model": "_EfficientNetLite", "method": "gradcam++", "layer": "_head_act"}
    preds = explainer.predict([skimage.data.chelsea(), skimage.data.coffee()[:200]], ac.ExplainOptions(top_k=3))
    assert [p.maps.shape for p in preds] == [(3, 300, 451), (3, 200, 600)]
    for p in preds:
        assert p.scores == sorted(p.scores, reverse=True) and len(p.labels) == len(p.boxes) == 3
    with pytest.raises(ac.UserError, match="method object"):
        ac.Explainer("gradcam")


def test_batched_explain_equals_one_image_at_a_time(photo_files, explainer):
    """batch=N: images of different sizes share a forward/backward, every map at its own
    image's size; the records equal the one-at-a-time run's (scores to float rounding)."""
    images = [*photo_files, skimage.data.astronaut()]
    one = ac.explain(images, explainer, ac.ExplainOptions(top_k=2), return_maps=True)
    many = ac.explain(images, explainer, ac.ExplainOptions(top_k=2, batch=3), return_maps=True)
    for a, b in zip(one["images"], many["images"]):
        assert (a["path"], a["width"], a["height"]) == (b["path"], b["width"], b["height"])
        for pa, pb in zip(a["predictions"], b["predictions"]):
            assert pa["class_id"] == pb["class_id"] and abs(pa["score"] - pb["score"]) <= 1e-4
            assert pa["map"].shape == (a["height"], a["width"]) == pb["map"].shape
            assert np.abs(pa["map"] - pb["map"]).max() <= 1e-4
            assert np.abs(np.subtract(pa["box"], pb["box"])).max() <= 1
    for method in ("cam", "guided-gradcam"):
        e = ac.Explainer.load(method, explainer.model, preprocess=explainer.preprocess)
        r1 = ac.explain(images[:2], e, ac.ExplainOptions(targets=[967, 281]), return_maps=True)
        r2 = ac.explain(images[:2], e, ac.ExplainOptions(targets=[967, 281], batch=2), return_maps=True)
        for a, b in zip(r1["images"], r2["images"]):
            for pa, pb in zip(a["predictions"], b["predictions"]):
                assert pa["class_id"] == pb["class_id"] and np.abs(pa["map"] - pb["map"]).max() <= 1e-4


def test_results_folder(photo_files, explainer, tmp_path):
    out = tmp_path / "maps"
    result = ac.explain(photo_files, explainer, ac.ExplainOptions(top_k=2), out)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == result
    for img in result["images"]:
        assert os.path.isfile(out / img["sheet"])
        for p in img["predictions"]:
            assert os.path.isfile(out / p["heatmap"]) and os.path.isfile(out / p["overlay"])


def test_options_are_checked_before_any_work():
    for kwargs, message in (({"batch": 0}, "batch must be a positive integer, got 0"),
                            ({"top_k": True}, "top_k must be a positive integer"),
                            ({"targets": []}, "targets must be one or more class ids"),
                            ({"targets": [1.5]}, "targets must be one or more class ids"),
                            ({"threshold": float("nan")}, r"threshold must be a number in \[0, 1\]"),
                            ({"image_weight": 2}, r"image_weight must be a number in \[0, 1\]")):
        with pytest.raises(ac.UserError, match=message):
            ac.ExplainOptions(**kwargs)
    assert ac.ExplainOptions(targets=[5, 3, 5]).targets == (5, 3)  # a class asked twice gets one map
    with pytest.raises(ac.UserError, match="no images given"):
        ac.explain([], "gradcam")
    with pytest.raises(ac.UserError, match="does not exist"):
        ac.explain(["/nonexistent.png"], lambda: pytest.fail("the model must not load before the images"))


def test_precision_bf16_is_faithful_or_refused(explainer):
    """bf16 where the CPU has bfloat16 instructions: the same classes, maps within 0.02 on average;
    elsewhere a one-line refusal (bf16 would be slower than fp32). fp16 is for GPUs."""
    with pytest.raises(ac.UserError, match="fp16 runs on CUDA GPUs"):
        ac.Explainer(explainer.method, explainer.preprocess, "cpu", precision="fp16")
    with pytest.raises(ac.UserError, match="precision must be one of fp32, bf16, fp16"):
        ac.Explainer(explainer.method, explainer.preprocess, "cpu", precision="int8")
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        with pytest.raises(ac.UserError, match="no bfloat16 instructions"):
            ac.Explainer(explainer.method, explainer.preprocess, "cpu", precision="bf16")
        return
    bf16 = ac.Explainer(explainer.method, explainer.preprocess, "cpu", precision="bf16")
    assert bf16.describe()["precision"] == "bf16"
    images = [skimage.data.chelsea(), skimage.data.coffee()]
    for p, q in zip(explainer.predict(images), bf16.predict(images)):
        assert p.class_ids == q.class_ids
        assert float((p.maps - q.maps).abs().mean()) < 0.02
