"""The `pytorch` target's runtime: shape buckets, serving options, and `TorchRunner`.

Everything runs on the CPU, where `cuda_graphs=True` pads each call up to its bucket without
capturing a graph: the padding is under test here, the capture in the `gpu` tests at the end
(skipped without a CUDA device).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from export.checkpoint import Checkpoint
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
from export.parity import TOLERANCE_PER_UNIT, check_parity, parity_tolerance
from export.torch_serving import runner as runner_module
from export.torch_serving.buckets import (
    NO_CANDIDATES,
    ShapeBuckets,
    copy_padded,
    empty_inputs,
    powers_of_two_up_to,
    shape_of,
    unpad,
)
from export.torch_serving.runner import TorchRunner, TorchServingOptions, resolve_device
from phoenix.config import get_config
from phoenix.errors import ConfigError, InputError

CONFIG = get_config("tiny").with_overrides(
    history_len=12, num_user_rows=50, num_post_rows=400, num_author_rows=60
)
MAX_BATCH = 16
MAX_CANDIDATES = 64
#: (batch, candidates) of calls that are no bucket's size (batch buckets are powers of two,
#: candidate buckets 16 and 64).
ODD_SHAPES = [(3, 7), (5, 17), (1, 1)]
EXACT = 1e-5

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


# Buckets ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("limit", "sizes"),
    [
        (1, (1,)),
        (5, (1, 2, 4, 5)),
        (16, (1, 2, 4, 8, 16)),
        (1024, (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)),
    ],
)
def test_powers_of_two_up_to(limit: int, sizes: tuple[int, ...]) -> None:
    assert powers_of_two_up_to(limit) == sizes


def test_default_buckets_of_a_ranker_stop_at_the_candidate_limit() -> None:
    buckets = ShapeBuckets.default(16, 300)
    assert buckets.batch_sizes == (1, 2, 4, 8, 16)
    assert buckets.candidate_counts == (16, 64, 128, 256, 300)


def test_default_buckets_of_a_ranker_at_an_orchestrator_bucket() -> None:
    assert ShapeBuckets.default(4, 1024).candidate_counts == (16, 64, 128, 256, 512, 1024)
    assert ShapeBuckets.default(4, 8).candidate_counts == (8,)


def test_default_buckets_of_a_tower_have_no_candidates() -> None:
    buckets = ShapeBuckets.default(64, None)
    assert buckets.batch_sizes == (1, 2, 4, 8, 16, 32, 64)
    assert buckets.candidate_counts == ()


@pytest.mark.parametrize(
    ("batch", "candidates", "key"),
    [
        (1, 1, (1, 16)),
        (3, 7, (4, 16)),
        (4, 16, (4, 16)),  # an exact fit stays in its bucket
        (4, 17, (4, 64)),
        (2, 64, (2, 64)),
        (5, 64, None),  # beyond the largest batch size
        (1, 65, None),  # beyond the largest candidate count
        (9, 100, None),
    ],
)
def test_pick_takes_the_smallest_bucket_that_holds_the_call(
    batch: int, candidates: int, key: tuple[int, int] | None
) -> None:
    assert ShapeBuckets((1, 2, 4), (16, 64)).pick(batch, candidates) == key


def test_pick_for_a_tower_ignores_candidates() -> None:
    buckets = ShapeBuckets((1, 2, 8))
    assert buckets.pick(1) == (1, NO_CANDIDATES)
    assert buckets.pick(3) == (8, NO_CANDIDATES)
    assert buckets.pick(8) == (8, NO_CANDIDATES)
    assert buckets.pick(9) is None


def test_shapes_are_every_bucket_largest_first() -> None:
    assert ShapeBuckets((1, 2), (16, 64)).shapes() == [(2, 64), (2, 16), (1, 64), (1, 16)]
    assert ShapeBuckets((1, 4, 8)).shapes() == [(8, 0), (4, 0), (1, 0)]


@pytest.mark.parametrize(
    ("batch_sizes", "candidate_counts", "field"),
    [
        ((2, 1), (), "batch_sizes"),
        ((1, 1), (), "batch_sizes"),
        ((0, 1), (), "batch_sizes"),
        ((), (), "batch_sizes"),
        ((1, 2), (64, 16), "candidate_counts"),
        ((1, 2), (16, 16), "candidate_counts"),
        ((1, 2), (0, 16), "candidate_counts"),
        ((1, 2), (-4,), "candidate_counts"),
    ],
)
def test_invalid_bucket_sizes_are_refused_naming_the_field(
    batch_sizes: tuple[int, ...], candidate_counts: tuple[int, ...], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        ShapeBuckets(batch_sizes, candidate_counts)


def test_copy_padded_writes_the_corner_and_zeroes_the_rest() -> None:
    dst = torch.full((4, 5, 2), 7, dtype=torch.int64)  # stale values of an earlier call
    src = torch.arange(1, 3 * 2 * 2 + 1, dtype=torch.int64).reshape(3, 2, 2)
    copy_padded(dst, src)
    assert torch.equal(dst[:3, :2], src)
    assert not dst[3:].any()
    assert not dst[:, 2:].any()


def test_unpad_slices_the_batch_and_candidate_axes_only() -> None:
    out = torch.randn(4, 16, 3)
    got = unpad(out, TensorSpec("action_log_probs", "float32", (-1, 3)), batch=3, candidates=7)
    assert got.shape == (3, 7, 3)
    assert torch.equal(got, out[:3, :7])
    # A fixed axis is kept whole, whatever `candidates` says (a tower's embedding).
    emb = torch.randn(4, 8)
    got = unpad(emb, TensorSpec("user_embedding", "float32", (8,)), batch=2, candidates=0)
    assert got.shape == (2, 8)
    assert torch.equal(got, emb[:2])


def test_shape_of_reads_batch_and_candidates() -> None:
    gen = torch.Generator().manual_seed(0)
    inputs, _ = model_io(RANKER, CONFIG)
    assert shape_of(inputs, example_inputs(RANKER, CONFIG, 3, 7, gen)) == (3, 7)
    inputs, _ = model_io(CANDIDATE_TOWER, CONFIG)
    assert shape_of(inputs, example_inputs(CANDIDATE_TOWER, CONFIG, 5, 1, gen)) == (5, 0)


def test_empty_inputs_are_zeros_of_the_bucket_shape() -> None:
    inputs, _ = model_io(RANKER, CONFIG)
    tensors = empty_inputs(inputs, 4, 16, torch.device("cpu"))
    # Each tensor has its spec's shape with the batch and candidate axes filled in, and its dtype.
    want_shapes = [(4, *(16 if d == -1 else d for d in spec.shape)) for spec in inputs]
    assert [tuple(t.shape) for t in tensors] == want_shapes
    by_name = dict(zip([spec.name for spec in inputs], tensors, strict=True))
    assert by_name["history_actions"].shape == (4, CONFIG.history_len, CONFIG.num_action_columns)
    assert by_name["candidate_sids"].shape == (4, 16, CONFIG.sid_levels)
    want_dtypes = [torch.float32 if spec.dtype == "float32" else torch.int64 for spec in inputs]
    assert [t.dtype for t in tensors] == want_dtypes
    assert by_name["user_float"].dtype == torch.float32
    assert not any(t.any() for t in tensors)


# Options ----------------------------------------------------------------------------------------
def test_options_from_config_parameters() -> None:
    parameters = {
        "precision": "bf16",
        "device": "cuda:1",
        "cuda_graphs": "true",
        "cuda_graph_batch_sizes": "4, 1,2,2",
        "cuda_graph_candidates": "64,16",
        # The served parameters, not ours: ignored (the model forbids unknown fields).
        "max_candidates": "64",
        "model_config": '{"emb_dim": 128}',
    }
    options = TorchServingOptions.from_parameters(parameters)
    assert options == TorchServingOptions(
        precision="bf16",
        device="cuda:1",
        cuda_graphs=True,
        graph_batch_sizes=(1, 2, 4),
        graph_candidates=(16, 64),
    )
    assert TorchServingOptions.from_parameters({"cuda_graphs": "false"}).cuda_graphs is False
    assert (
        TorchServingOptions.from_parameters({"cuda_graph_batch_sizes": ""}).graph_batch_sizes
        is None
    )


def test_options_defaults_and_extra_fields() -> None:
    options = TorchServingOptions.from_parameters({}, threads=3)
    assert options.precision == "bf16" and options.device == "auto"
    assert options.cuda_graphs is None and options.threads == 3
    assert options.graph_batch_sizes is None and options.graph_candidates is None


@pytest.mark.parametrize(
    ("parameters", "extra", "field"),
    [
        ({"precision": "int8"}, {}, "precision"),
        ({"device": "tpu"}, {}, "device"),
        ({"device": "cuda:x"}, {}, "device"),
        ({"cuda_graph_batch_sizes": "a,b"}, {}, "graph_batch_sizes"),
        ({"cuda_graph_candidates": "16,x"}, {}, "graph_candidates"),
        ({"cuda_graph_batch_sizes": "0,4"}, {}, "graph_batch_sizes"),
        ({"cuda_graphs": "maybe"}, {}, "cuda_graphs"),
        ({}, {"threads": -1}, "threads"),
    ],
)
def test_bad_parameters_raise_config_error_naming_them(
    parameters: dict[str, str], extra: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError, match=field) as info:
        TorchServingOptions.from_parameters(parameters, **extra)
    assert "pytorch target parameters" in str(info.value)


@pytest.mark.parametrize(
    "options",
    [
        TorchServingOptions(),
        TorchServingOptions(
            precision="fp16",
            device="cuda:0",
            cuda_graphs=False,
            graph_batch_sizes=(1, 4),
            graph_candidates=(8,),
        ),
        TorchServingOptions(precision="fp32", device="cpu", cuda_graphs=True),
    ],
)
def test_to_parameters_round_trips(options: TorchServingOptions) -> None:
    parameters = options.to_parameters()
    assert all(isinstance(v, str) for v in parameters.values())
    assert TorchServingOptions.from_parameters(parameters) == options


def test_to_parameters_spells_config_values() -> None:
    options = TorchServingOptions(
        precision="fp16", device="cpu", cuda_graphs=False, graph_batch_sizes=(1, 4)
    )
    assert options.to_parameters() == {
        "precision": "fp16",
        "device": "cpu",
        "cuda_graphs": "false",
        "cuda_graph_batch_sizes": "1,4",
    }
    assert TorchServingOptions().to_parameters() == {"precision": "bf16", "device": "auto"}


def test_buckets_default_to_the_served_limits() -> None:
    assert TorchServingOptions().buckets(16, 300) == ShapeBuckets.default(16, 300)
    assert TorchServingOptions().buckets(64, None) == ShapeBuckets.default(64, None)


def test_buckets_take_the_configured_sizes() -> None:
    options = TorchServingOptions(graph_batch_sizes=(2, 8), graph_candidates=(4, 32))
    assert options.buckets(16, 64) == ShapeBuckets((2, 8), (4, 32))
    # A tower has no candidate axis: the candidate sizes do not apply.
    assert options.buckets(16, None) == ShapeBuckets((2, 8))


@pytest.mark.parametrize(
    "options",
    [
        TorchServingOptions(graph_batch_sizes=(1, 32)),
        TorchServingOptions(graph_candidates=(16, 128)),
    ],
)
def test_buckets_beyond_the_served_limits_are_refused(options: TorchServingOptions) -> None:
    with pytest.raises(ConfigError, match="cuda_graph_batch_sizes/cuda_graph_candidates"):
        options.buckets(16, 64)


def test_resolve_device_on_the_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_resolve_device_refuses_cuda_without_cuda(name: str) -> None:
    with pytest.raises(ConfigError, match=r"device: .*no CUDA device"):
        resolve_device(name)


# The runner on the CPU --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    checkpoint = Checkpoint.initialise(CONFIG, seed=5)
    with torch.no_grad():  # non-trivial norms too
        for param in [*checkpoint.ranker.parameters(), *checkpoint.retrieval.parameters()]:
            param.add_(0.05 * torch.randn_like(param))
    return checkpoint


def make_runner(
    checkpoint: Checkpoint, kind: str, max_batch: int = MAX_BATCH, **options: Any
) -> TorchRunner:
    settings = {"precision": "fp32", "device": "cpu", "cuda_graphs": False, **options}
    return TorchRunner(
        kind,
        checkpoint,
        max_batch=max_batch,
        max_candidates=MAX_CANDIDATES,
        options=TorchServingOptions(**settings),
    )


def make_feeds(kind: str, batch: int, candidates: int, seed: int = 0) -> dict[str, np.ndarray]:
    inputs, _ = model_io(kind, CONFIG)
    args = example_inputs(kind, CONFIG, batch, candidates, torch.Generator().manual_seed(seed))
    return {spec.name: arg.numpy() for spec, arg in zip(inputs, args, strict=True)}


def reference(checkpoint: Checkpoint, kind: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The fp32 PyTorch wrapper's outputs, in `model_io` order."""
    inputs, _ = model_io(kind, CONFIG)
    with torch.no_grad():
        out = wrap(kind, checkpoint).eval()(*(torch.from_numpy(feeds[s.name]) for s in inputs))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def assert_close(got: list[np.ndarray], want: list[np.ndarray], atol: float) -> None:
    assert len(got) == len(want)
    for have, expected in zip(got, want, strict=True):
        assert have.dtype == np.float32
        assert have.shape == expected.shape
        np.testing.assert_allclose(have, expected, atol=atol, rtol=0)


