#!/usr/bin/env bash
# The one script to run on a GPU machine: builds the extension there, runs the test suite
# (CUDA variants included), runs the GPU benchmarks, and leaves logs and JSON in $OUT.
#
#   bash bench/gpu_check.sh            # on the GPU machine, OUT set by the device tool
#   bash bench/gpu_check.sh --dry-run  # here, on a CPU: same steps, CPU build, tiny sizes
#   bash bench/gpu_check.sh --ops-only # only the native ops' tests and benchmarks
#
# Wheels for test dependencies missing on the GPU image (grad-cam, captum, ...) may be put
# in .whl/ (git-ignored) and carried along; they are installed to /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
OPS_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --ops-only) OPS_ONLY=1 ;;
    *) echo "usage: bash bench/gpu_check.sh [--dry-run] [--ops-only]" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the in-place build, for scripts outside the root
status=0

step() { echo; echo "=== $* ($(date +%T))"; }

step "environment"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())'
  nvcc --version 2>/dev/null | tail -1
} 2>&1 | tee "$OUT/env.txt"

if compgen -G ".whl/*.whl" >/dev/null; then
  step "installing carried wheels"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

step "build"
if [[ $DRY_RUN == 1 ]]; then
  echo "dry run: using the extension already built here" | tee "$OUT/build.log"
else
  # build_ext --inplace, not pip: the GPU image has no index to fetch pip's build requirements
  # from, and `python -m pytest` run from the repository root imports the in-place build.
  TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} ACTCAM_FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} \
    $PY setup.py build_ext --inplace >"$OUT/build.log" 2>&1 \
    || { echo "BUILD FAILED"; tail -40 "$OUT/build.log"; exit 1; }
  tail -2 "$OUT/build.log"
fi
$PY -m actcam_ext info | tee -a "$OUT/env.txt"
ldd actcam_ext/_C*.so 2>/dev/null | grep -E "libstdc|libgomp" | tee -a "$OUT/env.txt"

step "tests"
# ACTCAM_GPU_TESTS (space-separated paths) narrows the run, e.g. to the files that exist so far.
read -r -a TESTS <<<"${ACTCAM_GPU_TESTS:-tests}"
[[ $OPS_ONLY == 1 ]] && TESTS=(tests/ops)
# With pytest-xdist a test that kills its worker is reported as failed and the run goes on.
$PY -c "import xdist" 2>/dev/null && [[ $DRY_RUN == 0 ]] && TESTS+=(-n 4)
[[ $DRY_RUN == 1 ]] && TESTS+=(-k "cuda or compile")  # what runs on the GPU, collected (and skipped) here
# CUDA_LAUNCH_BLOCKING pins a kernel fault to the test that caused it; -v names every test in the log.
CUDA_LAUNCH_BLOCKING=1 $PY -m pytest "${TESTS[@]}" -v -p no:cacheprovider -rfE --junitxml="$OUT/tests.xml" \
  >"$OUT/tests.log" 2>&1 || status=1
grep -E "(FAILED|ERROR|Fatal|Error)" "$OUT/tests.log" | head -40
tail -5 "$OUT/tests.log"

step "benchmarks"
BENCH_ARGS=()
[[ $DRY_RUN == 1 ]] && BENCH_ARGS=(--dry-run)
$PY -m bench.gpu_ops --out "$OUT/gpu_ops.json" "${BENCH_ARGS[@]}" 2>&1 | tee "$OUT/gpu_bench.log" || status=1
if [[ $OPS_ONLY == 0 ]]; then
  $PY -m bench.gpu_methods --out "$OUT/gpu_methods.json" "${BENCH_ARGS[@]}" 2>&1 | tee -a "$OUT/gpu_bench.log" \
    || status=1
  $PY -m bench.gpu_video --out "$OUT/gpu_video.json" "${BENCH_ARGS[@]}" 2>&1 | tee -a "$OUT/gpu_bench.log" \
    || status=1
fi

step "done (status $status); results in $OUT"
ls -l "$OUT"
exit $status
