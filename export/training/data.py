"""Training examples from a synthetic world.

The split is by time, like production: engagements served before `cutoff = now - holdout_hours`
form each viewer's history (the newest `history_len` of them, oldest first, as X's engine fills
it); impressions served after it are the targets, and a deterministic `test_fraction` of them is
held out for evaluation. The split's parameters are saved in the checkpoint so evaluation rebuilds
exactly the same one.

Every input is packed by `phoenix.features`, the same code the orchestrator serves with. The
context of an impression is what the server knew when it showed the post: engagement counts count
only the impressions before it (see `build_training_data`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from pydantic import BaseModel, ConfigDict, Field

from export.models.inputs import CandidateInputs, HistoryInputs, RankerInputs, UserInputs
from phoenix.actions import ACTIONS, Action
from phoenix.config import ModelConfig
from phoenix.counts import COUNTED_ACTIONS, EngagementCounts
from phoenix.features import (
    PROFILE_FIELDS,
    PostFacts,
    UserProfile,
    pack_candidates,
    pack_history,
    pack_posts,
    pack_user,
)
from phoenix.hashing import IdHasher
from phoenix.world.io import World

_HOUR_MS = 3_600_000


class SplitSpec(BaseModel):
    """How a world's impressions are split into history, training and held-out targets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    holdout_hours: float = Field(
        default=24.0, gt=0, description="Impressions in the last N hours are targets."
    )
    test_fraction: float = Field(default=0.2, gt=0, lt=1, description="Targets held out.")
    seed: int = Field(default=0, description="Seed of the train/test assignment.")


@dataclass(frozen=True)
class Impressions:
    """Target impressions of one split, sorted by viewer."""

    viewer_index: npt.NDArray[np.int64]  # [N] row into TrainingData.viewer_ids
    post_ids: npt.NDArray[np.int64]  # [N]
    candidates: dict[str, npt.NDArray]  # pack_candidates arrays, [N, ...]
    labels: npt.NDArray[np.float32]  # [N, A] named actions (phoenix.actions.ACTIONS order)
    dwell_s: npt.NDArray[np.float32]  # [N]

    def __len__(self) -> int:
        return len(self.post_ids)

    def by_viewer(self) -> list[npt.NDArray[np.int64]]:
        """Row indices of each viewer's impressions (viewers with none are skipped)."""
        starts = np.flatnonzero(np.r_[True, np.diff(self.viewer_index) != 0])
        return np.split(np.arange(len(self)), starts[1:]) if len(self) else []


@dataclass(frozen=True)
class TrainingData:
    config: ModelConfig
    split: SplitSpec
    viewer_ids: npt.NDArray[np.int64]  # [V]
    user: dict[str, npt.NDArray]  # pack_user arrays, [V, ...]
    history: dict[str, npt.NDArray]  # pack_history arrays, [V, S, ...]
    train: Impressions
    test: Impressions
    corpus_post_ids: npt.NDArray[np.int64]  # every post, for retrieval evaluation
    corpus: dict[str, npt.NDArray]  # pack_posts arrays: post_hash, author_hash [P, 2], sids [P, K]

    def user_inputs(self, viewers: npt.NDArray[np.int64]) -> UserInputs:
        return UserInputs(**{k: torch.from_numpy(v[viewers]) for k, v in self.user.items()})

    def history_inputs(self, viewers: npt.NDArray[np.int64]) -> HistoryInputs:
        return HistoryInputs(**{k: torch.from_numpy(v[viewers]) for k, v in self.history.items()})


