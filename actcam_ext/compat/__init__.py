"""Drop-in replacements for other explanation libraries' APIs, computed by actcam_ext.

``actcam_ext.compat.pytorch_grad_cam`` mirrors pytorch-grad-cam 1.5's public API for the
methods actcam_ext computes (docs/compat.md): change ``from pytorch_grad_cam import ...`` to
``from actcam_ext.compat.pytorch_grad_cam import ...`` and the same calls give the same maps,
without parameter gradients and without copying activations or gradients to the host.
"""

from . import pytorch_grad_cam

__all__ = ["pytorch_grad_cam"]


def __getattr__(name: str):
    # Only ``pytorch_grad_cam`` is mirrored: any other library name is a clear ImportError (a
    # plain AttributeError would read "cannot import name" without saying what exists).
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"actcam: actcam_ext.compat has no {name!r}; it mirrors pytorch-grad-cam only: "
                      "import from actcam_ext.compat.pytorch_grad_cam")
