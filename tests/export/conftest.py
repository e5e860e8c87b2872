"""Models and inputs of the export tests: the real pretrained EfficientNet-Lite0 as load_model
gives it (BatchNorm folded, NHWC weights), a random-weight torchvision ResNet-50 (exactness
needs no trained weights), a small GAP + linear CNN for the cheap cases, and the four bundled
scikit-image photos."""

import pytest
import torch
import torchvision

from actcam_ext.models import Preprocess, load_model
from cpp.make_pt2 import small_cnn  # the C++ test's model: one definition for both

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def _photos():
    import skimage.data
    return [getattr(skimage.data, name)() for name in PHOTOS]


@pytest.fixture(scope="session")
def effnet():
    """(model, Preprocess) of the default model, exactly as the CLI loads it."""
    return load_model(None, "cpu")


@pytest.fixture(scope="session")
def effnet_photos(effnet):
    """The four photos as EfficientNet-Lite0's input batch [4,3,224,224]."""
    return effnet[1](_photos())


@pytest.fixture(scope="session")
def resnet50():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet50().eval()


@pytest.fixture(scope="session")
def imagenet_photos():
    """The four photos ImageNet-normalised at 224x224 (ResNet-50's input)."""
    return Preprocess()(_photos())


@pytest.fixture
def small():
    """A seeded GAP + linear CNN (a fresh one per test), small enough to export in a second."""
    return small_cnn()
