"""The command-line tests' photos: two of scikit-image's, written as a PNG and a JPEG."""

import cv2
import pytest


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
