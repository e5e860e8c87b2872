"""pytorch-grad-cam's README usage, run as written and with its imports changed to the compat
layer: the same maps, pictures and outputs. Random-init ResNet-50 (no weights are downloaded)
and a real photo at 96 x 96."""

import copy

import cv2
import numpy as np
import pytest

pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam (grad-cam) is the oracle")

# The README's usage (model, image and input made above it), with its guided-backprop lines
# from the repository's cam.py example.
README = """
from pytorch_grad_cam import GradCAM, HiResCAM, GradCAMPlusPlus, XGradCAM, EigenCAM, LayerCAM, GuidedBackpropReLUModel
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.image import show_cam_on_image, preprocess_image, deprocess_image
import cv2

target_layers = [model.layer4[-1]]
input_tensor = preprocess_image(rgb_img, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])

# We have to specify the target we want to generate the CAM for.
targets = [ClassifierOutputTarget(281)]

# Construct the CAM object once, and then re-use it on many images.
results = {}
for method in (GradCAM, HiResCAM, GradCAMPlusPlus, XGradCAM, EigenCAM, LayerCAM):
    with method(model=model, target_layers=target_layers) as cam:
        # You can also pass aug_smooth=True and eigen_smooth=True, to apply smoothing.
        grayscale_cam = cam(input_tensor=input_tensor, targets=targets)
        # In this example grayscale_cam has only one image in the batch:
        grayscale_cam = grayscale_cam[0, :]
        visualization = show_cam_on_image(rgb_img, grayscale_cam, use_rgb=True)
        # You can also get the model outputs without having to redo inference
        model_outputs = cam.outputs
    results[method.__name__] = (grayscale_cam, visualization, model_outputs)

gb_model = GuidedBackpropReLUModel(model=model, device="cpu")
gb = gb_model(input_tensor, target_category=None)
grayscale_cam = results["GradCAM"][0]
cam_mask = cv2.merge([grayscale_cam, grayscale_cam, grayscale_cam])
cam_gb = deprocess_image(cam_mask * gb)
gb = deprocess_image(gb)
"""

COMPAT = README.replace("from pytorch_grad_cam", "from actcam_ext.compat.pytorch_grad_cam")


def run(source, model, rgb_img):
    scope = {"model": model, "rgb_img": rgb_img}
    exec(source, scope)
    if hasattr(model, "zero_grad"):
        model.zero_grad(set_to_none=True)
    return scope


def test_readme_usage_gives_the_same_results(resnet50):
    import pytorch_grad_cam.utils.image as PI
    from compat_oracles import grads_left, hooks_left, rgb_photos
    assert COMPAT.count("actcam_ext.compat.pytorch_grad_cam") == 3  # only the imports changed
    rgb_img = rgb_photos(96, 96, ("chelsea",))[0]
    # pytorch-grad-cam's guided backprop swaps the model's ReLU modules: it gets its own copy
    theirs = run(README, copy.deepcopy(resnet50), rgb_img)
    ours = run(COMPAT, resnet50, rgb_img)
    for name, (cam_t, vis_t, out_t) in theirs["results"].items():
        cam_o, vis_o, out_o = ours["results"][name]
        assert cam_o.shape == (96, 96) and cam_o.dtype == np.float32
        assert np.abs(cam_o - cam_t).max() <= 1e-4, name
        # the pictures: the same function of the map (byte-equal to pytorch-grad-cam's on the same
        # map), whose colour index floor(255 * map) moves at most one step for maps 1e-4 apart
        assert np.array_equal(vis_o, PI.show_cam_on_image(rgb_img, cam_o, use_rgb=True)), name
        step = np.abs(np.uint8(255 * cam_o).astype(int) - np.uint8(255 * cam_t).astype(int))
        assert step.max() <= 1, name
        assert (out_o - out_t.detach()).abs().max() <= 1e-4 * out_t.abs().max(), name
    # a fresh input for pytorch-grad-cam's second call: it accumulates into input_tensor.grad
    g_t = theirs["gb_model"](theirs["input_tensor"].detach().clone())
    g_o = ours["gb_model"](ours["input_tensor"])
    assert np.abs(g_o - g_t).max() <= 1e-5 * np.abs(g_t).max()
    assert np.array_equal(ours["gb"], PI.deprocess_image(g_o))
    assert np.abs(ours["gb"].astype(int) - theirs["gb"].astype(int)).max() <= 1
    cam_o, cam_t = ours["results"]["GradCAM"][0], theirs["results"]["GradCAM"][0]
    # the product as the README forms it (cv2.merge's interleaved copy): deprocess_image's
    # np.mean and np.std sum in memory order, so the operands' layout decides the last bit
    assert np.array_equal(ours["cam_gb"], PI.deprocess_image(cv2.merge([cam_o] * 3) * g_o))
    assert np.abs(cam_o[:, :, None] * g_o - cam_t[:, :, None] * g_t).max() <= 2e-4 * np.abs(g_t).max()
    assert hooks_left(resnet50) == 0 and grads_left(resnet50) == 0


def test_the_readme_import_line_names_what_is_not_provided():
    # The README's import line lists methods the compat layer does not compute: the ImportError
    # names the first one met and the provided ones, so the line is fixed in one edit.
    line = ("from actcam_ext.compat.pytorch_grad_cam import GradCAM, HiResCAM, ScoreCAM, GradCAMPlusPlus, "
            "AblationCAM, XGradCAM, EigenCAM, FullGrad")
    with pytest.raises(ImportError, match=r"pytorch_grad_cam\.ScoreCAM is not provided.*GradCAM, HiResCAM"):
        exec(line, {})