def build_training_data(world: World, config: ModelConfig, split: SplitSpec) -> TrainingData:
    """Every array training and evaluation read, from a world.

    Each impression's context is what a server would have known when it served the post: the
    viewer's timezone and local time, the follow graph (static in a world), and the post's
    engagement counts from the impressions before it (`phoenix.counts`, every viewer's, the
    held-out ones included, since they too happened before).
    """
    hasher = IdHasher(config)
    eng = {
        name: world.engagements.column(name).to_numpy() for name in world.engagements.schema.names
    }
    posts = _post_facts(world)
    post_row = np.searchsorted(posts["post_id"], eng["post_id"])
    actions = np.stack([eng[name] for name in ACTIONS], axis=1)  # [E, A] bool
    served_s = eng["served_ms"] // 1000
    counts = EngagementCounts(
        eng["post_id"], eng["served_ms"], np.stack([eng[a] for a in COUNTED_ACTIONS], axis=1)
    ).at(eng["post_id"], eng["served_ms"])
    author = posts["author_id"][post_row]
    follows = _FollowGraph(world)
    facts = PostFacts(
        post_ids=eng["post_id"],
        author_ids=author,
        surface=eng["surface"],
        impression_s=served_s,
        created_s=posts["created_ms"][post_row] // 1000,
        followed_by_viewer=follows.contains(eng["viewer_id"], author),
        following_viewer=follows.contains(author, eng["viewer_id"]),
        counts=counts,
        sids=posts["sids"][post_row],
    )

    cutoff = world.now_ms - int(split.holdout_hours * _HOUR_MS)
    viewer_ids = np.unique(eng["viewer_id"])
    viewer_row = np.searchsorted(viewer_ids, eng["viewer_id"])
    profile = _profiles(world, viewer_ids)
    timezone = np.asarray(profile.timezone, dtype=np.int64)
    hist = np.flatnonzero((eng["served_ms"] < cutoff) & actions.any(axis=1))
    history = pack_history(
        hasher,
        _take(facts, hist),
        actions[hist],
        eng["dwell_time_s"][hist],
        viewer_row[hist],
        timezone,
    )

    is_target = eng["served_ms"] >= cutoff
    in_test = _uniform_hash(eng["viewer_id"], eng["post_id"], split.seed) < split.test_fraction

    def impressions(mask: npt.NDArray[np.bool_]) -> Impressions:
        rows = np.flatnonzero(mask)
        rows = rows[np.argsort(viewer_row[rows], kind="stable")]
        return Impressions(
            viewer_index=viewer_row[rows],
            post_ids=eng["post_id"][rows],
            candidates=pack_candidates(hasher, _take(facts, rows), timezone[viewer_row[rows]]),
            labels=actions[rows].astype(np.float32),
            dwell_s=eng["dwell_time_s"][rows].astype(np.float32),
        )

    return TrainingData(
        config=config,
        split=split,
        viewer_ids=viewer_ids,
        user=pack_user(hasher, viewer_ids, profile),
        history=history,
        train=impressions(is_target & ~in_test),
        test=impressions(is_target & in_test),
        corpus_post_ids=posts["post_id"],
        corpus=pack_posts(hasher, posts["post_id"], posts["author_id"], posts["sids"]),
    )


def _post_facts(world: World) -> dict[str, npt.NDArray]:
    """Post columns by post id order (a world's posts are already in id order)."""
    cols = {n: world.posts.column(n).to_numpy() for n in ("post_id", "author_id", "created_ms")}
    sids = world.posts.column("semantic_ids").combine_chunks()
    cols["sids"] = sids.flatten().to_numpy().astype(np.int64).reshape(len(sids), -1)
    order = np.argsort(cols["post_id"], kind="stable")
    return {k: v[order] for k, v in cols.items()}


def _profiles(world: World, user_ids: npt.NDArray[np.int64]) -> UserProfile:
    """The profiles of `user_ids` (unknown for an id missing from the users table)."""
    all_ids = world.users.column("user_id").to_numpy()
    order = np.argsort(all_ids, kind="stable")
    pos = np.minimum(np.searchsorted(all_ids[order], user_ids), len(all_ids) - 1)
    row = order[pos]
    found = all_ids[row] == user_ids
    return UserProfile(
        **{
            name: np.where(found, world.users.column(name).to_numpy()[row], 0)
            for name in PROFILE_FIELDS
        }
    )