@pytest.mark.parametrize("kind", MODEL_NAMES)
def test_fp32_eager_matches_the_pytorch_wrapper(checkpoint: Checkpoint, kind: str) -> None:
    runner = make_runner(checkpoint, kind)
    assert not runner.static_shapes and not runner.captures
    _, outputs = model_io(kind, CONFIG)
    for batch, candidates in [(3, 7), (2, 64)]:
        feeds = make_feeds(kind, batch, candidates)
        got = runner(feeds)
        assert_close(got, reference(checkpoint, kind, feeds), EXACT)
        assert len(got) == len(outputs)
    assert runner._slots == {}  # eager: no bucket prepared


@pytest.mark.parametrize("kind", MODEL_NAMES)
def test_padded_path_matches_eager_on_shapes_between_buckets(
    checkpoint: Checkpoint, kind: str
) -> None:
    eager = make_runner(checkpoint, kind)
    padded = make_runner(checkpoint, kind, cuda_graphs=True)
    assert padded.static_shapes and not padded.captures  # CPU: pads, never captures
    used = set()
    for batch, candidates in ODD_SHAPES:
        feeds = make_feeds(kind, batch, candidates, seed=batch + candidates)
        assert_close(padded(feeds), eager(feeds), EXACT)
        used.add(padded.buckets.pick(batch, candidates))
    # One slot per bucket used, each a bucket shape, none capturing a graph on the CPU.
    assert set(padded._slots) == used
    # More viewers than the largest bucket: eager, and no new slot.
    feeds = make_feeds(kind, MAX_BATCH + 1, 3)
    assert_close(padded(feeds), eager(feeds), EXACT)
    assert set(padded._slots) == used
    assert all(key in padded.buckets.shapes() for key in used)
    assert padded.graphs_captured == 0


