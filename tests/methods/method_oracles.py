"""Oracles and inputs shared by the method tests: real photos as a normalised batch, and
Grad-CAM / Grad-CAM++ written out by hand in float64 from an ordinary full-graph forward (the
papers' formulas: Grad-CAM's mean gradient, Grad-CAM++'s Eq. 19), plus a pytorch-grad-cam call."""

import torch
import torch.nn.functional as F

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def photos(h: int, w: int) -> torch.Tensor:
    """chelsea, coffee, astronaut as an ImageNet-normalised batch [3,3,h,w]."""
    import skimage.data as sd
    imgs = []
    for f in (sd.chelsea, sd.coffee, sd.astronaut):
        t = torch.from_numpy(f()).permute(2, 0, 1).float()[None] / 255
        imgs.append(F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0])
    return (torch.stack(imgs) - MEAN) / STD



def minmax64(m: torch.Tensor) -> torch.Tensor:
    lo = m.amin(dim=(-2, -1), keepdim=True)
    hi = m.amax(dim=(-2, -1), keepdim=True)
    return torch.where(hi - lo > 0, (m - lo) / (hi - lo), torch.zeros_like(m))


def hand_activation_grads(model, layer, inputs, score_fn):
    """A at the layer's last call and d(sum of scores)/dA, by an ordinary full-graph forward."""
    store = {}

    def hook(module, args, out):
        store["A"] = out
        return out * 1.0  # so in-place ops downstream cannot alter the kept A

    h = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            out = model(*inputs)
            s = score_fn(out)
    finally:
        h.remove()
    (g,) = torch.autograd.grad(s.sum(), store["A"])
    return store["A"].detach().double(), g.double()


def hand_cam(A, w, size):
    m = torch.relu(torch.einsum("bk,bkhw->bhw", w, A))[:, None]
    return minmax64(F.interpolate(m, size=size, mode="bilinear", align_corners=False)[:, 0])


def hand_gradcam(model, layer, inputs, score_fn, size):
    A, g = hand_activation_grads(model, layer, inputs, score_fn)
    return hand_cam(A, g.mean(dim=(2, 3)), size)


def hand_gradcampp(model, layer, inputs, score_fn, size):
    A, g = hand_activation_grads(model, layer, inputs, score_fn)
    S = A.sum(dim=(2, 3), keepdim=True)
    den = 2 * g ** 2 + S * g ** 3
    alpha = torch.where(den != 0, g ** 2 / den, torch.zeros_like(g))
    return hand_cam(A, (alpha * torch.relu(g)).sum(dim=(2, 3)), size)


def class_score(targets):
    t = torch.as_tensor(targets)
    return lambda out: out.gather(1, t[:, None])[:, 0]


def pgc(method_cls, model, layer, x, targets):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    cam = method_cls(model=model, target_layers=[layer])
    try:
        return torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in targets]))
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)  # pytorch-grad-cam runs loss.backward()


def module(model, name):
    return dict(model.named_modules())[name]

