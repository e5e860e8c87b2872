"""actcam_ext.export.onnx: actcam::cam as standard ONNX operators, run by onnxruntime, against
the eager CAM on real photos and against the native op on edge cases."""

import os
import subprocess
import sys
import textwrap

import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import actcam_ext as ac
import actcam_ext.export as ax
from actcam_ext import UserError

# The operators the op must become, and nothing of ours may remain.
CAM_OPERATORS = {"MatMul", "Relu", "Resize", "ReduceMin", "ReduceMax", "Where", "IsNaN", "IsInf"}


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session, x: torch.Tensor):
    logits, maps = session.run(["logits", "maps"], {"images": x.numpy()})
    return torch.from_numpy(logits), torch.from_numpy(maps)


def _check_graph(model: onnx.ModelProto, opset: int) -> None:
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")] == [("", opset)]
    ops = {n.op_type for n in model.graph.node}
    assert CAM_OPERATORS <= ops, CAM_OPERATORS - ops
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    (resize,) = [n for n in model.graph.node if n.op_type == "Resize"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in resize.attribute}
    assert attrs["mode"] == b"linear" and attrs["coordinate_transformation_mode"] == b"half_pixel"
    assert attrs.get("antialias", 0) == 0


def test_effnet_photos_opset17_equal_eager_cam(effnet, effnet_photos, tmp_path):
    model, _ = effnet
    x = effnet_photos
    path = ax.onnx(model, tmp_path / "effnet.onnx", size=(224, 224), batch=4)
    assert path == str(tmp_path / "effnet.onnx") and os.listdir(tmp_path) == ["effnet.onnx"]
    proto = onnx.load(path)
    _check_graph(proto, 17)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["actcam.target_layer"] == "_avg_pooling:input" and meta["actcam.fc_layer"] == "_fc"
    assert meta["actcam.map_size"] == "224,224" and meta["actcam.batch"] == "4"
    logits, maps = _run(_session(path), x)
    want = ac.CAM(model)(x, size=(224, 224))
    assert maps.shape == (4, 224, 224)
    torch.testing.assert_close(maps, want, atol=1e-5, rtol=0)
    with torch.no_grad():
        eager = model(x)
    torch.testing.assert_close(logits, eager, atol=1e-4, rtol=1e-4)
    assert torch.equal(logits.argmax(1), eager.argmax(1))


