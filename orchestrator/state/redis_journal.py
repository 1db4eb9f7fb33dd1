"""The shared log of several orchestrator replicas: a Redis Stream of every accepted write.

Each stream entry is either one `Journal.record` call (field `events`: a JSON array of
`events.EVENT`s) or one chunk of the initial dataset (field `dataset`: a `DatasetChunk` header,
field `arrow`: that chunk's rows as Arrow IPC bytes). The dataset, when there is one, is the start
of the stream: it is published in one MULTI/EXEC transaction and only into an empty stream, so a
replica never sees half of it and two replicas started together publish it once.

A write is durable once Redis has it: run Redis with `appendonly yes` and `appendfsync always`
(nothing acknowledged is lost when Redis dies) or `everysec` (at most about a second is). Every
replica applies the stream in order (`orchestrator.state.replication`), its own writes included,
so `RedisJournal.record` returns only after this replica's consumer has applied the entry: the
writer reads its own write at once.

Entry ids ("<ms>-<seq>") increase along the stream; a replica keeps the id of the last entry it
applied (its `position`) and resumes after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import redis.asyncio as aioredis
from pydantic import TypeAdapter, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from orchestrator.state.dataset import TABLES, Dataset
from orchestrator.state.events import DatasetChunk, Event
from phoenix.errors import ConfigError, ReplicationError

#: The stream's key unless configured otherwise.
DEFAULT_STREAM = "phoenix:events"
#: Rows per dataset chunk: a chunk of posts is a few hundred kB, well under Redis's bulk limit.
CHUNK_ROWS = 10_000

_EVENTS: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


def stream_id(entry_id: str | bytes) -> tuple[int, int]:
    """A stream entry id as (ms, seq), which orders like the stream."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        raise ReplicationError(f"not a stream entry id: {text!r}") from None


@dataclass(frozen=True)
class Entry:
    """One entry read from the stream: `events` (a recorded write) or a dataset chunk."""

    id: str
    events: tuple[Event, ...] = ()
    chunk: DatasetChunk | None = None
    rows: pa.Table | None = None


