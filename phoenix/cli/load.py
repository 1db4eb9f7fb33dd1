"""`phoenix load --data DIR FILES...`: bring your own users, social graph, posts and engagements
into the service's durable store, from Parquet or JSON Lines files (docs/DATA.md)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.state.dataset_checks import KnownIds
    from orchestrator.state.sqlite_store import SqliteStore

log = logging.getLogger(__name__)

DEFAULT_DATA = Path("runs/data")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "load",
        help="import users, follows, posts, engagements... from Parquet or JSONL files",
        description="Read tables from Parquet (.parquet) or JSON Lines (.jsonl) files, one table "
        "per file named by the file's stem (users, follows, blocks, mutes, muted_keywords, posts, "
        "engagements), check every row, and import them into the durable store of --data in one "
        "transaction. A directory stands for the table files in it; a world directory written by "
        "'phoenix world' is one such dataset. A bad row stops the load before anything is "
        "written: the error names file, row (the line of a JSONL file, the 1-based row of a "
        "Parquet file) and field, and the exit status is 2. The schema and every check are in "
        "docs/DATA.md.",
        epilog="examples: phoenix load --data runs/data --check users.jsonl posts.parquet\n"
        "          phoenix load --data runs/data my_dataset/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="FILE_OR_DIR",
        help="table files (users.jsonl, posts.parquet...) or directories of them",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        metavar="DIR",
        help=f"data directory of the durable store, as 'phoenix serve --data' (default: "
        f"{DEFAULT_DATA}); rows may refer to users and posts it already holds",
    )
    p.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="instead of --data: seed the shared stream of replicas started with "
        "'phoenix serve --redis URL' (redis://HOST:PORT/DB); only an empty stream is seeded, "
        "each replica then imports the dataset into its own store",
    )
    p.add_argument(
        "--check", action="store_true", help="only check the files: write nothing anywhere"
    )
    p.add_argument(
        "--now-ms",
        type=int,
        default=None,
        metavar="MS",
        help="the dataset's 'now' in Unix ms: no post or impression may be later (default: a "
        "world's now_ms, else the current time)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: pyarrow and the store are not needed for `phoenix --help`.
    from orchestrator.state.dataset_files import read_dataset
    from orchestrator.state.sqlite_store import STORE_FILE, SqliteStore

    started = time.perf_counter()
    if args.redis is not None:
        return _seed_stream(args, started)
    exists = (args.data / STORE_FILE).is_file()
    # --check creates nothing; without a store there is nothing to refer to.
    store = None if args.check and not exists else SqliteStore.in_dir(args.data)
    try:
        known, clock = _stored(store)
        dataset = read_dataset(
            args.paths,
            known=known,
            now_ms=args.now_ms,
            fallback_now_ms=clock,
            progress=not args.no_progress,
        )
        rows = {name: table.num_rows for name, table in sorted(dataset.tables.items())}
        for name, count in rows.items():
            log.info("%-15s %10d rows", name, count)
        total = f"{sum(rows.values())} rows of {len(rows)} tables"
        if args.check:
            print(f"checked {total} in {time.perf_counter() - started:.1f} s: no problems")
            return 0
        store.import_dataset(dataset)
    finally:
        if store is not None:
            store.close()
    print(f"loaded {total} into {args.data / STORE_FILE} in {time.perf_counter() - started:.1f} s")
    return 0


def _seed_stream(args: argparse.Namespace, started: float) -> int:
    """Check the files, then put them at the start of the replicas' Redis stream."""
    from orchestrator.state.dataset_files import read_dataset
    from orchestrator.state.replication import publish
    from phoenix.errors import ConfigError

    dataset = read_dataset(args.paths, now_ms=args.now_ms, progress=not args.no_progress)
    total = sum(table.num_rows for table in dataset.tables.values())
    if args.check:
        print(f"checked {total} rows in {time.perf_counter() - started:.1f} s: no problems")
        return 0
    if not publish(args.redis, dataset):
        raise ConfigError(
            f"--redis {args.redis}: the stream already holds data; 'phoenix load --redis' seeds an "
            "empty stream only (write through the API of a replica instead)"
        )
    print(f"published {total} rows to {args.redis} in {time.perf_counter() - started:.1f} s")
    return 0


def _stored(store: SqliteStore | None) -> tuple[KnownIds | None, int | None]:
    """The ids the store holds (rows may refer to them, not add them) and its clock; nothing
    for a store that is empty or absent."""
    import numpy as np

    from orchestrator.state.dataset_checks import KnownIds

    if store is None or store.is_empty():
        return None, None
    stored, extras = store.load()
    posts = stored.table("posts")
    ids = posts.column("post_id").to_numpy()
    conversations = posts.column("conversation_id").to_numpy()
    return KnownIds.of(
        users=stored.table("users").column("user_id").to_numpy(),
        posts=ids,
        deleted_posts=list(extras.deleted),
        conversations=np.where(conversations == 0, ids, conversations),
    ), store.now_ms()
