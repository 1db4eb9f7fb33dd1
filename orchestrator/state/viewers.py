"""Viewers: engagement histories and the social graph (following, followers, blocks, mutes, muted
keywords), and the store the request path reads them from.

`get` returns an immutable `Viewer` snapshot, so one feed request sees one consistent state while
writes (follows, engagements) land concurrently.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from orchestrator.id_arrays import find, sorted_ids
from phoenix.actions import NUM_ACTIONS

#: Engagements kept per viewer: more than any config's history length.
DEFAULT_MAX_HISTORY = 1024
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class Engagement:
    """One post a viewer acted on: which actions (a bool per `phoenix.actions.ACTIONS`), where."""

    post_id: int
    author_id: int
    actions: tuple[bool, ...]
    surface: int = 0
    served_ms: int = 0


@dataclass(frozen=True)
class History:
    """A viewer's engagements as arrays, newest first (what the models take)."""

    post_ids: npt.NDArray[np.int64]  # [n]
    author_ids: npt.NDArray[np.int64]  # [n]
    actions: npt.NDArray[np.bool_]  # [n, A]
    surfaces: npt.NDArray[np.int64]  # [n]

    @classmethod
    def empty(cls) -> History:
        return cls.of(())

    @classmethod
    def of(cls, engagements: Sequence[Engagement]) -> History:
        """From engagements already newest first."""
        n = len(engagements)
        actions = np.array([e.actions for e in engagements], np.bool_).reshape(n, NUM_ACTIONS)
        return cls(
            post_ids=np.fromiter((e.post_id for e in engagements), np.int64, n),
            author_ids=np.fromiter((e.author_id for e in engagements), np.int64, n),
            actions=actions,
            surfaces=np.fromiter((e.surface for e in engagements), np.int64, n),
        )

    def prepended(self, engagement: Engagement, limit: int) -> History:
        """This history with `engagement` as the newest, cut to the `limit` newest."""
        return History(
            post_ids=np.r_[engagement.post_id, self.post_ids[: limit - 1]],
            author_ids=np.r_[engagement.author_id, self.author_ids[: limit - 1]],
            actions=np.vstack([np.array(engagement.actions, np.bool_), self.actions[: limit - 1]]),
            surfaces=np.r_[engagement.surface, self.surfaces[: limit - 1]],
        )

    def __len__(self) -> int:
        return len(self.post_ids)

    def padded(self, length: int) -> tuple[npt.NDArray, ...]:
        """(post_ids, author_ids, actions, surfaces), each cut or zero-padded to `length` slots."""
        n = min(len(self), length)
        post = np.zeros(length, np.int64)
        author = np.zeros(length, np.int64)
        actions = np.zeros((length, NUM_ACTIONS), np.bool_)
        surface = np.zeros(length, np.int64)
        post[:n], author[:n] = self.post_ids[:n], self.author_ids[:n]
        actions[:n], surface[:n] = self.actions[:n], self.surfaces[:n]
        return post, author, actions, surface


@dataclass(frozen=True)
class Viewer:
    """Everything a feed request needs to know about its viewer, as of one moment."""

    viewer_id: int
    following: tuple[int, ...]  # in follow order (Thunder takes the first 10,000)
    followers: frozenset[int]
    blocked: frozenset[int]  # accounts the viewer blocks
    blocked_by: frozenset[int]  # accounts that block the viewer
    muted: frozenset[int]
    muted_keywords: tuple[str, ...]
    history: History = field(default_factory=History.empty)

    @functools.cached_property
    def memo(self) -> dict[str, Any]:
        """Values derived from this snapshot by later stages (the model features), kept with it."""
        return {}

    @functools.cached_property
    def following_set(self) -> frozenset[int]:
        return frozenset(self.following)

    @functools.cached_property
    def following_array(self) -> npt.NDArray[np.int64]:
        """`following` as an array, in follow order (what Thunder reads)."""
        return np.array(self.following, np.int64)

    # The relations as sorted id arrays, for `orchestrator.id_arrays.contains` over a batch.

    @functools.cached_property
    def following_ids(self) -> npt.NDArray[np.int64]:
        return sorted_ids(self.following)

    @functools.cached_property
    def mutual_ids(self) -> npt.NDArray[np.int64]:
        """Accounts the viewer follows and that follow the viewer."""
        return sorted_ids(self.followers.intersection(self.following))

    @functools.cached_property
    def blocked_ids(self) -> npt.NDArray[np.int64]:
        return sorted_ids(self.blocked)

    @functools.cached_property
    def blocked_either_way_ids(self) -> npt.NDArray[np.int64]:
        """Accounts the viewer blocks or that block the viewer."""
        return sorted_ids(self.blocked | self.blocked_by)

    @functools.cached_property
    def excluded_author_ids(self) -> npt.NDArray[np.int64]:
        """Accounts whose posts the viewer never sees: muted, blocked, or blocking the viewer."""
        return sorted_ids(self.muted | self.blocked | self.blocked_by)


