"""Viewers: profiles, engagement histories and the social graph (following, followers, blocks,
mutes, muted keywords), and the store the request path reads them from.

`get` returns an immutable `Viewer` snapshot, so one feed request sees one consistent state while
writes (follows, engagements) land concurrently.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from orchestrator.id_arrays import find, sorted_ids
from phoenix.actions import NUM_ACTIONS
from phoenix.features import PROFILE_FIELDS, UserProfile
from phoenix.world.schema import USERS

#: Engagements kept per viewer: more than any config's history length.
DEFAULT_MAX_HISTORY = 1024
_ABSENT = object()
#: Profile fields held as floats (the rest are integer codes), typed as the world's users table.
_FLOAT_PROFILE = frozenset(n for n in PROFILE_FIELDS if pa.types.is_floating(USERS.field(n).type))


@dataclass(frozen=True, slots=True)
class Engagement:
    """One post a viewer acted on: which actions (a bool per `phoenix.actions.ACTIONS`), where
    (product surface), when it was served (Unix ms) and how long it was dwelled on."""

    post_id: int
    author_id: int
    actions: tuple[bool, ...]
    surface: int = 0
    served_ms: int = 0
    dwell_s: float = 0.0


@dataclass(frozen=True)
class History:
    """A viewer's engagements as arrays, newest first (`phoenix.features.pack_history` orders
    them by served time for the models)."""

    post_ids: npt.NDArray[np.int64]  # [n]
    author_ids: npt.NDArray[np.int64]  # [n]
    actions: npt.NDArray[np.bool_]  # [n, A]
    surfaces: npt.NDArray[np.int64]  # [n]
    served_ms: npt.NDArray[np.int64]  # [n]
    dwell_s: npt.NDArray[np.float32]  # [n]

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
            served_ms=np.fromiter((e.served_ms for e in engagements), np.int64, n),
            dwell_s=np.fromiter((e.dwell_s for e in engagements), np.float32, n),
        )

    def prepended(self, engagement: Engagement, limit: int) -> History:
        """This history with `engagement` as the newest, cut to the `limit` newest."""
        newest = History.of([engagement])
        kept = self.newest(limit - 1)
        return History(
            **{
                f.name: np.concatenate([getattr(newest, f.name), getattr(kept, f.name)])
                for f in fields(History)
            }
        )

    def newest(self, n: int) -> History:
        """The `n` newest engagements (all of them when there are fewer)."""
        return History(**{f.name: getattr(self, f.name)[:n] for f in fields(History)})

    def __len__(self) -> int:
        return len(self.post_ids)


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
    #: What X's user features read about the viewer (arrays of one entry); unknown by default.
    profile: UserProfile = field(default_factory=lambda: UserProfile.unknown(1))

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
    def follower_ids(self) -> npt.NDArray[np.int64]:
        return sorted_ids(self.followers)

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
        self._profiles = {  # by number; zeros (unknown) until `set_profiles`
            name: np.zeros(64, np.float32 if name in _FLOAT_PROFILE else np.int64)
            for name in PROFILE_FIELDS
        }
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
                profile=self._profile(viewer_id),
            )
            return viewer

    def _profile(self, viewer_id: int) -> UserProfile:
        number = self._number[viewer_id]
        return UserProfile(**{k: v[number : number + 1].copy() for k, v in self._profiles.items()})

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
                self._profiles = {k: _grown(v) for k, v in self._profiles.items()}
            self._user_ids[number] = user_id
            self._follower_counts[number] = len(self._followers.get(user_id, ()))
            self._by_id = None
            return True

    def set_profiles(self, user_ids: npt.ArrayLike, profiles: UserProfile) -> None:
        """The profiles of known users (`profiles` holds one entry per id); an id that is not a
        known user is a KeyError."""
        ids = np.asarray(user_ids, np.int64).reshape(-1)
        with self._lock:
            numbers = np.fromiter((self._number[i] for i in ids.tolist()), np.int64, len(ids))
            for name, column in self._profiles.items():
                column[numbers] = np.asarray(getattr(profiles, name)).reshape(len(ids))
            for user_id in ids.tolist():
                self._snapshots.pop(user_id, None)

    def follow(self, viewer_id: int, target_id: int) -> bool:
        with self._lock:
            following = self._following.setdefault(viewer_id, {})
            if target_id in following:
                return False
            following[target_id] = None
            self._followers.setdefault(target_id, set()).add(viewer_id)
            self._changed(viewer_id, target_id)
            return True

    def follow_many(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Bulk load: (viewer, target) follows in follow order (a start-up's rebuild), under one
        lock hold with one recount, instead of `follow` per pair."""
        with self._lock:
            targets = set()
            for viewer_id, target_id in pairs:
                following = self._following.setdefault(viewer_id, {})
                if target_id in following:
                    continue
                following[target_id] = None
                self._followers.setdefault(target_id, set()).add(viewer_id)
                targets.add(target_id)
                self._snapshots.pop(viewer_id, None)
            for target_id in targets:
                self._snapshots.pop(target_id, None)
                number = self._number.get(target_id)
                if number is not None:
                    self._follower_counts[number] = len(self._followers[target_id])

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


def _grown(arr: npt.NDArray) -> npt.NDArray:
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
