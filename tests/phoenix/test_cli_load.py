"""`phoenix load` against a real SQLite store: good files go in whole, a bad file is refused with
exit status 2 naming file, line and field, and the store is left as it was."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.state.dataset import TABLES, Dataset
from orchestrator.state.redis_journal import DEFAULT_STREAM, StreamLog
from orchestrator.state.sqlite_store import STORE_FILE, SqliteStore
from phoenix.cli import main
from phoenix.snowflake import snowflake_id

T0 = 1_700_000_000_000
NOW = T0 + 60_000
P1, P2 = int(snowflake_id(T0)), int(snowflake_id(T0 + 1000))


def write(directory: Path, tables: dict[str, list[dict]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (directory / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


FIRST = {
    "users": [{"user_id": 1}, {"user_id": 2, "timezone": 6}],
    "follows": [{"follower_id": 2, "followee_id": 1}],
    "posts": [{"post_id": P1, "author_id": 1, "text": "hello"}],
    "engagements": [{"viewer_id": 2, "post_id": P1, "served_ms": T0 + 500, "favorite": True}],
}
#: Refers to the users and the post of FIRST, which only the store holds.
SECOND = {
    "posts": [{"post_id": P2, "author_id": 2, "kind": 1, "parent_id": P1}],
    "muted_keywords": [{"user_id": 1, "keyword": "spoilers"}],
}


def stored(data: Path) -> Dataset:
    store = SqliteStore.in_dir(data)
    try:
        return store.load()[0]
    finally:
        store.close()


def load(*args: str) -> int:
    return main(["load", "--no-progress", "--now-ms", str(NOW), *args])


def test_check_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = write(tmp_path / "first", FIRST)
    assert load("--data", str(tmp_path / "data"), "--check", str(files)) == 0
    assert "checked 5 rows of 4 tables" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()


def test_load_imports_and_a_later_load_refers_to_stored_rows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert load("--data", str(data), str(write(tmp_path / "first", FIRST))) == 0
    assert load("--data", str(data), str(write(tmp_path / "second", SECOND))) == 0
    after = stored(data)
    assert after.table("users").column("user_id").to_pylist() == [1, 2]
    posts = after.table("posts").to_pylist()
    assert [p["post_id"] for p in posts] == [P1, P2]
    assert posts[1]["kind"] == 1 and posts[1]["conversation_id"] == P1  # derived from its parent
    assert after.table("follows").to_pylist() == [{"follower_id": 2, "followee_id": 1}]
    assert after.table("muted_keywords").column("keyword").to_pylist() == ["spoilers"]
    eng = after.table("engagements").to_pylist()
    assert eng[0]["favorite"] and eng[0]["served_ms"] == T0 + 500


@pytest.mark.parametrize(
    ("table", "row", "field", "bad", "message"),
    [
        ("posts", 0, "author_id", 3, "no user 3"),
        ("posts", 0, "post_id", P1, f"{P1} is already in the store"),
        ("muted_keywords", 0, "user_id", "one", "expected an integer"),
    ],
)
def test_a_bad_file_is_refused_and_the_store_left_as_it_was(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    table: str,
    row: int,
    field: str,
    bad: object,
    message: str,
) -> None:
    data = tmp_path / "data"
    assert load("--data", str(data), str(write(tmp_path / "first", FIRST))) == 0
    before = stored(data)
    tables = json.loads(json.dumps(SECOND))
    tables[table][row][field] = bad
    files = write(tmp_path / "second", tables)
    capsys.readouterr()
    assert load("--data", str(data), str(files)) == 2
    err = capsys.readouterr().err
    assert f"{files / table}.jsonl:{row + 1}: {field}: " in err and message in err
    after = stored(data)
    for name in TABLES:
        assert after.table(name).equals(before.table(name)), name
    assert (data / STORE_FILE).is_file()


def test_help_points_at_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["load", "--help"])
    out = capsys.readouterr().out
    assert "docs/DATA.md" in out and "--check" in out


def test_redis_seeds_an_empty_stream_once(
    tmp_path: Path, redis_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--redis`: the checked files become the dataset at the start of the replicas' stream; a
    stream that already holds data is refused (exit 2) and left as it was."""
    files = write(tmp_path / "first", FIRST)
    assert load("--redis", redis_server.url, str(files)) == 0
    assert "published 5 rows" in capsys.readouterr().out

    async def read() -> tuple[Dataset, str] | None:
        log = StreamLog.connect(redis_server.url, DEFAULT_STREAM)
        try:
            return await log.read_dataset(wait_s=5)
        finally:
            await log.close()

    seeded = asyncio.run(read())
    assert seeded is not None
    dataset, _ = seeded
    assert dataset.table("users").column("user_id").to_pylist() == [1, 2]
    assert dataset.table("posts").column("text").to_pylist() == ["hello"]
    assert load("--redis", redis_server.url, str(files)) == 2
    assert "already holds data" in capsys.readouterr().err
    again = asyncio.run(read())
    assert again is not None and again[1] == seeded[1]  # nothing added