class ViewerStore(Protocol):
    """What the request path and the write API need from a viewer store."""

    def get(self, viewer_id: int) -> Viewer | None: ...
    def exists(self, user_id: int) -> bool: ...
    def follower_count(self, user_id: int) -> int: ...
    def accounts(
        self, user_ids: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]: ...
    def follow(self, viewer_id: int, target_id: int) -> bool: ...
    def unfollow(self, viewer_id: int, target_id: int) -> bool: ...
    def block(self, viewer_id: int, target_id: int) -> bool: ...
    def unblock(self, viewer_id: int, target_id: int) -> bool: ...
    def mute(self, viewer_id: int, target_id: int) -> bool: ...
    def unmute(self, viewer_id: int, target_id: int) -> bool: ...
    def add_muted_keyword(self, viewer_id: int, keyword: str) -> bool: ...
    def remove_muted_keyword(self, viewer_id: int, keyword: str) -> bool: ...
    def record_engagement(self, viewer_id: int, engagement: Engagement) -> None: ...


class InMemoryViewerStore:
    """Dicts of sets and a bounded deque of engagements per viewer, behind one lock.

    Methods that change a relation return whether anything changed (following twice is a no-op).
    Ids must be known users (`add_user`); the API checks that before calling.
    """

    def __init__(self, max_history: int = DEFAULT_MAX_HISTORY) -> None:
        self._max_history = max_history
        self._lock = threading.Lock()
        self._users: set[int] = set()
        self._following: dict[int, dict[int, None]] = {}  # ordered set: follow order
        self._followers: dict[int, set[int]] = {}
        self._blocked: dict[int, set[int]] = {}
        self._blocked_by: dict[int, set[int]] = {}
        self._muted: dict[int, set[int]] = {}
        self._keywords: dict[int, dict[str, None]] = {}
        self._history: dict[int, deque[Engagement]] = {}
        # Known users as arrays, for `accounts`: number -> user id and follower count, and the
        # numbers in user-id order (rebuilt lazily after a user is added).
        self._number: dict[int, int] = {}
        self._user_ids = np.zeros(64, np.int64)
        self._follower_counts = np.zeros(64, np.int64)
        self._by_id: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None
        # The last snapshot of each viewer, until a write touches the viewer: feed after feed
        # reuses it (and the id arrays it derives) instead of copying every relation again.
        self._snapshots: dict[int, Viewer] = {}
        self._arrays: dict[int, History] = {}  # histories as arrays, built on first read

    # ---------------------------------------------------------------- reads

    def get(self, viewer_id: int) -> Viewer | None:
        with self._lock:
            cached = self._snapshots.get(viewer_id)
            if cached is not None:
                return cached
            if viewer_id not in self._users:
                return None
            viewer = self._snapshots[viewer_id] = Viewer(
                viewer_id=viewer_id,
                following=tuple(self._following.get(viewer_id, ())),
                followers=frozenset(self._followers.get(viewer_id, ())),
                blocked=frozenset(self._blocked.get(viewer_id, ())),
                blocked_by=frozenset(self._blocked_by.get(viewer_id, ())),
                muted=frozenset(self._muted.get(viewer_id, ())),
                muted_keywords=tuple(self._keywords.get(viewer_id, ())),
                history=self._history_arrays(viewer_id),
            )
            return viewer

    def _history_arrays(self, viewer_id: int) -> History:
        history = self._arrays.get(viewer_id)
        if history is None:
            history = History.of(list(self._history.get(viewer_id, ())))
            self._arrays[viewer_id] = history
        return history

    def exists(self, user_id: int) -> bool:
        return user_id in self._users

    def follower_count(self, user_id: int) -> int:
        return len(self._followers.get(user_id, ()))

    def accounts(
        self, user_ids: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        """For many ids at once: whether each is a known user, and its follower count (0 for an
        unknown id)."""
        ids = np.asarray(user_ids, np.int64)
        with self._lock:
            n = len(self._number)
            if n == 0:
                return np.zeros(len(ids), np.bool_), np.zeros(len(ids), np.int64)
            if self._by_id is None:
                order = np.argsort(self._user_ids[:n])
                self._by_id = (self._user_ids[order], order)
            keys, numbers = self._by_id
            at, known = find(keys, ids)
            counts = np.where(known, self._follower_counts[numbers[at]], 0)
        return known, counts

    def __len__(self) -> int:
        return len(self._users)

    def user_ids(self) -> list[int]:
        """Every known user id, ascending."""
        with self._lock:
            return sorted(self._users)

    # ---------------------------------------------------------------- writes

    def add_user(self, user_id: int) -> bool:
        with self._lock:
            if user_id in self._users:
                return False
            self._users.add(user_id)
            number = self._number[user_id] = len(self._number)
            if number == len(self._user_ids):
                self._user_ids = _grown(self._user_ids)
                self._follower_counts = _grown(self._follower_counts)
            self._user_ids[number] = user_id
            self._follower_counts[number] = len(self._followers.get(user_id, ()))
            self._by_id = None
            return True

    def follow(self, viewer_id: int, target_id: int) -> bool:
        with self._lock:
            following = self._following.setdefault(viewer_id, {})
            if target_id in following:
                return False
            following[target_id] = None
            self._followers.setdefault(target_id, set()).add(viewer_id)
            self._changed(viewer_id, target_id)
            return True

    def unfollow(self, viewer_id: int, target_id: int) -> bool:
        with self._lock:
            if self._following.get(viewer_id, {}).pop(target_id, _ABSENT) is _ABSENT:
                return False
            self._followers.get(target_id, set()).discard(viewer_id)
            self._changed(viewer_id, target_id)
            return True

    def _changed(self, viewer_id: int, target_id: int) -> None:
        """After a follow or unfollow: the target's follower count, both snapshots stale."""
        number = self._number.get(target_id)
        if number is not None:
            self._follower_counts[number] = len(self._followers.get(target_id, ()))
        self._snapshots.pop(viewer_id, None)
        self._snapshots.pop(target_id, None)

    def block(self, viewer_id: int, target_id: int) -> bool:
        with self._lock:
            changed = _add(self._blocked, viewer_id, target_id)
            _add(self._blocked_by, target_id, viewer_id)
            self._snapshots.pop(viewer_id, None)
            self._snapshots.pop(target_id, None)
            return changed

    def unblock(self, viewer_id: int, target_id: int) -> bool:
        with self._lock:
            changed = _discard(self._blocked, viewer_id, target_id)
            _discard(self._blocked_by, target_id, viewer_id)
            self._snapshots.pop(viewer_id, None)
            self._snapshots.pop(target_id, None)
            return changed

    def mute(self, viewer_id: int, target_id: int) -> bool:
        with self._lock:
            self._snapshots.pop(viewer_id, None)
            return _add(self._muted, viewer_id, target_id)

    def unmute(self, viewer_id: int, target_id: int) -> bool:
        with self._lock:
            self._snapshots.pop(viewer_id, None)
            return _discard(self._muted, viewer_id, target_id)

    def add_muted_keyword(self, viewer_id: int, keyword: str) -> bool:
        with self._lock:
            self._snapshots.pop(viewer_id, None)
            keywords = self._keywords.setdefault(viewer_id, {})
            if keyword in keywords:
                return False
            keywords[keyword] = None
            return True

    def remove_muted_keyword(self, viewer_id: int, keyword: str) -> bool:
        with self._lock:
            self._snapshots.pop(viewer_id, None)
            return self._keywords.get(viewer_id, {}).pop(keyword, _ABSENT) is not _ABSENT

    def record_engagement(self, viewer_id: int, engagement: Engagement) -> None:
        """Add an engagement as the viewer's newest."""
        with self._lock:
            self._snapshots.pop(viewer_id, None)
            history = self._history.get(viewer_id)
            if history is None:
                history = self._history[viewer_id] = deque(maxlen=self._max_history)
            history.appendleft(engagement)
            arrays = self._arrays.get(viewer_id)
            if arrays is not None:  # one row in front instead of rebuilding from the deque
                self._arrays[viewer_id] = arrays.prepended(engagement, self._max_history)

    def load_histories(self, histories: Iterable[tuple[int, list[Engagement]]]) -> None:
        """Bulk load: (viewer, engagements newest first), replacing what the viewer had."""
        with self._lock:
            for viewer_id, engagements in histories:
                self._snapshots.pop(viewer_id, None)
                self._arrays.pop(viewer_id, None)
                self._history[viewer_id] = deque(
                    engagements[: self._max_history], maxlen=self._max_history
                )


def _grown(arr: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    new = np.zeros(2 * len(arr), arr.dtype)
    new[: len(arr)] = arr
    return new


def _add(relation: dict[int, set[int]], a: int, b: int) -> bool:
    targets = relation.setdefault(a, set())
    if b in targets:
        return False
    targets.add(b)
    return True


def _discard(relation: dict[int, set[int]], a: int, b: int) -> bool:
    targets = relation.get(a)
    if not targets or b not in targets:
        return False
    targets.discard(b)
    return True
