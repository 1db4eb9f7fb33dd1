"""read_dataset: Parquet and JSONL table files -> a checked Dataset, or a DatasetError naming the
file, row and field of each problem."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.state.dataset import TABLES, Dataset, DatasetError
from orchestrator.state.dataset_checks import KnownIds
from orchestrator.state.dataset_files import read_dataset
from orchestrator.state.world_state import world_dataset
from phoenix.snowflake import snowflake_id
from phoenix.world.generate import generate_world
from phoenix.world.io import load_world
from phoenix.world.spec import WorldSpec

T0 = 1_700_000_000_000  # Unix ms of the first post
NOW = T0 + 3_600_000
P1, P2, P3, P4 = (int(snowflake_id(T0 + k * 1000)) for k in range(4))
MISSING = object()  # a key left out of a JSONL row

#: A small consistent dataset: 3 users, an original, a reply, a repost and a reply to the reply.
GOOD: dict[str, list[dict]] = {
    "users": [
        {"user_id": 1},
        {"user_id": 2, "timezone": 6, "language": 37, "gender": 1},
        {"user_id": 3, "latitude": 51.5, "longitude": -0.1, "ip_id": 1_400_000_000},
    ],
    "follows": [{"follower_id": 2, "followee_id": 1}, {"follower_id": 3, "followee_id": 1}],
    "blocks": [{"user_id": 1, "blocked_id": 3}],
    "mutes": [{"user_id": 2, "muted_id": 3}],
    "muted_keywords": [{"user_id": 1, "keyword": "crypto"}],
    "posts": [
        {"post_id": P1, "author_id": 1, "text": "hello", "semantic_ids": [3, 1, 4, 1, 5, 9]},
        {"post_id": P2, "author_id": 2, "kind": 1, "parent_id": P1, "text": "hi"},
        {"post_id": P3, "author_id": 3, "kind": 2, "reposted_id": P1},
        {"post_id": P4, "author_id": 1, "kind": 1, "parent_id": P2, "is_video": False},
    ],
    "engagements": [
        {"viewer_id": 2, "post_id": P1, "served_ms": T0 + 5000, "favorite": True},
        {"viewer_id": 3, "post_id": P4, "served_ms": T0 + 9000, "dwell_time_s": 2.5},
    ],
}


def write_jsonl(directory: Path, tables: dict[str, list[dict]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        lines = [json.dumps({k: v for k, v in row.items() if v is not MISSING}) for row in rows]
        (directory / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def changed(table: str, row: int, **values: object) -> dict[str, list[dict]]:
    """GOOD with some fields of one row changed (MISSING drops the key)."""
    tables = copy.deepcopy(GOOD)
    tables[table][row].update(values)
    return tables


def problems_of(directory: Path, **kwargs: object) -> list[str]:
    with pytest.raises(DatasetError) as info:
        read_dataset([directory], now_ms=NOW, **kwargs)
    return [str(p) for p in info.value.problems]


def test_a_good_dataset_reads_with_defaults_and_conversations(tmp_path: Path) -> None:
    data = read_dataset([write_jsonl(tmp_path / "d", GOOD)], now_ms=NOW)
    assert data.now_ms == NOW
    for name, schema in TABLES.items():
        assert data.table(name).schema == schema
        assert data.table(name).num_rows == len(GOOD[name])
    users = data.table("users").to_pylist()
    assert users[0]["timezone"] == 0 and users[1]["timezone"] == 6
    assert users[2]["latitude"] == pytest.approx(51.5)
    posts = {p["post_id"]: p for p in data.table("posts").to_pylist()}
    assert posts[P1]["semantic_ids"] == [3, 1, 4, 1, 5, 9]
    assert posts[P2]["semantic_ids"] == [0] * 6 and posts[P2]["quoted_id"] == 0
    # Conversations derived: originals and reposts start their own, replies join the root's.
    assert [posts[p]["conversation_id"] for p in (P1, P2, P3, P4)] == [P1, P1, P3, P1]
    eng = data.table("engagements").to_pylist()
    assert eng[0]["favorite"] and not eng[0]["reply"] and eng[0]["surface"] == 0
    assert eng[1]["dwell_time_s"] == pytest.approx(2.5) and not eng[1]["favorite"]


@pytest.mark.parametrize(
    ("table", "row", "values", "field", "message"),
    [
        ("users", 1, {"user_id": "two"}, "user_id", "expected an integer, got the string 'two'"),
        ("users", 1, {"user_id": 2.5}, "user_id", "expected an integer, got 2.5"),
        ("users", 1, {"user_id": -2}, "user_id", "must be positive"),
        ("users", 1, {"user_id": 0}, "user_id", "must be positive"),
        ("users", 1, {"user_id": 2**63}, "user_id", "out of the 64-bit integer range"),
        ("users", 1, {"user_id": 1}, "user_id", "duplicate users row (first at row 1)"),
        ("users", 1, {"user_id": MISSING}, "user_id", "missing value"),
        ("users", 1, {"timezone": 32}, "timezone", "must be in 0..31"),
        ("users", 1, {"gender": 3}, "gender", "must be in 0..2"),
        ("users", 1, {"age_bracket": 8}, "age_bracket", "must be in 0..7"),
        ("users", 1, {"latitude": 91.0}, "latitude", "must be in -90.0..90.0"),
        ("users", 1, {"ip_id": 2**32}, "ip_id", "must be in 0..4294967295"),
        ("users", 1, {"nickname": "x"}, "nickname", "unknown column"),
        ("users", 1, {"gender": True}, "gender", "expected an integer, got true"),
        ("follows", 1, {"followee_id": 3}, "followee_id", "cannot follow itself"),
        ("follows", 1, {"follower_id": 2}, "followee_id", "duplicate follows row"),
        ("follows", 1, {"followee_id": 99}, "followee_id", "no user 99"),
        ("blocks", 0, {"blocked_id": 1}, "blocked_id", "cannot block itself"),
        ("mutes", 0, {"user_id": 42}, "user_id", "no user 42"),
        ("muted_keywords", 0, {"keyword": "   "}, "keyword", "must contain a word"),
        ("muted_keywords", 0, {"keyword": "x" * 101}, "keyword", "at most 100 characters"),
        ("posts", 2, {"kind": 3}, "kind", "must be in 0..2"),
        ("posts", 1, {"parent_id": 0}, "parent_id", "a reply (kind 1) needs one"),
        ("posts", 0, {"parent_id": P1}, "parent_id", "an original (kind 0) has none"),
        ("posts", 2, {"reposted_id": 0}, "reposted_id", "a repost (kind 2) needs one"),
        ("posts", 2, {"parent_id": P1}, "parent_id", "a repost (kind 2) has none"),
        ("posts", 1, {"parent_id": P3}, "parent_id", "must name an older post"),
        ("posts", 2, {"reposted_id": P3}, "reposted_id", "must name an older post"),
        ("posts", 1, {"parent_id": 12345}, "parent_id", "no post 12345"),
        ("posts", 1, {"quoted_id": P2}, "quoted_id", "must name an older post"),
        ("posts", 1, {"author_id": 7}, "author_id", "no user 7"),
        ("posts", 0, {"conversation_id": P2}, "conversation_id", "starts its own"),
        ("posts", 3, {"conversation_id": P2}, "conversation_id", f"starts at {P1}"),
        ("posts", 2, {"post_id": P2}, "post_id", "duplicate posts row (first at row 2)"),
        ("posts", 0, {"post_id": int(snowflake_id(NOW + 1))}, "post_id", "after now"),
        ("posts", 0, {"semantic_ids": [1, 2, 3]}, "semantic_ids", "needs 6 codes"),
        ("posts", 0, {"semantic_ids": [1, 2, 3, 4, 5, 257]}, "semantic_ids", "1..256"),
        ("posts", 0, {"semantic_ids": [1, 2, 0, 4, 5, 6]}, "semantic_ids", "all codes or none"),
        ("posts", 0, {"semantic_ids": "abc"}, "semantic_ids", "expected a list of integers"),
        ("posts", 0, {"video_duration_s": 3.0}, "video_duration_s", "0 unless is_video"),
        ("posts", 0, {"is_video": 1}, "is_video", "expected true or false, got 1"),
        ("posts", 0, {"text": 5}, "text", "expected a string, got 5"),
        ("engagements", 0, {"surface": 16}, "surface", "must be in 0..15"),
        ("engagements", 0, {"dwell_time_s": math.nan}, "dwell_time_s", "finite number"),
        ("engagements", 0, {"dwell_time_s": -1.0}, "dwell_time_s", "must be in 0.0..86400.0"),
        ("engagements", 0, {"served_ms": T0 - 1}, "served_ms", "before the post was created"),
        ("engagements", 0, {"served_ms": NOW + 1}, "served_ms", "after now"),
        ("engagements", 0, {"post_id": 777}, "post_id", "no post 777"),
        ("engagements", 0, {"viewer_id": 8}, "viewer_id", "no user 8"),
        ("engagements", 0, {"served_ms": MISSING}, "served_ms", "missing value"),
    ],
)
def test_each_bad_value_is_named_by_file_line_and_field(
    tmp_path: Path, table: str, row: int, values: dict, field: str, message: str
) -> None:
    directory = write_jsonl(tmp_path / "d", changed(table, row, **values))
    found = problems_of(directory)
    where = f"{directory / table}.jsonl:{row + 1}: {field}: "
    assert any(p.startswith(where) and message in p for p in found), found


def test_the_user_of_a_bad_row_is_told_the_line_not_the_row(tmp_path: Path) -> None:
    directory = write_jsonl(tmp_path / "d", changed("users", 2, gender=9))
    path = directory / "users.jsonl"
    path.write_text("\n" + path.read_text().replace("\n", "\n\n"))  # blank lines shift rows
    assert problems_of(directory) == [f"{path}:6: gender: must be in 0..2, got 9"]


def test_invalid_json_and_non_objects_are_named_by_line(tmp_path: Path) -> None:
    directory = write_jsonl(tmp_path / "d", GOOD)
    path = directory / "follows.jsonl"
    path.write_text(path.read_text() + "{not json\n[1, 2]\n")
    found = problems_of(directory)
    assert found[0].startswith(f"{path}:3: not valid JSON")
    assert found[1] == f"{path}:4: expected a JSON object"


def test_missing_required_column_and_unknown_table_name_the_file(tmp_path: Path) -> None:
    tables = copy.deepcopy(GOOD)
    for row in tables["follows"]:
        del row["followee_id"]
    directory = write_jsonl(tmp_path / "d", tables)
    (directory / "likes.jsonl").write_text('{"user_id": 1}\n')
    found = problems_of(directory)
    assert f"{directory / 'follows.jsonl'}: followee_id: required column is missing" in found
    assert any(p.startswith(f"{directory / 'likes.jsonl'}: unknown table 'likes'") for p in found)


def test_references_to_a_store_are_accepted_and_its_ids_not_added_again(tmp_path: Path) -> None:
    tables = copy.deepcopy(GOOD)
    del tables["users"]  # every user is already stored
    directory = write_jsonl(tmp_path / "d", tables)
    with pytest.raises(DatasetError):
        read_dataset([directory], now_ms=NOW)
    data = read_dataset([directory], now_ms=NOW, known=KnownIds.of(users=[1, 2, 3]))
    assert data.table("users").num_rows == 0 and data.table("posts").num_rows == 4
    found = problems_of(directory, known=KnownIds.of(users=[1, 2, 3], posts=[P3]))
    assert f"{directory / 'posts.jsonl'}:3: post_id: {P3} is already in the store" in found
    found = problems_of(directory, known=KnownIds.of(users=[1, 2, 3], deleted_posts=[P4]))
    assert any(p.startswith(f"{directory / 'posts.jsonl'}:4: post_id:") for p in found)
    assert any("deleted" in p for p in found)


def test_a_reply_to_a_stored_post_joins_its_conversation(tmp_path: Path) -> None:
    stored = int(snowflake_id(T0 - 10_000))
    tables = changed("posts", 1, parent_id=stored)
    known = KnownIds.of(posts=[stored])
    found = problems_of(write_jsonl(tmp_path / "a", tables), known=known)
    assert any(":2: conversation_id: required" in p for p in found), found
    tables = changed("posts", 1, parent_id=stored, conversation_id=stored)
    data = read_dataset([write_jsonl(tmp_path / "b", tables)], now_ms=NOW, known=known)
    conversations = data.table("posts").column("conversation_id").to_pylist()
    assert conversations == [P1, stored, P3, stored]  # the reply to the reply follows it
    # When the store says which conversation its post is in, the reply joins that one.
    root = int(snowflake_id(T0 - 20_000))
    known = KnownIds.of(posts=[root, stored], conversations=[root, root])
    data = read_dataset([write_jsonl(tmp_path / "c", changed("posts", 1, parent_id=stored))],
                        now_ms=NOW, known=known)  # fmt: skip
    conversations = data.table("posts").column("conversation_id").to_pylist()
    assert conversations == [P1, root, P3, root]
    tables = changed("posts", 1, parent_id=stored, conversation_id=stored)
    found = problems_of(write_jsonl(tmp_path / "e", tables), known=known)
    assert any(f":2: conversation_id: {stored}, but the thread" in p for p in found), found


def test_problems_are_bounded_and_counted(tmp_path: Path) -> None:
    tables = copy.deepcopy(GOOD)
    tables["follows"] = [{"follower_id": 2, "followee_id": 2} for _ in range(25)]
    with pytest.raises(DatasetError) as info:
        read_dataset([write_jsonl(tmp_path / "d", tables)], now_ms=NOW)
    error = info.value
    # 25 self-follows and 24 repeats of the first pair.
    assert error.total == 49 and len(error.problems) == 20
    assert str(error).endswith("... and 29 more")


def parquet_of(tables: dict[str, list[dict]], directory: Path) -> Path:
    """The JSONL dataset's tables as Parquet files, through read_dataset's own result."""
    directory.mkdir()
    data = read_dataset([write_jsonl(directory.parent / "src", tables)], now_ms=NOW)
    for name, table in data.tables.items():
        pq.write_table(table, directory / f"{name}.parquet")
    return directory


def test_parquet_rows_are_named_1_based_and_types_checked(tmp_path: Path) -> None:
    directory = parquet_of(GOOD, tmp_path / "pq")
    posts = pq.read_table(directory / "posts.parquet")
    kind = posts.column("kind").to_numpy().copy()
    kind[2] = 7
    i = posts.schema.get_field_index("kind")
    pq.write_table(posts.set_column(i, "kind", pa.array(kind)), directory / "posts.parquet")
    assert problems_of(directory) == [
        f"{directory / 'posts.parquet'}:3: kind: must be in 0..2, got 7"
    ]
    users = pa.table({"user_id": pa.array(["1", "2", "3"])})
    pq.write_table(users, directory / "users.parquet")
    found = problems_of(directory)
    assert found == [
        f"{directory / 'users.parquet'}: user_id: column has type string, expected an integer"
    ]


def test_parquet_float_ids_must_be_whole(tmp_path: Path) -> None:
    directory = parquet_of(GOOD, tmp_path / "pq")
    pq.write_table(pa.table({"user_id": [1.0, 2.0, 3.5]}), directory / "users.parquet")
    assert problems_of(directory) == [
        f"{directory / 'users.parquet'}:3: user_id: expected an integer, got 3.5"
    ]
    pq.write_table(pa.table({"user_id": [1.0, 2.0, 3.0]}), directory / "users.parquet")
    assert read_dataset([directory], now_ms=NOW).table("users").column("user_id").to_pylist() == [
        1,
        2,
        3,
    ]


def assert_same(a: Dataset, b: Dataset) -> None:
    assert a.now_ms == b.now_ms
    for name in TABLES:
        assert a.table(name).equals(b.table(name)), name


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = WorldSpec(
        seed=3,
        num_users=120,
        num_authors=30,
        hours=24,
        impressions_per_user=20.0,
        blocks_per_user=1.0,
        mutes_per_user=1.0,
        muted_keywords_per_user=1.0,
    )
    return generate_world(spec, tmp_path_factory.mktemp("world") / "w", progress=False)


def test_a_world_round_trips(world_dir: Path) -> None:
    data = read_dataset([world_dir])
    assert_same(data, world_dataset(load_world(world_dir)))
    assert data.table("posts").num_rows > 100 and data.table("engagements").num_rows > 1000


def test_jsonl_and_parquet_give_the_same_dataset(world_dir: Path, tmp_path: Path) -> None:
    world = read_dataset([world_dir])
    for name, table in world.tables.items():
        rows = table.to_pylist()
        if name == "posts":  # leave the optional columns out where they hold their default
            for row in rows:
                if row["kind"] == 0:
                    del row["parent_id"], row["reposted_id"], row["conversation_id"]
                row.pop("quoted_id")
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    from_jsonl = read_dataset(sorted(tmp_path.glob("*.jsonl")), now_ms=world.now_ms)
    assert_same(from_jsonl, world)
    # Floats went through JSON's decimal text: compare them with a tolerance, the rest exactly.
    lat = from_jsonl.table("users").column("latitude").to_numpy()
    np.testing.assert_allclose(lat, world.table("users").column("latitude").to_numpy(), rtol=1e-6)


def test_the_examples_of_docs_data_md_load(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "DATA.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]
    names = ["users", "follows", "blocks", "mutes", "muted_keywords", "posts", "engagements"]
    assert len(blocks) == len(names)
    for name, block in zip(names, blocks, strict=True):
        (tmp_path / f"{name}.jsonl").write_text(block)
    data = read_dataset([tmp_path])
    assert {n: data.table(n).num_rows for n in names} == {
        n: len(b.strip().splitlines()) for n, b in zip(names, blocks, strict=True)
    }
