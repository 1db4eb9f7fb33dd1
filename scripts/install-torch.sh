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
  # The +cpu build: from a local wheel cache/find-links if the machine has one, otherwise from
  # PyTorch's CPU index. pip prefers 2.13.0+cpu over the CUDA 2.13.0 from PyPI when both exist.
  echo "no GPU: installing the CPU build of torch==$version"
  "$python" -m pip install "torch==$version" \
    --extra-index-url "${PHOENIX_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
  if "$python" -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)"; then
    echo "installed $("$python" -c 'import torch; print(torch.__version__)') (CPU build)"
  else
    echo "error: a CUDA build of torch was installed on a machine without a GPU" >&2
    exit 1
  fi
fi
