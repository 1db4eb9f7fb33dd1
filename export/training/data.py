"""Training examples from a synthetic world.

The split is by time, like production: engagements served before `cutoff = now - holdout_hours`
form each viewer's history (newest first, up to the config's history length); impressions served
after it are the targets, and a deterministic `test_fraction` of them is held out for evaluation.
The split's parameters are saved in the checkpoint so evaluation rebuilds exactly the same one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from pydantic import BaseModel, ConfigDict, Field

from export.models.inputs import CandidateInputs, HistoryInputs, RankerInputs
from phoenix.actions import ACTIONS, Action
from phoenix.config import ModelConfig
from phoenix.features import pack_candidates, pack_history
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
    labels: npt.NDArray[np.float32]  # [N, A]
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
    history: dict[str, npt.NDArray]  # pack_history arrays, [V, S, ...]
    train: Impressions
    test: Impressions
    corpus_post_ids: npt.NDArray[np.int64]  # every post, for retrieval evaluation
    corpus: dict[str, npt.NDArray]  # post_hash / author_hash [P, 2]

    def history_inputs(self, viewers: npt.NDArray[np.int64]) -> HistoryInputs:
        return HistoryInputs(**{k: torch.from_numpy(v[viewers]) for k, v in self.history.items()})


def build_training_data(world: World, config: ModelConfig, split: SplitSpec) -> TrainingData:
    hasher = IdHasher(config)
    eng = {
        name: world.engagements.column(name).to_numpy() for name in world.engagements.schema.names
    }
    post_ids = world.posts.column("post_id").to_numpy()
    author_of = dict(
        zip(post_ids.tolist(), world.posts.column("author_id").to_numpy().tolist(), strict=True)
    )
    authors = np.array([author_of.get(p, 0) for p in eng["post_id"].tolist()], dtype=np.int64)
    actions = np.stack([eng[name] for name in ACTIONS], axis=1)  # [E, A] bool

    cutoff = world.now_ms - int(split.holdout_hours * _HOUR_MS)
    viewer_ids = np.unique(eng["viewer_id"])
    viewer_row = np.searchsorted(viewer_ids, eng["viewer_id"])
    is_history = (eng["served_ms"] < cutoff) & actions.any(axis=1)
    history = _pack_histories(
        hasher, config.history_len, viewer_ids, viewer_row, eng, authors, actions, is_history
    )

    is_target = eng["served_ms"] >= cutoff
    in_test = _uniform_hash(eng["viewer_id"], eng["post_id"], split.seed) < split.test_fraction

    def impressions(mask: npt.NDArray[np.bool_]) -> Impressions:
        rows = np.flatnonzero(mask)
        rows = rows[np.argsort(viewer_row[rows], kind="stable")]
        return Impressions(
            viewer_index=viewer_row[rows],
            post_ids=eng["post_id"][rows],
            candidates=pack_candidates(
                hasher, eng["post_id"][rows], authors[rows], eng["surface"][rows]
            ),
            labels=actions[rows].astype(np.float32),
            dwell_s=eng["dwell_time_s"][rows].astype(np.float32),
        )

    corpus_authors = world.posts.column("author_id").to_numpy()
    return TrainingData(
        config=config,
        split=split,
        viewer_ids=viewer_ids,
        history=history,
        train=impressions(is_target & ~in_test),
        test=impressions(is_target & in_test),
        corpus_post_ids=post_ids,
        corpus={"post_hash": hasher.posts(post_ids), "author_hash": hasher.authors(corpus_authors)},
    )


def _pack_histories(
    hasher: IdHasher,
    history_len: int,
    viewer_ids: npt.NDArray[np.int64],
    viewer_row: npt.NDArray[np.int64],
    eng: dict[str, npt.NDArray],
    authors: npt.NDArray[np.int64],
    actions: npt.NDArray[np.bool_],
    is_history: npt.NDArray[np.bool_],
) -> dict[str, npt.NDArray]:
    """[V, S] id matrices, newest engagement first, zero-padded, then hashed."""
    rows = np.flatnonzero(is_history)
    # Sort by viewer, newest first; the rank within a viewer is the history slot.
    rows = rows[np.lexsort((-eng["served_ms"][rows], viewer_row[rows]))]
    v = viewer_row[rows]
    first = np.searchsorted(v, v, side="left")
    slot = np.arange(len(rows)) - first
    keep = slot < history_len
    rows, v, slot = rows[keep], v[keep], slot[keep]

    shape = (len(viewer_ids), history_len)
    post = np.zeros(shape, np.int64)
    author = np.zeros(shape, np.int64)
    surface = np.zeros(shape, np.int64)
    acts = np.zeros((*shape, len(ACTIONS)), np.bool_)
    post[v, slot] = eng["post_id"][rows]
    author[v, slot] = authors[rows]
    surface[v, slot] = eng["surface"][rows]
    acts[v, slot] = actions[rows]
    return pack_history(hasher, viewer_ids, post, author, acts, surface)


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
    labels: torch.Tensor  # [B, C, A]
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
