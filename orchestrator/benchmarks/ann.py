"""`phoenix bench ann`: recall and speed of each ANN backend against exact search, in one run.

Out-of-network retrieval asks the post index for the top k (about 100) posts by inner product with
one user embedding per feed request. This builds each backend over the same synthetic corpus and
measures what matters for that: recall@k against the exact answer, queries per second one query
per call (the serving pattern) and in batches, and how long loading the corpus takes.

The corpus imitates a trained candidate tower (docs/DESIGN.md §4.6): unit-norm vectors around ~1,000
random topic directions, topic popularity Zipf-like, each vector its topic's direction plus
isotropic noise (cosine ~0.7 to its topic at the default noise). User embeddings are drawn the
same way. Uniform random vectors would make every ANN look bad (no neighbourhood structure);
tight clusters would make every ANN look perfect.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from orchestrator.retrieval import (
    BACKENDS,
    VectorIndex,
    available_backends,
    make_index,
)
from orchestrator.retrieval.cuvs_index import cuvs_unavailable_reason
from orchestrator.retrieval.faiss_index import import_faiss
from orchestrator.retrieval.torch_index import torch_unavailable_reason
from phoenix.errors import ConfigError
from phoenix.machine import host_facts, host_line
from phoenix.markdown import markdown_table

DEFAULT_POSTS = (100_000, 1_000_000)
DEFAULT_DIM = 128  # emb_dim of the tiny config, the CPU default
DEFAULT_QUERIES = 1_000
DEFAULT_K = 100
DEFAULT_BATCHES = (1, 64)
DEFAULT_TOPICS = 1_000
DEFAULT_NOISE = 1.0
DEFAULT_MIN_TIME_S = 2.0
_MIN_CALLS = 5  # timed calls per case, however slow
_WARMUP_CALLS = 2
_BLOCK_S = 0.2  # timing block per index before switching to the next
_ZIPF_S = 0.5  # topic popularity ~ rank^-s: a few big topics, a long tail
_CHUNK = 100_000  # rows generated at once, to bound the temporary float64 noise

_DESCRIPTION = """\
Build every ANN backend over the same synthetic corpus and measure it against exact search:

  corpus    --posts unit-norm post embeddings of --dim dimensions around 1,000 random topic
            directions (Zipf-like popularity, cosine ~0.7 to the topic), ids 1..N; --queries
            user embeddings drawn the same way
  backends  exact (NumPy brute force; always run: it is the reference), faiss (IVF-Flat, exact
            below 50k posts), cuvs (GPU brute force / CAGRA) and torch (PyTorch exact top-k
            on a GPU), both with --device cuda; --backend picks, default every one available
            for --device (with cuda: the GPU backends and faiss on the CPU)
  build     seconds for index.add() of the whole corpus in one call, training included
  recall    recall@k: the share of the exact top-k each backend returns, over all queries
  speed     queries per second at the median call, at each --batch size (1 is the serving
            pattern: one user embedding per feed request): after 2 untimed calls, the backends
            are timed in alternating ~0.2 s blocks until each has had --min-time seconds, so
            drift in the machine's speed hits all of them alike; speed-up over exact at the same
            batch size, in the same run (latency percentiles are in the --json output)

The output is the machine description followed by one Markdown row per corpus size and backend.
"""


@dataclass(frozen=True)
class TopicMixture:
    """Unit-norm embeddings: a topic direction plus isotropic noise of norm ~`noise`."""

    centers: np.ndarray  # [topics, dim] unit rows
    weights: np.ndarray  # [topics] probabilities
    noise: float

    @classmethod
    def random(
        cls, dim: int, *, topics: int = DEFAULT_TOPICS, noise: float = DEFAULT_NOISE, seed: int = 0
    ) -> TopicMixture:
        rng = np.random.default_rng(seed)
        centers = rng.standard_normal((topics, dim))
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        weights = 1.0 / np.arange(1, topics + 1) ** _ZIPF_S
        return cls(centers=centers, weights=weights / weights.sum(), noise=noise)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, dim] float32 unit rows."""
        dim = self.centers.shape[1]
        out = np.empty((n, dim), np.float32)
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            topic = rng.choice(len(self.weights), size=m, p=self.weights)
            x = self.centers[topic] + rng.standard_normal((m, dim)) * (self.noise / np.sqrt(dim))
            out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


