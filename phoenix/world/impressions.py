"""Impressions and actions: posts served to every viewer from followed authors and out of network,
and the surface, actions and dwell time of each impression drawn from the ground truth in
`phoenix.world.spec`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phoenix.actions import ACTIONS, NEGATIVE_ACTIONS, Action
from phoenix.world import schema
from phoenix.world._sampling import adjacency, sample_in_windows, unique_pairs
from phoenix.world.people import Graph, Users
from phoenix.world.posts import Posts
from phoenix.world.spec import (
    DWELL_TIME_MATCH_GAIN,
    DWELL_TIME_MEDIAN_S,
    DWELL_TIME_SIGMA,
    GROUND_TRUTH,
    OUT_OF_NETWORK_ONLY_ACTIONS,
    VIDEO_ONLY_ACTIONS,
    ActionTruth,
    WorldSpec,
)

_HOUR_MS = 3_600_000

_SERVE_WINDOW_MEAN_MS = 12 * _HOUR_MS  # mean age of served posts (exponential) ...
_SERVE_WINDOW_MIN_MS, _SERVE_WINDOW_MAX_MS = _HOUR_MS // 2, 48 * _HOUR_MS  # ... clipped
# Which posts are served: weight = (topic match + 0.05) ** power * sqrt(author popularity).
# In-network, whatever followed accounts post (0: many off-taste impressions, which is what makes
# favorite learnable from history); out-of-network, what retrieval found on the viewer's taste.
_IN_NETWORK_TASTE_POWER = 0.0
_OON_TASTE_POWER = 2.0
#: Share of impressions per product surface: mostly the For You and Following timelines.
_SURFACE_SHARES = np.array([55, 15, 6, 5, 4, 3, 2, 2, 2, 1, 1, 1, 1, 1, 0.5, 0.5], dtype=float)


@dataclass
class Impressions:
    """Every impression: a post served to a viewer."""

    viewer: np.ndarray  # int64 [N], user index; grouped by viewer, served time ascending
    post: np.ndarray  # int64 [N], post index
    served: np.ndarray  # int64 [N], Unix ms
    followed: np.ndarray  # bool [N], the viewer follows the post's author


@dataclass
class Reactions:
    """What each viewer did with each impression."""

    surface: np.ndarray  # int8 [N], where each impression was shown
    actions: np.ndarray  # bool [N, len(ACTIONS)]
    dwell_time: np.ndarray  # float32 [N], seconds, 0 unless dwelled


# Impressions -------------------------------------------------------------------------------------


@dataclass
class _Feed:
    """What a viewer can be served: every post with the viewer-independent facts about it."""

    spec: WorldSpec
    users: Users
    posts: Posts
    post_user: np.ndarray  # user index of each post's author
    weight: np.ndarray  # sqrt(author popularity) of each post
    following: list[np.ndarray]  # per user: followed user indices
    avoided: list[np.ndarray]  # per user: blocked, muted and blocking user indices, and self
    scratch: np.ndarray  # bool [U], all False between calls

    def mark(self, users: np.ndarray) -> np.ndarray:
        """Per post: is its author one of `users`?"""
        self.scratch[users] = True
        marked = self.scratch[self.post_user]
        self.scratch[users] = False
        return marked


def make_impressions(
    rng: np.random.Generator, spec: WorldSpec, users: Users, graph: Graph, posts: Posts
) -> Impressions:
    """Poisson(impressions_per_user * activity) impressions per viewer, viewer by viewer."""
    n = spec.num_users
    blocks = graph.blocks
    avoid_pairs = np.concatenate([blocks, blocks[:, ::-1], graph.mutes])
    feed = _Feed(
        spec=spec,
        users=users,
        posts=posts,
        post_user=users.authors[posts.author],
        weight=np.sqrt(users.popularity[posts.author]),
        following=adjacency(graph.follows, n),
        avoided=adjacency(unique_pairs(avoid_pairs, n), n),
        scratch=np.zeros(n, dtype=bool),
    )
    counts = rng.poisson(spec.impressions_per_user * users.activity.astype(np.float64))
    parts = [_serve_viewer(rng, feed, v, int(c)) for v, c in enumerate(counts)]
    post = np.concatenate([p for p, _, _ in parts])
    return Impressions(
        viewer=np.repeat(np.arange(n), [len(p) for p, _, _ in parts]),
        post=post,
        served=np.concatenate([s for _, s, _ in parts]),
        followed=np.concatenate([f for _, _, f in parts]),
    )


def _serve_viewer(
    rng: np.random.Generator, feed: _Feed, viewer: int, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` impressions spread over the whole window: posts by followed authors, or on-taste
    out-of-network originals, recent ones likelier; never the viewer's own posts or those of
    authors the viewer blocks or mutes or who block the viewer; each post at most once."""
    spec, posts = feed.spec, feed.posts
    served = rng.integers(spec.now_ms - spec.hours * _HOUR_MS, spec.now_ms, count)
    window = rng.exponential(_SERVE_WINDOW_MEAN_MS, count)
    window = np.clip(window, _SERVE_WINDOW_MIN_MS, _SERVE_WINDOW_MAX_MS).astype(np.int64)
    in_network = rng.random(count) < spec.in_network_fraction
    followed = feed.mark(feed.following[viewer])
    allowed = ~feed.mark(np.append(feed.avoided[viewer], viewer))
    in_pool = np.flatnonzero(followed & allowed)
    oon_pool = np.flatnonzero(~followed & allowed & (posts.kind == schema.ORIGINAL))
    match = feed.users.match[viewer, posts.topic]
    in_weight = (match[in_pool] + 0.05) ** _IN_NETWORK_TASTE_POWER * feed.weight[in_pool]
    oon_weight = (match[oon_pool] + 0.05) ** _OON_TASTE_POWER * feed.weight[oon_pool]

    post = np.full(count, -1, dtype=np.int64)
    for mask, pool, weight in (
        (in_network, in_pool, in_weight),
        (~in_network, oon_pool, oon_weight),
    ):
        pick = sample_in_windows(rng, posts.created[pool], weight, served[mask], window[mask])
        post[mask] = np.where(pick >= 0, pool[np.maximum(pick, 0)], -1)

    order = np.argsort(served, kind="stable")
    post, served = post[order], served[order]
    keep = post >= 0
    post, served = post[keep], served[keep]
    _, first = np.unique(post, return_index=True)  # a post is served to a viewer once
    first.sort()
    return post[first], served[first], followed[post[first]]


