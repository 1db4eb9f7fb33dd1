"""`phoenix bench state`: how the durable store's import and the service's start-up (rebuilding
the in-memory state from the store) grow with the data.

Each size is a synthetic dataset built with NumPy: P posts by P/50 authors among P/10 users, 20
follows per user, and 3 impressions per post (a third with a favorite), so users, the graph and
engagements grow with the posts. Each size runs in its own process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from orchestrator.state.dataset import TABLES, Dataset
from phoenix.actions import ACTIONS
from phoenix.errors import ConfigError
from phoenix.machine import host_facts, host_line
from phoenix.markdown import markdown_table
from phoenix.snowflake import snowflake_id
from phoenix.world.schema import SID_LEVELS

#: 2026-08-01T00:00:00Z, the synthetic data's "now", so runs are comparable.
NOW_MS = 1_785_542_400_000
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
_FOLLOWS_PER_USER = 20
_IMPRESSIONS_PER_POST = 3

_DESCRIPTION = f"""\
Time the durable store (SQLite, orchestrator/state/sqlite_store.py) per size in --posts:

  import    SqliteStore.import_dataset of a synthetic dataset into a new store (one transaction)
  rebuild   what `phoenix serve` does at start: SqliteStore.load, then the in-memory stores
            (orchestrator.state.world_state.load_state) from it
  peak RSS  of the process that did both (one process per size)

