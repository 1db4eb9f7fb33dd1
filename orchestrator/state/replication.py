"""A replica's consumer of the shared log (`orchestrator.state.redis_journal`): every write of
every replica, in stream order, into this replica's own store and memory.

For each batch read from the stream the consumer first appends the events to the local store
with the id of the batch's last entry as the store's `position` (one transaction: the store never
holds an event without knowing it did), then applies them to memory with the same applier local
writes use. A replica that stops (or is killed) restarts from its store and resumes after its
`position`; a replica with an empty store first imports the stream's dataset (`bootstrap`).

Writers on this replica wait (`wait_applied`) until the consumer has passed their entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orchestrator.state.dataset import Dataset
from orchestrator.state.events import Event
from orchestrator.state.redis_journal import (
    DEFAULT_STREAM,
    RedisJournal,
    StreamLog,
    stream_id,
)
from phoenix.errors import ReplicationError

log = logging.getLogger(__name__)

#: Applies events to this replica's memory (stores, Thunder, the post index).
Apply = Callable[[Sequence[Event]], Awaitable[None]]


class ReplicaStore(Protocol):
    """The replica's durable store (`orchestrator.state.sqlite_store.SqliteStore`)."""

    def append(self, events: Sequence[Event], position: str | None = None) -> None: ...

    def position(self) -> str | None: ...

    def is_empty(self) -> bool: ...

    def import_dataset(self, dataset: Dataset, position: str | None = None) -> None: ...


async def bootstrap(
    log_: StreamLog,
    store: ReplicaStore,
    dataset: Dataset | None = None,
    *,
    wait_s: float | None = None,
) -> None:
    """Make an empty store start where the stream starts: publish `dataset` when the stream is
    still empty (the first replica to try wins; the others' copy is dropped), then import the
    stream's dataset into the store with the id of its last chunk as the position (one
    transaction). A store with a position resumes after it and is left as it is."""
    if store.position() is not None:
        return
    if not store.is_empty():
        raise ReplicationError(
            "the data directory holds data that did not come from the shared log (written "
            "without --redis): give each replica its own empty data directory"
        )
    if dataset is not None and await log_.publish_dataset(dataset):
        log.info("published the dataset into Redis stream %r", log_.key)
    found = await log_.read_dataset(wait_s=wait_s)
    if found is None:
        return  # the stream starts with writes: replay them all
    shared, last_id = found
    log.info(
        "importing the shared dataset (%s)",
        ", ".join(f"{name}: {t.num_rows}" for name, t in shared.tables.items()),
    )
    store.import_dataset(shared, position=last_id)


def publish(url: str, dataset: Dataset, key: str = DEFAULT_STREAM) -> bool:
    """Put `dataset` at the start of the stream `key` on the Redis at `url` for replicas to
    import (`phoenix load --redis`); False when the stream is not empty (nothing is added)."""

    async def run() -> bool:
        async with StreamLog.opened(url, key) as shared:
            return await shared.publish_dataset(dataset)

    return asyncio.run(run())


