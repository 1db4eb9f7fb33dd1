"""The durable store on a real SQLite file: every event kind comes back after reopening, an import
is all or nothing, the shared log's position is kept with the events, the clock never goes back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from orchestrator.applier import Applier
from orchestrator.state.dataset import TABLES, Dataset
from orchestrator.state.events import Engaged, KeywordMuted, PostCreated, PostDeleted, Related
from orchestrator.state.posts import InMemoryPostStore, Post
from orchestrator.state.sqlite_store import SqliteStore, StoreError
from orchestrator.state.viewers import InMemoryViewerStore
from orchestrator.state.world_state import WorldState, load_state, load_world_state, world_dataset
from orchestrator.thunder import Thunder, ThunderSettings
from phoenix.actions import ACTIONS
from phoenix.snowflake import snowflake_id
from phoenix.world.generate import generate_world
from phoenix.world.io import load_world
from phoenix.world.schema import REPLY, REPOST
from phoenix.world.spec import WorldSpec

NOW_MS = 1_785_542_400_000


def _dataset(users: tuple[int, ...] = (1, 2, 3), **tables: pa.Table) -> Dataset:
    """`users` with profile fields 0 but timezone 3, plus `tables` (schemas of TABLES)."""
    schema = TABLES["users"]
    cols = {
        f.name: pa.array(
            [u if f.name == "user_id" else 3 if f.name == "timezone" else 0 for u in users],
            f.type,
        )
        for f in schema
    }
    return Dataset({"users": pa.table(cols, schema=schema), **tables}, now_ms=NOW_MS)


def _post_id(offset_ms: int, seq: int = 0) -> int:
    return int(snowflake_id(NOW_MS - 3_600_000 + offset_ms, seq))


def _actions(*names: str) -> tuple[bool, ...]:
    return tuple(a in names for a in ACTIONS)


def _reloaded(path: Path) -> WorldState:
    """The state a restart rebuilds from the file at `path` (a new connection)."""
    store = SqliteStore(path)
    try:
        return load_state(*store.load())
    finally:
        store.close()


class _NoIndex:
    async def post_added(self, post: Post) -> None:
        pass

    def post_removed(self, post_id: int) -> None:
        pass


def _applied(events: list) -> WorldState:
    """The state the service holds after applying `events` to the dataset's stores in memory."""
    state = load_state(_dataset())
    thunder = Thunder(ThunderSettings())
    asyncio.run(Applier(state.viewers, state.posts, thunder, _NoIndex()).apply(events))
    return state


def _views(state: WorldState) -> dict:
    """What a restart must bring back, as plain values."""
    viewers = {}
    for user in state.viewers.user_ids():
        v = state.viewers.get(user)
        assert v is not None
        viewers[user] = (
            v.following, v.followers, v.blocked, v.blocked_by, v.muted, v.muted_keywords,
            v.history.post_ids.tolist(), v.history.author_ids.tolist(),
            v.history.actions.tolist(), v.history.served_ms.tolist(),
            v.history.surfaces.tolist(), v.history.dwell_s.tolist(),
        )  # fmt: skip
    posts = {p.post_id: (p, state.posts.counts(p.post_id).tolist()) for p in state.posts}
    return {"viewers": viewers, "posts": posts}


def _every_kind_of_event() -> list:
    root, reply, repost, quote, gone = (_post_id(1000 * i) for i in range(1, 6))
    return [
        PostCreated(post_id=root, author_id=2, kind=0, conversation_id=root, text="hello there",
                    is_video=True, video_duration_s=12.5, semantic_ids=(5, 6, 7, 8, 9, 10)),
        PostCreated(post_id=reply, author_id=3, kind=REPLY, parent_id=root, conversation_id=root,
                    text="a reply"),
        PostCreated(post_id=repost, author_id=1, kind=REPOST, reposted_id=root,
                    reposted_author_id=2, is_video=True, video_duration_s=12.5),
        PostCreated(post_id=quote, author_id=1, kind=0, quoted_id=root, conversation_id=quote),
        PostCreated(post_id=gone, author_id=3, kind=0, conversation_id=gone, text="oops"),
        Engaged(viewer_id=1, post_id=root, author_id=2, actions=_actions("favorite", "reply"),
                surface=2, served_ms=NOW_MS + 10, dwell_s=4.5),
        Engaged(viewer_id=1, post_id=gone, author_id=3, actions=_actions("favorite"),
                served_ms=NOW_MS + 10),
        Engaged(viewer_id=2, post_id=reply, author_id=3, actions=_actions(), served_ms=NOW_MS + 11),
        PostDeleted(post_id=gone),
        Related(relation="follow", viewer_id=1, target_id=2),
        Related(relation="follow", viewer_id=1, target_id=3),
        Related(relation="follow", viewer_id=3, target_id=2),
        Related(relation="follow", viewer_id=1, target_id=2, undo=True),
        Related(relation="follow", viewer_id=1, target_id=2),  # re-followed: now after 3
        Related(relation="block", viewer_id=2, target_id=3),
        Related(relation="block", viewer_id=3, target_id=1),
        Related(relation="block", viewer_id=3, target_id=1, undo=True),
        Related(relation="mute", viewer_id=1, target_id=3),
        KeywordMuted(viewer_id=1, keyword="spoilers"),
        KeywordMuted(viewer_id=1, keyword="bad words"),
        KeywordMuted(viewer_id=1, keyword="spoilers", remove=True),
    ]  # fmt: skip