@pytest.mark.parametrize("kind", MODEL_NAMES)
def test_padded_path_matches_the_wrapper_on_every_bucket_edge(
    checkpoint: Checkpoint, kind: str
) -> None:
    """Exact fits and one-past fits, on a runner with small buckets (fast on the CPU)."""
    runner = make_runner(
        checkpoint, kind, cuda_graphs=True, graph_batch_sizes=(1, 2, 4), graph_candidates=(4, 8)
    )
    for batch, candidates in [(2, 4), (3, 5), (4, 8), (1, 8)]:
        feeds = make_feeds(kind, batch, candidates, seed=7)
        assert_close(runner(feeds), reference(checkpoint, kind, feeds), EXACT)
    if kind == RANKER:
        assert sorted(runner._slots) == [(1, 8), (2, 4), (4, 8)]
    else:
        assert sorted(runner._slots) == [(1, 0), (2, 0), (4, 0)]


def test_calls_beyond_every_bucket_run_eagerly(checkpoint: Checkpoint) -> None:
    runner = make_runner(
        checkpoint, RANKER, cuda_graphs=True, graph_batch_sizes=(1, 2), graph_candidates=(4, 8)
    )
    for batch, candidates in [(3, 5), (2, 9), (5, 40)]:
        feeds = make_feeds(RANKER, batch, candidates, seed=batch)
        got = runner(feeds)
        assert_close(got, reference(checkpoint, RANKER, feeds), EXACT)
        assert got[0].shape == (batch, candidates, CONFIG.num_action_columns)
    assert runner._slots == {}  # no bucket holds them: nothing prepared
    runner(make_feeds(RANKER, 2, 5))
    assert list(runner._slots) == [(2, 8)]


