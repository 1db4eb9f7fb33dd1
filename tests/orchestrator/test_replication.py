"""The shared log and its consumer against a real redis-server (tests/redis_server.py), with an
in-memory store and applier standing in for SQLite and the service's memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pytest
from redis_server import RedisServer

from orchestrator.state.dataset import TABLES, Dataset
from orchestrator.state.events import Event, PostCreated, PostDeleted, Related
from orchestrator.state.redis_journal import (
    RedisJournal,
    StreamLog,
    stream_id,
)
from orchestrator.state.replication import Replication, Replicator, bootstrap, publish
from orchestrator.state.sqlite_store import SqliteStore, StoreError
from phoenix.errors import ReplicationError


class FakeStore:
    """The replica store's contract, in memory: events in order, a position, a dataset."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.dataset: Dataset | None = None
        self._position: str | None = None
        self.imports = 0

    def append(self, events: Sequence[Event], position: str | None = None) -> None:
        self.events.extend(events)
        if position is not None:
            self._position = position

    def position(self) -> str | None:
        return self._position

    def is_empty(self) -> bool:
        return self.dataset is None and not self.events

    def import_dataset(self, dataset: Dataset, position: str | None = None) -> None:
        self.dataset = dataset
        self.imports += 1
        if position is not None:
            self._position = position


class Replica:
    """One replica: its own connection, store, memory (the applied events) and consumer."""

    def __init__(self, url: str, store: FakeStore | None = None, key: str = "test:events") -> None:
        self.log = StreamLog.connect(url, key)
        self.store = store or FakeStore()
        self.memory: list[Event] = []
        self.replicator = Replicator(self.log, self.store, self._apply, block_ms=200)
        self.journal = RedisJournal(self.log, self.replicator)

    async def _apply(self, events: Sequence[Event]) -> None:
        self.memory.extend(events)

    async def __aenter__(self) -> Replica:
        self.replicator.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.replicator.stop()
        await self.log.close()


def _post(i: int) -> PostCreated:
    return PostCreated(post_id=1000 + i, author_id=7, kind=0, text=f"post {i}")


def _dataset(num_posts: int) -> Dataset:
    posts = pa.table(
        {
            "post_id": pa.array(range(1, num_posts + 1), pa.int64()),
            "author_id": pa.array([i % 5 + 1 for i in range(num_posts)], pa.int64()),
            "kind": pa.array([0] * num_posts, pa.int8()),
            "parent_id": pa.array([0] * num_posts, pa.int64()),
            "reposted_id": pa.array([0] * num_posts, pa.int64()),
            "conversation_id": pa.array(range(1, num_posts + 1), pa.int64()),
            "is_video": pa.array([i % 3 == 0 for i in range(num_posts)]),
            "video_duration_s": pa.array([1.5] * num_posts, pa.float32()),
            "text": pa.array([f"text {i}" for i in range(num_posts)]),
            "semantic_ids": pa.array(
                [[i % 7, 1, 2, 3, 4, 5] for i in range(num_posts)], TABLES["posts"].field(9).type
            ),
            "quoted_id": pa.array([0] * num_posts, pa.int64()),
        },
        schema=TABLES["posts"],
    )
    users = TABLES["users"].empty_table()
    users = pa.Table.from_pydict(
        {f.name: pa.array([u] * 1 if f.name == "user_id" else [0], f.type)
         for f in TABLES["users"] for u in [1]},
        schema=TABLES["users"],
    )  # fmt: skip
    follows = pa.Table.from_pydict(
        {"follower_id": [1, 2], "followee_id": [2, 3]}, schema=TABLES["follows"]
    )
    return Dataset({"posts": posts, "users": users, "follows": follows}, now_ms=1_700_000_000_000)