The dataset per P posts: P/10 users, P/50 of them authors, {_FOLLOWS_PER_USER} follows per user,
{_IMPRESSIONS_PER_POST} impressions per post (a third with a favorite), posts over the 48 h
before now. Printed: the machine, then a table with each row's growth over the row before.
"""


def synthetic_dataset(posts: int, seed: int = 0) -> Dataset:
    """The benchmark's dataset of `posts` posts (see the module docstring)."""
    rng = np.random.default_rng(seed)
    users = max(posts // 10, 10)
    authors = max(users // 5, 2)
    user_ids = np.arange(1, users + 1, dtype=np.int64) * 1_000_003
    user_cols: dict[str, Any] = {
        f.name: pa.array(np.zeros(users, np.int64)).cast(f.type) for f in TABLES["users"]
    }
    user_cols["user_id"] = user_ids
    follower = np.repeat(user_ids, _FOLLOWS_PER_USER)
    followee = user_ids[rng.integers(0, authors, len(follower))]
    keep = follower != followee
    times = np.sort(rng.integers(NOW_MS - 48 * 3_600_000, NOW_MS, posts))
    post_ids = snowflake_id(times, np.arange(posts) & 0xFFF).astype(np.int64)
    post_ids = np.unique(post_ids)
    n = len(post_ids)
    sids = rng.integers(1, 257, (n, SID_LEVELS)).astype(np.int16)
    post_table = {
        "post_id": post_ids,
        "author_id": user_ids[rng.integers(0, authors, n)],
        "kind": np.zeros(n, np.int8),
        "parent_id": np.zeros(n, np.int64),
        "reposted_id": np.zeros(n, np.int64),
        "conversation_id": post_ids,
        "is_video": rng.random(n) < 0.1,
        "video_duration_s": np.zeros(n, np.float32),
        "text": pa.array([f"post number {i} about things" for i in range(n)]),
        "semantic_ids": pa.FixedSizeListArray.from_arrays(pa.array(sids.reshape(-1)), SID_LEVELS),
        "quoted_id": np.zeros(n, np.int64),
    }
    e = n * _IMPRESSIONS_PER_POST
    shown = rng.integers(0, n, e)
    eng: dict[str, Any] = {
        "viewer_id": user_ids[rng.integers(0, users, e)],
        "post_id": post_ids[shown],
        "served_ms": np.minimum(times[shown] + rng.integers(0, 3_600_000, e), NOW_MS - 1),
        "surface": np.zeros(e, np.int8),
        **{a: np.zeros(e, bool) for a in ACTIONS},
        "dwell_time_s": rng.random(e).astype(np.float32) * 10,
    }
    eng["favorite"] = rng.random(e) < 1 / 3
    tables = {
        "users": pa.table(user_cols).cast(TABLES["users"]),
        "follows": pa.table(
            {"follower_id": follower[keep], "followee_id": followee[keep]}
        ).cast(TABLES["follows"]),
        "posts": pa.table(post_table).select(TABLES["posts"].names).cast(TABLES["posts"]),
        "engagements": pa.table(eng).select(TABLES["engagements"].names).cast(
            TABLES["engagements"]
        ),
    }  # fmt: skip
    return Dataset(tables, now_ms=NOW_MS)


def measure_one(posts: int, seed: int) -> dict[str, Any]:
    """Build, import and rebuild one size in this process."""
    from orchestrator.state.sqlite_store import SqliteStore
    from orchestrator.state.world_state import load_state

    dataset = synthetic_dataset(posts, seed)
    rows = {name: dataset.table(name).num_rows for name in TABLES}
    with tempfile.TemporaryDirectory(prefix="phoenix-bench-state-") as work:
        store = SqliteStore(Path(work) / "state.sqlite")
        started = time.perf_counter()
        store.import_dataset(dataset)
        imported_s = time.perf_counter() - started
        size_mb = sum(f.stat().st_size for f in Path(work).iterdir()) / 2**20  # WAL included
        del dataset
        started = time.perf_counter()
        state = load_state(*store.load())
        rebuild_s = time.perf_counter() - started
        store.close()
    assert len(state.posts) == rows["posts"] and len(state.viewers) == rows["users"]
    return {
        "posts": rows["posts"],
        "users": rows["users"],
        "follows": rows["follows"],
        "engagements": rows["engagements"],
        "import_s": imported_s,
        "rebuild_s": rebuild_s,
        "store_mb": size_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(sizes: list[int], seed: int) -> list[dict[str, Any]]:
    """Each size in a child process of its own (a clean peak RSS)."""
    results = []
    for posts in sizes:
        out = subprocess.run(
            [sys.executable, "-m", "orchestrator.benchmarks.state", str(posts), str(seed)],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def format_results(results: list[dict[str, Any]]) -> str:
    header = [
        "posts", "users", "follows", "engagements", "import s", "rebuild s", "store MB",
        "peak RSS MB", "growth: data / rebuild / RSS",
    ]  # fmt: skip
    rows = []
    previous = None
    for r in results:
        growth = "-"
        if previous is not None:
            ratios = (r[k] / previous[k] for k in ("posts", "rebuild_s", "peak_rss_mb"))
            growth = " / ".join(f"x{x:.1f}" for x in ratios)
        rows.append(
            [
                f"{r['posts']:,}", f"{r['users']:,}", f"{r['follows']:,}",
                f"{r['engagements']:,}", f"{r['import_s']:.2f}", f"{r['rebuild_s']:.2f}",
                f"{r['store_mb']:.0f}", f"{r['peak_rss_mb']:.0f}", growth,
            ]
        )  # fmt: skip
        previous = r
    return markdown_table(header, rows)


def add_parser(benchmarks: argparse._SubParsersAction) -> None:
    """Register `state` under `phoenix bench`."""
    p = benchmarks.add_parser(
        "state",
        help="durable store: import and start-up (rebuild) time and memory per data size",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--posts",
        nargs="+",
        type=int,
        default=list(DEFAULT_SIZES),
        metavar="N",
        help="posts per size, one row each (default: 10000 100000 1000000)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    if any(n < 100 for n in args.posts):
        raise ConfigError("--posts: each size must be at least 100")
    info = host_facts()
    print(host_line(info), flush=True)
    results = measure(args.posts, args.seed)
    print(format_results(results))
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":  # one size, in a child process of `measure`
    print(json.dumps(measure_one(int(sys.argv[1]), int(sys.argv[2]))))
