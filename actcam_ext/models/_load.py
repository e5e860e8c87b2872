"""Loading models by name: ``load_model(spec, device) -> (model, Preprocess)``."""


from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from urllib.parse import urlparse

import torch
import torch.nn as nn

from .._validate import finite_floats, int_at_most
from ..errors import PREFIX, UserError
from .efficientnet_lite import efficientnet_lite0
from .preprocess import Preprocess

__all__ = ["load_model", "resolve_device", "DEFAULT_MODEL", "MAX_INPUT_SIZE"]

DEFAULT_MODEL = "efficientnet-lite0"
# Largest model input side: far above any classifier's training size, and small enough that
# the activations of a batch still fit in memory.
MAX_INPUT_SIZE = 4096


def resolve_device(device) -> torch.device:
    """None: the GPU when one is visible, else the CPU. 'cuda' without a GPU is a UserError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"{PREFIX}unknown device {device!r}: use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{PREFIX}device {device!r} was requested but no CUDA GPU is visible to torch; use "
                        "--device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"{PREFIX}unsupported device {device!r}: use cpu or cuda")
    return dev


def _state_dict(path: str, what: str) -> dict:
    """A state_dict from a weights file (tensors only: nothing in it runs), or a UserError."""
    if not os.path.isfile(path):
        raise UserError(f"{PREFIX}weights file {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise UserError(f"{PREFIX}cannot read the weights {path} for {what}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{PREFIX}weights file {path!r} holds a {type(state).__name__}, not a state_dict")
    return state


def _load_weights(model: nn.Module, state: dict, path: str, what: str) -> None:
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise UserError(f"{PREFIX}the weights {path} do not fit {what}: {str(exc).splitlines()[0]}") from None


def _torchvision(name: str, weights_file: str | None) -> tuple[nn.Module, Preprocess]:
    try:
        import torchvision.models as tvm
    except ImportError:
        raise UserError(f"{PREFIX}torchvision:NAME models need torchvision; pip install torchvision") from None
    kinds = {"classification": tvm, "segmentation": tvm.segmentation, "detection": tvm.detection}
    names = {n: kind for kind, module in kinds.items() for n in tvm.list_models(module=module)}
    if name not in names:
        raise UserError(f"{PREFIX}unknown torchvision model {name!r}; choose a classification, segmentation or "
                        f"detection model: {', '.join(sorted(names))}")
    weights = tvm.get_model_weights(name).DEFAULT
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))
    path = weights_file or cache
    if weights_file is None and not os.path.isfile(path):
        raise UserError(f"{PREFIX}the pretrained weights of torchvision:{name} are not in the local cache ({path}) "
                        "and actcam never downloads; copy the file there (or set TORCH_HOME), pass --weights FILE, "
                        "or use the built-in efficientnet-lite0")
    # The architecture of the default weights (a segmenter's auxiliary head included), built
    # without them: the state_dict comes from the cache or the user's file below.
    extra = {"weights_backbone": None, "num_classes": len(weights.meta["categories"])} \
        if names[name] != "classification" else {}
    if names[name] == "segmentation" and not name.startswith("lraspp"):  # LR-ASPP has no auxiliary head
        extra["aux_loss"] = True
    model = tvm.get_model(name, weights=None, **extra)
    what = f"torchvision:{name}"
    if weights_file is None:  # the cache's file: a wrong one is named as the cache's
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:
            raise UserError(f"{PREFIX}cannot load the cached weights {path} into {what}: "
                            f"{str(exc).splitlines()[0]}") from None
    else:
        _load_weights(model, _state_dict(path, what), path, what)
    t = weights.transforms()
    if names[name] == "detection":
        # The detector normalises and resizes inside (its transform); it gets [0, 1] RGB at the
        # size its transform scales to, so its boxes are in that frame.
        side = int(model.transform.min_size[0])
        return model, Preprocess(size=(side, side), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    side = int(t.resize_size[0]) if names[name] == "segmentation" else int(t.crop_size[0])
    return model, Preprocess(size=(side, side), mean=tuple(t.mean), std=tuple(t.std))


def _timm(name: str, weights_file: str | None) -> tuple[nn.Module, Preprocess]:
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError:
        raise UserError(f"{PREFIX}timm:NAME models need timm; pip install timm") from None
    if weights_file is None:
        raise UserError(f"{PREFIX}timm:{name} needs its weights as a file: pass --weights FILE (a state_dict); "
                        "actcam never downloads, and a randomly initialised network's maps mean nothing")
    try:
        model = timm.create_model(name, pretrained=False)
    except Exception as exc:  # timm's message for an unknown name is a RuntimeError
        raise UserError(f"{PREFIX}unknown timm model {name!r} ({str(exc).splitlines()[0]})") from None
    _load_weights(model, _state_dict(weights_file, f"timm:{name}"), weights_file, f"timm:{name}")
    cfg = resolve_data_config({}, model=model)
    _, h, w = cfg["input_size"]
    return model, Preprocess(size=(int(h), int(w)), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))


def _is_torchscript(path: str) -> bool:
    # torch.jit.save writes a zip archive with a constants.pkl record; torch.save's zip has none.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in z.namelist())


def _from_path(path: str, allow_pickle: bool) -> tuple[nn.Module, Preprocess]:
    if os.path.isdir(path):
        raise UserError(f"{PREFIX}model {path!r} is a directory; expected a model file saved with torch.save or "
                        "torch.jit.save")
    if not os.path.isfile(path):
        raise UserError(f"{PREFIX}unknown model {path!r}: not a file, and not one of efficientnet-lite0, "
                        "torchvision:NAME, timm:NAME")
    try:
        if _is_torchscript(path):
            with warnings.catch_warnings():  # torch's "jit is deprecated" notice is not the user's problem
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(path, map_location="cpu")
        elif allow_pickle:
            model = torch.load(path, map_location="cpu", weights_only=False)
        else:
            try:
                model = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as exc:
                if "weights_only" not in str(exc):
                    raise
                # A whole pickled module: rebuilding its classes runs code from the file.
                raise UserError(f"{PREFIX}model file {path!r} is a pickled nn.Module, and unpickling it runs code "
                                "from the file; if you trust it, pass --allow-pickle (Python: allow_pickle=True)") \
                    from None
    except UserError:
        raise
    except Exception as exc:  # any failure to unpickle is a problem with the user's file
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{PREFIX}cannot load model file {path!r}: {msg}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{PREFIX}model file {path!r} holds a {type(model).__name__}, not a whole nn.Module; save the "
                        "model itself with torch.save(model, path) or torch.jit.save (a state_dict is not enough)")
    return model, Preprocess()


def load_model(spec: str | None = None, device=None, *, input_size=None, mean=None, std=None,
               optimize: bool | None = None, allow_pickle: bool = False,
               weights: str | None = None) -> tuple[nn.Module, Preprocess]:
    """Load a model by spec (module docstring) in eval mode on ``device``.

    optimize: NHWC weights, and BatchNorm folding for the built-in model (None: on the CPU
    only; module docstring). allow_pickle: load a model file that is a whole pickled nn.Module,
    which runs code from the file (refused by default; TorchScript archives and state_dicts
    load without it). weights: a state_dict file for ``torchvision:NAME`` (instead of the cache)
    or ``timm:NAME`` (required).

    input_size (int or (H, W), each at most MAX_INPUT_SIZE), mean and std (3 finite floats on
    the [0, 1] scale, std > 0) override the model's preprocessing defaults. Raises UserError for
    anything the user can fix (unknown name, missing file or cached weights, no GPU).
    """
    dev = resolve_device(device)
    spec = spec or DEFAULT_MODEL
    if weights is not None and not spec.startswith(("torchvision:", "timm:")):
        raise UserError(f"{PREFIX}--weights applies to torchvision:NAME and timm:NAME models, not to {spec!r}")
    if spec == DEFAULT_MODEL:
        model, pre = efficientnet_lite0()
    elif spec.startswith("torchvision:"):
        model, pre = _torchvision(spec.split(":", 1)[1], weights)
    elif spec.startswith("timm:"):
        model, pre = _timm(spec.split(":", 1)[1], weights)
    else:
        model, pre = _from_path(spec, allow_pickle)
    if input_size is not None:
        sizes = (input_size, input_size) if not isinstance(input_size, (tuple, list)) else tuple(input_size)
        if len(sizes) != 2:
            raise UserError(f"{PREFIX}input_size must be one int or (H, W), got {input_size!r}")
        pre = Preprocess(tuple(int_at_most(v, "input_size", MAX_INPUT_SIZE) for v in sizes), pre.mean, pre.std)
    if mean is not None:
        pre = Preprocess(pre.size, finite_floats(mean, "mean", 3), pre.std)
    if std is not None:
        pre = Preprocess(pre.size, pre.mean, finite_floats(std, "std", 3, positive=True))
    model = model.to(dev).eval()
    if optimize if optimize is not None else dev.type == "cpu":
        if hasattr(model, "fold_batchnorm"):
            model.fold_batchnorm()
        model = model.to(memory_format=torch.channels_last)
    return model, pre