@dataclass(frozen=True)
class BatchTiming:
    """Searches of `batch` queries per call, `calls` of them timed."""

    batch: int
    p50_ms: float  # median latency of one call
    p90_ms: float
    mean_ms: float
    calls: int

    @classmethod
    def from_seconds(cls, batch: int, seconds: Sequence[float]) -> BatchTiming:
        ms = [s * 1e3 for s in seconds]
        p90 = statistics.quantiles(ms, n=10, method="inclusive")[-1] if len(ms) > 1 else ms[0]
        return cls(batch, statistics.median(ms), p90, statistics.fmean(ms), len(ms))

    @property
    def qps(self) -> float:
        """Queries per second at the median call: robust to the stalls a shared machine adds."""
        return self.batch / (self.p50_ms / 1e3)


@dataclass(frozen=True)
class AnnBenchRow:
    """One backend over one corpus."""

    posts: int
    backend: str
    index: str  # what answered searches, e.g. "IVF-Flat nlist=4000 nprobe=26@k=100"
    dim: int
    k: int
    build_s: float  # index.add() of the whole corpus in one call, training included
    recall: float  # recall@k against exact search
    timings: tuple[BatchTiming, ...]
    speedups: tuple[float, ...]  # qps over exact's qps at the same batch size, per timing

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for timing, saved in zip(self.timings, out["timings"], strict=True):
            saved["qps"] = timing.qps
        return out


