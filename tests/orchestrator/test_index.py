"""The post index: exact search by hand, every backend against exact, the mutation contract,
input validation, backend selection, and concurrent use."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from orchestrator.retrieval import (
    ExactIndex,
    FaissIndex,
    VectorIndex,
    available_backends,
    cuvs_available,
    faiss_available,
    make_index,
)
from orchestrator.retrieval.cuvs_index import cuvs_unavailable_reason
from orchestrator.retrieval.torch_index import torch_unavailable_reason
from phoenix.errors import ConfigError, InputError

DIM = 32

#: Small thresholds so the approximate structures (IVF lists, CAGRA graph, side buffer, tombstones)
#: are built and exercised on test-sized corpora instead of falling back to exact search.
SMALL = {
    "exact": {},
    "faiss": {"min_train": 1000},
    "cuvs": {"cagra_min_size": 1000, "side_limit": 500},
    "torch": {},
    "torch-on-cpu": {"device": "cpu"},  # the torch backend's device mirror, on the CPU
}

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")


@pytest.fixture(
    params=[
        "exact",
        pytest.param("faiss", marks=needs_faiss),
        "cuvs-on-cpu",
        pytest.param("cuvs", marks=pytest.mark.gpu),
        "torch-on-cpu",
        pytest.param("torch", marks=pytest.mark.gpu),
    ]
)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A backend name for `new_index`. "cuvs-on-cpu" is the cuvs backend's own bookkeeping
    (mirror, CAGRA tombstones, side buffer, rebuilds) over a NumPy stand-in for cuVS and CuPy, so
    it is tested on every machine; "cuvs" is the real thing and needs a GPU."""
    if request.param == "cuvs":
        pytest.importorskip("cuvs")
        if not cuvs_available():
            pytest.skip(f"cuvs backend unavailable: {cuvs_unavailable_reason()}")
    if request.param == "torch":
        pytest.importorskip("torch")
        if (reason := torch_unavailable_reason("cuda")) is not None:
            pytest.skip(f"torch backend unavailable: {reason}")
    if request.param == "torch-on-cpu":
        pytest.importorskip("torch")
    if request.param != "cuvs-on-cpu":
        yield request.param
        return
    for name, module in _cpu_stand_in_for_cuvs().items():
        monkeypatch.setitem(sys.modules, name, module)
    cuvs_unavailable_reason.cache_clear()
    try:
        yield "cuvs"
    finally:
        cuvs_unavailable_reason.cache_clear()


def new_index(backend: str, dim: int = DIM, **options: object) -> VectorIndex:
    name = backend.removesuffix("-on-cpu")
    return make_index(name, dim=dim, **{**SMALL[backend], **options})


def _cpu_stand_in_for_cuvs() -> dict[str, ModuleType]:
    """`cupy`, `cuvs.common` and `cuvs.neighbors.{brute_force,cagra,filters}` as exact NumPy
    searches with cuVS's calling conventions: (distances, neighbors) results, uint32 CAGRA rows
    with 0xFFFFFFFF for an empty slot, a uint32 bitset filter whose set bits are allowed rows."""
    cupy = ModuleType("cupy")
    cupy.__getattr__ = lambda name: getattr(np, name)  # type: ignore[method-assign]
    stream = SimpleNamespace(synchronize=lambda: None)
    cupy.cuda = SimpleNamespace(  # type: ignore[attr-defined]
        get_current_stream=lambda: stream, runtime=SimpleNamespace(getDeviceCount=lambda: 1)
    )

    def top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, rows, axis=1), rows

    def bf_search(index: Any, queries: Any, k: int, resources: Any = None) -> tuple:
        scores, rows = top(queries @ index.data.T, k)
        return -scores, rows.astype(np.int64)

    def cagra_search(params: Any, index: Any, queries: Any, k: int, **kw: Any) -> tuple:
        assert params.itopk_size >= k
        scores = (queries @ index.data.T).astype(np.float32)
        if kw.get("filter") is not None:
            allowed = np.unpackbits(kw["filter"].view(np.uint8), bitorder="little")
            scores[:, ~allowed[: len(index.data)].astype(bool)] = -np.inf
        scores, rows = top(scores, k)
        rows = rows.astype(np.uint32)
        rows[np.isneginf(scores)] = 0xFFFFFFFF
        return -scores, rows

    def module(name: str, **attrs: Any) -> ModuleType:
        m = ModuleType(name)
        m.__dict__.update(attrs)
        return m

    index = lambda *args, **kw: SimpleNamespace(data=np.array(args[-1]))  # noqa: E731
    neighbors = {
        "brute_force": module("cuvs.neighbors.brute_force", build=index, search=bf_search),
        "cagra": module(
            "cuvs.neighbors.cagra",
            IndexParams=lambda **kw: kw,
            SearchParams=lambda **kw: SimpleNamespace(**kw),
            build=lambda params, dataset, resources=None: index(dataset),
            search=cagra_search,
        ),
        "filters": module("cuvs.neighbors.filters", from_bitset=lambda bits: bits),
    }
    resources = lambda: SimpleNamespace(sync=lambda: None)  # noqa: E731
    return {
        "cupy": cupy,
        "cuvs": module("cuvs", __path__=[]),
        "cuvs.common": module("cuvs.common", Resources=resources),
        "cuvs.neighbors": module("cuvs.neighbors", __path__=[], **neighbors),
        **{f"cuvs.neighbors.{name}": m for name, m in neighbors.items()},
    }