class StreamLog:
    """The stream (key `key`) on one Redis: append writes, publish and read the initial dataset,
    read entries after an id, and hand out replica worker numbers."""

    def __init__(self, client: aioredis.Redis, key: str = DEFAULT_STREAM) -> None:
        self.client = client
        self.key = key

    @classmethod
    def connect(cls, url: str, key: str = DEFAULT_STREAM) -> StreamLog:
        """A log on the Redis at `url` (`redis://HOST:PORT/DB`); connects on first use."""
        try:
            client = aioredis.Redis.from_url(url)
        except ValueError as exc:
            raise ConfigError(f"redis_url: {exc}") from None
        return cls(client, key)

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(
        cls, url: str, key: str = DEFAULT_STREAM, *, where: str | None = None
    ) -> AsyncIterator[StreamLog]:
        """A log for one exchange, closed afterwards; Redis unreachable or timing out is a
        `ReplicationError` naming `where` (default: the url)."""
        shared = cls.connect(url, key)
        try:
            yield shared
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise ReplicationError(f"{where or url}: {exc}") from exc
        finally:
            await shared.close()

    async def close(self) -> None:
        await self.client.aclose()

    async def append(self, events: Sequence[Event]) -> str:
        """Add one entry holding `events`; its id once Redis has it."""
        try:
            entry_id = await self.client.xadd(
                self.key, {b"events": _EVENTS.dump_json(list(events))}
            )
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise ReplicationError(f"Redis stream {self.key!r} cannot be written: {exc}") from exc
        return entry_id.decode()

    async def read(
        self, after: str, *, count: int = 500, block_ms: int | None = 1000
    ) -> list[Entry]:
        """Up to `count` entries after id `after` ("0": from the start), waiting up to
        `block_ms` for the first one (None: not at all; an empty list when none came)."""
        reply = await self.client.xread({self.key: after}, count=count, block=block_ms)
        if not reply:
            return []
        return [decode(entry_id, fields) for entry_id, fields in reply[0][1]]

    async def last_id(self) -> str | None:
        """The id of the newest entry the stream ever took (None: no stream). New entries get
        larger ids; a replica ahead of it applied writes that Redis has since lost."""
        if not await self.client.exists(self.key):
            return None
        info = await self.client.xinfo_stream(self.key)
        last = info["last-generated-id"]
        return last.decode() if isinstance(last, bytes) else str(last)

    async def is_empty(self) -> bool:
        return await self.client.xlen(self.key) == 0

    async def publish_dataset(self, dataset: Dataset, chunk_rows: int = CHUNK_ROWS) -> bool:
        """Put `dataset` at the start of the stream, in one transaction, if the stream is still
        empty; False when it is not (another replica published first, or writes exist)."""
        chunks = list(_chunks(dataset, chunk_rows))
        async with self.client.pipeline(transaction=True) as pipe:
            await pipe.watch(self.key)
            if await pipe.xlen(self.key):
                await pipe.unwatch()
                return False
            pipe.multi()
            for part, (table, rows) in enumerate(chunks):
                header = DatasetChunk(
                    table=table, rows=rows.num_rows, part=part, parts=len(chunks),
                    now_ms=dataset.now_ms,
                )  # fmt: skip
                pipe.xadd(self.key, {b"dataset": header.model_dump_json(), b"arrow": _ipc(rows)})
            try:
                await pipe.execute()
            except WatchError:
                return False
        return True

    async def read_dataset(
        self, *, wait_s: float | None = None, poll_s: float = 0.5
    ) -> tuple[Dataset, str] | None:
        """The dataset at the start of the stream and the id of its last chunk; None when the
        stream starts with writes instead (no dataset). The dataset's `now_ms` is advanced by the
        time since Redis took it (the entry id's milliseconds), so every replica's clock, however
        late it imports, reads the same time as the first's (wall clocks in sync assumed).
        While the stream is empty, waits (`wait_s` at most; None: for ever) for another replica
        or `phoenix load` to publish."""
        loop = asyncio.get_running_loop()
        deadline = None if wait_s is None else loop.time() + wait_s
        while await self.is_empty():
            if deadline is not None and loop.time() >= deadline:
                raise ReplicationError(
                    f"no dataset in Redis stream {self.key!r} after {wait_s:g}s: start a replica "
                    "with --world or run `phoenix load --redis`"
                )
            await asyncio.sleep(poll_s)
        tables: dict[str, list[pa.Table]] = {}
        now_ms: int | None = None
        after = "0"
        while True:
            entries = await self.read(after, count=16, block_ms=None)
            if not entries:
                raise ReplicationError(f"Redis stream {self.key!r}: the dataset ends early")
            for entry in entries:
                if entry.chunk is None:
                    if after == "0":
                        return None  # the stream starts with writes: no dataset
                    raise ReplicationError(f"Redis stream {self.key!r}: the dataset ends early")
                assert entry.rows is not None
                tables.setdefault(entry.chunk.table, []).append(entry.rows)
                now_ms = entry.chunk.now_ms
                after = entry.id
                if entry.chunk.part == entry.chunk.parts - 1:
                    if now_ms is not None:  # its "now" has advanced since it was published
                        now_ms += max(0, int(time.time() * 1000) - stream_id(entry.id)[0])
                    dataset = Dataset(
                        {name: pa.concat_tables(parts) for name, parts in tables.items()},
                        now_ms=now_ms,
                    )
                    return dataset, entry.id

    async def worker_number(self, bits: int) -> int:
        """A number for a starting replica, different from the last 2**bits - 1 handed out (the
        low bits of its post ids, so replicas never make the same id)."""
        return int(await self.client.incr(f"{self.key}:workers")) % (1 << bits)


def decode(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    """One stream entry; a `ReplicationError` naming the entry when it is not one of ours."""
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    try:
        if b"events" in fields:
            return Entry(eid, events=tuple(_EVENTS.validate_json(fields[b"events"])))
        if b"dataset" in fields and b"arrow" in fields:
            chunk = DatasetChunk.model_validate_json(fields[b"dataset"])
            rows = pa.ipc.open_stream(fields[b"arrow"]).read_all()
            if chunk.table not in TABLES or not rows.schema.equals(TABLES[chunk.table]):
                raise ReplicationError(
                    f"stream entry {eid}: table {chunk.table!r} does not have the dataset's schema"
                )
            return Entry(eid, chunk=chunk, rows=rows)
    except (ValidationError, pa.ArrowInvalid) as exc:
        raise ReplicationError(f"stream entry {eid}: {exc}") from None
    raise ReplicationError(f"stream entry {eid}: neither events nor a dataset chunk")


def _chunks(dataset: Dataset, chunk_rows: int) -> list[tuple[str, pa.Table]]:
    """Every table's rows in slices of at most `chunk_rows` (one empty users slice at least,
    so that even an empty dataset marks the stream as loaded)."""
    out = [
        (name, table.slice(start, chunk_rows))
        for name in TABLES
        if (table := dataset.table(name)).num_rows
        for start in range(0, table.num_rows, chunk_rows)
    ]
    return out or [("users", dataset.table("users"))]


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class Applied(Protocol):
    """What `RedisJournal` waits on: this replica's consumer (`replication.Replicator`)."""

    async def wait_applied(self, entry_id: str) -> None: ...


class RedisJournal:
    """`events.Journal` of a replica: the write goes into the shared stream, and `record` returns
    once this replica's consumer has applied it (to its store and its memory)."""

    def __init__(self, log: StreamLog, applied: Applied) -> None:
        self.log = log
        self.applied = applied

    async def record(self, events: Sequence[Event]) -> None:
        if not events:
            return
        await self.applied.wait_applied(await self.log.append(events))