def test_resnet50_photos_dynamic_batch_opset18(resnet50, imagenet_photos, tmp_path):
    x = imagenet_photos
    path = ax.onnx(resnet50, tmp_path / "r50.onnx", size=(160, 200), opset=18, input_size=(224, 224),
                   dynamic_batch=True)
    _check_graph(onnx.load(path), 18)
    session = _session(path)
    for n in (4, 1):
        logits, maps = _run(session, x[:n])
        torch.testing.assert_close(maps, ac.CAM(resnet50)(x[:n], size=(160, 200)), atol=1e-5, rtol=0)
        with torch.no_grad():
            torch.testing.assert_close(logits, resnet50(x[:n]), atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------------------------
# The translation of the op alone, on the values where it could go wrong
# --------------------------------------------------------------------------------------------

class _Op(nn.Module):
    def __init__(self, size, relu=True, normalize=True):
        super().__init__()
        self.size, self.relu, self.normalize = size, relu, normalize

    def forward(self, activations, weights):
        return torch.ops.actcam.cam.default(activations, weights, list(self.size), self.relu, self.normalize)


def _cases(B, K, h, w, wshape, dtype):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(B, K, h, w, generator=g)
    W = torch.randn(*wshape, generator=g)
    cases = {"random": (A, W), "constant": (torch.ones(B, K, h, w), torch.ones(*wshape)),
             "all negative": (torch.ones(B, K, h, w), -torch.ones(*wshape)),
             # spread 1e-8 of the level: constant up to rounding -> zeros, not amplified noise
             "near constant": (torch.ones(B, K, h, w) + 1e-8 * A, W.abs())}
    nan = A.clone()
    nan[0, :, h // 2, w // 2] = float("nan")
    inf = A.clone()
    inf[-1, :, 0, 0] = float("inf")
    cases["nan"], cases["inf"] = (nan, W), (inf, W.abs())
    return {k: (a.to(dtype), v.to(dtype)) for k, (a, v) in cases.items()}


@pytest.mark.parametrize("size, wshape, dtype, opset, relu, normalize", [
    ((33, 21), (2, 5), torch.float32, 17, True, True),      # upsample, one map per image
    ((3, 4), (2, 3, 5), torch.float32, 18, True, True),     # downsample without antialias, C maps
    ((1, 1), (2, 5), torch.float16, 17, True, True),         # one pixel, half inputs
    ((14, 18), (2, 5), torch.float32, 17, False, True),     # no ReLU
    ((14, 18), (2, 3, 5), torch.float32, 18, True, False),  # no normalisation
])
def test_translation_matches_the_native_op(tmp_path, size, wshape, dtype, opset, relu, normalize):
    module = _Op(size, relu, normalize).eval()
    A0, W0 = _cases(2, 5, 7, 9, wshape, dtype)["random"]
    exported = torch.onnx.export(module, (A0, W0), dynamo=True, opset_version=18, external_data=False,
                                 verbose=False, input_names=["a", "w"],
                                 custom_translation_table=ax.onnx_translation_table())
    proto = exported.model_proto
    if opset == 17:
        ax.to_opset17(proto)
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for name, (A, W) in _cases(2, 5, 7, 9, wshape, dtype).items():
        want = module(A, W)
        (got,) = session.run(None, {"a": A.numpy(), "w": W.numpy()})
        got = torch.from_numpy(got)
        assert torch.equal(got.isnan(), want.isnan()), name
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-6, equal_nan=True, msg=name)


def test_opset17_rewrite_refuses_what_it_cannot_express():
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    mish = helper.make_model(helper.make_graph([helper.make_node("Mish", ["x"], ["y"])], "g", [x], [y]),
                             opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(UserError, match="operator Mish is defined from opset 18 on\\); export with opset=18"):
        ax.to_opset17(mish)
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    r = helper.make_tensor_value_info("r", TensorProto.FLOAT, None)
    computed = helper.make_model(helper.make_graph([helper.make_node("ReduceMax", ["x", "axes"], ["r"])], "g",
                                                   [x, axes], [r]), opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(UserError, match="ReduceMax with computed axes"):
        ax.to_opset17(computed)


def test_bad_onnx_arguments(small, tmp_path):
    with pytest.raises(UserError, match="opset must be an integer >= 17, got 16"):
        ax.onnx(small, tmp_path / "m.onnx", size=(8, 8), opset=16)
    with pytest.raises(UserError, match="must end with .onnx"):
        ax.onnx(small, tmp_path / "m.pt2", size=(8, 8))
    with pytest.raises(UserError, match="does not exist; create it first"):
        ax.onnx(small, tmp_path / "no" / "m.onnx", size=(8, 8))
    with pytest.raises(UserError, match="Grad-CAM cannot be exported"):
        ax.onnx(small, tmp_path / "m.onnx", "gradcam", size=(8, 8))
    assert os.listdir(tmp_path) == []


# The optional packages, absent: a process in which importing them fails, as in an
# installation without the extra.
_WITHOUT_ONNX = textwrap.dedent("""
    import sys
    # None in sys.modules: `import onnx` raises ModuleNotFoundError and importlib.util.find_spec
    # answers None, as for a package that is not installed.
    for name in ("onnx", "onnxscript", "onnxruntime", "onnx_ir"):
        sys.modules[name] = None
    import torch.nn as nn
    import actcam_ext.export as ax
    from actcam_ext import UserError
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    try:
        ax.onnx(model, sys.argv[1], size=(16, 16))
    except UserError as exc:
        print(exc)
""")


def test_missing_onnx_packages_name_the_extra(tmp_path):
    out = tmp_path / "m.onnx"
    run = subprocess.run([sys.executable, "-c", _WITHOUT_ONNX, str(out)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ("actcam: ONNX export needs onnx, onnxscript, which this Python lacks; pip install "
                                  "actcam_ext[export] (onnx, onnxruntime, onnxscript)")
    assert not out.exists()