def test_tower_calls_beyond_every_bucket_run_eagerly(checkpoint: Checkpoint) -> None:
    runner = make_runner(checkpoint, CANDIDATE_TOWER, cuda_graphs=True, graph_batch_sizes=(1, 2))
    feeds = make_feeds(CANDIDATE_TOWER, 5, 1)
    assert_close(runner(feeds), reference(checkpoint, CANDIDATE_TOWER, feeds), EXACT)
    assert runner._slots == {}


@pytest.mark.parametrize(("kind", "count"), [(RANKER, 5 * 2), (USER_TOWER, 5)])
def test_warm_up_prepares_every_bucket(checkpoint: Checkpoint, kind: str, count: int) -> None:
    runner = make_runner(checkpoint, kind, cuda_graphs=True)
    assert len(runner.buckets.shapes()) == count  # 1..16 viewers (x 16 and 64 candidates)
    runner.warm_up()
    assert sorted(runner._slots) == sorted(runner.buckets.shapes())
    assert runner.graphs_captured == 0
    # A call afterwards reuses its bucket's slot.
    runner(make_feeds(kind, 3, 7))
    assert len(runner._slots) == count


def test_warm_up_prepares_nothing_when_eager(checkpoint: Checkpoint) -> None:
    runner = make_runner(checkpoint, RANKER)
    runner.warm_up()
    assert runner._slots == {}


