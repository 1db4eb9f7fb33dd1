"""The exported ONNX graphs: their tensors follow the contract and ONNX Runtime equals PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.checkpoint import Checkpoint
from export.models import HistoryInputs, UserInputs
from export.onnx.exporter import PARITY_TOLERANCE, export_onnx, onnx_io, verify_onnx
from export.onnx.wrappers import (
    CANDIDATE_TOWER,
    MODEL_NAMES,
    RANKER,
    USER_TOWER,
    TensorSpec,
    example_inputs,
    model_io,
    wrap,
)
from export.parity import parity_tolerance
from phoenix.config import get_config
from phoenix.errors import ExportError

#: A short history and small tables keep each export to a few seconds.
SMALL = get_config("tiny").with_overrides(history_len=12, num_post_rows=400, num_author_rows=60)
MAX_CANDIDATES = 128


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    checkpoint = Checkpoint.initialise(SMALL, seed=3)
    # Non-trivial weights everywhere (freshly initialised norms are all ones).
    with torch.no_grad():
        for param in [*checkpoint.ranker.parameters(), *checkpoint.retrieval.parameters()]:
            param.add_(0.05 * torch.randn_like(param))
    return checkpoint


@pytest.fixture(scope="module")
def graphs(checkpoint: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("onnx")
    return {
        name: export_onnx(
            name, checkpoint, SMALL, out / f"{name}.onnx", max_candidates=MAX_CANDIDATES
        )
        for name in MODEL_NAMES
    }


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run_both(
    name: str, checkpoint: Checkpoint, path: Path, args: tuple[torch.Tensor, ...]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(PyTorch, ONNX Runtime) output pairs for one set of inputs."""
    inputs, outputs = model_io(name, SMALL)
    with torch.no_grad():
        expected = wrap(name, checkpoint).eval()(*args)
    expected = expected if isinstance(expected, tuple) else (expected,)
    feeds = {spec.name: arg.numpy() for spec, arg in zip(inputs, args, strict=True)}
    got = _session(path).run([spec.name for spec in outputs], feeds)
    return [(want.numpy(), have) for want, have in zip(expected, got, strict=True)]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_graph_tensors_follow_the_contract(name: str, graphs: dict[str, Path]) -> None:
    inputs, outputs = onnx_io(graphs[name])
    assert (inputs, outputs) == model_io(name, SMALL)
    # Batch is dynamic in every tensor; so is the candidate count of the ranker.
    session = _session(graphs[name])
    for value in [*session.get_inputs(), *session.get_outputs()]:
        assert isinstance(value.shape[0], str), f"{value.name}: batch dim must be symbolic"


def test_ranker_candidate_dims_are_symbolic(graphs: dict[str, Path]) -> None:
    session = _session(graphs[RANKER])
    shapes = {v.name: v.shape for v in [*session.get_inputs(), *session.get_outputs()]}
    for name in ("candidate_post_hash", "candidate_surface", "action_log_probs", "continuous"):
        assert isinstance(shapes[name][1], str), name
    assert shapes["history_post_hash"][1:] == [SMALL.history_len, 2]


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("num_candidates", [1, 3, 17, MAX_CANDIDATES])
def test_ranker_onnx_runtime_equals_pytorch(
    batch: int, num_candidates: int, checkpoint: Checkpoint, graphs: dict[str, Path]
) -> None:
    gen = torch.Generator().manual_seed(batch * 1000 + num_candidates)
    args = example_inputs(RANKER, SMALL, batch, num_candidates, gen)
    for want, have in _run_both(RANKER, checkpoint, graphs[RANKER], args):
        assert have.shape == want.shape
        np.testing.assert_allclose(have, want, rtol=0, atol=PARITY_TOLERANCE)


