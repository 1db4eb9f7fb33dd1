"""ONNX export of the three Triton models, and the parity check against PyTorch.

The graphs come from PyTorch's `torch.export`-based exporter (`dynamo=True`), with the batch
dimension and the candidate count declared dynamic, so one graph serves any batch up to Triton's
`max_batch_size` and any candidate count up to `--max-candidates`. The tensor names, dtypes and
shapes come from `wrappers.model_io`, the same source the `config.pbtxt` writer reads.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx
import torch

from export.checkpoint import Checkpoint
from export.onnx.wrappers import DYNAMIC, TensorSpec, example_inputs, model_io, wrap
from export.parity import BATCHES, CANDIDATE_COUNTS, TOLERANCE_PER_UNIT, check_parity
from phoenix.config import ModelConfig
from phoenix.errors import ExportError

log = logging.getLogger(__name__)

#: Largest |ONNX Runtime - PyTorch| accepted on an output whose values are at most 1 in magnitude
#: (probabilities, unit-norm embeddings); larger outputs (dwell_time, in seconds up to 30) get
#: this much per unit of their largest value, since fp32 rounding grows with the magnitude.
PARITY_TOLERANCE = TOLERANCE_PER_UNIT["fp32"]
#: Opset of the exported graphs; TensorRT 10 and ONNX Runtime >= 1.17 both read it.
OPSET = 18

_ONNX_DTYPES = {
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BFLOAT16: "bfloat16",
}


def _dynamic_shapes(
    inputs: Sequence[TensorSpec], max_batch: int, max_candidates: int
) -> tuple[dict[int, torch.export.Dim], ...]:
    """Per positional input (the wrappers take their tensors positionally), its dynamic axes."""
    batch = torch.export.Dim("batch", min=1, max=max(max_batch, 2))
    candidates = torch.export.Dim("candidates", min=1, max=max(max_candidates, 2))
    shapes = []
    for spec in inputs:
        dims = {0: batch}
        for axis, size in enumerate(spec.shape, start=1):
            if size == DYNAMIC:
                dims[axis] = candidates
        shapes.append(dims)
    return tuple(shapes)


def _for_signature(model: torch.nn.Module, shapes: tuple) -> tuple:  # type: ignore[type-arg]
    """A wrapper whose `forward(*tensors)` takes its inputs as one varargs tuple needs them
    nested one level down, as `torch.export` sees its arguments."""
    params = inspect.signature(model.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return (shapes,)
    return shapes


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Raise these loggers to ERROR for the block: the exporter logs every pass it runs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_onnx(
    kind: str,
    checkpoint: Checkpoint,
    config: ModelConfig,
    path: Path,
    *,
    max_candidates: int,
    max_batch: int = 1024,
) -> Path:
    """Write the fp32 ONNX graph of `kind` to `path` and check it with `onnx.checker`."""
    inputs, outputs = model_io(kind, config)
    model = wrap(kind, checkpoint).eval()
    args = example_inputs(kind, config, batch=2, num_candidates=min(8, max(max_candidates, 2)))
    # The exporter narrates each stage on stdout and warns about merged dimension names; our
    # own log line says what happened, and a failure still raises with the exporter's message.
    with (
        torch.no_grad(),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        _quiet_loggers("torch.onnx", "onnx_ir", "onnxscript"),
    ):
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                model,
                args,
                dynamo=True,
                input_names=[spec.name for spec in inputs],
                output_names=[spec.name for spec in outputs],
                dynamic_shapes=_for_signature(
                    model, _dynamic_shapes(inputs, max_batch, max_candidates)
                ),
                opset_version=OPSET,
                optimize=True,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; all mean "cannot export"
            raise ExportError(f"{kind}: ONNX export failed: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    onnx.checker.check_model(str(path))
    _check_graph_io(kind, path, inputs, outputs)
    log.debug("%s: wrote %s (%.1f MB)", kind, path, path.stat().st_size / 1e6)
    return path


def onnx_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's (inputs, outputs) as `TensorSpec`s, batch dimension dropped, -1 for symbols."""

    def specs(values: Sequence[onnx.ValueInfoProto]) -> list[TensorSpec]:
        out = []
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else DYNAMIC for d in tensor.shape.dim]
            dtype = _ONNX_DTYPES.get(tensor.elem_type, f"onnx:{tensor.elem_type}")
            out.append(TensorSpec(value.name, dtype, tuple(dims[1:])))
        return out

    graph = onnx.load(str(path), load_external_data=False).graph
    return specs(graph.input), specs(graph.output)


def _check_graph_io(
    kind: str, path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> None:
    got_inputs, got_outputs = onnx_io(path)
    if got_inputs != list(inputs) or got_outputs != list(outputs):
        raise ExportError(
            f"{kind}: the exported graph's tensors differ from the contract;\n"
            f"  graph:    {got_inputs} -> {got_outputs}\n  expected: {inputs} -> {outputs}"
        )


def verify_onnx(
    kind: str,
    checkpoint: Checkpoint,
    config: ModelConfig,
    path: Path,
    *,
    candidate_counts: Sequence[int] = CANDIDATE_COUNTS,
    batches: Sequence[int] = BATCHES,
    seed: int = 0,
) -> float:
    """Run the graph in ONNX Runtime and PyTorch on random inputs; the largest |difference|.

    Raises `ExportError` if an output differs by more than `PARITY_TOLERANCE` times the larger of
    1 and its largest |value| (`export.parity`).
    """
    import onnxruntime as ort

    _, outputs = model_io(kind, config)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [spec.name for spec in outputs]
    return check_parity(
        kind,
        checkpoint,
        config,
        lambda feeds: session.run(names, feeds),
        runtime="ONNX Runtime",
        per_unit=PARITY_TOLERANCE,
        candidate_counts=candidate_counts,
        batches=batches,
        seed=seed,
    )
