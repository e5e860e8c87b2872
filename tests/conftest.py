"""Shared fixtures and markers.

- ``device``: every device-parametrised test runs on the CPU, and on CUDA where a GPU is
  visible (the ``cuda`` marker decides that once, at collection).
- ``@pytest.mark.cuda``: the test needs a CUDA GPU; skipped, with the reason shown, without one.
- Every test starts from the RNG state it found and leaves it so (``_no_rng_leak``): a test
  that seeds or draws cannot change what the next one sees.
"""

import random

import numpy as np
import pytest
import torch
import torchvision

import actcam_ext
from actcam_ext.evaluation import synthetic

HAS_CUDA = torch.cuda.is_available()

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none is visible)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda" and not actcam_ext.native_available("cuda"):
        pytest.fail("a GPU is visible but the CUDA kernels were not built")
    return request.param


@pytest.fixture(autouse=True)
def _no_rng_leak():
    """Save and restore the torch (CPU and CUDA), numpy and Python RNG states around each test."""
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if HAS_CUDA else None
    np_state = np.random.get_state()
    py_state = random.getstate()
    yield
    torch.random.set_rng_state(torch_state)
    if cuda_states is not None:
        torch.cuda.set_rng_state_all(cuda_states)
    np.random.set_state(np_state)
    random.setstate(py_state)


@pytest.fixture(scope="module")
def resnet18():
    """torchvision's ResNet-18 with seeded random weights, in eval mode (where equality, not
    accuracy, is the point)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet18().eval()


@pytest.fixture(scope="session")
def tiny_config():
    """A synthetic-benchmark config small enough to train in seconds (the default takes about a
    minute)."""
    return synthetic.SyntheticConfig(n_train=192, epochs=1)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory, tiny_config):
    """A cache folder holding the tiny_config model, trained once per session."""
    root = tmp_path_factory.mktemp("cache")
    synthetic.load_model(tiny_config, directory=root / "actcam_ext", progress=False)
    return root
