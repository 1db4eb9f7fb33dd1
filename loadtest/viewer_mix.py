"""Who the feed load test plays: viewers drawn in proportion to their activity in the world (so
heavy users, and the heavy-tailed following counts that come with them, show up as they would),
authors for post creation, and recent posts for engagements.

`phoenix loadtest` writes the mix as JSON for the Locust process (which must not load the world
itself: it runs under gevent, many users at once)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from phoenix.world.io import World

#: Recent posts offered to engagement writes.
_MAX_POSTS = 5_000


class ViewerMix(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    viewers: list[int] = Field(min_length=1)
    weights: list[float] = Field(min_length=1, description="relative request rate per viewer")
    authors: list[int] = Field(min_length=1)
    posts: list[int] = Field(min_length=1)

    @classmethod
    def of(cls, world: World) -> ViewerMix:
        users = world.users.to_pydict()
        posts = world.posts.column("post_id").to_numpy()
        recent = np.sort(posts)[-_MAX_POSTS:]
        return cls(
            viewers=users["user_id"],
            weights=[max(float(a), 1e-3) for a in users["activity"]],
            authors=[u for u, a in zip(users["user_id"], users["is_author"], strict=True) if a],
            posts=[int(p) for p in recent],
        )

    def write(self, path: Path) -> Path:
        path.write_text(self.model_dump_json())
        return path

    @classmethod
    def read(cls, path: str | Path) -> ViewerMix:
        return cls.model_validate(json.loads(Path(path).read_text()))
