"""The picture helpers for looking inside a network: ``activation_grid``, ``filter_grid``,
``show`` and the notebook pictures of an ``Explanation``, on the real EfficientNet-Lite0, a
random-weight ResNet-18 and scikit-image's photos.

Tiles are checked pixel for pixel against the package's own colouring (``ops.overlay``'s JET,
``render.overlays``, ``render.guided_picture``) placed at the documented offsets.
"""

import base64
import math

import cv2
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn as nn
import torch.nn.functional as F

import actcam_ext as ac
from actcam_ext import render
from actcam_ext.models import load_model

CAPTION = 26  # the caption bar under a tile
GAP = 6       # between tiles and rows


@pytest.fixture(scope="module")
def lite():
    """EfficientNet-Lite0 as its package builds it: the stem's filters are the learned ones."""
    return load_model(None, "cpu", optimize=False)



@pytest.fixture(scope="module")
def photos():
    return [skimage.data.chelsea(), skimage.data.coffee()]  # 300 x 451 and 400 x 600


def jet(maps):
    """JET colours of maps [N,h,w], as every overlay of the package colours them."""
    return ac.ops.overlay(maps.float(), torch.zeros((*maps.shape, 3), dtype=torch.uint8), 0.0).numpy()


def decode(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


# --------------------------------------------------------------------------------------------
# activation_grid
# --------------------------------------------------------------------------------------------

def test_activation_grid_tiles_are_the_maps_in_jet(lite, photos):
    model, pre = lite
    am = ac.activation_maps(model, pre(photos[:1]), layer="_blocks.5", top=7)   # 14 x 14 cells
    assert am.maps.shape[2:] == (14, 14)
    labels = am.labels(0)
    grid = render.activation_grid(am.maps[0], labels, cols=3, tile=56)
    assert grid.dtype == np.uint8 and grid.shape == (3 * (56 + CAPTION) + 2 * GAP, 3 * 56 + 2 * GAP, 3)
    colours = jet(am.maps[0])
    for k in range(7):
        r, c = divmod(k, 3)
        y, x = r * (56 + CAPTION + GAP), c * (56 + GAP)
        want = np.repeat(np.repeat(colours[k], 4, axis=0), 4, axis=1)           # nearest, 14 -> 56
        assert np.array_equal(grid[y:y + 56, x:x + 56], want), k
        bar = grid[y + 56:y + 56 + CAPTION, x:x + 56]
        assert (bar < 128).any() and (bar == 255).any()                          # black text on white
    assert (grid[2 * (56 + CAPTION + GAP):, 56 + GAP:] == 255).all()             # the empty cells stay white


def test_activation_grid_defaults_and_bounds(lite, photos):
    model, pre = lite
    maps = ac.activation_maps(model, pre(photos[:1]), top=16).maps[0]            # 7 x 7 cells
    grid = render.activation_grid(maps)                                          # 4 x 4, no captions
    assert grid.shape == (4 * 96 + 3 * GAP, 4 * 96 + 3 * GAP, 3)
    assert np.array_equal(grid[:96, :96], cv2.resize(jet(maps[:1])[0], (96, 96), interpolation=cv2.INTER_NEAREST))
    wide = render.activation_grid(maps[:2], cols=10, tile=10)                    # cols beyond N: one row
    assert wide.shape == (10, 2 * 10 + GAP, 3)
    assert np.array_equal(render.activation_grid(maps.numpy()), grid)           # numpy works the same


@pytest.mark.parametrize("maps, kwargs, needle", [
    (torch.rand(2, 3, 4, 4), {}, "activation_grid needs one image's channel maps, a float array [N,h,w]"),
    (torch.rand(0, 4, 4), {}, "with N >= 1"),
    (torch.ones(2, 4, 4, dtype=torch.uint8), {}, "got uint8 [2, 4, 4]"),
    (torch.rand(3, 4, 4), {"labels": ["a"]}, "one label per map, got 1 labels for 3 maps"),
    (torch.rand(3, 4, 4), {"cols": 0}, "cols must be a positive integer, got 0"),
    (torch.rand(3, 4, 4), {"tile": -2}, "tile must be a positive integer, got -2"),
])
def test_activation_grid_errors(maps, kwargs, needle):
    with pytest.raises(ac.UserError) as info:
        render.activation_grid(maps, **kwargs)
    assert needle in str(info.value) and str(info.value).startswith("actcam: ")


# --------------------------------------------------------------------------------------------
# filter_grid
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["efficientnet", "resnet18"])
def test_filter_grid_draws_each_filter_min_max_as_rgb(lite, resnet18, which):
    conv = lite[0]._conv_stem if which == "efficientnet" else resnet18.conv1    # 32 x 3x3 / 64 x 7x7
    w = conv.weight.detach()
    n, _, k, _ = w.shape
    tile = 6 * k
    grid = render.filter_grid(conv, cols=8, tile=tile)
    rows = -(-n // 8)
    assert grid.shape == (rows * (tile + CAPTION) + (rows - 1) * GAP, 8 * tile + 7 * GAP, 3)
    for f in (0, 5, n - 1):
        r, c = divmod(f, 8)
        y, x = r * (tile + CAPTION + GAP), c * (tile + GAP)
        lo, hi = w[f].min(), w[f].max()
        rgb = ((w[f] - lo) / (hi - lo) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        assert np.array_equal(grid[y:y + tile, x:x + tile], np.repeat(np.repeat(rgb, 6, axis=0), 6, axis=1)), f
    cols = math.ceil(math.sqrt(n))                                             # default: near-square, 48 px
    assert render.filter_grid(conv).shape[1] == cols * 48 + (cols - 1) * GAP


def test_filter_grid_refuses_what_is_not_an_rgb_convolution(resnet18):
    with pytest.raises(ac.UserError, match=r"filters have 64; pass the model's first nn.Conv2d, the one that reads"):
        render.filter_grid(resnet18.layer1[0].conv1)
    with pytest.raises(ac.UserError, match="filter_grid needs an nn.Conv2d .* got Linear"):
        render.filter_grid(resnet18.fc)
    depthwise = nn.Conv2d(3, 3, 3, groups=3)  # 3 input channels, but 1 per filter
    with pytest.raises(ac.UserError, match="filters have 1;"):
        render.filter_grid(depthwise)


# --------------------------------------------------------------------------------------------
# show and the notebook pictures of an Explanation
# --------------------------------------------------------------------------------------------

def test_show_overlays_each_class_on_its_image(lite, photos):
    model, pre = lite
    e = ac.GradCAM(model).explain(pre(photos), top_k=2)                        # maps [2,2,224,224]
    pic = render.show(e, photos, image_weight=0.4, height=120)
    widths = [round(451 * 120 / 300), round(600 * 120 / 400)]                 # 180 and 180
    row = 120 + CAPTION
    assert pic.dtype == np.uint8 and pic.shape == (2 * row + GAP, 3 * max(widths) + 2 * GAP, 3)
    for i, rgb in enumerate(photos):
        y = i * (row + GAP)
        small = cv2.resize(rgb, (widths[i], 120), interpolation=cv2.INTER_AREA)
        assert np.array_equal(pic[y:y + 120, :widths[i]], small)
        maps = F.interpolate(e.maps[i][None], size=(120, widths[i]), mode="bilinear", align_corners=False)[0]
        want = render.overlays(maps, small, 0.4)
        for c in range(2):
            x = (c + 1) * (widths[i] + GAP)
            assert np.array_equal(pic[y:y + 120, x:x + widths[i]], want[c]), (i, c)


def test_show_without_images_draws_the_maps(lite, photos):
    model, pre = lite
    e = ac.GradCAM(model).explain(pre(photos[:1]), targets=[281])              # maps [1,224,224]
    pic = render.show(e, height=224)
    assert pic.shape == (224 + CAPTION, 224, 3)
    assert np.array_equal(pic[:224], jet(e.maps)[0])


def test_show_per_image_sizes_and_guided_gradients(lite, photos):
    model, pre = lite
    sizes = [p.shape[:2] for p in photos]
    e = ac.GradCAM(model).explain(pre(photos), size=sizes)                      # a list of maps at each size
    pic = render.show(e, photos, height=100)
    assert pic.shape == (2 * (100 + CAPTION) + GAP, 2 * 150 + GAP, 3)
    g = ac.GuidedGradCAM(model).explain(pre(photos[:1]))                       # gradients [1,3,224,224]
    pic = render.show(g, height=224)
    assert np.array_equal(pic[:224], render.guided_picture(g.maps[0]))
    s = ac.Saliency(model).explain(pre(photos[:1]), targets=lambda out: out[:, 285])  # no class ids
    assert s.class_ids is None
    assert np.array_equal(render.show(s, height=224)[:224], render.guided_picture(s.maps[0]))


@pytest.mark.parametrize("images, needle", [
    ([], "one image per explained image: 1 explained, 0 images given"),
    ([np.zeros((4, 4), np.uint8)], "image 0 must be a uint8 RGB array [H,W,3], got uint8 [4, 4]"),
    ([np.zeros((4, 4, 3), np.float32)], "got float32 [4, 4, 3]"),
])
def test_show_errors(lite, photos, images, needle):
    model, pre = lite
    e = ac.CAM(model).explain(pre(photos[:1]))
    with pytest.raises(ac.UserError) as info:
        render.show(e, images)
    assert needle in str(info.value)
    with pytest.raises(ac.UserError, match="show needs an Explanation"):
        render.show(e.maps, photos[:1])


def test_explanation_displays_as_its_maps_in_jupyter(lite, photos):
    model, pre = lite
    e = ac.GradCAMPlusPlus(model).explain(pre(photos), top_k=3)
    png = e._repr_png_()
    assert png.startswith(b"\x89PNG") and np.array_equal(decode(png), render.show(e))
    html = e._repr_html_()
    assert base64.b64encode(png).decode() in html and "ac.render.show(e, images)" in html
    assert "maps [2, 3, 224, 224]" in html


def test_a_large_batch_shows_its_first_eight_images(resnet18):
    x = torch.randn(10, 3, 64, 64)
    e = ac.GradCAM(resnet18, "layer3").explain(x)
    first = ac.Explanation(e.maps[:8], e.class_ids[:8], None)
    assert np.array_equal(decode(e._repr_png_()), render.show(first))
    assert "the first 8 images drawn" in e._repr_html_()
    empty = ac.Explanation(torch.zeros(0, 8, 8), torch.zeros(0, dtype=torch.long), None)
    assert empty._repr_png_() is None and empty._repr_html_() is None


def test_png_bytes_round_trip(photos):
    assert np.array_equal(decode(render.png_bytes(photos[0])), photos[0])
    grey = (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)
    assert np.array_equal(cv2.imdecode(np.frombuffer(render.png_bytes(grey), np.uint8), cv2.IMREAD_UNCHANGED), grey)



def test_contact_sheet_wraps_into_rows_and_shrinks_panoramas():
    rgb = np.zeros((120, 160, 3), np.uint8)
    one_row = ac.render.contact_sheet(rgb, [rgb] * 3, ["a", "b", "c"])
    assert one_row.shape[0] == ac.render.SHEET_HEIGHT + 26  # tiles + caption bar, one row
    many = ac.render.contact_sheet(rgb, [rgb] * 250, [str(i) for i in range(250)])
    assert many.shape[1] <= ac.render.MAX_SHEET_WIDTH and many.shape[0] < 65500
    assert cv2.imencode(".jpg", many)[0]  # JPEG's size limit holds
    panorama = np.zeros((100, 20000, 3), np.uint8)
    wide = ac.render.contact_sheet(panorama, [panorama], ["x"])
    assert wide.shape[1] <= ac.render.MAX_SHEET_WIDTH
    with pytest.raises(ac.UserError, match="one caption per picture"):
        ac.render.contact_sheet(rgb, [rgb], [])


def test_draw_box_and_heatmap_picture():
    pic = np.zeros((60, 80, 3), np.uint8)
    ac.render.draw_box(pic, [10, 5, 30, 25])
    assert (pic[5, 10:30] == ac.render.BOX_RGB).all() and pic[40, 60].sum() == 0
    assert ac.render.draw_box(np.zeros((4, 4, 3), np.uint8), [0, 0, 0, 0]).sum() == 0  # empty box: nothing
    m = torch.tensor([[0.0, 0.5, 1.0, float("nan")]])
    assert ac.render.heatmap_picture(m).tolist() == [[0, 127, 255, 0]]
