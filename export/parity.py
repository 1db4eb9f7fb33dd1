"""Every served runtime against PyTorch: one check after every export.

A runtime is anything that takes the model's inputs by name (NumPy arrays, batch first) and
returns its outputs in `model_io` order: an ONNX Runtime session, a TensorRT engine, the PyTorch
serving runner in bf16 with CUDA graphs. The check feeds each one random valid inputs at several
batch sizes and candidate counts and compares against the fp32 PyTorch model on the CPU.

Tolerances are per unit of an output's largest magnitude: probabilities and unit-norm embeddings
are at most 1, dwell_time is in seconds (up to 30), and rounding grows with the magnitude.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from export.checkpoint import Checkpoint
from export.onnx.wrappers import RANKER, example_inputs, model_io, wrap
from phoenix.config import ModelConfig
from phoenix.errors import ExportError

log = logging.getLogger(__name__)

#: Runs a served model: inputs by name -> outputs in `model_io` order.
Runtime = Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]]

#: Accepted |runtime - PyTorch fp32| per unit of an output's magnitude, by compute precision.
#: fp32: ONNX Runtime reaches ~1e-6 on probabilities. tf32: TensorRT's fp32 engines use TF32
#: matmuls (10-bit mantissa) unless told not to. fp16/bf16: measured on the trained tiny ranker
#: (`make demo`), PyTorch on the CPU, over batches of 3 x 64 candidates: max |diff| of the
#: probabilities up to 0.016 in fp16 and 0.040 in bf16 (mean 4e-4); towers 3e-4 / 1.5e-3. The
#: bounds leave about 2x on that; a wrong weight or a broken kernel is off by 0.1 or more.
TOLERANCE_PER_UNIT = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 4e-2, "bf16": 8e-2}

#: Candidate counts and batch sizes every parity check covers (capped at the served limits).
CANDIDATE_COUNTS = (1, 7, 64)
BATCHES = (1, 3)


def parity_tolerance(expected: np.ndarray, per_unit: float = TOLERANCE_PER_UNIT["fp32"]) -> float:
    """The |runtime - PyTorch| accepted on an output whose PyTorch values are `expected`."""
    return per_unit * max(1.0, float(np.max(np.abs(expected), initial=0.0)))


def check_parity(
    kind: str,
    checkpoint: Checkpoint,
    config: ModelConfig,
    run: Runtime,
    *,
    runtime: str,
    per_unit: float = TOLERANCE_PER_UNIT["fp32"],
    candidate_counts: Sequence[int] = CANDIDATE_COUNTS,
    batches: Sequence[int] = BATCHES,
    seed: int = 0,
) -> float:
    """Run `run` and PyTorch (fp32, CPU) on the same random inputs; the largest |difference|.

    Raises `ExportError` naming the runtime, the output and the shape when an output differs by
    more than `parity_tolerance(expected, per_unit)`, or when the runtime fails or returns the
    wrong shape.
    """
    inputs, outputs = model_io(kind, config)
    model = wrap(kind, checkpoint).eval()
    generator = torch.Generator().manual_seed(seed)
    counts = candidate_counts if kind == RANKER else (1,)
    worst = 0.0
    for batch in batches:
        for count in counts:
            args = example_inputs(kind, config, batch, count, generator)
            with torch.no_grad():
                expected = model(*args)
            expected = expected if isinstance(expected, tuple) else (expected,)
            feeds = {spec.name: arg.numpy() for spec, arg in zip(inputs, args, strict=True)}
            where = f"batch {batch}, {count} candidates"
            try:
                got = list(run(feeds))
            except ExportError:
                raise
            except Exception as exc:  # the runtime's own error type; the message says enough
                raise ExportError(f"{kind}: {runtime} failed on {where}: {exc}") from exc
            if len(got) != len(outputs):
                raise ExportError(
                    f"{kind}: {runtime} returned {len(got)} outputs, expected {len(outputs)}"
                )
            for spec, want, have in zip(outputs, expected, got, strict=True):
                want = want.float().numpy()
                have = np.asarray(have, dtype=np.float32)
                if spec.name.endswith("log_probs"):
                    # Compared as probabilities: a log-probability's magnitude (-11 for a rare
                    # action) would otherwise widen the bound where nothing is at stake.
                    want, have = np.exp(want), np.exp(have)
                if have.shape != want.shape:
                    raise ExportError(
                        f"{kind}: {runtime} gave {spec.name} the shape {list(have.shape)}, "
                        f"expected {list(want.shape)} ({where})"
                    )
                diff = float(np.max(np.abs(want - have), initial=0.0))
                tolerance = parity_tolerance(want, per_unit)
                if not diff <= tolerance:  # NaN fails too
                    raise ExportError(
                        f"{kind}: {runtime} differs from PyTorch on {spec.name} by {diff:.3g} "
                        f"({where}; tolerance {tolerance:.3g})"
                    )
                worst = max(worst, diff)
    log.debug("%s: %s vs PyTorch max |diff| %.3g", kind, runtime, worst)
    return worst