def clustered(n: int, dim: int = DIM, *, topics: int = 40, seed: int = 0) -> np.ndarray:
    """Unit-norm rows around `topics` random directions, like a trained tower's outputs."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((topics, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = centers[rng.integers(topics, size=n)] + rng.standard_normal((n, dim)) * 0.6 / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def post_ids(n: int, start: int = 1) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int64) * 7  # not row numbers


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


# Exact search, by hand -------------------------------------------------------------------------


def test_exact_search_matches_a_hand_computed_case() -> None:
    index = ExactIndex(3)
    index.add(
        [11, 22, 33, 44],
        np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, 1]], np.float32),
    )
    queries = np.array([[0.8, 0.6, 0.0], [0.1, 0.2, 0.3]], np.float32)
    ids, scores = index.search(queries, 3)
    # Query 0: 33 -> 0.48 + 0.48 = 0.96, 11 -> 0.8, 22 -> 0.6, 44 -> 0.
    # Query 1: 44 -> 0.3, 33 -> 0.06 + 0.16 = 0.22, 22 -> 0.2, 11 -> 0.1.
    np.testing.assert_array_equal(ids, [[33, 11, 22], [44, 33, 22]])
    np.testing.assert_allclose(scores, [[0.96, 0.8, 0.6], [0.3, 0.22, 0.2]], rtol=1e-6)
    assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_exact_search_in_blocks_matches_one_product(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocked product (bounded memory on big corpora) gives the same answer."""
    vectors, queries = clustered(3000), clustered(5, seed=1)
    index = ExactIndex(DIM)
    index.add(post_ids(3000), vectors)
    expected = index.search(queries, 50)
    monkeypatch.setattr("orchestrator.retrieval.dense._SCORE_BLOCK", 5 * 128)  # 128 rows a block
    got = index.search(queries, 50)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-5)


# Every backend against exact ---------------------------------------------------------------------


def test_recall_against_exact_on_clustered_data(backend: str) -> None:
    vectors, queries, ids = clustered(6000), clustered(50, seed=1), post_ids(6000)
    exact, index = ExactIndex(DIM), new_index(backend)
    exact.add(ids, vectors)
    index.add(ids, vectors)
    k = 20
    truth, _ = exact.search(queries, k)
    found, scores = index.search(queries, k)
    assert recall(found, truth) >= 0.95
    # Scores are the true inner products of the returned ids, best first.
    by_id = dict(zip(ids.tolist(), vectors, strict=True))
    for q, row_ids, row_scores in zip(queries, found, scores, strict=True):
        np.testing.assert_allclose(row_scores, [by_id[i] @ q for i in row_ids], atol=1e-5)
        assert np.all(np.diff(row_scores) <= 1e-6)
    if backend == "faiss":
        assert index.describe().startswith("IVF-Flat")  # the approximate path was measured