class _FollowGraph:
    """Membership of (follower, followee) pairs in the world's follows table."""

    def __init__(self, world: World) -> None:
        self._ids = np.unique(world.users.column("user_id").to_numpy())
        a = self._index(world.follows.column("follower_id").to_numpy())
        b = self._index(world.follows.column("followee_id").to_numpy())
        self._codes = np.unique(a * len(self._ids) + b)

    def _index(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)

    def contains(
        self, follower: npt.NDArray[np.int64], followee: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        a, b = self._index(follower), self._index(followee)
        known = (self._ids[a] == follower) & (self._ids[b] == followee)
        return known & np.isin(a * len(self._ids) + b, self._codes)


def _take(facts: PostFacts, rows: npt.NDArray[np.int64]) -> PostFacts:
    return PostFacts(**{k: np.asarray(v)[rows] for k, v in vars(facts).items()})


def _uniform_hash(
    a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], seed: int
) -> npt.NDArray[np.float64]:
    """A deterministic number in [0, 1) per (a, b) pair: splitmix64 of the mixed ids."""
    with np.errstate(over="ignore"):
        x = (
            a.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            ^ b.astype(np.uint64)
            ^ np.uint64(seed)
        )
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class RankerBatch:
    inputs: RankerInputs
    labels: torch.Tensor  # [B, C, A] named actions
    dwell_s: torch.Tensor  # [B, C]
    mask: torch.Tensor  # [B, C] bool: real candidate (not padding)


def ranker_batches(
    data: TrainingData,
    impressions: Impressions,
    viewers_per_batch: int,
    max_candidates: int,
    rng: np.random.Generator | None = None,
) -> Iterator[RankerBatch]:
    """Batches of viewers, each with up to `max_candidates` of its impressions as candidates.

    With `rng`, viewers are shuffled and a random subset of each viewer's impressions is taken
    (training); without it, every impression appears once, in order (evaluation).
    """
    groups = impressions.by_viewer()
    if rng is not None:
        groups = [
            g if len(g) <= max_candidates else rng.choice(g, max_candidates, replace=False)
            for g in (groups[i] for i in rng.permutation(len(groups)))
        ]
    else:
        groups = [
            g[i : i + max_candidates] for g in groups for i in range(0, len(g), max_candidates)
        ]
    for start in range(0, len(groups), viewers_per_batch):
        yield _collate(data, impressions, groups[start : start + viewers_per_batch])


def _collate(
    data: TrainingData, imp: Impressions, groups: list[npt.NDArray[np.int64]]
) -> RankerBatch:
    b, c = len(groups), max(len(g) for g in groups)
    index = np.zeros((b, c), np.int64)
    mask = np.zeros((b, c), np.bool_)
    for i, g in enumerate(groups):
        index[i, : len(g)] = g
        mask[i, : len(g)] = True
    cand = {
        k: np.where(mask.reshape(b, c, *([1] * (v.ndim - 1))), v[index], 0)
        for k, v in imp.candidates.items()
    }
    viewers = imp.viewer_index[index[:, 0]]
    return RankerBatch(
        inputs=RankerInputs(
            data.user_inputs(viewers),
            data.history_inputs(viewers),
            CandidateInputs(**{k: torch.from_numpy(v) for k, v in cand.items()}),
        ),
        labels=torch.from_numpy(imp.labels[index] * mask[..., None]),
        dwell_s=torch.from_numpy(imp.dwell_s[index] * mask),
        mask=torch.from_numpy(mask),
    )


def favorite_pairs(impressions: Impressions) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(impression rows, viewer rows) of the favorited impressions: the towers' positives."""
    rows = np.flatnonzero(impressions.labels[:, Action.FAVORITE] > 0)
    return rows, impressions.viewer_index[rows]