def bench_ann(
    posts: Sequence[int] = DEFAULT_POSTS,
    backends: Sequence[str] | None = None,
    *,
    dim: int = DEFAULT_DIM,
    queries: int = DEFAULT_QUERIES,
    k: int = DEFAULT_K,
    batches: Sequence[int] = DEFAULT_BATCHES,
    min_time_s: float = DEFAULT_MIN_TIME_S,
    topics: int = DEFAULT_TOPICS,
    noise: float = DEFAULT_NOISE,
    seed: int = 0,
    index_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> list[AnnBenchRow]:
    """Measure exact and every backend in `backends` (default: every available CPU backend) on
    each corpus size; rows come corpus by corpus, exact first. `index_options` maps a backend
    name to `make_index` options (e.g. a smaller `min_train` for tiny corpora)."""
    names = ordered_backends(backends)
    check_settings(posts, dim, queries, k, batches, min_time_s)
    mixture = TopicMixture.random(dim, topics=topics, noise=noise, seed=seed)
    user_vectors = mixture.sample(queries, np.random.default_rng([seed, 1]))
    options = index_options or {}
    rows: list[AnnBenchRow] = []
    # Shown only once a run passes 2 s: builds over a million posts take tens of seconds.
    steps = len(posts) * (len(names) + len(batches))
    bar = tqdm(total=steps, desc="bench ann", unit="step", disable=not progress, delay=2.0)
    with bar:
        for n in posts:
            bar.set_postfix_str(f"{n:,} posts: generating")
            corpus = mixture.sample(n, np.random.default_rng([seed, 2, n]))
            ids = np.arange(1, n + 1, dtype=np.int64)
            built: dict[str, tuple[VectorIndex, float]] = {}
            for name in names:
                bar.set_postfix_str(f"{n:,} posts: building {name}")
                index = make_index(name, dim=dim, **options.get(name, {}))
                start = time.perf_counter()
                index.add(ids, corpus)
                built[name] = index, time.perf_counter() - start
                bar.update()
            del corpus
            indexes = {name: index for name, (index, _) in built.items()}
            truth = search_all(indexes["exact"], user_vectors, k, max(batches))
            timings: dict[str, list[BatchTiming]] = {name: [] for name in names}
            for b in batches:
                bar.set_postfix_str(f"{n:,} posts: timing batch {b}")
                for name, timing in time_interleaved(
                    indexes, user_vectors, b, k, min_time_s
                ).items():
                    timings[name].append(timing)
                bar.update()
            for name, (index, build_s) in built.items():
                found = search_all(index, user_vectors, k, max(batches))
                rows.append(
                    AnnBenchRow(
                        posts=n,
                        backend=name,
                        index=_describe(index),
                        dim=dim,
                        k=k,
                        build_s=build_s,
                        recall=recall_at_k(found, truth),
                        timings=tuple(timings[name]),
                        speedups=tuple(
                            t.qps / r.qps
                            for t, r in zip(timings[name], timings["exact"], strict=True)
                        ),
                    )
                )
            del built, indexes  # free this corpus's indexes before the next one
    return rows


def ordered_backends(backends: Sequence[str] | None) -> list[str]:
    """Exact first (the reference), then the others once each; default: every CPU backend."""
    if backends is None:
        backends = [b for b in available_backends() if b not in ("cuvs", "torch")]
    for name in backends:
        if name not in BACKENDS:
            raise ConfigError(f"backends: unknown backend {name!r}; expected {', '.join(BACKENDS)}")
    return ["exact", *dict.fromkeys(b for b in backends if b != "exact")]


def check_settings(
    posts: Sequence[int],
    dim: int,
    queries: int,
    k: int,
    batches: Sequence[int],
    min_time_s: float,
) -> None:
    """Refuse values that cannot give a meaningful measurement, naming the option."""
    if not posts or any(n < 1 for n in posts):
        raise ConfigError(f"--posts: need positive corpus sizes, got {list(posts)}")
    if dim < 2:
        raise ConfigError(f"--dim: need at least 2, got {dim}")
    if k < 1:
        raise ConfigError(f"--k: need at least 1, got {k}")
    if not batches or any(b < 1 for b in batches):
        raise ConfigError(f"--batch: need positive batch sizes, got {list(batches)}")
    if queries < max(batches):
        raise ConfigError(f"--queries: need at least the largest --batch ({max(batches)})")
    if min_time_s < 0:
        raise ConfigError(f"--min-time: need 0 or more seconds, got {min_time_s}")


def search_all(index: VectorIndex, queries: np.ndarray, k: int, batch: int) -> np.ndarray:
    """The ids [Q, k] the index returns for every query."""
    return np.concatenate(
        [index.search(queries[i : i + batch], k)[0] for i in range(0, len(queries), batch)]
    )


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact top-k (padding excluded) that `found` contains."""
    hits = total = 0
    for got, want in zip(found, truth, strict=True):
        want = want[want != 0]
        hits += len(np.intersect1d(got, want, assume_unique=True))
        total += len(want)
    return hits / total if total else 1.0


def time_interleaved(
    indexes: Mapping[str, VectorIndex],
    queries: np.ndarray,
    batch: int,
    k: int,
    min_time_s: float,
) -> dict[str, BatchTiming]:
    """Time searches of `batch` queries per call on every index, in alternating blocks of about
    `_BLOCK_S` seconds (the order reversed each round), until each index has been timed for
    `min_time_s` and at least `_MIN_CALLS` calls. A machine whose speed drifts (other jobs, turbo)
    then slows every backend alike, and each block keeps its own index's memory warm in cache."""
    batches = [queries[i : i + batch] for i in range(0, len(queries) - batch + 1, batch)]
    for index in indexes.values():
        for b in batches[:_WARMUP_CALLS]:
            index.search(b, k)
    seconds: dict[str, list[float]] = {name: [] for name in indexes}
    order = list(indexes)

    def done(name: str) -> bool:
        return len(seconds[name]) >= _MIN_CALLS and sum(seconds[name]) >= min_time_s

    while not all(map(done, order)):
        for name in order:
            samples, index = seconds[name], indexes[name]
            block_end = time.perf_counter() + _BLOCK_S
            while True:
                b = batches[len(samples) % len(batches)]
                start = time.perf_counter()
                index.search(b, k)
                samples.append(time.perf_counter() - start)
                if time.perf_counter() >= block_end or done(name):
                    break
        order.reverse()
    return {name: BatchTiming.from_seconds(batch, s) for name, s in seconds.items()}


def _describe(index: VectorIndex) -> str:
    describe = getattr(index, "describe", None)
    return describe() if callable(describe) else index.name


# Output ---------------------------------------------------------------------------------------


def format_table(rows: Sequence[AnnBenchRow]) -> str:
    """A Markdown table, one line per (corpus, backend): q/s at the median call, and speed-up
    over exact's q/s at the same batch size in the same run."""
    batches = [t.batch for t in rows[0].timings] if rows else []
    k = rows[0].k if rows else DEFAULT_K
    header = ["posts", "backend", "index", "build s", f"recall@{k}"]
    for b in batches:
        header += [f"q/s (batch {b})", f"speed-up (batch {b})"]
    lines = []
    for row in rows:
        cells = [
            f"{row.posts:,}",
            row.backend,
            row.index,
            f"{row.build_s:.2f}",
            f"{row.recall:.3f}",
        ]
        for timing, speedup in zip(row.timings, row.speedups, strict=True):
            cells += [f"{timing.qps:,.0f}", f"{speedup:.1f}×"]
        lines.append(cells)
    return markdown_table(header, lines)


def describe_machine(device: str = "cpu") -> dict[str, str | int]:
    """The host (and the GPU for --device cuda), without PyTorch."""
    info: dict[str, str | int] = {**host_facts(), "numpy": np.__version__, "device": device}
    try:
        faiss = import_faiss()
    except ConfigError:
        pass
    else:
        info["faiss"] = faiss.__version__
        info["faiss_threads"] = faiss.omp_get_max_threads()
    if device == "cuda" and cuvs_unavailable_reason() is None:
        import cupy
        import cuvs

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["cuvs"] = getattr(cuvs, "__version__", "unknown")
    return info


def format_machine(info: dict[str, str | int]) -> str:
    """Two lines for the top of the output."""
    libs = [f"Python {info['python']}", f"numpy {info['numpy']}"]
    if "faiss" in info:
        libs.append(f"faiss {info['faiss']} ({info['faiss_threads']} OpenMP threads)")
    if "cuvs" in info:
        libs.append(f"cuvs {info['cuvs']}")
    device = f"cuda ({info['gpu']})" if "gpu" in info else info["device"]
    return f"{host_line(info)}\n{', '.join(libs)}, device {device}"


def to_json(
    rows: Sequence[AnnBenchRow],
    machine: dict[str, str | int] | None = None,
    settings: dict[str, Any] | None = None,
) -> str:
    """`{"machine": {...}, "settings": {...}, "rows": [...]}`."""
    return json.dumps(
        {
            "machine": machine or {},
            "settings": settings or {},
            "rows": [r.to_dict() for r in rows],
        },
        indent=2,
    )


# Command line ---------------------------------------------------------------------------------


def add_parser(benchmarks: argparse._SubParsersAction) -> None:
    """Register `ann` under `phoenix bench`."""
    p = benchmarks.add_parser(
        "ann",
        help="ANN backends (exact, faiss, cuvs): recall@k, queries/s and build time",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--posts",
        nargs="+",
        type=int,
        default=list(DEFAULT_POSTS),
        metavar="N",
        help="corpus sizes; one set of rows per size (default: 100000 1000000)",
    )
    p.add_argument(
        "--dim",
        type=int,
        default=DEFAULT_DIM,
        metavar="D",
        help=f"embedding dimension (default: {DEFAULT_DIM}, the tiny config's)",
    )
    p.add_argument(
        "--queries",
        type=int,
        default=DEFAULT_QUERIES,
        metavar="N",
        help=f"user embeddings: recall is averaged over all of them (default: {DEFAULT_QUERIES})",
    )
    p.add_argument(
        "--k", type=int, default=DEFAULT_K, help=f"posts per query (default: {DEFAULT_K})"
    )
    p.add_argument(
        "--batch",
        nargs="+",
        type=int,
        default=list(DEFAULT_BATCHES),
        metavar="N",
        help="queries per search call; one timing per size (default: 1 64)",
    )
    p.add_argument(
        "--backend",
        nargs="+",
        choices=BACKENDS,
        default=None,
        metavar="NAME",
        help="backends to measure besides exact: exact, faiss, cuvs "
        "(default: every one available for --device)",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda measures the GPU backends (cuvs with cuVS and CuPy, torch with PyTorch) "
        "against faiss on the CPU; needs a GPU (default: cpu)",
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=DEFAULT_MIN_TIME_S,
        metavar="SECONDS",
        help=f"least time spent timing each backend at each batch size "
        f"(default: {DEFAULT_MIN_TIME_S:g})",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the machine, the settings and the rows as JSON to PATH",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=run_ann)


#: Backends that search on a GPU (--device cuda); the others run on the CPU.
GPU_BACKENDS = ("cuvs", "torch")


def _gpu_unavailable_reason() -> str | None:
    """None when at least one GPU backend can run, else why neither can."""
    reasons = {"cuvs": cuvs_unavailable_reason(), "torch": torch_unavailable_reason("cuda")}
    if any(reason is None for reason in reasons.values()):
        return None
    return "; ".join(f"{name}: {reason}" for name, reason in reasons.items())


def _backends_for(args: argparse.Namespace) -> list[str]:
    """The backends to run, refusing what --device or this machine cannot do. With --device cuda
    the default is every GPU backend available plus faiss on the CPU, the one they must beat."""
    reason = _gpu_unavailable_reason()
    if args.device == "cuda" and reason is not None:
        raise ConfigError(f"--device: cuda runs the cuvs or torch backend; neither runs ({reason})")
    usable = available_backends()
    if args.backend is None:
        if args.device == "cuda":
            return ordered_backends([b for b in usable if b in GPU_BACKENDS or b == "faiss"])
        return ordered_backends([b for b in usable if b not in GPU_BACKENDS])
    for name in args.backend:
        if name in GPU_BACKENDS and args.device != "cuda":
            raise ConfigError(f"--backend: {name} runs on a GPU; pass --device cuda")
        if name not in usable:
            raise ConfigError(f"--backend: {name} is not available on this machine")
    return ordered_backends(args.backend)


def run_ann(args: argparse.Namespace) -> int:
    """The `phoenix bench ann` handler: measure, print the machine and the table."""
    backends = _backends_for(args)
    check_settings(args.posts, args.dim, args.queries, args.k, args.batch, args.min_time)
    rows = bench_ann(
        args.posts,
        backends,
        dim=args.dim,
        queries=args.queries,
        k=args.k,
        batches=args.batch,
        min_time_s=args.min_time,
        seed=args.seed,
        progress=not args.no_progress,
    )
    machine = describe_machine(args.device)
    print(format_machine(machine))
    print(
        f"{args.queries:,} queries, k={args.k}, D={args.dim}, {DEFAULT_TOPICS:,} synthetic topics "
        f"(noise {DEFAULT_NOISE:g}), unit-norm, inner product\n"
    )
    print(format_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {
            "posts": args.posts,
            "dim": args.dim,
            "queries": args.queries,
            "k": args.k,
            "batches": args.batch,
            "topics": DEFAULT_TOPICS,
            "noise": DEFAULT_NOISE,
            "min_time_s": args.min_time,
            "seed": args.seed,
            "backends": backends,
        }
        args.json.write_text(to_json(rows, machine, settings) + "\n")
    return 0