def test_removed_ids_are_never_returned(backend: str) -> None:
    vectors, queries, ids = clustered(4000), clustered(30, seed=1), post_ids(4000)
    index = new_index(backend)
    index.add(ids, vectors)
    best, _ = index.search(queries, 10)
    gone = np.unique(np.concatenate([best[:, :5].ravel(), ids[::3]]))  # many of the best
    absent = np.array([10**12, 10**12 + 1], np.int64)
    assert index.remove(np.concatenate([gone, absent])) == len(gone)
    assert index.remove(gone) == 0
    assert len(index) == len(ids) - len(gone)
    assert not any(int(i) in index for i in gone[:50])
    found, _ = index.search(queries, 50)
    assert not np.isin(found, gone).any()
    assert set(index.ids().tolist()) == set(ids.tolist()) - set(gone.tolist())


def test_re_adding_an_id_replaces_its_vector(backend: str) -> None:
    vectors, ids = clustered(3000), post_ids(3000)
    index = new_index(backend)
    index.add(ids, vectors)
    target = ids[123]
    new_vector = -vectors[7]  # far from its old vector
    index.add([target], new_vector[None])
    assert len(index) == len(ids)
    found, scores = index.search(new_vector[None], 10)
    assert found[0, 0] == target
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    old, _ = index.search(vectors[123][None], 50)
    assert target not in old[0]  # the old vector is gone
    assert len(np.unique(found[0])) == found.shape[1]  # no duplicate copies


def test_fewer_live_vectors_than_k_are_padded(backend: str) -> None:
    index = new_index(backend)
    empty_ids, empty_scores = index.search(clustered(2, seed=1), 4)
    np.testing.assert_array_equal(empty_ids, np.zeros((2, 4)))
    assert np.isneginf(empty_scores).all()
    index.add([5, 6, 7], clustered(3))
    ids, scores = index.search(clustered(2, seed=1), 5)
    assert ids.shape == scores.shape == (2, 5)
    np.testing.assert_array_equal(np.sort(ids[:, :3], axis=1), [[5, 6, 7], [5, 6, 7]])
    np.testing.assert_array_equal(ids[:, 3:], 0)
    assert np.isneginf(scores[:, 3:]).all() and np.isfinite(scores[:, :3]).all()
    assert np.all(np.diff(scores[:, :3], axis=1) <= 0)


def test_add_after_remove(backend: str) -> None:
    index = new_index(backend)
    first, second = post_ids(2000), post_ids(2000, start=5000)
    index.add(first, clustered(2000))
    assert index.remove(first) == len(first)
    assert len(index) == 0
    index.add(second, clustered(2000, seed=2))
    index.add(first[:10], clustered(10, seed=3))  # removed ids may come back
    found, _ = index.search(clustered(20, seed=4), 30)
    assert np.isin(found, np.concatenate([second, first[:10]])).all()
    assert len(index) == 2010


def test_duplicate_ids_in_one_call_keep_the_last_vector(backend: str) -> None:
    index = new_index(backend)
    a, b = clustered(2, seed=5)
    index.add([9, 9], np.stack([a, b]))
    assert len(index) == 1
    _, scores = index.search(b[None], 1)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_empty_calls_are_no_ops() -> None:
    index = ExactIndex(DIM)
    index.add(np.empty(0, np.int64), np.empty((0, DIM), np.float32))
    assert index.remove([]) == 0 and len(index) == 0
    ids, scores = index.search(np.empty((0, DIM), np.float32), 3)
    assert ids.shape == scores.shape == (0, 3)


def test_membership_ids_and_protocol() -> None:
    index = ExactIndex(DIM)
    index.add(post_ids(5), clustered(5))
    assert isinstance(index, VectorIndex)
    assert np.int64(7) in index and 7 in index
    assert 0 not in index and -7 not in index and "7" not in index and 8 not in index
    assert sorted(index.ids().tolist()) == post_ids(5).tolist()


# Validation --------------------------------------------------------------------------------------

_V = clustered(2)
_BAD_CALLS = [
    ("add", (np.array([[1, 2]]), _V), "ids"),
    ("add", (np.array([1.0, 2.0]), _V), "ids"),
    ("add", (np.array([True, False]), _V), "ids"),
    ("add", ([0, 2], _V), "ids"),
    ("add", ([-3, 2], _V), "ids"),
    ("add", ([1, 2], _V[:, :-1]), "vectors"),
    ("add", ([1, 2, 3], _V), "vectors"),
    ("add", ([1, 2], _V[0]), "vectors"),
    ("add", ([1, 2], np.ones((2, DIM), np.int64)), "vectors"),
    ("add", ([1, 2], np.where(np.eye(2, DIM) > 0, np.nan, _V)), "vectors"),
    ("add", ([1, 2], np.full((2, DIM), np.inf, np.float32)), "vectors"),
    ("remove", ([0],), "ids"),
    ("remove", (np.array([1.5]),), "ids"),
    ("search", (_V[:, :-1], 3), "queries"),
    ("search", (_V[0], 3), "queries"),
    ("search", (np.full((1, DIM), np.nan, np.float32), 3), "queries"),
    ("search", (_V, 0), "k"),
    ("search", (_V, 2.5), "k"),
    ("search", (_V, True), "k"),
]


