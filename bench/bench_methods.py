"""CPU benchmarks of the explanation methods against a plain inference and the peer libraries.

    python -m pytest bench/bench_methods.py --benchmark-json=bench/results/cpu_methods.json -s
    python bench/report.py bench/results/cpu_methods.json

torchvision ResNet-50 (random weights, eval), batch 8, 224x224, target = layer4 (last block).
Groups (report.py takes ratios against each group's "baseline" row, median times):
- gradcam-r50-b8: a plain ``torch.no_grad()`` forward (baseline) vs our GradCAM vs
  pytorch-grad-cam GradCAM vs torchcam GradCAM. torchcam returns its maps at the
  layer's 7x7 resolution, not normalised to the input size: it skips the upsampling work.
- top5-r50-b8: five separate GradCAM calls (baseline) vs one call with top_k=5.
- optimize-effnet-b8 / optimize-r50-b8: our GradCAM on the model as its package builds it
  (baseline) vs the model as ``models.load_model`` runs it on the CPU (``optimize``: NHWC
  weights; for EfficientNet-Lite0 also BatchNorm folded), 8 photos of 224x224.

``python bench/bench_methods.py --interleaved`` times the gradcam cases round-robin instead (a
sequential run lets a shared machine's drift favour whichever case runs when it is quiet).

Peak memory (``test_peak_memory``, printed with -s; also ``python bench/bench_methods.py``):
each case runs in a fresh subprocess with ``MALLOC_MMAP_THRESHOLD_`` fixed, so glibc returns
every large tensor to the OS when it is freed. The case runs once to warm up, the kernel's
peak-RSS mark is reset (``echo 5 > /proc/self/clear_refs``), the case runs again, and the
figure is VmHWM - VmRSS before that second run: the extra resident memory one call needs on
top of the loaded model and input. tracemalloc cannot see torch's allocations.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
import torchvision

import actcam_ext as ac

B, H, W = 8, 224, 224
ROUNDS = int(os.environ.get("ACTCAM_BENCH_ROUNDS", "5"))


def _model_and_input():
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    x = torch.randn(B, 3, H, W)
    return model, x


@pytest.fixture(scope="module")
def setup():
    return _model_and_input()


def _cases(model, x):
    """name -> zero-argument callable; shared by the timings and the memory subprocesses."""
    ours = ac.GradCAM(model, "layer4")

    def plain():
        with torch.no_grad():
            return model(x)

    def pgc():
        from pytorch_grad_cam import GradCAM as PGC
        with PGC(model=model, target_layers=[model.layer4]) as cam:
            out = cam(input_tensor=x, targets=None)
        model.zero_grad(set_to_none=True)
        return out

    def torchcam():
        from torchcam.methods import GradCAM as TCGradCAM
        extractor = TCGradCAM(model, target_layer="layer4")
        try:
            scores = model(x)
            return extractor(scores.argmax(1).tolist(), scores)
        finally:
            extractor.remove_hooks()

    with torch.no_grad():
        top5 = model(x).topk(5, dim=1).indices

    return {
        "plain_forward": plain,
        "actcam_gradcam": lambda: ours(x),
        "pytorch_grad_cam": pgc,
        "torchcam_7x7": torchcam,
        "actcam_5_calls": lambda: [ours(x, top5[:, c]) for c in range(5)],
        "actcam_top5_one_call": lambda: ours(x, top_k=5),
    }


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name, role", [
    ("plain_forward", "baseline"),
    ("actcam_gradcam", "ours"),
    ("pytorch_grad_cam", "peer"),
    ("torchcam_7x7", "peer"),
])
def test_gradcam_r50_b8(bench, benchmark, setup, name, role):
    benchmark.group = "gradcam-r50-b8"
    fn = _cases(*setup)[name]
    note = {"torchcam_7x7": "maps stay 7x7", "pytorch_grad_cam": "numpy maps, full backward"}.get(name, "")
    bench(role, fn, rounds=ROUNDS, warmup_rounds=1, note=note)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name, role", [("actcam_5_calls", "baseline"), ("actcam_top5_one_call", "ours")])
def test_top5_r50_b8(bench, benchmark, setup, name, role):
    benchmark.group = "top5-r50-b8"
    bench(role, _cases(*setup)[name], rounds=ROUNDS, warmup_rounds=1)


@pytest.fixture(scope="module")
def optimize_setup():
    import skimage.data
    from actcam_ext.models import load_model
    packaged, pre = load_model(None, "cpu", optimize=False)
    optimized, _ = load_model(None, "cpu", optimize=True)
    photos = [getattr(skimage.data, n)() for n in ("chelsea", "coffee", "astronaut", "rocket")] * 2
    x = pre(photos, "cpu")
    torch.manual_seed(0)
    r50 = torchvision.models.resnet50().eval()
    r50_nhwc = torchvision.models.resnet50().eval()
    r50_nhwc.load_state_dict(r50.state_dict())
    r50_nhwc = r50_nhwc.to(memory_format=torch.channels_last)
    return {"effnet": (packaged, optimized, "_head_act", x), "r50": (r50, r50_nhwc, "layer4", x)}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("net", ["effnet", "r50"])
@pytest.mark.parametrize("name, role", [("packaged", "baseline"), ("optimized", "ours")])
def test_optimized_model(bench, benchmark, optimize_setup, net, name, role):
    benchmark.group = f"optimize-{net}-b8"
    packaged, optimized, layer, x = optimize_setup[net]
    method = ac.GradCAM(packaged if name == "packaged" else optimized, layer)
    bench(role, method, x, rounds=ROUNDS, warmup_rounds=1,
          note="NHWC + BN folded" if name == "optimized" and net == "effnet" else
          ("NHWC" if name == "optimized" else ""))


# ------------------------------------------------------------------------------------------
# peak memory
# ------------------------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure_in_this_process(name: str) -> dict:
    import warnings
    warnings.simplefilter("ignore", RuntimeWarning)
    model, x = _model_and_input()
    fn = _cases(model, x)[name]
    fn()  # warm-up: one-time allocations (thread pools, kernels, lazy init) are not the call's cost
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    fn()
    peak = _status_kib("VmHWM")
    return {"case": name, "extra_peak_mib": (peak - before) / 1024}


def _measure(name: str) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, __file__, "--memory-case", name], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


MEMORY_CASES = ["plain_forward", "actcam_gradcam", "pytorch_grad_cam", "torchcam_7x7"]


def memory_table() -> list[dict]:
    rows = [_measure(name) for name in MEMORY_CASES]
    base = rows[0]["extra_peak_mib"]
    for r in rows:
        r["ratio_vs_plain_forward"] = r["extra_peak_mib"] / base
    return rows


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory():
    rows = memory_table()
    print("\npeak memory of one call on top of model + input (ResNet-50, batch 8, 224x224):")
    for r in rows:
        print(f"  {r['case']:<20} {r['extra_peak_mib']:8.1f} MiB  {r['ratio_vs_plain_forward']:.2f}x plain forward")
    ours = next(r for r in rows if r["case"] == "actcam_gradcam")
    assert ours["ratio_vs_plain_forward"] <= 1.3  # issue 3's budget


def interleaved(rounds: int = 6) -> None:
    """Median times with the cases interleaved round by round, so that drift of a shared
    machine (which a sequential pytest-benchmark run turns into bias) hits every case alike."""
    import time
    import warnings
    warnings.simplefilter("ignore", RuntimeWarning)
    model, x = _model_and_input()
    cases = _cases(model, x)
    names = ["plain_forward", "actcam_gradcam", "pytorch_grad_cam", "torchcam_7x7"]
    for name in names:
        cases[name]()  # warm-up
    times = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            t0 = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - t0)
    base = sorted(times["plain_forward"])[rounds // 2]
    print(f"ResNet-50, batch {B}, {H}x{W}, layer4; median of {rounds} interleaved rounds")
    for name in names:
        med = sorted(times[name])[rounds // 2]
        print(f"  {name:<18} {med * 1e3:8.1f} ms  {med / base:5.2f}x the plain forward")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-case":
        print(json.dumps(_measure_in_this_process(sys.argv[2])))
    elif len(sys.argv) == 2 and sys.argv[1] == "--interleaved":
        interleaved()
    else:
        for r in memory_table():
            print(f"{r['case']:<20} {r['extra_peak_mib']:8.1f} MiB  {r['ratio_vs_plain_forward']:.2f}x")
