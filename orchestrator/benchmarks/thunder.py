"""`phoenix bench thunder`: how fast Thunder loads posts and answers lookups (docs/DESIGN.md §6).

X claims sub-millisecond lookups from its Rust Thunder; this measures ours, pure Python over NumPy,
on a synthetic store: N posts by M authors with heavy-tailed (lognormal) posting rates, about 80 %
originals, 15 % replies and 5 % reposts, a tenth of originals with video, spread evenly over the
72 hours before `now`, so a third of the store is past the 48 h retention until `expire` runs.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from orchestrator.state.posts import Post
from orchestrator.thunder import Thunder, ThunderSettings
from phoenix.errors import ConfigError
from phoenix.machine import host_facts, host_line
from phoenix.markdown import markdown_table
from phoenix.snowflake import SEQUENCE_BITS, snowflake_id
from phoenix.world.schema import ORIGINAL, REPLY, REPOST

#: 2026-08-01T00:00:00Z: the fixed "now" of the synthetic store, so runs are comparable.
NOW_MS = 1_785_542_400_000
_HOUR_MS = 3_600_000

DEFAULT_POSTS = 1_000_000
DEFAULT_AUTHORS = 100_000
DEFAULT_FOLLOWING = (100, 1_000, 5_000)
DEFAULT_LOOKUPS = 300
DEFAULT_STREAMED = 100_000  # newest posts ingested one call at a time after the bulk load
_WARMUP = 20
_SPAN_HOURS = 72
_KIND_SHARES = (0.80, 0.15, 0.05)  # ORIGINAL, REPLY, REPOST
_VIDEO_SHARE = 0.10
_POSTING_SIGMA = 1.5  # lognormal spread of posting rates: the busiest authors post thousands
_REPLY_REACH = 20_000  # mean distance (in posts) from a reply back to its parent, about 1.4 h

_DESCRIPTION = """\
Build a synthetic Thunder store and time it:

  store     --posts posts by --authors authors (lognormal posting rates), 80% originals, 15%
            replies, 5% reposts, 10% of originals with video, spread over the 72 h before now,
            so a third is past the 48 h retention (lookups must skip it; expire drops it)
  ingest    ingest_many of all but the newest posts (the bulk load), then ingest() one call per
            post for the newest tenth (at most 100,000), then one expire(now)
  lookups   for each --following count: --lookups lookups (after 20 untimed ones), each for a
            random viewer following that many random authors, at now, with the default limits
            (1,200 results, 50 originals and 30 replies/reposts per author); timed once on the
            full store and once after expire

