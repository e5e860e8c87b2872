#!/usr/bin/env bash
# Configures the LibTorch build (CMakeLists.txt) into build/cmake, builds it with -j2 and
# runs ctest. Extra arguments go to the cmake configure step, e.g. -DACTCAM_WITH_CUDA=ON.
#
# Uses the torch of the python on PATH (activate the venv first, or set PYTHON).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${ACTCAM_CMAKE_BUILD_DIR:-$ROOT/build/cmake}"
PYTHON="${PYTHON:-python}"

TORCH_PREFIX="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
args=(-S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$TORCH_PREFIX")

# A CUDA LibTorch (the CUDA pip wheel too) looks for the CUDA toolkit even for the CPU-only
# build. Where the nvcc on PATH is a wrapper script that execs the real compiler,
# FindCUDAToolkit would take the wrapper's folder for the toolkit: hand it the folder of the
# compiler the wrapper execs (what setup.py does for CUDA_HOME).
if [[ -z "${CUDAToolkit_ROOT:-}" ]] && command -v nvcc >/dev/null 2>&1; then
  nvcc="$(readlink -f "$(command -v nvcc)")"
  real="$(sed -n 's/^[[:space:]]*exec[[:space:]]\+["'\'']\?\(\/[^[:space:]"'\'']*\/bin\/nvcc\).*/\1/p' "$nvcc" | head -n1)"
  [[ -n "$real" ]] && nvcc="$(readlink -f "$real")"
  CUDAToolkit_ROOT="$(dirname "$(dirname "$nvcc")")"
fi
if [[ -n "${CUDAToolkit_ROOT:-}" && -x "$CUDAToolkit_ROOT/bin/nvcc" ]]; then
  args+=("-DCUDAToolkit_ROOT=$CUDAToolkit_ROOT")
fi

cmake "${args[@]}" "$@"
cmake --build "$BUILD" -j2
cd "$BUILD"
ctest --output-on-failure
