"""Posts as the orchestrator sees them, and the store that hydrates candidates.

A `Post` is immutable; the store keeps every known post plus the ids of deleted ones, so a delete
wins over a create that arrives late (the same rule as Thunder's, DESIGN.md 6).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from phoenix.snowflake import created_ms
from phoenix.world.schema import ORIGINAL, REPLY, REPOST


@dataclass(frozen=True, slots=True)
class Post:
    """One post. `kind` is `phoenix.world.schema.ORIGINAL`, `REPLY` or `REPOST`."""

    post_id: int
    author_id: int
    kind: int = ORIGINAL
    parent_id: int = 0  # replied-to post, 0 unless a reply
    reposted_id: int = 0  # reposted post, 0 unless a repost
    conversation_id: int = 0  # root of the thread; the post's own id for a root
    is_video: bool = False  # a repost of a video counts as a video
    video_duration_s: float = 0.0
    text: str = ""
    reposted_author_id: int = 0  # author of the reposted post, 0 unless a repost
    quoted_id: int = 0  # the post this one quotes, 0 when none

    @property
    def created_ms(self) -> int:
        """Creation time in Unix ms, from the snowflake id."""
        return int(created_ms(self.post_id))

    @property
    def is_original(self) -> bool:
        return self.kind == ORIGINAL

    @property
    def is_reply(self) -> bool:
        return self.kind == REPLY

    @property
    def is_repost(self) -> bool:
        return self.kind == REPOST

    @property
    def thread_id(self) -> int:
        """The conversation this post belongs to (its own id when it starts one)."""
        return self.conversation_id or self.post_id


class PostStore(Protocol):
    """What the request path needs from a post store."""

    def get(self, post_id: int) -> Post | None:
        """The post, or None when it is unknown or deleted."""

    def add(self, post: Post) -> bool:
        """Store a post; False when its id was deleted before (the delete wins)."""

    def delete(self, post_id: int) -> Post | None:
        """Forget a post for good; the post that was deleted, if it was known."""

    def is_deleted(self, post_id: int) -> bool: ...

    def impressions(self, post_id: int) -> int:
        """How many times the post was served (X's view count)."""

    def add_impression(self, post_id: int) -> None: ...


class InMemoryPostStore:
    """Every post in a dict; thread-safe for one writer and many readers."""

    def __init__(
        self, posts: Iterable[Post] = (), impressions: dict[int, int] | None = None
    ) -> None:
        self._posts: dict[int, Post] = {}
        self._deleted: set[int] = set()
        self._impressions: dict[int, int] = dict(impressions or {})
        self._lock = threading.Lock()
        for post in posts:
            self._posts[post.post_id] = post

    def get(self, post_id: int) -> Post | None:
        return self._posts.get(post_id)

    def add(self, post: Post) -> bool:
        with self._lock:
            if post.post_id in self._deleted:
                return False
            self._posts[post.post_id] = post
            return True

    def delete(self, post_id: int) -> Post | None:
        with self._lock:
            self._deleted.add(post_id)
            return self._posts.pop(post_id, None)

    def is_deleted(self, post_id: int) -> bool:
        return post_id in self._deleted

    def impressions(self, post_id: int) -> int:
        return self._impressions.get(post_id, 0)

    def add_impression(self, post_id: int) -> None:
        with self._lock:
            self._impressions[post_id] = self._impressions.get(post_id, 0) + 1

    def __len__(self) -> int:
        return len(self._posts)

    def __iter__(self) -> Iterator[Post]:
        return iter(list(self._posts.values()))
