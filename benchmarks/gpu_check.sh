#!/usr/bin/env bash
# The GPU check, in one command, on a machine with an NVIDIA GPU (under 8 minutes on one GPU
# once the environment is installed):
#
#     bash benchmarks/gpu_check.sh
#
# 1. An environment of its own, .venv-gpu (GPU_VENV to change it): the machine's Python's
#    CUDA torch where it has one, else a CUDA build of torch at the project's pin (the Linux
#    wheel on PyPI is one; PIP_FIND_LINKS=folder PIP_NO_INDEX=1 for wheels on machines without
#    network), and xlandcover with its `cuda` extra (dask-cuda, for the driver's CUDA major
#    version). dask-cuda pins its own dask, so this never touches the project's pinned .venv.
# 2. The tests marked `cuda` (tests/test_cuda.py).
# 3. benchmarks/gpu_check.py: forward alone and end to end with U-Net/ResNet-34 on 512 px
#    windows at the auto batch size, GPU utilisation from nvidia-smi during predict, km²/h for
#    NAIP-like 1 m and Sentinel-2-like 10 m imagery, xlandcover against the hand-written loop,
#    Dask-CUDA with one worker per GPU. JSON into $OUT when set, else benchmarks/results/.
#
# Without a GPU the same steps run on CPU in the project's .venv (make setup), at small sizes:
# the cuda tests are collected and skip, and the benchmark says what it did not measure. That
# keeps this script tested on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${OUT:-benchmarks/results}
logs=${OUT:-$(mktemp -d)}  # the test log and junit XML: beside the JSON only in $OUT
mkdir -p "$results"
export PYTHONUNBUFFERED=1
start=$(date +%s)

gpus=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L | grep -c '^GPU')
fi

if [ "$gpus" -gt 0 ]; then
  echo "gpu_check: $gpus GPU(s):" && nvidia-smi -L
  venv=${GPU_VENV:-.venv-gpu}
  base=${PYTHON:-python3}
  has_cuda_torch='import torch, sys; sys.exit(not torch.cuda.is_available())'
  if [ ! -x "$venv/bin/python" ]; then
    if "$base" -c "$has_cuda_torch" 2>/dev/null; then
      # the machine's Python already has a CUDA torch (GPU images often do): reuse it
      "$base" -m venv --system-site-packages "$venv"
    else
      "$base" -m venv "$venv"
    fi
  fi
  # pip reads PIP_FIND_LINKS / PIP_NO_INDEX from the environment (offline machines: wheels)
  pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
  torch_pin=$(grep -E '^torch==' requirements/constraints.txt)
  if ! "$venv/bin/python" -c "$has_cuda_torch" 2>/dev/null; then
    echo "gpu_check: installing a CUDA build of $torch_pin into $venv"
    "${pip[@]}" "$torch_pin"
  fi
  # keep the torch found or installed through what follows
  "$venv/bin/python" -c 'import torch; print("torch==" + torch.__version__.split("+")[0])' \
    >"$venv/torch-constraint.txt"
  cuda_major=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\).*/\1/p' | head -1)
  "${pip[@]}" -c "$venv/torch-constraint.txt" -e ".[cuda]" "dask-cuda[cu${cuda_major:-12}]" \
    pytest pytest-timeout hypothesis psutil
  python="$venv/bin/python"
else
  echo "gpu_check: no NVIDIA GPU here: running the CPU-runnable parts (the cuda tests skip," \
    "the benchmark runs on CPU at small sizes)" >&2
  make setup >/dev/null
  python=.venv/bin/python
fi
"$python" -c "import torch; print('gpu_check: torch', torch.__version__, 'CUDA', torch.version.cuda, 'available', torch.cuda.is_available())"

echo "gpu_check: tests marked cuda"
set +e
"$python" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider \
  --junitxml="$logs/gpu_check-tests.xml" 2>&1 | tee "$logs/gpu_check-tests.log"
tests_rc=${PIPESTATUS[0]}
set -e

echo "gpu_check: benchmark"
"$python" benchmarks/gpu_check.py --out "$results"
echo "gpu_check: done in $(($(date +%s) - start)) s; cuda tests exit code $tests_rc"
exit "$tests_rc"