@pytest.mark.parametrize(("method", "args", "argument"), _BAD_CALLS)
def test_bad_inputs_raise_input_error_naming_the_argument(
    backend: str, method: str, args: tuple, argument: str
) -> None:
    index = new_index(backend)
    index.add([100], clustered(1))
    with pytest.raises(InputError, match=rf"^{argument}: "):
        getattr(index, method)(*args)
    assert len(index) == 1  # nothing half-applied


def test_float64_vectors_are_accepted_as_float32() -> None:
    index = ExactIndex(DIM)
    index.add([1], clustered(1).astype(np.float64))
    ids, _ = index.search(clustered(1).astype(np.float16), 1)
    assert ids[0, 0] == 1


# Backend selection -------------------------------------------------------------------------------


@needs_faiss
def test_auto_picks_faiss_on_a_cpu_machine_with_faiss() -> None:
    index = make_index("auto", dim=DIM)
    if cuvs_available():
        expected = "cuvs"
    elif torch_unavailable_reason("cuda") is None:
        expected = "torch"
    else:
        expected = "faiss"
    assert index.name == expected
    assert available_backends()[0] == expected
    if expected == "faiss":
        assert isinstance(index, FaissIndex)


def test_unknown_backend_option_and_dim_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^backend: .*'annoy'"):
        make_index("annoy", dim=DIM)
    with pytest.raises(ConfigError, match=r"^options: exact backend"):
        make_index("exact", dim=DIM, nprobe=8)
    with pytest.raises(ConfigError, match=r"^dim: "):
        make_index("exact", dim=0)


@needs_faiss
def test_bad_backend_option_values_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^min_train: "):
        make_index("faiss", dim=DIM, min_train=0)
    with pytest.raises(ConfigError, match=r"^regrow: "):
        make_index("faiss", dim=DIM, regrow=1.0)


def test_cuvs_requested_without_it_says_what_is_missing() -> None:
    if cuvs_available():
        pytest.skip("cuvs is usable here")
    with pytest.raises(ConfigError, match=r"^cuvs backend: .*(cuvs|cupy|CUDA)"):
        make_index("cuvs", dim=DIM)


# The faiss lifecycle -----------------------------------------------------------------------------


@needs_faiss
def test_faiss_is_exact_when_small_then_ivf_then_exact_again() -> None:
    index = make_index("faiss", dim=DIM, min_train=1000)
    ids = post_ids(3000)
    index.add(ids[:999], clustered(999))
    assert index.describe() == "exact"
    index.add(ids[999:], clustered(2001, seed=1))  # crosses min_train: trains IVF
    assert index.describe().startswith("IVF-Flat")
    index.remove(ids[:2600])  # 400 left, below min_train / 2
    assert index.describe() == "exact"
    found, _ = index.search(clustered(5, seed=2), 10)
    assert np.isin(found, ids[2600:]).all()