class Replicator:
    """The consumer task of one replica (`start` / `stop`), and the position writers wait on."""

    def __init__(
        self,
        log_: StreamLog,
        store: ReplicaStore,
        apply: Apply,
        *,
        batch: int = 500,
        block_ms: int = 1000,
        retry_s: float = 0.5,
        wait_timeout_s: float = 10.0,
    ) -> None:
        self.log = log_
        self.store = store
        self.apply = apply
        self.batch = batch
        self.block_ms = block_ms
        self.retry_s = retry_s
        self.wait_timeout_s = wait_timeout_s
        self.position = store.position() or "0"
        self._applied = stream_id(self.position)
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._caught_up = False
        self._stopping = False
        self._stepping = asyncio.Lock()  # `catch_up` and the task never read the same batch

    @property
    def running(self) -> bool:
        """The consumer task runs (it stops on an entry it cannot apply)."""
        return self._task is not None and not self._task.done()

    @property
    def caught_up(self) -> bool:
        """Whether the last read found nothing newer (the replica is not replaying a backlog)."""
        return self._caught_up

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="phoenix-replication")

    async def stop(self) -> None:
        """Let the task finish its current read (at most `block_ms`), then end it. Cancelling a
        blocked XREAD instead can leave redis-py's asyncio connection waiting on a reply
        (seen with redis-py 8.2)."""
        if self._task is None:
            return
        self._stopping = True
        task, self._task = self._task, None
        await asyncio.wait({task}, timeout=self.block_ms / 1000 + 2.0)
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):  # a failure was logged when it happened
            await task

    async def catch_up(self, timeout_s: float | None = None) -> None:
        """Apply everything in the stream now (before serving, after a restart)."""

        async def drain() -> None:
            while await self.step(block_ms=None):
                pass

        await asyncio.wait_for(drain(), timeout_s)

    async def run(self) -> None:
        """Read and apply for ever; Redis going away is retried, anything else stops the
        consumer (and fails the writers waiting on it: the replica must not serve stale)."""
        try:
            while not self._stopping:
                try:
                    await self.step(self.block_ms)
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    log.warning("Redis stream %r: %s; retrying", self.log.key, exc)
                    await asyncio.sleep(self.retry_s)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.exception("replication stopped at %s", self.position)
            self._failure = exc
            async with self._advanced:
                self._advanced.notify_all()
            raise

    async def step(self, block_ms: int | None) -> int:
        """Read one batch after the position and apply it; how many entries it held."""
        async with self._stepping:
            return await self._step(block_ms)

    async def _step(self, block_ms: int | None) -> int:
        entries = await self.log.read(self.position, count=self.batch, block_ms=block_ms)
        self._caught_up = len(entries) < self.batch
        if not entries:
            return 0
        events: list[Event] = []
        for entry in entries:
            if entry.chunk is not None:
                raise ReplicationError(
                    f"stream entry {entry.id}: a dataset chunk after the dataset "
                    "(a dataset is published only into an empty stream)"
                )
            events.extend(entry.events)
        last = entries[-1].id
        await asyncio.to_thread(self.store.append, events, last)  # the fsync off the loop
        await self.apply(events)
        self.position = last
        async with self._advanced:
            self._applied = stream_id(last)
            self._advanced.notify_all()
        return len(entries)

    async def wait_applied(self, entry_id: str) -> None:
        """Return once the entry `entry_id` is applied here; a `ReplicationError` when the
        consumer stopped or did not get there within `wait_timeout_s`."""
        target = stream_id(entry_id)

        async def reached() -> None:
            async with self._advanced:
                await self._advanced.wait_for(
                    lambda: self._applied >= target or self._failure is not None
                )

        try:
            await asyncio.wait_for(reached(), self.wait_timeout_s)
        except asyncio.TimeoutError:
            raise ReplicationError(
                f"write {entry_id} is in Redis but not applied here within "
                f"{self.wait_timeout_s:g}s (replication at {self.position})"
            ) from None
        if self._applied < target:
            raise ReplicationError(f"replication stopped before write {entry_id}: {self._failure}")


class Replication:
    """One replica's part in the shared log, as the service uses it: the journal its writes go
    through (`journal`, given the service's applier) and the consumer that applies every
    replica's writes, brought up to date before the service serves (`start`)."""

    def __init__(self, log_: StreamLog, store: ReplicaStore, *, block_ms: int = 1000) -> None:
        self.log = log_
        self.store = store
        self.block_ms = block_ms
        self.replicator: Replicator | None = None

    def journal(self, applier: Applier) -> RedisJournal:
        self.replicator = Replicator(self.log, self.store, applier.apply, block_ms=self.block_ms)
        return RedisJournal(self.log, self.replicator)

    async def start(self) -> None:
        """Check the stream still holds what this replica applied, catch up, then consume."""
        assert self.replicator is not None, "journal() first"
        started = self.replicator.position
        last = await self.log.last_id()
        if stream_id(started) > stream_id(last or "0"):
            raise ReplicationError(
                f"this replica applied the shared log up to {started} but Redis stream "
                f"{self.log.key!r} ends at {last}: Redis lost writes (run it with appendonly "
                "yes); new writes would be skipped here, so this replica does not start"
            )
        await self.replicator.catch_up()
        log.info(
            "replication: caught up from %s to %s (Redis stream %r)",
            started, self.replicator.position, self.log.key,
        )  # fmt: skip
        self.replicator.start()

    async def stop(self) -> None:
        if self.replicator is not None:
            await self.replicator.stop()
        await self.log.close()

    def ready(self) -> bool:
        return self.replicator is not None and self.replicator.running


class Applier(Protocol):
    """What applies events to memory (`orchestrator.applier.Applier`)."""

    async def apply(self, events: Sequence[Event]) -> None: ...