Reported: p50, p99 and mean latency per lookup (ms) and posts returned; posts per second for
each way of ingesting. The output is the machine description followed by the tables.
"""


@dataclass(frozen=True)
class LookupRow:
    """Latency of `lookup` for viewers following `following` accounts."""

    store: str  # which store state: "72 h held" or "after expire"
    following: int
    lookups: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    posts_mean: float  # posts returned per lookup
    posts_max: int


@dataclass(frozen=True)
class IngestRow:
    """Throughput of one way of writing to the store."""

    operation: str  # "ingest_many", "ingest" or "expire"
    posts: int  # posts given (or, for expire, dropped)
    seconds: float

    @property
    def posts_per_s(self) -> float:
        return self.posts / self.seconds if self.seconds > 0 else float("inf")


BenchRow = LookupRow | IngestRow


def synthetic_posts(
    num_posts: int,
    num_authors: int,
    *,
    seed: int = 0,
    now_ms: int = NOW_MS,
    progress: bool = False,
) -> tuple[list[Post], np.ndarray]:
    """`num_posts` posts in id order over the 72 h before `now_ms`, and the author ids."""
    if num_posts < 1 or num_authors < 1:
        raise ConfigError("need at least one post and one author")
    rng = np.random.default_rng(seed)
    author_ids = (rng.permutation(num_authors) + 1).astype(np.int64) * 7_919 + 1_000_000
    rate = rng.lognormal(0.0, _POSTING_SIGMA, num_authors)
    author = author_ids[rng.choice(num_authors, num_posts, p=rate / rate.sum())]
    created = np.sort(rng.integers(now_ms - _SPAN_HOURS * _HOUR_MS, now_ms + 1, num_posts))
    ids = snowflake_id(created, np.arange(num_posts) & ((1 << SEQUENCE_BITS) - 1))

    kind = rng.choice([ORIGINAL, REPLY, REPOST], num_posts, p=_KIND_SHARES).astype(np.int8)
    kind[0] = ORIGINAL
    position = np.arange(num_posts)
    parent = _earlier(rng, np.flatnonzero(kind != REPOST), position, kind == REPLY)
    originals = np.flatnonzero(kind == ORIGINAL)
    reposted = _earlier(rng, originals, position, kind == REPOST)
    root = np.where(parent >= 0, parent, position)
    while True:  # pointer jumping: every reply chain ends at an original
        jumped = root[root]
        if np.array_equal(jumped, root):
            break
        root = jumped
    video = np.zeros(num_posts, bool)
    video[originals] = rng.random(len(originals)) < _VIDEO_SHARE
    video = np.where(kind == REPOST, video[np.maximum(reposted, 0)], video)
    duration = np.where(video, rng.lognormal(np.log(15.0), 0.9, num_posts), 0.0)

    columns = (
        ids,
        author,
        kind,
        np.where(parent >= 0, ids[np.maximum(parent, 0)], 0),
        np.where(reposted >= 0, ids[np.maximum(reposted, 0)], 0),
        ids[root],
        video,
        duration,
    )
    posts: list[Post] = []
    chunk = 100_000
    bar = tqdm(total=num_posts, desc="posts", unit="post", disable=not progress, leave=False)
    for lo in range(0, num_posts, chunk):
        posts.extend(map(Post, *(c[lo : lo + chunk].tolist() for c in columns)))
        bar.update(min(chunk, num_posts - lo))
    bar.close()
    return posts, author_ids


def _earlier(
    rng: np.random.Generator, pool: np.ndarray, position: np.ndarray, wanted: np.ndarray
) -> np.ndarray:
    """For each wanted post, an earlier post from `pool` (positions), mostly a recent one."""
    out = np.full(len(position), -1, np.int64)
    where = np.flatnonzero(wanted)
    before = np.searchsorted(pool, where)  # pool entries earlier than each wanted post
    back = np.minimum(rng.geometric(1.0 / _REPLY_REACH, len(where)), np.maximum(before, 1))
    ok = before > 0
    out[where[ok]] = pool[before[ok] - back[ok]]
    return out


def bench_thunder(
    num_posts: int = DEFAULT_POSTS,
    num_authors: int = DEFAULT_AUTHORS,
    following: Sequence[int] = DEFAULT_FOLLOWING,
    *,
    lookups: int = DEFAULT_LOOKUPS,
    seed: int = 0,
    settings: ThunderSettings | None = None,
    progress: bool = True,
) -> list[BenchRow]:
    """Load a synthetic store, stream its newest posts one by one, time lookups, expire, time
    lookups again. Rows: three IngestRows (ingest_many, ingest, expire) and two LookupRows per
    following count."""
    _check(num_posts, num_authors, following, lookups)
    posts, author_ids = synthetic_posts(num_posts, num_authors, seed=seed, progress=progress)
    streamed = min(DEFAULT_STREAMED, num_posts // 10)
    bulk, stream = posts[: num_posts - streamed], posts[num_posts - streamed :]
    thunder = Thunder(settings)
    rows: list[BenchRow] = []

    t0 = time.perf_counter()
    thunder.ingest_many(bulk)
    rows.append(IngestRow("ingest_many", len(bulk), time.perf_counter() - t0))
    t0 = time.perf_counter()
    for post in tqdm(stream, desc="ingest", unit="post", disable=not progress, leave=False):
        thunder.ingest(post)
    rows.append(IngestRow("ingest", len(stream), time.perf_counter() - t0))

    rng = np.random.default_rng(seed + 1)
    lookup_rows = [_time_lookups(thunder, "72 h held", author_ids, k, lookups, rng, progress)
                   for k in following]  # fmt: skip
    t0 = time.perf_counter()
    dropped = thunder.expire(NOW_MS)
    rows.append(IngestRow("expire", dropped, time.perf_counter() - t0))
    lookup_rows += [_time_lookups(thunder, "after expire", author_ids, k, lookups, rng, progress)
                    for k in following]  # fmt: skip
    return lookup_rows + rows


def _time_lookups(
    thunder: Thunder,
    store: str,
    author_ids: np.ndarray,
    following: int,
    lookups: int,
    rng: np.random.Generator,
    progress: bool,
) -> LookupRow:
    """`lookups` timed lookups (after untimed warm-up), each with a fresh random viewer."""
    k = min(following, len(author_ids))
    seconds, returned = [], []
    label = f"lookups, {store}, following {k}"
    for i in tqdm(range(_WARMUP + lookups), desc=label, disable=not progress, leave=False):
        viewer = int(rng.choice(author_ids))
        followed = rng.choice(author_ids, k, replace=False).tolist()
        t0 = time.perf_counter()
        found = thunder.lookup(viewer, followed, NOW_MS)
        elapsed = time.perf_counter() - t0
        if i >= _WARMUP:
            seconds.append(elapsed)
            returned.append(len(found))
    ms = np.array(seconds) * 1e3
    return LookupRow(
        store=store,
        following=k,
        lookups=lookups,
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()),
        posts_mean=float(np.mean(returned)),
        posts_max=int(np.max(returned)),
    )


def _check(num_posts: int, num_authors: int, following: Sequence[int], lookups: int) -> None:
    """Refuse bad values with the option's name."""
    if num_posts < 10:
        raise ConfigError(f"--posts: need at least 10, got {num_posts}")
    if num_authors < 1:
        raise ConfigError(f"--authors: need at least 1, got {num_authors}")
    if not following or any(k < 1 for k in following):
        raise ConfigError(f"--following: need positive counts, got {list(following)}")
    if lookups < 1:
        raise ConfigError(f"--lookups: need at least 1, got {lookups}")


