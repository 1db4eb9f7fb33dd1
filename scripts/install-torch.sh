#!/usr/bin/env bash
# Install PyTorch into the given Python environment without ever pulling CUDA packages onto a
# machine that has no NVIDIA GPU. An already-installed torch is kept as it is.
set -euo pipefail
python="${1:?usage: install-torch.sh PYTHON}"
version="${PHOENIX_TORCH_VERSION:-2.13.0}"

if "$python" -c "import torch" 2>/dev/null; then
  echo "torch $("$python" -c 'import torch; print(torch.__version__)') already installed"
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "NVIDIA GPU found: installing the CUDA build of torch==$version"
  "$python" -m pip install "torch==$version"
else
  # Pin the +cpu local version, so no resolver path can bring CUDA packages: first from the
  # machine's own package sources (a wheel cache or find-links), then from PyTorch's CPU index.
  echo "no GPU: installing the CPU build torch==$version+cpu"
  "$python" -m pip install --quiet "torch==$version+cpu" "numpy<2" 2>/dev/null \
    || "$python" -m pip install --quiet "torch==$version+cpu" "numpy<2" \
      --extra-index-url "${PHOENIX_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
  echo "installed torch $("$python" -c 'import torch; print(torch.__version__)')"
fi
