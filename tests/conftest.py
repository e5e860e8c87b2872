import pytest
import torch

import actcam_ext

# CPU tests always run; CUDA variants run only where a GPU and the CUDA kernels exist.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")),
]


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda" and not actcam_ext.native_available("cuda"):
        pytest.fail("a GPU is visible but the CUDA kernels were not built")
    return request.param