def format_table(rows: Sequence[BenchRow]) -> str:
    """Two Markdown tables: lookups, then ingest and expire throughput."""
    out = []
    lookup_rows = [r for r in rows if isinstance(r, LookupRow)]
    if lookup_rows:
        header = ["store", "following", "lookups", "p50 ms", "p99 ms", "mean ms", "posts returned"]
        cells = [
            [
                r.store,
                f"{r.following:,}",
                str(r.lookups),
                f"{r.p50_ms:.3f}",
                f"{r.p99_ms:.3f}",
                f"{r.mean_ms:.3f}",
                f"{r.posts_mean:,.0f} (max {r.posts_max:,})",
            ]
            for r in lookup_rows
        ]
        out.append(markdown_table(header, cells))
    ingest_rows = [r for r in rows if isinstance(r, IngestRow)]
    if ingest_rows:
        if out:
            out.append("")
        header = ["operation", "posts", "seconds", "posts/s"]
        cells = [
            [r.operation, f"{r.posts:,}", f"{r.seconds:.3f}", f"{r.posts_per_s:,.0f}"]
            for r in ingest_rows
        ]
        out.append(markdown_table(header, cells))
    return "\n".join(out)


def describe_machine() -> dict[str, str | int]:
    """The host, without PyTorch (the orchestrator never imports it)."""
    return {**host_facts(), "numpy": np.__version__}


def format_machine(info: dict[str, str | int]) -> str:
    return f"{host_line(info)}\nPython {info['python']}, numpy {info['numpy']}, one thread"


def to_json(rows: Sequence[BenchRow], machine: dict[str, str | int] | None = None) -> str:
    """`{"machine": {...}, "lookups": [...], "writes": [...]}`."""
    return json.dumps(
        {
            "machine": machine or {},
            "lookups": [asdict(r) for r in rows if isinstance(r, LookupRow)],
            "writes": [
                {**asdict(r), "posts_per_s": r.posts_per_s}
                for r in rows
                if isinstance(r, IngestRow)
            ],
        },
        indent=2,
    )


def add_parser(benchmarks: argparse._SubParsersAction) -> None:
    """Register `thunder` under `phoenix bench`."""
    p = benchmarks.add_parser(
        "thunder",
        help="Thunder (in-network store): lookup latency and ingest rate on a synthetic store",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--posts",
        type=int,
        default=DEFAULT_POSTS,
        metavar="N",
        help=f"posts in the synthetic store (default: {DEFAULT_POSTS:,})",
    )
    p.add_argument(
        "--authors",
        type=int,
        default=DEFAULT_AUTHORS,
        metavar="N",
        help=f"authors who wrote them (default: {DEFAULT_AUTHORS:,})",
    )
    p.add_argument(
        "--following",
        nargs="+",
        type=int,
        default=list(DEFAULT_FOLLOWING),
        metavar="N",
        help="accounts each viewer follows; one row per count (default: 100 1000 5000)",
    )
    p.add_argument(
        "--lookups",
        type=int,
        default=DEFAULT_LOOKUPS,
        metavar="N",
        help=f"timed lookups per row, after {_WARMUP} untimed (default: {DEFAULT_LOOKUPS})",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the machine and the rows as JSON to PATH",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(handler=run_thunder)


def run_thunder(args: argparse.Namespace) -> int:
    """The `phoenix bench thunder` handler: measure, print the machine and the tables."""
    _check(args.posts, args.authors, args.following, args.lookups)
    rows = bench_thunder(
        args.posts,
        args.authors,
        args.following,
        lookups=args.lookups,
        seed=args.seed,
        progress=not args.no_progress,
    )
    machine = describe_machine()
    print(format_machine(machine))
    print(f"{args.posts:,} posts by {args.authors:,} authors over 72 h, 48 h retention\n")
    print(format_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(to_json(rows, machine) + "\n")
    return 0