# Actions -----------------------------------------------------------------------------------------

_FEATURES = ActionTruth._fields[1:]  # everything but the bias
_COEFFICIENTS = np.array([list(GROUND_TRUTH[name]) for name in ACTIONS])  # [A, 1 + F]


def draw_actions(
    rng: np.random.Generator, users: Users, posts: Posts, imp: Impressions
) -> Reactions:
    """Surface, actions and dwell time of every impression, drawn from the ground truth."""
    n = len(imp.post)
    shares = _SURFACE_SHARES / _SURFACE_SHARES.sum()
    surface = rng.choice(len(shares), size=n, p=shares).astype(np.int8)
    features = _impression_features(rng, users, posts, imp)  # [N, F]
    logits = _COEFFICIENTS[:, 0] + features @ _COEFFICIENTS[:, 1:].T  # [N, A]
    actions = rng.random(logits.shape) < 1.0 / (1.0 + np.exp(-logits))
    _apply_constraints(actions, features)
    match = features[:, _FEATURES.index("topic_match")]
    median = DWELL_TIME_MEDIAN_S * (1.0 + DWELL_TIME_MATCH_GAIN * match)
    seconds = np.clip(median * np.exp(DWELL_TIME_SIGMA * rng.standard_normal(n)), 0.5, 29.9)
    dwell_time = np.where(actions[:, Action.DWELL], seconds, 0.0).astype(np.float32)
    return Reactions(surface=surface, actions=actions, dwell_time=dwell_time)


def _impression_features(
    rng: np.random.Generator, users: Users, posts: Posts, imp: Impressions
) -> np.ndarray:
    """The ground truth's features (ActionTruth order, bias excluded) of every impression."""
    kind = posts.kind[imp.post]
    columns = {
        "topic_match": users.match[imp.viewer, posts.topic[imp.post]],
        "author_affinity": imp.followed.astype(np.float64),
        "author_quality": users.quality[posts.author[imp.post]],
        "viewer_propensity": users.propensity[imp.viewer],
        "interest": rng.standard_normal(len(imp.post)),
        "video": posts.is_video[imp.post].astype(np.float64),
        "reply": (kind == schema.REPLY).astype(np.float64),
        "repost": (kind == schema.REPOST).astype(np.float64),
    }
    return np.stack([columns[name] for name in _FEATURES], axis=1)


def _apply_constraints(actions: np.ndarray, features: np.ndarray) -> None:
    """Impossible combinations: video actions on non-videos, following an author already followed,
    dwelling and not dwelling; negative feedback cancels every positive action."""
    not_video = features[:, _FEATURES.index("video")] == 0
    following = features[:, _FEATURES.index("author_affinity")] > 0
    for name in VIDEO_ONLY_ACTIONS:
        actions[not_video, ACTIONS.index(name)] = False
    for name in OUT_OF_NETWORK_ONLY_ACTIONS:
        actions[following, ACTIONS.index(name)] = False
    actions[actions[:, Action.DWELL], Action.NOT_DWELLED] = False
    feedback = [a for a in NEGATIVE_ACTIONS if a != Action.NOT_DWELLED]
    positive = [a for a in Action if a not in NEGATIVE_ACTIONS]
    rejected = actions[:, feedback].any(axis=1)
    actions[np.ix_(rejected, positive)] = False