class Spy:
    """Stands in for the runner's module: records (clones of) the arguments of every call."""

    def __init__(self, module: Callable[..., Any]) -> None:
        self.module = module
        self.calls: list[list[Tensor]] = []

    def __call__(self, *args: Tensor) -> Any:
        self.calls.append([arg.clone() for arg in args])
        return self.module(*args)


def test_padding_feeds_the_module_zero_padded_bucket_shapes(checkpoint: Checkpoint) -> None:
    runner = make_runner(checkpoint, RANKER, cuda_graphs=True)
    spy = Spy(runner._module)
    runner._module = spy  # type: ignore[assignment]
    inputs, _ = model_io(RANKER, CONFIG)
    # A larger call first, then a smaller one in the same bucket: its padding must be zeros, not
    # what the first call left in the bucket's buffers.
    for batch, candidates in [(4, 15), (3, 7)]:
        feeds = make_feeds(RANKER, batch, candidates, seed=candidates)
        got = runner(feeds)
        assert_close(got, reference(checkpoint, RANKER, feeds), EXACT)
        args = spy.calls[-1]
        for spec, arg in zip(inputs, args, strict=True):
            real = torch.from_numpy(feeds[spec.name])
            want_shape = (4, 16, *arg.shape[2:]) if -1 in spec.shape else (4, *arg.shape[1:])
            assert tuple(arg.shape) == want_shape, spec.name
            corner = tuple(slice(0, n) for n in real.shape)
            assert torch.equal(arg[corner], real), spec.name
            rest = arg.clone()
            rest[corner] = 0
            assert not rest.any(), f"{spec.name}: padding is not zero"
    assert len(spy.calls) == 2
    assert list(runner._slots) == [(4, 16)]


def test_eager_path_feeds_the_module_the_call_as_is(checkpoint: Checkpoint) -> None:
    runner = make_runner(checkpoint, RANKER)
    spy = Spy(runner._module)
    runner._module = spy  # type: ignore[assignment]
    runner(make_feeds(RANKER, 3, 7))
    (args,) = spy.calls
    assert tuple(args[-1].shape) == (3, 7)
    assert tuple(args[0].shape) == (3, 2)


