"""Segmenters and detectors through the pipeline: what is chosen from the explained forward pass,
and maps equal to the method called with the documented target for each chosen region."""

import json
import warnings

import numpy as np
import pytest
import skimage.data
import torch

import actcam_ext as ac
from actcam_ext.methods import METHODS
from actcam_ext.models import Preprocess
from actcam_ext.pipeline import ExplainOptions, Explainer, explain
from dense_models import deeplab_with_aux, frcnn

DETECTOR_INPUT = Preprocess((320, 320), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # what load_model gives it


@pytest.fixture(scope="module")
def detector():
    return frcnn()


@pytest.fixture(scope="module")
def segmenter():
    return deeplab_with_aux()


@pytest.fixture(scope="module")
def images():
    return [skimage.data.astronaut()[::2, ::2], skimage.data.chelsea()]  # 256x256, 300x451


def test_the_task_and_the_defaults_come_from_the_model(detector, segmenter, resnet18):
    det = Explainer.load("gradcam", detector, preprocess=DETECTOR_INPUT)
    assert (det.task, det.layer, det.method.reshape is not None) == ("detection", "backbone", True)
    seg = Explainer.load("gradcam", segmenter)
    assert (seg.task, seg.layer) == ("segmentation", "backbone.layer4")
    assert seg.describe()["task"] == "segmentation"
    assert "task" not in Explainer.load("gradcam", resnet18).describe()
    with pytest.raises(ac.UserError, match="task must be one of classification, segmentation, detection"):
        Explainer.load("gradcam", resnet18, task="depth")


def test_detections_equal_the_box_target_one_at_a_time(detector, images):
    """Each chosen detection's map is Grad-CAM of targets.detection with the detection's own box
    and label (IoU 1 with itself, plus its score), from the same forward pass."""
    explainer = Explainer.load("gradcam", detector, preprocess=DETECTOR_INPUT)
    method = ac.GradCAM(detector, "backbone", reshape="fpn")
    names = ac.models.task_labels(detector, "detection")
    for img in images:
        pred = explainer.predict([img], ExplainOptions(top_k=3, min_score=0.5))[0]
        x = DETECTOR_INPUT([img])
        with torch.no_grad():
            det = detector(x)[0]
        h, w = img.shape[:2]
        keep = (det["scores"] >= 0.5).nonzero()[:, 0][:3]  # torchvision sorts detections by score
        assert len(keep) == len(pred.class_ids) > 0
        assert pred.class_ids == det["labels"][keep].tolist()
        assert pred.labels == [names[c] for c in pred.class_ids]
        np.testing.assert_allclose(pred.scores, det["scores"][keep].tolist(), rtol=1e-5)
        scale = np.array([w / 320, h / 320, w / 320, h / 320])
        assert pred.boxes == [[int(round(v)) for v in b] for b in det["boxes"][keep].numpy() * scale]
        for r, j in enumerate(keep.tolist()):
            target = ac.targets.detection(det["boxes"][j:j + 1].numpy(), det["labels"][j:j + 1].numpy())
            expected = method(x, targets=target, size=(h, w))[0]
            assert expected.amax() > 0.99  # a real map, not the zeros of a constant one
            torch.testing.assert_close(pred.maps[r], expected, rtol=1e-4, atol=1e-4)


def test_segments_are_the_largest_classes_each_explained_over_its_pixels(segmenter, images):
    pre = Preprocess((128, 128))
    explainer = Explainer.load("gradcam", segmenter, preprocess=pre)
    method = ac.GradCAM(segmenter, "backbone.layer4")
    for img in images:
        pred = explainer.predict([img], ExplainOptions(top_k=2))[0]
        x = pre([img])
        with torch.no_grad():
            pred_mask = segmenter(x)["out"].argmax(dim=1)[0]
        counts = torch.bincount(pred_mask.flatten(), minlength=21)
        counts[0] = 0  # __background__ is never chosen by area
        order = counts.argsort(descending=True, stable=True)[:2].tolist()
        assert pred.class_ids == [c for c in order if counts[c] > 0] and len(pred.class_ids) == 2
        np.testing.assert_allclose(pred.scores, [counts[c].item() / 128 ** 2 for c in pred.class_ids])
        for r, c in enumerate(pred.class_ids):
            target = ac.targets.segmentation(c, pred_mask == c)
            expected = method(x, targets=target, size=img.shape[:2])[0]
            assert expected.amax() > 0.99
            torch.testing.assert_close(pred.maps[r], expected, rtol=1e-4, atol=1e-4)


def test_images_with_fewer_regions_keep_only_their_own(detector, images):
    """A batch's images have different numbers of detections; the spare columns' maps are
    dropped, and each image's maps equal its maps explained alone."""
    explainer = Explainer.load("gradcam", detector, preprocess=DETECTOR_INPUT)
    options = ExplainOptions(top_k=6, min_score=0.975)  # 6 of the astronaut, 4 of the cat
    together = explainer.predict(images, options)
    alone = [explainer.predict([img], options)[0] for img in images]
    assert len({len(p.class_ids) for p in together}) > 1, "the test needs images with different counts"
    for a, b in zip(together, alone):
        assert a.class_ids == b.class_ids and a.boxes == b.boxes and a.maps.shape == b.maps.shape
        torch.testing.assert_close(a.maps, b.maps, rtol=1e-4, atol=1e-4)


def test_nothing_to_explain_gives_records_without_predictions(detector, images, tmp_path):
    explainer = Explainer.load("gradcam", detector, preprocess=DETECTOR_INPUT)
    result = explain(images, explainer, ExplainOptions(min_score=1.0, batch=2), tmp_path / "out")
    assert [img["predictions"] for img in result["images"]] == [[], []]
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["task"] == "detection" and len(written["images"]) == 2
    assert (tmp_path / "out" / "index.html").is_file()


def test_target_classes_and_bad_targets(segmenter, detector, images):
    explainer = Explainer.load("gradcam", segmenter, preprocess=Preprocess((96, 96)))
    pred = explainer.predict(images[:1], ExplainOptions(targets=(0, 15)))[0]
    assert sorted(zip(pred.class_ids, pred.labels)) == [(0, "__background__"), (15, "person")]
    assert pred.scores == sorted(pred.scores, reverse=True)  # the larger share first
    with pytest.raises(ac.UserError, match="target class 21 is out of range: the model segments 21 classes"):
        explainer.predict(images[:1], ExplainOptions(targets=(21,)))
    det = Explainer.load("gradcam", detector, preprocess=DETECTOR_INPUT)
    assert all(c == 3 for p in det.predict(images, ExplainOptions(targets=(3,), top_k=5)) for c in p.class_ids)
    assert det.predict(images, ExplainOptions(targets=(1,)))[0].class_ids == []  # no person detected
    with pytest.raises(ac.UserError, match="video works with classifiers"):
        det.heatmaps(torch.zeros(1, 64, 64, 3, dtype=torch.uint8))


def test_a_classifier_declared_a_segmenter_is_refused_in_one_line(resnet18, images):
    explainer = Explainer.load("gradcam", resnet18, task="segmentation")
    with pytest.raises(ac.UserError, match=r"segmentation\(\) targets need per-pixel logits") as info:
        explainer.predict(images[:1])
    assert "\n" not in str(info.value)
    # the model is left clean: no hook survives the error
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in resnet18.modules())


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"cam"}))
def test_every_method_explains_a_detector(detector, images, name):
    """Each chosen detection gets a map from every method: Eigen-CAM, which reads no score,
    gives the image's one map to each; Guided Grad-CAM adds its gradient pictures to the Grad-CAM
    maps."""
    explainer = Explainer.load(name, detector, preprocess=DETECTOR_INPUT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # guided rules: MobileNetV3's hardswish keeps its backward
        pred = explainer.predict(images[1:], ExplainOptions(top_k=2))[0]
    h, w = images[1].shape[:2]
    assert len(pred.class_ids) == 2 and pred.maps.shape == (2, h, w) and float(pred.maps.amax()) > 0.99
    if name == "eigencam":
        alone = ac.EigenCAM(detector, "backbone", reshape="fpn")(DETECTOR_INPUT(images[1:]), size=(h, w))[0]
        torch.testing.assert_close(pred.maps, alone.expand(2, h, w))
    if name == "guided-gradcam":
        assert pred.guided.shape == (2, 3, h, w)
        plain = Explainer.load("gradcam", detector, preprocess=DETECTOR_INPUT).predict(images[1:],
                                                                                     ExplainOptions(top_k=2))[0]
        torch.testing.assert_close(pred.maps, plain.maps)
    else:
        assert pred.guided is None


def test_cam_is_refused_for_dense_models(detector):
    with pytest.raises(ac.UserError, match="cam explains a classifier's class scores only; for a detection model "
                                           "use gradcam") as info:
        Explainer.load("cam", detector, preprocess=DETECTOR_INPUT)
    assert "\n" not in str(info.value)
