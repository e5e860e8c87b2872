"""Models of the compat tests: the architectures users explain with pytorch-grad-cam, random
init (seed 0; no weights are downloaded), eval mode, built once per test module."""

import pytest
import torch
import torchvision

import dense_models
from dense_models import seeded


@pytest.fixture(scope="module")
def resnet50():
    return seeded(torchvision.models.resnet50)


def _vit_b16():
    model = torchvision.models.vit_b_16(image_size=96)
    # torchvision initialises the head to zeros (constant logits, zero gradients): draw it
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


@pytest.fixture(scope="module")
def vit_b16():
    # 96 x 96 inputs: a 6 x 6 patch grid after the class token
    return seeded(_vit_b16)


@pytest.fixture(scope="module")
def swin_t():
    return seeded(torchvision.models.swin_t)


@pytest.fixture(scope="module")
def deeplab():
    return seeded(lambda: torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None))


@pytest.fixture(scope="module")
def frcnn():
    model = dense_models.frcnn()
    # Random weights score every class about 1/91, below torchvision's 0.05 threshold: keep them.
    model.roi_heads.score_thresh = 0.001
    return model