@needs_faiss
def test_rebuild_replays_writes_made_while_it_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes that land between the snapshot and the swap reach the new IVF index."""
    index = make_index("faiss", dim=DIM, min_train=1000)
    vectors, ids = clustered(3000), post_ids(3000)
    index.add(ids, vectors)
    late_ids, late_vectors = post_ids(50, start=9000), clustered(50, seed=7)
    build = index._build

    def build_while_writing(snapshot_ids: np.ndarray, snapshot_vectors: np.ndarray) -> object:
        accel = build(snapshot_ids, snapshot_vectors)
        scratch = late_vectors.copy()
        index.add(late_ids, scratch)  # another writer, mid-build
        scratch[:] = 0  # ... which then reuses its buffer: the journal must have copied it
        index.remove(ids[:500])
        return accel

    monkeypatch.setattr(index, "_build", build_while_writing)
    assert index.rebuild()
    assert index.describe().startswith("IVF-Flat")
    found, _ = index.search(late_vectors, 1)
    np.testing.assert_array_equal(found[:, 0], late_ids)
    found, _ = index.search(vectors[:500], 20)
    assert not np.isin(found, ids[:500]).any()
    assert len(index) == 3000 - 500 + 50


@needs_faiss
def test_faiss_retrains_when_the_corpus_has_grown_fourfold_or_turned_over() -> None:
    def nlist(index: VectorIndex) -> int:
        return int(re.search(r"nlist=(\d+)", index.describe()).group(1))

    vectors, ids = clustered(4000), post_ids(4000)
    index = make_index("faiss", dim=DIM, min_train=1000, retrain_churn=10.0)
    index.add(ids[:1000], vectors[:1000])
    assert nlist(index) == 25  # 1000 // 40
    index.add(ids[1000:3999], vectors[1000:3999])
    assert nlist(index) == 25  # 3999 < 4 x 1000: the same lists
    index.add(ids[3999:], vectors[3999:])
    assert nlist(index) == 100  # 4000 // 40

    index = make_index("faiss", dim=DIM, min_train=1000, retrain_churn=1.0)
    index.add(ids[:1000], vectors[:1000])
    index.remove(ids[:499])
    index.add(ids[1000:1499], vectors[1000:1499])
    assert nlist(index) == 25  # 998 changed < 1000 trained
    index.remove(ids[499:501])
    assert nlist(index) == 24  # retrained on the 998 posts now live


@needs_faiss
def test_a_failed_automatic_rebuild_keeps_serving(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    index = make_index("faiss", dim=DIM, min_train=1000)

    def broken(*_: object) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(index, "_build", broken)
    index.add(post_ids(1500), clustered(1500))  # due for IVF; the build fails
    assert "rebuild failed" in caplog.text
    assert len(index) == 1500 and index.describe() == "exact"
    found, _ = index.search(clustered(3, seed=1), 5)
    assert np.isin(found, post_ids(1500)).all()
    with pytest.raises(RuntimeError, match="out of memory"):
        index.rebuild()  # an explicit rebuild reports the error


@needs_faiss
def test_a_failing_accelerator_falls_back_to_exact(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    index = make_index("faiss", dim=DIM, min_train=1000)
    vectors, ids = clustered(2000), post_ids(2000)
    index.add(ids[:1500], vectors[:1500])
    assert index.describe().startswith("IVF-Flat")

    def broken(*_: object) -> None:
        raise RuntimeError("faiss error")

    monkeypatch.setattr(index._accel, "add", broken)
    index.add(ids[1500:], vectors[1500:])  # the IVF fails: dropped, then rebuilt from the store
    assert "add failed" in caplog.text
    assert len(index) == 2000 and index.describe().startswith("IVF-Flat")
    found, _ = index.search(vectors[1990:], 1)
    np.testing.assert_array_equal(found[:, 0], ids[1990:])


# Concurrency -------------------------------------------------------------------------------------


def test_searches_in_threads_while_adding_and_removing(backend: str) -> None:
    """Smoke test: no errors, and never an id removed before the search began, while the IVF /
    CAGRA structure is built and rebuilt under the searchers' feet."""
    index = new_index(backend)
    vectors, ids = clustered(4000), post_ids(4000)
    queries = clustered(8, seed=1)
    removed: list[np.ndarray] = []  # appended only after index.remove() returned
    errors: list[BaseException] = []
    stop = threading.Event()

    def search_loop() -> None:
        try:
            while not stop.is_set():
                done = list(removed)
                found, scores = index.search(queries, 20)
                live = found[found != 0]
                assert np.isin(live, ids).all()
                if done:
                    assert not np.isin(live, np.concatenate(done)).any()
                assert (scores[:, :-1] >= scores[:, 1:]).all()  # -inf padding last
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=search_loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for start in range(0, len(ids), 100):
            index.add(ids[start : start + 100], vectors[start : start + 100])
            gone = ids[start : start + 100 : 5]
            index.remove(gone)
            removed.append(gone)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    gone = np.concatenate(removed)
    found, _ = index.search(queries, 100)
    assert not np.isin(found, gone).any()
    assert len(index) == len(ids) - len(gone)