@pytest.mark.parametrize("kind", MODEL_NAMES)
def test_bf16_is_within_tolerance_and_really_bf16(checkpoint: Checkpoint, kind: str) -> None:
    runner = make_runner(checkpoint, kind, precision="bf16")
    assert {p.dtype for p in runner._module.parameters()} == {torch.bfloat16, torch.float32}
    diff = check_parity(
        kind,
        checkpoint,
        CONFIG,
        runner,
        runtime="PyTorch bf16",
        per_unit=TOLERANCE_PER_UNIT["bf16"],
        candidate_counts=(1, 7),
    )
    assert diff > 0
    feeds = make_feeds(kind, 3, 7)
    fp32 = make_runner(checkpoint, kind)(feeds)
    bf16 = runner(feeds)
    assert [a.dtype for a in bf16] == [np.float32] * len(bf16)  # returned as float32
    assert any(not np.array_equal(a, b) for a, b in zip(bf16, fp32, strict=True))


def test_building_a_bf16_runner_leaves_the_checkpoint_alone(checkpoint: Checkpoint) -> None:
    before = {k: v.clone() for k, v in checkpoint.state_dict().items()}
    runner = make_runner(checkpoint, RANKER, precision="bf16")
    make_runner(checkpoint, USER_TOWER, precision="fp16")
    runner(make_feeds(RANKER, 2, 3))
    after = checkpoint.state_dict()
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert runner._module.ranker is not checkpoint.ranker  # type: ignore[attr-defined]


def test_run_returns_outputs_in_the_order_asked(checkpoint: Checkpoint) -> None:
    runner = make_runner(checkpoint, RANKER)
    feeds = make_feeds(RANKER, 2, 5)
    probs, cont = runner(feeds)
    got = runner.run(["continuous", "action_log_probs"], feeds)
    assert np.array_equal(got[0], cont) and np.array_equal(got[1], probs)
    assert got[0].shape == (2, 5, CONFIG.num_continuous)
    assert got[1].shape == (2, 5, CONFIG.num_action_columns)
    (only,) = runner.run(["action_log_probs"], feeds)
    assert np.array_equal(only, probs)


def test_run_refuses_an_unknown_output(checkpoint: Checkpoint) -> None:
    runner = make_runner(checkpoint, USER_TOWER)
    with pytest.raises(InputError, match=r"output_names: .*'post_embedding'"):
        runner.run(["user_embedding", "post_embedding"], make_feeds(USER_TOWER, 2, 1))


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_a_missing_input_is_named(checkpoint: Checkpoint, cuda_graphs: bool) -> None:
    runner = make_runner(checkpoint, RANKER, cuda_graphs=cuda_graphs)
    feeds = make_feeds(RANKER, 2, 5)
    del feeds["candidate_surface"]
    with pytest.raises(InputError, match="candidate_surface: missing input"):
        runner(feeds)
    with pytest.raises(InputError, match="candidate_surface"):
        runner.run(["action_log_probs"], feeds)


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_read_only_inputs_work_without_warnings(checkpoint: Checkpoint, cuda_graphs: bool) -> None:
    runner = make_runner(checkpoint, RANKER, cuda_graphs=cuda_graphs)
    feeds = make_feeds(RANKER, 3, 7)
    want = reference(checkpoint, RANKER, feeds)
    for array in feeds.values():
        array.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.from_numpy warns on a read-only array
        got = runner(feeds)
    assert_close(got, want, EXACT)
    assert not any(array.flags.writeable for array in feeds.values())  # the caller's untouched


def test_non_contiguous_inputs_work(checkpoint: Checkpoint) -> None:
    runner = make_runner(checkpoint, RANKER)
    feeds = make_feeds(RANKER, 3, 7)
    strided = {name: np.asfortranarray(array) for name, array in feeds.items()}
    assert not strided["history_actions"].flags.c_contiguous
    assert_close(runner(strided), reference(checkpoint, RANKER, feeds), EXACT)


