"""Guided backpropagation as pytorch-grad-cam's GuidedBackpropReLUModel computes it."""

import torch
import torch.nn as nn

from ...errors import PREFIX, UserError

__all__ = ["GuidedBackpropReLUModel"]


class _GuidedReLU(torch.autograd.Function):
    """Identity forward on a ReLU module's output; backward G * [y > 0] * [G > 0].

    Applied after the module, so its own backward G * [x > 0] follows: the masks [y > 0] and
    [x > 0] are the same ([relu(x) > 0] = [x > 0]), so the product is pytorch-grad-cam's
    G * [x > 0] * [G > 0], and an in-place ReLU needs no special case.
    """

    @staticmethod
    def forward(ctx, y):
        ctx.save_for_backward(y > 0)
        return y.clone()

    @staticmethod
    def backward(ctx, g):
        (positive,) = ctx.saved_tensors
        return g * positive * (g > 0)


def _guided_hook(module, args, output):
    return _GuidedReLU.apply(output)


class GuidedBackpropReLUModel:
    """pytorch_grad_cam.GuidedBackpropReLUModel: ``gb(input_img, target_category=None)`` -> the
    guided input gradient of the first image, numpy float32 [H, W, 3].

    The guided rule applies to the model's ``nn.ReLU`` modules (subclasses included), as
    pytorch-grad-cam's; functional ReLUs and other activations keep their plain backward
    (``actcam_ext.GuidedBackprop`` also guides functional ReLUs and ReLU6). The score is
    ``output[0, target_category]``; None takes the argmax over the whole output, as
    pytorch-grad-cam does (the first image's top class for a batch of one). Unlike
    pytorch-grad-cam it leaves the model's modules in place (hooks live for one call), computes
    no parameter gradient and does not set ``requires_grad`` or ``.grad`` on ``input_img``.
    """

    def __init__(self, model: nn.Module, device=None):
        if not isinstance(model, nn.Module):
            raise UserError(f"{PREFIX}model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.model.eval()
        if device is None:
            param = next(model.parameters(), None)
            self.device = param.device if param is not None else torch.device("cpu")
        else:
            self.device = torch.device(device)
            self.model = self.model.to(self.device)

    def forward(self, input_img):
        return self.model(input_img)

    def __call__(self, input_img: torch.Tensor, target_category=None):
        if not isinstance(input_img, torch.Tensor) or input_img.dim() != 4 or not input_img.is_floating_point():
            got = list(input_img.shape) if isinstance(input_img, torch.Tensor) else type(input_img).__name__
            raise UserError(f"{PREFIX}input_img must be a float image batch [B, C, H, W], got {got}")
        x = input_img.detach().to(self.device).clone().requires_grad_(True)
        relus = [m for m in self.model.modules() if isinstance(m, nn.ReLU) and m is not self.model]
        handles = []
        prev = torch.is_grad_enabled()
        try:
            handles = [m.register_forward_hook(_guided_hook) for m in relus]
            with torch.inference_mode(False):
                torch.set_grad_enabled(True)
                output = self.forward(x)
                if not isinstance(output, torch.Tensor) or output.dim() != 2:
                    got = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                    raise UserError(f"{PREFIX}GuidedBackpropReLUModel needs a classifier's logits [B, classes], "
                                    f"got {got}")
                if target_category is None:
                    flat = int(output.detach().argmax())
                    if flat >= output.shape[1]:
                        raise UserError(f"{PREFIX}target_category=None takes the argmax over the whole batch's "
                                        "output (as pytorch-grad-cam does), which is not in the first image; pass "
                                        "target_category")
                    target_category = flat
                (grad,) = torch.autograd.grad(output[0, target_category], x)
        finally:
            torch.set_grad_enabled(prev)
            for h in handles:
                h.remove()
        return grad[0].permute(1, 2, 0).float().cpu().numpy()
