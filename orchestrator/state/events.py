"""Every change to the service's state as one event: the unit that is made durable (SQLite), shared
between replicas (a Redis Stream) and applied to the in-memory structures (stores, Thunder, the
post index).

A write is accepted in three steps: the service checks it against what it knows (the author
exists, the parent is not deleted...), records the event durably through a `Journal`, and only then
answers; applying an event to memory is the same code whether the event was written here or read
from another replica. Events carry every fact they need (a post's reposted author, an engagement's
serve time), so applying one never depends on the clock or on what the replica holds.

Events travel as JSON (`EVENT.dump_json` / `EVENT.validate_json`), never pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from orchestrator.state.posts import Post
from orchestrator.state.viewers import Engagement
from phoenix.actions import NUM_ACTIONS


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PostCreated(_Event):
    """A post stored with everything `Post` holds."""

    type: Literal["post_created"] = "post_created"
    post_id: int
    author_id: int
    kind: int
    parent_id: int = 0
    reposted_id: int = 0
    conversation_id: int = 0
    is_video: bool = False
    video_duration_s: float = 0.0
    text: str = ""
    reposted_author_id: int = 0
    quoted_id: int = 0
    semantic_ids: tuple[int, ...] = ()

    @classmethod
    def of(cls, post: Post) -> PostCreated:
        return cls(
            post_id=post.post_id,
            author_id=post.author_id,
            kind=post.kind,
            parent_id=post.parent_id,
            reposted_id=post.reposted_id,
            conversation_id=post.conversation_id,
            is_video=post.is_video,
            video_duration_s=post.video_duration_s,
            text=post.text,
            reposted_author_id=post.reposted_author_id,
            quoted_id=post.quoted_id,
            semantic_ids=post.semantic_ids,
        )

    def post(self) -> Post:
        return Post(**self.model_dump(exclude={"type"}))


class PostDeleted(_Event):
    """A post forgotten for good: a create of the same id that arrives later loses."""

    type: Literal["post_deleted"] = "post_deleted"
    post_id: int


class Engaged(_Event):
    """A served impression and the viewer's actions on it (a bool per `phoenix.actions.ACTIONS`):
    the viewer's newest history entry; the post's counts gain a view and each counted action."""

    type: Literal["engaged"] = "engaged"
    viewer_id: int
    post_id: int
    author_id: int
    actions: tuple[bool, ...] = Field(min_length=NUM_ACTIONS, max_length=NUM_ACTIONS)
    surface: int = 0
    served_ms: int
    dwell_s: float = 0.0

    @classmethod
    def of(cls, viewer_id: int, engagement: Engagement) -> Engaged:
        return cls(
            viewer_id=viewer_id,
            post_id=engagement.post_id,
            author_id=engagement.author_id,
            actions=engagement.actions,
            surface=engagement.surface,
            served_ms=engagement.served_ms,
            dwell_s=engagement.dwell_s,
        )

    def engagement(self) -> Engagement:
        return Engagement(
            post_id=self.post_id,
            author_id=self.author_id,
            actions=self.actions,
            surface=self.surface,
            served_ms=self.served_ms,
            dwell_s=self.dwell_s,
        )


class Related(_Event):
    """`viewer_id` follows, blocks or mutes `target_id` (or undoes it)."""

    type: Literal["related"] = "related"
    relation: Literal["follow", "block", "mute"]
    viewer_id: int
    target_id: int
    undo: bool = False


class KeywordMuted(_Event):
    """A muted keyword added to (or removed from) a viewer's list."""

    type: Literal["keyword_muted"] = "keyword_muted"
    viewer_id: int
    keyword: str
    remove: bool = False


Event = Annotated[
    PostCreated | PostDeleted | Engaged | Related | KeywordMuted,
    Field(discriminator="type"),
]

#: JSON (de)serialisation of any event: `EVENT.dump_json(e)`, `EVENT.validate_json(raw)`.
EVENT: TypeAdapter[Event] = TypeAdapter(Event)


class DatasetChunk(_Event):
    """A slice of the initial dataset (`orchestrator.state.dataset.Dataset`) in the shared log:
    rows of one table, carried beside this header as Arrow IPC bytes. Not an `Event`: a replica
    imports the whole dataset into its store in one step (`import_dataset`) before it applies
    any event, instead of applying it row by row. Chunk `part` of `parts` (0-based); every chunk
    repeats the dataset's `now_ms`."""

    type: Literal["dataset_chunk"] = "dataset_chunk"
    table: str
    rows: int = Field(ge=0)
    part: int = Field(ge=0)
    parts: int = Field(ge=1)
    now_ms: int | None = None


class Journal(Protocol):
    """Where accepted writes go. `record` returns once the event is durable (on disk, or in the
    shared log) and applied to this replica's memory, so the caller can answer the client."""

    async def record(self, events: Sequence[Event]) -> None: ...
