"""The CPU kernels' per-capability builds: which one is live, ACTCAM_CPU_CAPABILITY, and every
capability this machine supports against the reference, bit-identical to each other, with
overlay byte-identical to the reference and to cv2's colours.

Each capability runs in its own interpreter started with ACTCAM_CPU_CAPABILITY set (the way a
user selects one), which writes its results for the comparisons here.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import actcam_ext as ac

ROOT = Path(__file__).resolve().parents[2]
BUILT = ("default", "avx2", "avx512")


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _supported() -> list:
    """The capabilities this CPU supports, from the OS's own account of it (Linux x86-64)."""
    flags = _cpu_flags()
    caps = ["default"]
    if {"avx2", "fma", "f16c"} <= flags:
        caps.append("avx2")
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
            caps.append("avx512")
    return caps


SUPPORTED = _supported()
linux_x86 = pytest.mark.skipif(not (sys.platform.startswith("linux") and os.uname().machine == "x86_64"),
                               reason="reads the CPU's flags from Linux's /proc/cpuinfo (x86-64)")


def _run(code: str, capability: str | None, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests" / "ops"),
                                                        os.environ.get("PYTHONPATH", "")]))
    env.pop("ACTCAM_CPU_CAPABILITY", None)
    if capability is not None:
        env["ACTCAM_CPU_CAPABILITY"] = capability
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600, env=env)


@linux_x86
def test_the_best_supported_capability_is_live():
    assert ac.native_available("cpu")
    if "ACTCAM_CPU_CAPABILITY" in os.environ:
        pytest.skip("ACTCAM_CPU_CAPABILITY is set for this run")
    assert ac.ops.cpu_capability() == SUPPORTED[-1]


_REPORT = "import actcam_ext as ac; print(ac.ops.cpu_capability())"


@pytest.mark.parametrize("capability", SUPPORTED)
def test_the_variable_selects_a_capability(capability):
    run = _run(_REPORT, capability)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-1] == capability
    assert "ACTCAM_CPU_CAPABILITY" not in run.stderr


@pytest.mark.parametrize("value", ["avx1024", "AVX2", "sse"])
def test_an_unknown_value_warns_and_falls_back(value):
    """The warning comes from the C++ library (c10's warning handler, on stderr), so LibTorch
    programs see it too."""
    run = _run(_REPORT, value)
    assert run.returncode == 0, run.stderr
    live = run.stdout.split()[-1]
    assert live == SUPPORTED[-1] if sys.platform.startswith("linux") else live in BUILT
    assert f"actcam: ACTCAM_CPU_CAPABILITY={value} names no CPU capability built here" in run.stderr
    assert f"using {live}" in run.stderr


def test_the_private_switch_refuses_unknown_names():
    with pytest.raises(ValueError, match=r"name must be a CPU capability built here .* got 'avx1024'"):
        torch.ops.actcam._set_cpu_capability("avx1024")
    unsupported = [c for c in BUILT if c not in SUPPORTED]
    for name in unsupported:
        with pytest.raises(ValueError, match=r"name must be a CPU capability this CPU supports"):
            torch.ops.actcam._set_cpu_capability(name)


