"""`phoenix export`: a checkpoint into a Triton model repository."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pydantic import ValidationError

from phoenix.cli.options import option_errors
from phoenix.errors import ConfigError

log = logging.getLogger(__name__)

_TARGETS = ("cpu", "onnxruntime", "tensorrt", "pytorch")
_CUDA_GRAPHS = {"auto": None, "on": True, "off": False}
_PRECISIONS = ("fp32", "fp16", "bf16")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint as the three Triton models of a model repository",
        description="Export phoenix_ranker (one-pass form), phoenix_user_tower and "
        "phoenix_candidate_tower to ONNX, check ONNX Runtime against PyTorch, and publish each "
        "as the next version directory of the repository, atomically, next to the versions "
        "already there: a running `phoenix triton` picks the new version up without a restart.",
        epilog="Targets: cpu = Python-backend model over ONNX Runtime, for the tritonserver of "
        "the nvidia-pytriton wheel (no GPU needed); onnxruntime = the ONNX Runtime backend of "
        "NVIDIA's Triton container; tensorrt = a TensorRT engine (needs TensorRT and a GPU); "
        "pytorch = Python-backend model running the PyTorch module, bf16 with CUDA graphs on a "
        "GPU (the GPU path where TensorRT is missing), for the wheel's tritonserver; it also "
        "serves on a CPU. Every target is checked against PyTorch after the export.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint directory")
    p.add_argument("--out", required=True, type=Path, help="model repository to write into")
    p.add_argument("--target", choices=_TARGETS, default="cpu", help="serving backend (cpu)")
    p.add_argument(
        "--precision",
        choices=_PRECISIONS,
        default=None,
        help="compute precision; fp16 and bf16 need --target tensorrt or pytorch "
        "(default: bf16 for pytorch, fp32 otherwise)",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="pytorch target: auto, cpu, cuda or cuda:N; auto takes the first GPU when the "
        "serving host has one (default auto)",
    )
    p.add_argument(
        "--cuda-graphs",
        choices=tuple(_CUDA_GRAPHS),
        default="auto",
        help="pytorch target: capture a CUDA graph per (batch, candidates) bucket when the model "
        "loads; auto = on when it runs on CUDA (default auto)",
    )
    p.add_argument(
        "--max-candidates",
        type=int,
        default=1024,
        help="most candidates per ranker request (default 1024, at most the config's)",
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        help="Triton max_batch_size for all three models (default: 16 ranker, 64 user tower, "
        "1024 candidate tower)",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=None,
        help="how long Triton's dynamic batcher holds a request to fill a batch (default: 0 for "
        "the cpu target, where waiting only adds latency; 2000 for the GPU targets)",
    )
    p.add_argument(
        "--keep-versions",
        type=int,
        default=3,
        help="version directories kept per model; older ones are removed (default 3)",
    )
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip the check of the served runtime against PyTorch (faster; not recommended)",
    )
    p.add_argument(
        "--timing-cache",
        type=Path,
        default=None,
        help="TensorRT timing cache file, read and updated (tensorrt target only)",
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from export.repository.build import ExportSettings, export_repository

    try:
        settings = ExportSettings(
            target=args.target,
            precision=args.precision,
            max_candidates=args.max_candidates,
            max_batch_size=args.max_batch_size,
            max_queue_delay_us=args.max_queue_delay_us,
            keep_versions=args.keep_versions,
            verify=args.verify,
            timing_cache=args.timing_cache,
            device=args.device,
            cuda_graphs=_CUDA_GRAPHS[args.cuda_graphs],
        )
    except ValidationError as exc:
        raise ConfigError(option_errors(exc, {})) from exc
    published = export_repository(args.checkpoint, args.out, settings)
    for model in published:
        parity = (
            "not checked"
            if model.parity_max_abs_diff is None
            else f"{model.runtime} vs PyTorch max |diff| {model.parity_max_abs_diff:.2e}"
        )
        print(f"{args.out / model.name / str(model.version)}  ({parity})")
    return 0