def test_threads_option_sets_torch_threads(
    checkpoint: Checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    monkeypatch.setattr(runner_module.torch, "set_num_threads", seen.append)
    make_runner(checkpoint, USER_TOWER, threads=3)
    make_runner(checkpoint, USER_TOWER)  # 0: PyTorch's default, left alone
    assert seen == [3]


# On a GPU ---------------------------------------------------------------------------------------
def cuda_runner(checkpoint: Checkpoint, kind: str, graphs: bool, **options: Any) -> TorchRunner:
    return make_runner(
        checkpoint,
        kind,
        max_batch=4,
        **{"precision": "bf16", "device": "cuda", "cuda_graphs": graphs, **options},
    )


def padded_feeds(
    kind: str, feeds: dict[str, np.ndarray], key: tuple[int, int]
) -> dict[str, np.ndarray]:
    """`feeds` zero-padded by hand to the bucket `key`."""
    inputs, _ = model_io(kind, CONFIG)
    out = {}
    for spec, buffer in zip(inputs, empty_inputs(inputs, *key, torch.device("cpu")), strict=True):
        copy_padded(buffer, torch.from_numpy(feeds[spec.name]))
        out[spec.name] = buffer.numpy()
    return out


def assert_scaled(got: list[np.ndarray], want: list[np.ndarray], per_unit: float) -> None:
    """`assert_close` with the tolerance per unit of each output's magnitude (dwell_time is in
    seconds: one bf16 step there is well above 1e-3)."""
    for have, expected in zip(got, want, strict=True):
        assert_close([have], [expected], parity_tolerance(expected, per_unit))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("kind", MODEL_NAMES)
def test_warm_up_captures_one_graph_per_bucket(checkpoint: Checkpoint, kind: str) -> None:
    runner = cuda_runner(checkpoint, kind, graphs=True)
    assert runner.captures and runner.device.type == "cuda"
    runner.warm_up()
    assert runner.graphs_captured == len(runner.buckets.shapes()) == len(runner._slots)
    runner(make_feeds(kind, 3, 7))
    assert runner.graphs_captured == len(runner.buckets.shapes())  # no capture per call


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("kind", MODEL_NAMES)
def test_replayed_graphs_match_eager_cuda(checkpoint: Checkpoint, kind: str) -> None:
    graphs = cuda_runner(checkpoint, kind, graphs=True)
    graphs.warm_up()
    eager = cuda_runner(checkpoint, kind, graphs=False)
    for batch, candidates in ODD_SHAPES[::2]:  # (3, 7) and (1, 1): inside max_batch 4
        feeds = make_feeds(kind, batch, candidates, seed=batch)
        key = graphs.buckets.pick(batch, candidates)
        assert key is not None and key != (batch, candidates)
        got = graphs(feeds)
        # The same kernels at the same (padded) shape: bf16 rounding alike.
        want = eager(padded_feeds(kind, feeds, key))
        _, outputs = model_io(kind, CONFIG)
        want = [
            unpad(torch.from_numpy(w), spec, batch, candidates).numpy()
            for w, spec in zip(want, outputs, strict=True)
        ]
        assert_scaled(got, want, 1e-3)
        # And the unpadded eager call within the bf16 parity bound.
        assert_scaled(got, eager(feeds), TOLERANCE_PER_UNIT["bf16"])


@pytest.mark.gpu
@needs_cuda
def test_graphs_sharing_a_pool_do_not_clobber_each_other(checkpoint: Checkpoint) -> None:
    shapes = [(3, 7), (1, 20), (4, 16)]
    feeds = [make_feeds(RANKER, b, c, seed=b * 100 + c) for b, c in shapes]
    alone = []
    for one in feeds:
        separate = cuda_runner(checkpoint, RANKER, graphs=True)
        separate.warm_up()
        alone.append(separate(one))
    shared = cuda_runner(checkpoint, RANKER, graphs=True)
    shared.warm_up()
    # Alternate between buckets, twice over: each replay must see its own inputs and weights.
    for _ in range(2):
        for one, want in zip(feeds, alone, strict=True):
            assert_scaled(shared(one), want, 1e-3)