# Each capability computes the same fixed inputs, checks them against the reference, and saves
# the results: cam (weights and gradients, every mode), cam_backward and overlay, over dtypes,
# layouts and sizes with vector tails.
_CHECK = textwrap.dedent("""
    import sys
    import cv2
    import numpy as np
    import torch
    import actcam_ext as ac
    from actcam_ext.ops import reference

    want_cap, out_path = sys.argv[1:3]
    assert ac.ops.cpu_capability() == want_cap, ac.ops.cpu_capability()
    results = {}

    def layouts(t):
        yield "contiguous", t
        yield "channels_last", t.contiguous(memory_format=torch.channels_last)
        yield "sliced", torch.cat([t, t], 1)[:, ::2]
        yield "transposed", t.transpose(2, 3).contiguous().transpose(2, 3)

    g = torch.Generator().manual_seed(0)
    for (B, C, K, h, w, H, W) in [(2, None, 37, 7, 7, 224, 224), (3, 2, 19, 5, 9, 17, 13), (1, 3, 300, 12, 20, 45, 80),
                                  (2, None, 8, 20, 24, 7, 5)]:
        A0 = torch.randn(B, K, h, w, generator=g)
        A0[0, 1, 0, 0] = 1e-40  # a subnormal among the inputs
        G0 = torch.randn(*((B, K) if C is None else (B, C, K)), h, w, generator=g) * 0.1
        wts0 = torch.randn(*((B, K) if C is None else (B, C, K)), generator=g)
        for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            for lay, A in layouts(A0.to(dtype)):
                key = f"{B}{C}{K}{h}{w}{H}{W}-{dtype}-{lay}"
                for relu, norm in ((True, True), (False, False)):
                    got = ac.ops.cam(A, wts0, (H, W), relu=relu, normalize=norm)
                    ref = reference.cam(A, wts0, (H, W), relu=relu, normalize=norm)
                    tol = 1e-12 if got.dtype == torch.float64 else 1e-5
                    torch.testing.assert_close(got, ref, rtol=tol, atol=tol * (1 if norm else ref.abs().max().item()))
                    results[f"cam-{key}-{relu}{norm}"] = got
                    for mode in ac.ops.CAM_FROM_GRADS_MODES:
                        Gm = G0.to(dtype)
                        Am = A.abs() if mode == "xgradcam" else A  # well-conditioned denominators
                        if mode == "xgradcam":  # but a plane of zeros and one of -0: weight 0
                            Am[:, 2] = 0.0
                            Am[:, 3] = -0.0
                        got = ac.ops.cam_from_grads(Am, Gm, mode, (H, W), relu=relu, normalize=norm)
                        ref = reference.cam_from_grads(Am, Gm, mode, (H, W), relu=relu, normalize=norm)
                        torch.testing.assert_close(got, ref, rtol=tol,
                                                   atol=tol * (1 if norm else ref.abs().max().item()))
                        results[f"{mode}-{key}-{relu}{norm}"] = got
                grad = torch.randn(*results[f"cam-{key}-TrueTrue"].shape, generator=g, dtype=results[f"cam-{key}-TrueTrue"].dtype)
                ga, gw = torch.ops.actcam.cam_backward(grad, A, wts0, [H, W], True, True)
                results[f"backward-{key}"] = torch.cat([ga.flatten().double(), gw.flatten().double()])

    # an output of 4 MiB or more, written in streaming stores; rows of 501 pixels start unaligned
    A0 = torch.randn(4, 40, 6, 7, generator=g).relu()
    G0 = torch.randn(4, 40, 6, 7, generator=g) * 0.1
    for dtype in (torch.float32, torch.float64):
        for norm in (True, False):
            got = ac.ops.cam_from_grads(A0.to(dtype), G0.to(dtype), "gradcam", (600, 501), normalize=norm)
            ref = reference.cam_from_grads(A0.to(dtype), G0.to(dtype), "gradcam", (600, 501), normalize=norm)
            tol = 1e-12 if dtype == torch.float64 else 1e-5
            torch.testing.assert_close(got, ref, rtol=tol, atol=tol * (1 if norm else ref.abs().max().item()))
            results[f"streamed-{dtype}-{norm}"] = got

    maps = torch.rand(3, 37, 53, generator=g)
    maps[0, 0, :6] = torch.tensor([float("nan"), -1.0, 2.0, float("inf"), 1.0, 0.0])
    images = torch.randint(0, 256, (3, 37, 53, 3), generator=g, dtype=torch.uint8)
    for weight in (0.0, 0.3, 0.5, 1.0):
        out = ac.ops.overlay(maps, images, weight)
        assert torch.equal(out, reference.overlay(maps, images, weight))
        for m, img, o in zip(maps[1:].numpy(), images[1:].numpy(), out[1:].numpy()):
            heat = cv2.applyColorMap(np.uint8(255 * m), cv2.COLORMAP_JET)[..., ::-1]
            cv = cv2.addWeighted(np.ascontiguousarray(heat), 1 - weight, np.ascontiguousarray(img), weight, 0)
            # the colours exactly (weight 0) and the image exactly (weight 1); in between,
            # cv2.addWeighted rounds its own way, within 1 (docs/ops.md)
            diff = np.abs(o.astype(int) - cv.astype(int)).max()
            assert diff == 0 if weight in (0.0, 1.0) else diff <= 1, (want_cap, weight, diff)
        results[f"overlay-{weight}"] = out
    torch.save(results, out_path)
    print("checked", want_cap, len(results))
""")


@pytest.fixture(scope="module")
def per_capability(tmp_path_factory):
    out = {}
    folder = tmp_path_factory.mktemp("capabilities")
    for cap in SUPPORTED:
        path = folder / f"{cap}.pt"
        run = _run(_CHECK, cap, cap, str(path))
        out[cap] = (run, path)
    return out


@pytest.mark.parametrize("capability", SUPPORTED)
def test_every_capability_matches_the_reference_and_cv2(per_capability, capability):
    run, path = per_capability[capability]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    assert f"checked {capability}" in run.stdout


@pytest.mark.skipif(len(SUPPORTED) < 2, reason="this CPU supports one capability only")
def test_every_capability_returns_the_same_bits(per_capability):
    for cap, (run, _) in per_capability.items():
        assert run.returncode == 0, f"{cap}: " + run.stderr[-3000:]
    results = {cap: torch.load(path) for cap, (_, path) in per_capability.items()}
    base = results["default"]
    for cap, got in results.items():
        assert got.keys() == base.keys()
        for key, value in got.items():
            assert torch.equal(value.isnan(), base[key].isnan()), (cap, key)
            assert torch.equal(value.nan_to_num(), base[key].nan_to_num()), (cap, key)