def test_every_kind_of_event_comes_back_as_memory_held_it(tmp_path: Path) -> None:
    events = _every_kind_of_event()
    path = tmp_path / "state.sqlite"
    store = SqliteStore(path)
    store.import_dataset(_dataset())
    for event in events:  # one transaction each, as the API writes them
        store.append([event])
    store.close()
    expected = _applied(events)
    again = _reloaded(path)
    assert _views(again) == _views(expected)
    v1 = again.viewers.get(1)
    assert v1 is not None
    assert v1.following == (3, 2) and v1.muted == {3} and v1.muted_keywords == ("bad words",)
    assert v1.history.post_ids.tolist()[0] == events[6].post_id  # the later of a tie first
    gone = events[4].post_id
    assert again.posts.get(gone) is None and again.posts.is_deleted(gone)
    assert again.posts.add(events[4].post()) is False  # a late create of it still loses
    root = again.posts.get(events[0].post_id)
    assert root is not None and root.semantic_ids == (5, 6, 7, 8, 9, 10) and root.is_video
    # favorite + reply (engagement), a reply and a repost and a quote (posts), one view
    assert again.posts.counts(root.post_id).tolist() == [1, 2, 1, 1, 1]


def test_a_create_after_its_delete_loses_in_the_store_too(tmp_path: Path) -> None:
    post = PostCreated(post_id=_post_id(5), author_id=1, kind=0)
    store = SqliteStore(tmp_path / "s.sqlite")
    store.import_dataset(_dataset())
    store.append([post])
    store.append([PostDeleted(post_id=post.post_id)])
    store.append([post])  # a late copy (another replica's log)
    store.close()
    again = _reloaded(tmp_path / "s.sqlite")
    assert again.posts.get(post.post_id) is None and again.posts.is_deleted(post.post_id)


def test_a_world_round_trips_through_the_store(tmp_path: Path) -> None:
    world = load_world(
        generate_world(
            WorldSpec(seed=4, num_users=80, num_authors=15), tmp_path / "w", progress=False
        )
    )
    store = SqliteStore(tmp_path / "s.sqlite")
    store.import_dataset(world_dataset(world))
    dataset, extras = store.load()
    expected = world_dataset(world)
    for name in TABLES:
        table = expected.table(name)
        if name == "posts":  # the store reads posts in id order
            table = table.sort_by("post_id")
        assert dataset.table(name).equals(table), name
    store.close()
    assert _views(load_state(dataset, extras)) == _views(load_world_state(world))


def test_an_import_is_all_or_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    store.import_dataset(_dataset(users=(1, 2)))
    follows = pa.table({"follower_id": [3, 4], "followee_id": [4, 3]}, schema=TABLES["follows"])
    with pytest.raises(StoreError, match="users"):  # user 2 is stored already
        store.import_dataset(_dataset(users=(3, 4, 2), follows=follows))
    dataset, _ = store.load()
    assert dataset.table("users").column("user_id").to_pylist() == [1, 2]
    assert dataset.table("follows").num_rows == 0
    store.import_dataset(_dataset(users=(3, 4), follows=follows))
    assert SqliteStore(tmp_path / "s.sqlite").load()[0].table("follows").num_rows == 2


def test_the_position_is_committed_with_the_events(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    assert store.position() is None
    store.import_dataset(_dataset())
    store.append([Related(relation="follow", viewer_id=1, target_id=2)], position="17-0")
    store.append([KeywordMuted(viewer_id=1, keyword="x")])  # a local write keeps it
    assert store.position() == "17-0"
    bad = Related(relation="follow", viewer_id=1, target_id=3)
    with pytest.raises(KeyError):  # a batch that fails half-way leaves nothing behind
        store.append([bad, object()], position="18-0")  # type: ignore[list-item]
    store.close()
    again = SqliteStore(tmp_path / "s.sqlite")
    assert again.position() == "17-0"
    assert again.load()[0].table("follows").to_pylist() == [{"follower_id": 1, "followee_id": 2}]


def test_the_clock_starts_at_the_dataset_s_now_and_never_goes_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    assert store.is_empty()
    store.import_dataset(_dataset())
    assert not store.is_empty()
    assert NOW_MS <= store.now_ms() < NOW_MS + 60_000
    future = NOW_MS + 3_600_000
    store.append(
        [Engaged(viewer_id=1, post_id=5, author_id=2, actions=_actions(), served_ms=future)]
    )
    assert store.now_ms() > future  # an event from a clock ahead of ours: never before it
    assert store.load()[0].now_ms > future


def test_an_empty_store_loads_an_empty_state(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    state = load_state(*store.load())
    assert len(state.viewers) == 0 and len(state.posts) == 0
    assert isinstance(state.posts, InMemoryPostStore)
    assert isinstance(state.viewers, InMemoryViewerStore)
    assert np.isclose(state.now_ms, store.now_ms(), atol=60_000)
