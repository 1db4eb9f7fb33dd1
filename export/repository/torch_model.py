"""Triton Python-backend model of the `pytorch` target: the PyTorch module, bf16 with CUDA graphs.

Copied into every version directory of the `pytorch` target as `model.py`, next to the checkpoint
(`config.json`, `model.safetensors`) and `io.json`. Request checking and batching are the `cpu`
target's (`python_model.py`); only the runtime differs: `export.torch_serving.TorchRunner`, on the
device and in the precision the config.pbtxt parameters name, with a CUDA graph per
(batch, candidates) bucket captured when the model loads.

Unlike the `cpu` target's model.py this one imports this project, since the model is Python code:
the stub's interpreter needs phoenix-triton with its `export` extra, which `phoenix triton`
provides (it runs the stub with its own interpreter). NVIDIA's container does not have it; serve
the `onnxruntime` or `tensorrt` targets there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from export.repository.python_model import TritonPythonModel as OnnxRuntimeModel
from export.torch_serving.runner import TorchRunner
from phoenix.serving import ORT_THREADS_ENV


class TritonPythonModel(OnnxRuntimeModel):
    runtime = "pytorch"

    def open_session(self, version_dir: Path, args: dict) -> TorchRunner:
        config = json.loads(args["model_config"])
        parameters = {
            key: value.get("string_value", "")
            for key, value in config.get("parameters", {}).items()
        }
        return TorchRunner.from_version_dir(
            self.io.get("model", args["model_name"]),  # the network, whatever it is served as
            version_dir,
            parameters,
            max_batch=int(config["max_batch_size"]),
            max_candidates=self.max_candidates,
            threads=int(os.environ.get(ORT_THREADS_ENV) or 0),
        )