@pytest.mark.parametrize("name", [RANKER, USER_TOWER])
def test_padded_history_matches_pytorch(
    name: str, checkpoint: Checkpoint, graphs: dict[str, Path], pad_history: Callable
) -> None:
    """Viewers with short histories (garbage in the padded slots) agree too."""
    gen = torch.Generator().manual_seed(5)
    args = list(example_inputs(name, SMALL, 3, 9, gen))
    # The ranker's inputs start with the viewer's five; the user tower's with the history.
    first = len(UserInputs.__dataclass_fields__) if name == RANKER else 0
    span = slice(first, first + len(HistoryInputs.__dataclass_fields__))
    history = pad_history(HistoryInputs(*args[span]), [0, 4, SMALL.history_len], gen)
    args[span] = list(history.tensors().values())
    for want, have in _run_both(name, checkpoint, graphs[name], tuple(args)):
        np.testing.assert_allclose(have, want, rtol=0, atol=PARITY_TOLERANCE)


@pytest.mark.parametrize("batch", [1, 5, 300])
def test_towers_onnx_runtime_equal_pytorch(
    batch: int, checkpoint: Checkpoint, graphs: dict[str, Path]
) -> None:
    gen = torch.Generator().manual_seed(batch)
    for name in (USER_TOWER, CANDIDATE_TOWER):
        args = example_inputs(name, SMALL, batch, 1, gen)
        for want, have in _run_both(name, checkpoint, graphs[name], args):
            assert have.shape == (batch, SMALL.emb_dim)
            np.testing.assert_allclose(have, want, rtol=0, atol=PARITY_TOLERANCE)
            np.testing.assert_allclose(np.linalg.norm(have, axis=-1), 1.0, atol=1e-4)


def test_verify_onnx_reports_the_largest_difference(
    checkpoint: Checkpoint, graphs: dict[str, Path]
) -> None:
    diff = verify_onnx(RANKER, checkpoint, SMALL, graphs[RANKER])
    assert 0.0 <= diff <= PARITY_TOLERANCE


def test_parity_tolerance_is_absolute_for_probabilities_and_scales_for_seconds() -> None:
    """dwell_time is in seconds (up to 30): fp32 rounding there is 30 times a probability's."""
    assert parity_tolerance(np.array([0.0, 0.3, -1.0])) == PARITY_TOLERANCE
    assert parity_tolerance(np.array([[2.0, 29.5], [-3.0, 0.0]])) == pytest.approx(
        29.5 * PARITY_TOLERANCE
    )
    assert parity_tolerance(np.zeros((0, 3))) == PARITY_TOLERANCE


def test_verify_onnx_refuses_a_graph_that_disagrees(graphs: dict[str, Path]) -> None:
    """The check can fail: a graph exported from other weights is caught, naming the output."""
    other = Checkpoint.initialise(SMALL, seed=99)
    with pytest.raises(
        ExportError, match=r"phoenix_ranker: ONNX Runtime differs .* action_log_probs"
    ):
        verify_onnx(RANKER, other, SMALL, graphs[RANKER])


def test_negative_rows_fail_instead_of_wrapping(graphs: dict[str, Path]) -> None:
    """ONNX Gather would read row -1 as the last row; the graph sends it out of range instead."""
    inputs, _ = model_io(CANDIDATE_TOWER, SMALL)
    post, author, sids = example_inputs(CANDIDATE_TOWER, SMALL, 2, 1)
    author[0, 0] = -1
    feeds = {"post_hash": post.numpy(), "author_hash": author.numpy(), "sids": sids.numpy()}
    with pytest.raises(Exception, match=r"(?i)indices|out of|bound"):
        _session(graphs[CANDIDATE_TOWER]).run(None, feeds)
    assert [spec.name for spec in inputs] == list(feeds)


def test_graph_io_mismatch_is_refused(graphs: dict[str, Path]) -> None:
    """If the contract and the traced graph ever drift apart, export fails naming both."""
    from export.onnx.exporter import _check_graph_io

    inputs, outputs = model_io(CANDIDATE_TOWER, SMALL)
    renamed = [TensorSpec("renamed", "float32", outputs[0].shape)]
    with pytest.raises(ExportError, match="differ from the contract"):
        _check_graph_io(CANDIDATE_TOWER, graphs[CANDIDATE_TOWER], inputs, renamed)
