"""The write rules: check a request against what this replica knows, turn it into an event, and
record the event through the journal (durable and applied when `record` returns).

Nothing here changes memory directly: `orchestrator.applier.Applier` does, for events written
here and events read from other replicas alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from orchestrator.state.events import (
    Engaged,
    Journal,
    KeywordMuted,
    PostCreated,
    PostDeleted,
    Related,
)
from orchestrator.state.posts import InMemoryPostStore, Post
from orchestrator.state.viewers import Engagement, InMemoryViewerStore
from phoenix.errors import Conflict, NotFound
from phoenix.snowflake import SnowflakeIds
from phoenix.world.schema import ORIGINAL, REPLY, REPOST


class Clock:
    """The service's time in Unix ms: `start_ms` at construction, advancing with the wall
    clock (monotonic, so a wall-clock step back never moves it back)."""

    def __init__(self, start_ms: int) -> None:
        self._start_ms = start_ms
        self._t0 = time.monotonic()

    def now_ms(self) -> int:
        return self._start_ms + int((time.monotonic() - self._t0) * 1000)


@dataclass(frozen=True)
class NewPost:
    author_id: int
    text: str = ""
    parent_id: int = 0
    reposted_id: int = 0
    is_video: bool = False
    video_duration_s: float = 0.0
    quoted_id: int = 0


class Writes:
    """Every kind of write the API takes; each returns once the write is durable and applied."""

    def __init__(
        self,
        viewers: InMemoryViewerStore,
        posts: InMemoryPostStore,
        clock: Clock,
        journal: Journal,
        ids: SnowflakeIds | None = None,
    ) -> None:
        """`ids` makes post ids (default: worker 0; replicas sharing a log each need their own
        worker number)."""
        self.viewers = viewers
        self.posts = posts
        self.clock = clock
        self.journal = journal
        self.ids = ids or SnowflakeIds()

    async def create_post(self, new: NewPost) -> Post:
        """A post with a snowflake id from the service clock, linked to what it answers or
        reposts (a reply joins its parent's thread; a repost carries its original's video)."""
        self._require_user("author_id", new.author_id)
        kind, conversation, reposted_author = ORIGINAL, 0, 0
        if new.parent_id and new.reposted_id:
            raise Conflict("a post is a reply (parent_id) or a repost (reposted_id), not both")
        is_video, duration = new.is_video, new.video_duration_s
        if new.parent_id:
            parent = self._require_post("parent_id", new.parent_id)
            kind, conversation = REPLY, parent.thread_id
        elif new.reposted_id:
            original = self._require_post("reposted_id", new.reposted_id)
            if original.is_repost:
                raise Conflict("reposted_id: a repost of a repost; repost the original instead")
            kind = REPOST
            is_video, duration = original.is_video, original.video_duration_s
            reposted_author = original.author_id
        if new.quoted_id:
            self._require_post("quoted_id", new.quoted_id)
        post_id = self.ids.next_id(self.clock.now_ms())
        post = Post(
            post_id=post_id,
            author_id=new.author_id,
            kind=kind,
            parent_id=new.parent_id,
            reposted_id=new.reposted_id,
            conversation_id=conversation or post_id,
            is_video=is_video,
            video_duration_s=duration if is_video else 0.0,
            text=new.text,
            reposted_author_id=reposted_author,
            quoted_id=new.quoted_id,
        )
        await self.journal.record([PostCreated.of(post)])
        return post

    async def delete_post(self, post_id: int) -> Post:
        """Delete a stored post for good (an unknown or already deleted id is not found)."""
        post = self._require_post("post_id", post_id)
        await self.journal.record([PostDeleted(post_id=post_id)])
        return post

    async def engage(
        self,
        viewer_id: int,
        post_id: int,
        actions: tuple[bool, ...],
        *,
        dwell_s: float = 0.0,
        surface: int = 0,
    ) -> Engagement:
        """An impression served now with the viewer's actions: the viewer's newest history entry
        and one more view, plus one per counted action, on the post's counts."""
        self._require_user("viewer_id", viewer_id)
        post = self._require_post("post_id", post_id)
        engagement = Engagement(
            post_id=post_id,
            author_id=post.author_id,
            actions=actions,
            surface=surface,
            served_ms=self.clock.now_ms(),
            dwell_s=dwell_s,
        )
        await self.journal.record([Engaged.of(viewer_id, engagement)])
        return engagement

    async def relate(
        self, relation: str, viewer_id: int, target_id: int, *, undo: bool = False
    ) -> bool:
        """follow / block / mute (or their undo); whether anything changed (nothing is recorded
        when nothing would change)."""
        self._require_user("viewer_id", viewer_id)
        self._require_user("target_id", target_id)
        if viewer_id == target_id:
            raise Conflict(f"target_id: a viewer cannot {relation} themselves")
        viewer = self.viewers.get(viewer_id)
        assert viewer is not None  # checked above
        current = {
            "follow": viewer.following_set,
            "block": viewer.blocked,
            "mute": viewer.muted,
        }[relation]
        if (target_id in current) != undo:
            return False
        await self.journal.record(
            [Related(relation=relation, viewer_id=viewer_id, target_id=target_id, undo=undo)]  # type: ignore[arg-type]
        )
        return True

    async def muted_keyword(self, viewer_id: int, keyword: str, *, remove: bool = False) -> bool:
        """Add (or remove) a muted keyword; whether the list changed."""
        self._require_user("viewer_id", viewer_id)
        viewer = self.viewers.get(viewer_id)
        assert viewer is not None
        if (keyword in viewer.muted_keywords) != remove:
            return False
        await self.journal.record(
            [KeywordMuted(viewer_id=viewer_id, keyword=keyword, remove=remove)]
        )
        return True

    def _require_user(self, field: str, user_id: int) -> None:
        if not self.viewers.exists(user_id):
            raise NotFound(field, user_id)

    def _require_post(self, field: str, post_id: int) -> Post:
        post = self.posts.get(post_id)
        if post is None:
            raise NotFound(field, post_id)
        return post