def test_a_write_is_applied_on_the_writer_before_record_returns_and_on_the_other_replica(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> float:
        async with Replica(redis_server.url) as a, Replica(redis_server.url) as b:
            await a.journal.record([_post(1)])
            assert a.memory == [_post(1)]  # read-your-writes: applied before record returned
            assert a.store.events == [_post(1)]
            started = time.monotonic()
            while _post(1) not in b.memory:
                assert time.monotonic() - started < 1.0, "replica B did not see the post in 1 s"
                await asyncio.sleep(0.005)
            assert b.store.position() == a.store.position()
            return time.monotonic() - started

    asyncio.run(scenario())


def test_concurrent_writes_from_two_replicas_are_applied_in_the_same_order_everywhere(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        async with Replica(redis_server.url) as a, Replica(redis_server.url) as b:
            await asyncio.gather(
                *(a.journal.record([_post(i)]) for i in range(0, 60, 2)),
                *(b.journal.record([_post(i), PostDeleted(post_id=1000 + i)])
                  for i in range(1, 60, 2)),
            )  # fmt: skip
            await b.replicator.catch_up(5)
            await a.replicator.catch_up(5)
            assert len(a.memory) == 30 + 2 * 30
            assert a.memory == b.memory
            assert a.store.events == a.memory
            # a record call's events stay together, in the order given
            for i, event in enumerate(b.memory):
                if isinstance(event, PostDeleted):
                    assert b.memory[i - 1] == PostCreated.model_validate(
                        _post(event.post_id - 1000).model_dump()
                    )

    asyncio.run(scenario())


def test_a_stopped_replica_resumes_after_its_position_without_applying_twice(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        store_b = FakeStore()
        async with Replica(redis_server.url) as a:
            async with Replica(redis_server.url, store_b) as b:
                await a.journal.record([_post(1)])
                await b.replicator.catch_up(5)
            stopped_at = store_b.position()
            for i in range(2, 6):
                await a.journal.record([_post(i), Related(relation="follow", viewer_id=i,
                                                          target_id=1)])  # fmt: skip
            await a.journal.record([PostDeleted(post_id=1001)])
            async with Replica(redis_server.url, store_b) as b2:
                assert b2.replicator.position == stopped_at
                await b2.replicator.catch_up(5)
                assert store_b.events == a.store.events  # nothing twice, nothing missing
                assert b2.memory == a.store.events[1:]  # memory rebuilt from the store + the rest

    asyncio.run(scenario())


def test_acknowledged_writes_survive_a_kill_of_redis_and_the_consumer_reconnects(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        async with Replica(redis_server.url) as a:
            for i in range(5):
                await a.journal.record([_post(i)])
            redis_server.kill()
            await asyncio.sleep(0.3)  # the consumer meets a dead Redis and retries
            redis_server.start()
            await a.journal.record([_post(5)])
            assert a.memory == [_post(i) for i in range(6)]
        async with Replica(redis_server.url) as fresh:
            await fresh.replicator.catch_up(5)
            assert fresh.memory == [_post(i) for i in range(6)]

    asyncio.run(scenario())


def test_the_dataset_is_published_once_even_when_replicas_race_and_every_replica_imports_it(
    redis_server: RedisServer,
) -> None:
    dataset = _dataset(25)

    async def scenario() -> None:
        logs = [StreamLog.connect(redis_server.url, "test:events") for _ in range(4)]
        stores = [FakeStore() for _ in logs]
        try:
            published = await asyncio.gather(
                *(log.publish_dataset(dataset, chunk_rows=10) for log in logs)
            )
            assert sorted(published) == [False, False, False, True]
            assert await logs[0].client.xlen("test:events") == 3 + 1 + 1  # 25 posts in 10s
            pairs = zip(logs, stores, strict=True)
            await asyncio.gather(*(bootstrap(log, store, dataset) for log, store in pairs))
            for store in stores:
                assert store.imports == 1
                assert store.dataset is not None
                assert store.dataset.now_ms is not None and dataset.now_ms is not None
                # the dataset's "now" advanced by the time since Redis took it (under a minute)
                assert 0 <= store.dataset.now_ms - dataset.now_ms < 60_000
                for name in ("posts", "users", "follows"):
                    assert store.dataset.table(name).equals(dataset.table(name))
                assert store.dataset.table("engagements").num_rows == 0
                assert store.position() == stores[0].position()
            # a write after the dataset, then a restart: no second import, the write replayed
            async with Replica(redis_server.url, stores[1]) as a:
                await a.journal.record([_post(1)])
            await bootstrap(logs[1], stores[1], dataset)
            assert stores[1].imports == 1
            # a store holding data that did not come from the log is refused
            foreign = FakeStore()
            foreign.append([_post(9)])
            with pytest.raises(ReplicationError, match="own empty data directory"):
                await bootstrap(logs[2], foreign)
            # a fresh replica imports the dataset and replays the write after it
            late = FakeStore()
            await bootstrap(logs[2], late)
            assert late.imports == 1 and late.position() == stores[0].position()
            async with Replica(redis_server.url, late) as c:
                await c.replicator.catch_up(5)
                assert c.memory == [_post(1)]
        finally:
            for log in logs:
                await log.close()

    asyncio.run(scenario())


def test_a_replica_without_a_dataset_waits_for_one_and_says_what_to_do(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        log = StreamLog.connect(redis_server.url, "test:events")
        other = StreamLog.connect(redis_server.url, "test:events")
        try:
            with pytest.raises(ReplicationError, match="--world"):
                await log.read_dataset(wait_s=0.2, poll_s=0.05)
            store = FakeStore()
            waiting = asyncio.create_task(bootstrap(log, store, wait_s=5))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            assert await other.publish_dataset(_dataset(3))
            await asyncio.wait_for(waiting, 5)
            assert store.dataset is not None and store.dataset.table("posts").num_rows == 3
        finally:
            await log.close()
            await other.close()

    asyncio.run(scenario())


def test_a_stream_that_starts_with_writes_has_no_dataset_and_is_replayed_from_the_start(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        async with Replica(redis_server.url) as a:
            await a.journal.record([_post(1)])
            assert not await a.log.publish_dataset(_dataset(2))  # only into an empty stream
            store = FakeStore()
            await bootstrap(a.log, store, _dataset(2))
            assert store.dataset is None and store.position() is None
            async with Replica(redis_server.url, store) as b:
                await b.replicator.catch_up(5)
                assert b.memory == [_post(1)]

    asyncio.run(scenario())


def test_a_foreign_entry_stops_the_consumer_and_fails_waiting_writers_naming_the_entry(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        async with Replica(redis_server.url) as a:
            bad = (await a.log.client.xadd("test:events", {b"events": b'[{"type": 1}]'})).decode()
            with pytest.raises(ReplicationError, match=f"stream entry {bad}"):
                await a.journal.record([_post(1)])
            assert a.memory == []

    asyncio.run(scenario())


def test_a_write_nobody_applies_times_out_with_a_replication_error(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        log = StreamLog.connect(redis_server.url, "test:events")
        try:
            replicator = Replicator(log, FakeStore(), _ignore, wait_timeout_s=0.2)  # not started
            with pytest.raises(ReplicationError, match="not applied here within"):
                await RedisJournal(log, replicator).record([_post(1)])
            assert await log.client.xlen("test:events") == 1  # durable in Redis all the same
        finally:
            await log.close()

    asyncio.run(scenario())


async def _ignore(events: Sequence[Event]) -> None:
    return None


def test_replicas_get_different_worker_numbers_that_wrap_at_the_bit_width(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> list[int]:
        log = StreamLog.connect(redis_server.url, "test:events")
        try:
            return [await log.worker_number(bits=2) for _ in range(6)]
        finally:
            await log.close()

    numbers = asyncio.run(scenario())
    assert sorted(numbers[:4]) == [0, 1, 2, 3]  # four replicas, four different numbers
    assert numbers[4:] == numbers[:2]  # then they come round again


def test_stream_ids_order_like_the_stream() -> None:
    assert stream_id("5-0") < stream_id("5-1") < stream_id("10-0")
    assert stream_id(b"0") == (0, 0)
    with pytest.raises(ReplicationError, match="not a stream entry id"):
        stream_id("x-1")


def test_the_sqlite_store_records_the_dataset_and_its_position_all_or_nothing(
    tmp_path: Path,
) -> None:
    store = SqliteStore.in_dir(tmp_path / "data")
    try:
        dataset = _dataset(4)
        store.import_dataset(dataset, position="7-3")
        assert store.position() == "7-3"
        with pytest.raises(StoreError):  # the same users again: refused, position unchanged
            store.import_dataset(dataset, position="9-0")
        assert store.position() == "7-3"
        store.append([_post(1)], position="12-0")
        assert store.position() == "12-0"
        loaded, _ = store.load()
        assert sorted(loaded.table("posts").column("post_id").to_pylist()) == [1, 2, 3, 4, 1001]
    finally:
        store.close()


def test_a_replica_ahead_of_the_stream_refuses_to_start(redis_server: RedisServer) -> None:
    """Redis lost writes this replica applied: entries added now would get ids at or below its
    position and be skipped, so it must not start."""

    async def scenario() -> None:
        async with Replica(redis_server.url) as a:
            await a.journal.record([_post(1)])
        ahead = FakeStore()
        ahead.append([], position="99999999999999-0")
        for store in (ahead, FakeStore()):
            replication = Replication(StreamLog.connect(redis_server.url, "test:events"), store)
            replication.journal(_Memory())
            try:
                if store is ahead:
                    with pytest.raises(ReplicationError, match="Redis lost writes"):
                        await replication.start()
                else:  # a fresh replica starts and catches up
                    await replication.start()
                    assert replication.ready() and store.events == [_post(1)]
            finally:
                await replication.stop()

    asyncio.run(scenario())


class _Memory:
    async def apply(self, events: Sequence[Event]) -> None:
        return None


def test_publish_puts_a_dataset_into_an_empty_stream_only(redis_server: RedisServer) -> None:
    assert publish(redis_server.url, _dataset(12), "test:events")
    assert not publish(redis_server.url, _dataset(3), "test:events")

    async def shared() -> Dataset:
        log = StreamLog.connect(redis_server.url, "test:events")
        try:
            found = await log.read_dataset(wait_s=1)
        finally:
            await log.close()
        assert found is not None
        return found[0]

    assert asyncio.run(shared()).table("posts").num_rows == 12
