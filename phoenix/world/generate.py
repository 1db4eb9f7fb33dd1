"""Generate a synthetic world (`phoenix world`): users with hidden topic tastes, a follow graph,
posts, blocks and mutes, and impressions whose actions are drawn from the ground truth in
`phoenix.world.spec`.

Every stage draws from one `numpy.random.default_rng(spec.seed)` in a fixed order and every table
is written in a fixed row order, so a spec always produces the same bytes. The world is written to
a temporary sibling directory and renamed into place at the end: a crash never leaves half a world.

Indices, not ids, are used while generating: users are rows of `_Users` (their ids increase with
the index), authors are positions in `_Users.authors`, posts are rows of `_Posts` in time order.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from phoenix.actions import ACTIONS, NEGATIVE_ACTIONS, Action
from phoenix.errors import WorldError
from phoenix.snowflake import SEQUENCE_BITS, snowflake_id
from phoenix.world import schema
from phoenix.world.io import FORMAT_VERSION, table_path
from phoenix.world.spec import (
    DWELL_TIME_MATCH_GAIN,
    DWELL_TIME_MEDIAN_S,
    DWELL_TIME_SIGMA,
    FILLER_WORDS,
    GROUND_TRUTH,
    OUT_OF_NETWORK_ONLY_ACTIONS,
    TOPIC_WORDS,
    VIDEO_ONLY_ACTIONS,
    ActionTruth,
    WorldSpec,
)

log = logging.getLogger(__name__)

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS

# Shapes of the hidden world (the sizes are in WorldSpec). --------------------------------------
_TOPIC_SKEW = 4.0  # Dirichlet concentration of topic popularity (smaller = more skewed)
_TASTE_BACKGROUND = 0.05  # Dirichlet alpha of the topics a user does not care about
_TASTE_FAVOURITE = 2.0  # alpha added for each of a user's 1-3 favourite topics
_ACTIVITY_SIGMA = 0.5  # lognormal spread of user activity
_POPULARITY_SIGMA = 2.5  # lognormal spread of author popularity: heavy-tailed follower counts
_POSTING_SIGMA = 1.0  # lognormal spread of posting rates across authors
_FOLLOWS_MEDIAN, _FOLLOWS_SIGMA = 50.0, 0.6  # accounts a user follows (lognormal) ...
_FOLLOWS_MIN, _FOLLOWS_MAX = 10, 150  # ... clipped, and at most half of the authors
_FOLLOW_TASTE_POWER = 2.0  # follow weight = popularity * (topic match + 0.02) ** power
_DISLIKE_POWER = 2.0  # block/mute weight = (1 - topic match + 0.05) ** power
_AUTHOR_BLOCK_SHARE = 0.5  # authors block random non-followers at this share of blocks_per_user
_ON_TOPIC_POSTS = 0.8  # share of an author's posts on their main topic
_REPOST_WINDOW_MS = 24 * _HOUR_MS  # a repost quotes an original at most this old
_REPLY_WINDOW_MS = 12 * _HOUR_MS  # a reply answers a post at most this old
_REPLY_CANDIDATES = 4  # a replier picks the best topic match among this many recent posts
_VIDEO_MEDIAN_S, _VIDEO_SIGMA = 15.0, 0.9  # video durations: about a third under 10 s
_WORDS_PER_POST = (4, 12)  # inclusive range of words (a phrase counts once) in a post's text
_TOPIC_WORD_SHARE = 0.5  # share of a post's words drawn from its topic's list
_CAPITALISED_KEYWORDS = 0.25  # muted keywords written "Title Case" (matching ignores case)
_SERVE_WINDOW_MEAN_MS = 12 * _HOUR_MS  # mean age of served posts (exponential) ...
_SERVE_WINDOW_MIN_MS, _SERVE_WINDOW_MAX_MS = _HOUR_MS // 2, 48 * _HOUR_MS  # ... clipped
# Which posts are served: weight = (topic match + 0.05) ** power * sqrt(author popularity).
# In-network, whatever followed accounts post (0: many off-taste impressions, which is what makes
# favorite learnable from history); out-of-network, what retrieval found on the viewer's taste.
_IN_NETWORK_TASTE_POWER = 0.0
_OON_TASTE_POWER = 2.0
#: Share of impressions per product surface: mostly the For You and Following timelines.
_SURFACE_SHARES = np.array([55, 15, 6, 5, 4, 3, 2, 2, 2, 1, 1, 1, 1, 1, 0.5, 0.5], dtype=float)

_STAGES = ("users", "follows", "blocks and mutes", "posts", "impressions", "actions", "write")


@dataclass
class _Users:
    ids: np.ndarray  # int64 [U], increasing
    taste: np.ndarray  # float32 [U, T], rows sum to 1
    match: np.ndarray  # float64 [U, T], taste / max(taste): the ground truth's topic_match
    activity: np.ndarray  # float32 [U], mean 1
    propensity: np.ndarray  # float64 [U], hidden viewer trait (standard normal)
    authors: np.ndarray  # int64 [A], user index of each author, increasing
    author_topic: np.ndarray  # int64 [A]
    popularity: np.ndarray  # float64 [A], lognormal
    quality: np.ndarray  # float64 [A], hidden author trait (standard normal)


@dataclass
class _Graph:
    follows: np.ndarray  # int64 [F, 2] (follower, followee) user indices, sorted, unique
    blocks: np.ndarray  # int64 [B, 2] (user, blocked)
    mutes: np.ndarray  # int64 [M, 2] (user, muted author)
    keyword_users: np.ndarray  # int64 [K] user index of each muted keyword
    keywords: list[str]  # [K]


@dataclass
class _Posts:
    ids: np.ndarray  # int64 [P], increasing (time order)
    author: np.ndarray  # int64 [P], author position
    created: np.ndarray  # int64 [P], Unix ms, non-decreasing
    kind: np.ndarray  # int8 [P]
    topic: np.ndarray  # int64 [P]
    parent: np.ndarray  # int64 [P], post index or -1
    reposted: np.ndarray  # int64 [P], post index or -1
    root: np.ndarray  # int64 [P], post index of the conversation root
    is_video: np.ndarray  # bool [P]
    duration: np.ndarray  # float32 [P]
    text: list[str]  # [P]


@dataclass
class _Impressions:
    viewer: np.ndarray  # int64 [N], user index; grouped by viewer, served time ascending
    post: np.ndarray  # int64 [N], post index
    served: np.ndarray  # int64 [N], Unix ms
    followed: np.ndarray  # bool [N], the viewer follows the post's author


@dataclass
class _Reactions:
    surface: np.ndarray  # int8 [N], where each impression was shown
    actions: np.ndarray  # bool [N, len(ACTIONS)]
    dwell_time: np.ndarray  # float32 [N], seconds, 0 unless dwelled


def generate_world(
    spec: WorldSpec, out_dir: str | Path, *, progress: bool = True, overwrite: bool = False
) -> Path:
    """Generate the world described by `spec` into `out_dir` and return that path.

    Refuses a non-empty existing `out_dir` unless `overwrite` is true, in which case the old world
    is replaced only once the new one is complete.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_sibling(out_dir, "tmp")
    try:
        with tqdm(
            total=len(_STAGES), desc="phoenix world", unit="stage", disable=not progress
        ) as bar:
            tables = _build_tables(spec, bar)
            with _stage(bar, "write"):
                _write(tmp, spec, tables)
        _move_into_place(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _build_tables(spec: WorldSpec, bar: tqdm) -> dict[str, pa.Table]:
    rng = np.random.default_rng(spec.seed)
    with _stage(bar, "users"):
        users = _make_users(rng, spec)
    with _stage(bar, "follows"):
        follows = _make_follows(rng, spec, users)
    with _stage(bar, "blocks and mutes"):
        graph = _make_avoidance(rng, spec, users, follows)
    with _stage(bar, "posts"):
        posts = _make_posts(rng, spec, users)
    with _stage(bar, "impressions"):
        imp = _make_impressions(rng, spec, users, graph, posts)
    with _stage(bar, "actions"):
        reactions = _draw_actions(rng, users, posts, imp)
    return _to_tables(users, graph, posts, imp, reactions)


@contextmanager
def _stage(bar: tqdm, name: str) -> Iterator[None]:
    bar.set_postfix_str(name)
    yield
    bar.update()


# Users and the social graph ----------------------------------------------------------------------


def _make_users(rng: np.random.Generator, spec: WorldSpec) -> _Users:
    n, t = spec.num_users, spec.num_topics
    joined = np.sort(rng.integers(spec.now_ms - 3650 * _DAY_MS, spec.now_ms - 30 * _DAY_MS, n))
    ids = snowflake_id(joined, np.arange(n))  # sequence = index: unique and increasing
    # Tastes: a Dirichlet per user, concentrated on 1-3 favourite topics (popular topics likelier).
    topic_popularity = rng.dirichlet(np.full(t, _TOPIC_SKEW))
    favourites = rng.choice(t, size=(n, 3), p=topic_popularity)
    num_favourites = rng.integers(1, 4, n)
    alpha = np.full((n, t), _TASTE_BACKGROUND)
    for k in range(3):
        rows = np.flatnonzero(num_favourites > k)
        alpha[rows, favourites[rows, k]] += _TASTE_FAVOURITE
    gamma = rng.standard_gamma(alpha) + 1e-12
    taste = (gamma / gamma.sum(axis=1, keepdims=True)).astype(np.float32)
    activity = rng.lognormal(0.0, _ACTIVITY_SIGMA, n)
    authors = np.sort(rng.choice(n, spec.num_authors, replace=False))
    return _Users(
        ids=ids,
        taste=taste,
        match=taste / taste.max(axis=1, keepdims=True),
        activity=(activity / activity.mean()).astype(np.float32),
        propensity=rng.standard_normal(n),
        authors=authors,
        author_topic=taste[authors].argmax(axis=1).astype(np.int64),
        popularity=rng.lognormal(0.0, _POPULARITY_SIGMA, len(authors)),
        quality=rng.standard_normal(len(authors)),
    )


def _make_follows(rng: np.random.Generator, spec: WorldSpec, users: _Users) -> np.ndarray:
    """Users follow authors by popularity and taste; some authors follow their followers back."""
    n, num_authors = spec.num_users, len(users.authors)
    counts = np.rint(rng.lognormal(np.log(_FOLLOWS_MEDIAN), _FOLLOWS_SIGMA, n))
    counts = np.clip(counts, _FOLLOWS_MIN, _FOLLOWS_MAX)
    counts = np.minimum(counts, max(1, num_authors // 2)).astype(np.int64)
    log_popularity = np.log(users.popularity)

    def log_weights(rows: np.ndarray) -> np.ndarray:
        match = users.match[rows][:, users.author_topic]
        weights = log_popularity + _FOLLOW_TASTE_POWER * np.log(match + 0.02)
        weights[users.authors[None, :] == rows[:, None]] = -np.inf  # never follow yourself
        return weights

    follower, author = _gumbel_top_k(rng, log_weights, np.arange(n), counts)
    followee = users.authors[author]
    back = rng.random(len(follower)) < spec.follow_back_rate
    pairs = np.concatenate(
        [np.stack([follower, followee], 1), np.stack([followee[back], follower[back]], 1)]
    )
    return _unique_pairs(pairs, n)


def _make_avoidance(
    rng: np.random.Generator, spec: WorldSpec, users: _Users, follows: np.ndarray
) -> _Graph:
    """Blocks and mutes of off-taste authors, authors blocking strangers, and muted keywords."""
    n = spec.num_users
    blocks = np.concatenate(
        [
            _pick_disliked_authors(rng, users, follows, spec.blocks_per_user),
            _authors_block_strangers(rng, spec, users, follows),
        ]
    )
    mutes = _pick_disliked_authors(rng, users, follows, spec.mutes_per_user)
    keyword_users, keywords = _make_muted_keywords(rng, spec, users)
    return _Graph(
        follows=follows,
        blocks=_unique_pairs(blocks, n),
        mutes=_unique_pairs(mutes, n),
        keyword_users=keyword_users,
        keywords=keywords,
    )


def _pick_disliked_authors(
    rng: np.random.Generator, users: _Users, follows: np.ndarray, rate: float
) -> np.ndarray:
    """(user, author) pairs: each user picks Poisson(rate) authors they do not follow, off-taste
    ones far likelier."""
    n = len(users.ids)
    counts = rng.poisson(rate, n)

    def log_weights(rows: np.ndarray) -> np.ndarray:
        mismatch = 1.0 - users.match[rows][:, users.author_topic]
        weights = _DISLIKE_POWER * np.log(mismatch + 0.05)
        weights[users.authors[None, :] == rows[:, None]] = -np.inf
        return weights

    rows = np.flatnonzero(counts)
    user, author = _gumbel_top_k(rng, log_weights, rows, counts[rows])
    pairs = np.stack([user, users.authors[author]], 1)
    return pairs[~_pairs_in(pairs, follows, n)]


def _authors_block_strangers(
    rng: np.random.Generator, spec: WorldSpec, users: _Users, follows: np.ndarray
) -> np.ndarray:
    """(author, user) pairs: authors block a few random users who do not follow them."""
    n = spec.num_users
    counts = rng.poisson(spec.blocks_per_user * _AUTHOR_BLOCK_SHARE, len(users.authors))
    blocker = np.repeat(users.authors, counts)
    blocked = rng.integers(0, n, len(blocker))
    pairs = np.stack([blocker, blocked], 1)
    keep = (blocker != blocked) & ~_pairs_in(pairs[:, ::-1], follows, n)
    return pairs[keep]


def _make_muted_keywords(
    rng: np.random.Generator, spec: WorldSpec, users: _Users
) -> tuple[np.ndarray, list[str]]:
    """Each user mutes Poisson(rate) words or phrases of topics they dislike."""
    n = spec.num_users
    user = np.repeat(np.arange(n), rng.poisson(spec.muted_keywords_per_user, n))
    topic = _choose_per_row(rng, (1.0 - users.match[user]) ** 2 + 1e-3)
    pick = rng.random(len(user))
    capitalise = rng.random(len(user)) < _CAPITALISED_KEYWORDS
    chosen: dict[tuple[int, str], str] = {}
    for u, t, p, cap in zip(user.tolist(), topic.tolist(), pick, capitalise, strict=True):
        words = TOPIC_WORDS[spec.topics[t]]
        word = words[int(p * len(words))]
        chosen.setdefault((u, word), word.title() if cap else word)
    keys = sorted(chosen)
    return np.array([u for u, _ in keys], dtype=np.int64), [chosen[k] for k in keys]


# Posts -------------------------------------------------------------------------------------------


def _make_posts(rng: np.random.Generator, spec: WorldSpec, users: _Users) -> _Posts:
    num_authors = len(users.authors)
    sigma = _POSTING_SIGMA
    rate = spec.posts_per_author_per_day * rng.lognormal(-(sigma**2) / 2, sigma, num_authors)
    author = np.repeat(np.arange(num_authors), rng.poisson(rate * spec.hours / 24))
    if len(author) == 0:
        raise WorldError("the spec produced no posts: raise posts_per_author_per_day or hours")
    created = rng.integers(spec.now_ms - spec.hours * _HOUR_MS + 1, spec.now_ms, len(author))
    order = np.lexsort((author, created))
    author, created = author[order], created[order]
    ids = snowflake_id(created, np.arange(len(author)) & ((1 << SEQUENCE_BITS) - 1))
    if np.any(np.diff(ids) <= 0):  # pragma: no cover - needs 4M posts in one millisecond
        raise WorldError("post ids collide; lower posts_per_author_per_day")

    kind = _draw_kinds(rng, spec, len(author))
    own_topic = _draw_topics(rng, users, author)
    reposted = _link_reposts(rng, users, created, author, kind)
    parent = _link_replies(rng, users, created, author, kind, own_topic)
    root = _roots(parent)
    topic = np.where(reposted >= 0, own_topic[np.maximum(reposted, 0)], own_topic[root])
    is_video, duration = _draw_videos(rng, spec, kind, reposted)
    return _Posts(
        ids=ids,
        author=author,
        created=created,
        kind=kind,
        topic=topic,
        parent=parent,
        reposted=reposted,
        root=root,
        is_video=is_video,
        duration=duration,
        text=_write_texts(rng, spec, kind, topic),
    )


def _draw_kinds(rng: np.random.Generator, spec: WorldSpec, n: int) -> np.ndarray:
    u = rng.random(n)
    kind = np.full(n, schema.ORIGINAL, dtype=np.int8)
    kind[u < spec.reply_fraction] = schema.REPLY
    kind[(u >= spec.reply_fraction) & (u < spec.reply_fraction + spec.repost_fraction)] = (
        schema.REPOST
    )
    kind[0] = schema.ORIGINAL  # the first post has nothing to answer or repost
    return kind


def _draw_topics(rng: np.random.Generator, users: _Users, author: np.ndarray) -> np.ndarray:
    """Mostly the author's main topic, otherwise a topic drawn from the author's taste."""
    main = users.author_topic[author]
    other = _choose_per_row(rng, users.taste[users.authors[author]].astype(np.float64))
    return np.where(rng.random(len(author)) < _ON_TOPIC_POSTS, main, other)


def _link_reposts(
    rng: np.random.Generator,
    users: _Users,
    created: np.ndarray,
    author: np.ndarray,
    kind: np.ndarray,
) -> np.ndarray:
    """Each repost points at an earlier original by another author (popular ones likelier);
    a repost that finds none becomes an original (`kind` is updated in place)."""
    originals = np.flatnonzero(kind == schema.ORIGINAL)
    reposts = np.flatnonzero(kind == schema.REPOST)
    pick = _sample_in_windows(
        rng,
        created[originals],
        users.popularity[author[originals]],
        created[reposts],
        np.full(len(reposts), _REPOST_WINDOW_MS),
    )
    target = np.where(pick >= 0, originals[np.maximum(pick, 0)], -1)
    ok = (pick >= 0) & (author[np.maximum(target, 0)] != author[reposts])
    kind[reposts[~ok]] = schema.ORIGINAL
    reposted = np.full(len(kind), -1, dtype=np.int64)
    reposted[reposts[ok]] = target[ok]
    return reposted


def _link_replies(
    rng: np.random.Generator,
    users: _Users,
    created: np.ndarray,
    author: np.ndarray,
    kind: np.ndarray,
    own_topic: np.ndarray,
) -> np.ndarray:
    """Each reply answers an earlier original or reply: the best topic match for the replier among
    a few recent, popularity-weighted posts. A reply that finds none becomes an original."""
    pool = np.flatnonzero(kind != schema.REPOST)
    replies = np.flatnonzero(kind == schema.REPLY)
    weights = users.popularity[author[pool]]
    window = np.full(len(replies), _REPLY_WINDOW_MS)
    candidates = np.stack(
        [
            _sample_in_windows(rng, created[pool], weights, created[replies], window)
            for _ in range(_REPLY_CANDIDATES)
        ],
        axis=1,
    )  # [R, K] positions in pool, -1 for none
    replier_match = users.match[users.authors[author[replies]]]  # [R, T]
    candidate_topic = own_topic[pool[np.maximum(candidates, 0)]]  # [R, K]
    score = np.take_along_axis(replier_match, candidate_topic, axis=1)
    score = np.where(candidates >= 0, score + 0.1 * rng.random(score.shape), -np.inf)
    chosen = candidates[np.arange(len(replies)), score.argmax(axis=1)]
    ok = chosen >= 0
    kind[replies[~ok]] = schema.ORIGINAL
    parent = np.full(len(kind), -1, dtype=np.int64)
    parent[replies[ok]] = pool[chosen[ok]]
    return parent


def _roots(parent: np.ndarray) -> np.ndarray:
    """Conversation root of every post, by pointer doubling (parents are always earlier)."""
    root = np.where(parent >= 0, parent, np.arange(len(parent)))
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


def _draw_videos(
    rng: np.random.Generator, spec: WorldSpec, kind: np.ndarray, reposted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Some originals are videos; a repost of a video is a video of the same duration."""
    n = len(kind)
    is_video = (kind == schema.ORIGINAL) & (rng.random(n) < spec.video_fraction)
    seconds = np.clip(np.round(rng.lognormal(np.log(_VIDEO_MEDIAN_S), _VIDEO_SIGMA, n), 1), 1, 600)
    duration = np.where(is_video, seconds, 0.0).astype(np.float32)
    rp = np.flatnonzero(reposted >= 0)
    is_video[rp] = is_video[reposted[rp]]
    duration[rp] = duration[reposted[rp]]
    return is_video, duration


def _write_texts(
    rng: np.random.Generator, spec: WorldSpec, kind: np.ndarray, topic: np.ndarray
) -> list[str]:
    """A handful of words per post, about half from its topic's list; reposts have no text."""
    lists = [TOPIC_WORDS[name] for name in spec.topics]
    vocab = np.array([w for words in lists for w in words] + list(FILLER_WORDS), dtype=object)
    sizes = np.array([len(words) for words in lists])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = len(kind)
    lengths = rng.integers(_WORDS_PER_POST[0], _WORDS_PER_POST[1] + 1, n)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    post = np.repeat(np.arange(n), lengths)
    on_topic = rng.random(len(post)) < _TOPIC_WORD_SHARE
    on_topic[starts + (rng.random(n) * lengths).astype(np.int64)] = True  # at least one per post
    pick = rng.random(len(post))
    t = topic[post]
    index = np.where(
        on_topic,
        offsets[t] + (pick * sizes[t]).astype(np.int64),
        offsets[-1] + (pick * len(FILLER_WORDS)).astype(np.int64),
    )
    endings = np.array(["", ".", "!", "?"], dtype=object)[rng.integers(0, 4, n)]
    texts = []
    for words, end, k in zip(np.split(vocab[index], starts[1:]), endings, kind, strict=True):
        sentence = " ".join(words)
        texts.append("" if k == schema.REPOST else sentence[0].upper() + sentence[1:] + end)
    return texts


# Impressions -------------------------------------------------------------------------------------


@dataclass
class _Feed:
    """What a viewer can be served: every post with the viewer-independent facts about it."""

    spec: WorldSpec
    users: _Users
    posts: _Posts
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


def _make_impressions(
    rng: np.random.Generator, spec: WorldSpec, users: _Users, graph: _Graph, posts: _Posts
) -> _Impressions:
    n = spec.num_users
    blocks = graph.blocks
    avoid_pairs = np.concatenate([blocks, blocks[:, ::-1], graph.mutes])
    feed = _Feed(
        spec=spec,
        users=users,
        posts=posts,
        post_user=users.authors[posts.author],
        weight=np.sqrt(users.popularity[posts.author]),
        following=_adjacency(graph.follows, n),
        avoided=_adjacency(_unique_pairs(avoid_pairs, n), n),
        scratch=np.zeros(n, dtype=bool),
    )
    counts = rng.poisson(spec.impressions_per_user * users.activity.astype(np.float64))
    parts = [_serve_viewer(rng, feed, v, int(c)) for v, c in enumerate(counts)]
    post = np.concatenate([p for p, _, _ in parts])
    return _Impressions(
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
        pick = _sample_in_windows(rng, posts.created[pool], weight, served[mask], window[mask])
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


def _draw_actions(
    rng: np.random.Generator, users: _Users, posts: _Posts, imp: _Impressions
) -> _Reactions:
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
    return _Reactions(surface=surface, actions=actions, dwell_time=dwell_time)


def _impression_features(
    rng: np.random.Generator, users: _Users, posts: _Posts, imp: _Impressions
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


# Tables and files --------------------------------------------------------------------------------


def _to_tables(
    users: _Users, graph: _Graph, posts: _Posts, imp: _Impressions, reactions: _Reactions
) -> dict[str, pa.Table]:
    ids, n = users.ids, len(users.ids)
    is_author = np.zeros(n, dtype=bool)
    is_author[users.authors] = True
    author_topic = np.full(n, -1, dtype=np.int32)
    author_topic[users.authors] = users.author_topic
    offsets = np.arange(0, users.taste.size + 1, users.taste.shape[1], dtype=np.int32)
    columns: dict[str, dict[str, Any]] = {
        "users": {
            "user_id": ids,
            "taste": pa.ListArray.from_arrays(offsets, users.taste.reshape(-1)),
            "is_author": is_author,
            "author_topic": author_topic,
            "follower_count": np.bincount(graph.follows[:, 1], minlength=n).astype(np.int64),
            "activity": users.activity,
        },
        "follows": _pair_columns(ids, graph.follows, "follower_id", "followee_id"),
        "blocks": _pair_columns(ids, graph.blocks, "user_id", "blocked_id"),
        "mutes": _pair_columns(ids, graph.mutes, "user_id", "muted_id"),
        "muted_keywords": {
            "user_id": ids[graph.keyword_users],
            "keyword": pa.array(graph.keywords, type=pa.string()),
        },
        "posts": _post_columns(users, posts),
        "engagements": _engagement_columns(users, posts, imp, reactions),
    }
    return {
        name: pa.Table.from_pydict(columns[name], schema=schema.TABLES[name])
        for name in schema.TABLES
    }


def _pair_columns(ids: np.ndarray, pairs: np.ndarray, first: str, second: str) -> dict[str, Any]:
    return {first: ids[pairs[:, 0]], second: ids[pairs[:, 1]]}


def _post_columns(users: _Users, posts: _Posts) -> dict[str, Any]:
    def post_id_or_zero(index: np.ndarray) -> np.ndarray:
        return np.where(index >= 0, posts.ids[np.maximum(index, 0)], 0)

    return {
        "post_id": posts.ids,
        "author_id": users.ids[users.authors[posts.author]],
        "created_ms": posts.created,
        "kind": posts.kind,
        "topic": posts.topic.astype(np.int32),
        "parent_id": post_id_or_zero(posts.parent),
        "reposted_id": post_id_or_zero(posts.reposted),
        "conversation_id": posts.ids[posts.root],
        "is_video": posts.is_video,
        "video_duration_s": posts.duration,
        "text": pa.array(posts.text, type=pa.string()),
    }


def _engagement_columns(
    users: _Users, posts: _Posts, imp: _Impressions, reactions: _Reactions
) -> dict[str, Any]:
    return {
        "viewer_id": users.ids[imp.viewer],
        "post_id": posts.ids[imp.post],
        "served_ms": imp.served,
        "surface": reactions.surface,
        **{name: reactions.actions[:, i] for i, name in enumerate(ACTIONS)},
        "dwell_time_s": reactions.dwell_time,
    }


def _write(directory: Path, spec: WorldSpec, tables: dict[str, pa.Table]) -> None:
    for name, table in tables.items():
        pq.write_table(table, table_path(directory, name), compression="zstd")
    meta = _meta(spec, {name: table.num_rows for name, table in tables.items()})
    (directory / schema.META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _meta(spec: WorldSpec, row_counts: dict[str, int]) -> dict[str, Any]:
    return {
        "schema_version": FORMAT_VERSION,
        "seed": spec.seed,
        "now_ms": spec.now_ms,
        "num_topics": spec.num_topics,
        "topics": list(spec.topics),
        "spec": spec.model_dump(),
        "row_counts": row_counts,
        "topic_words": {name: list(TOPIC_WORDS[name]) for name in spec.topics},
        "filler_words": list(FILLER_WORDS),
        "ground_truth": {
            "formula": "P(action) = sigmoid(bias + sum(coefficient * feature))",
            "features": {
                "topic_match": "viewer taste[post topic] / max(viewer taste), in [0, 1]",
                "author_affinity": "1 if the viewer follows the post's author, else 0",
                "author_quality": "hidden standard-normal trait of the author",
                "viewer_propensity": "hidden standard-normal trait of the viewer",
                "interest": "standard-normal noise shared by the actions of one impression",
                "video": "1 for a video post or a repost of one",
                "reply": "1 for a reply",
                "repost": "1 for a repost",
            },
            "actions": {name: GROUND_TRUTH[name]._asdict() for name in ACTIONS},
            "video_only_actions": sorted(VIDEO_ONLY_ACTIONS),
            "out_of_network_only_actions": sorted(OUT_OF_NETWORK_ONLY_ACTIONS),
            "negative_feedback_cancels_positive_actions": True,
            "dwell_time_s": {
                "distribution": "lognormal, clipped to [0.5, 29.9], 0 unless dwell",
                "median_s": f"{DWELL_TIME_MEDIAN_S} * (1 + {DWELL_TIME_MATCH_GAIN} * topic_match)",
                "sigma": DWELL_TIME_SIGMA,
            },
        },
    }


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise WorldError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise WorldError(f"{out_dir} is not empty; pass --overwrite (overwrite=True) to replace it")


def _make_sibling(out_dir: Path, tag: str) -> Path:
    """A new hidden directory beside `out_dir` (same filesystem, so renames are atomic). Unlike
    tempfile.mkdtemp it honours the umask, so the finished world is as readable as any directory."""
    for _ in range(100):
        path = out_dir.with_name(f".{out_dir.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise WorldError(f"cannot create a temporary directory beside {out_dir}")  # pragma: no cover


def _move_into_place(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the finished world onto `out_dir`, moving an old world aside first."""
    _check_target(out_dir, overwrite)
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = _make_sibling(out_dir, "old")
    os.replace(out_dir, old / "world")
    try:
        os.replace(tmp, out_dir)
    except OSError:
        os.replace(old / "world", out_dir)  # put the old world back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


# Sampling helpers --------------------------------------------------------------------------------


def _gumbel_top_k(
    rng: np.random.Generator,
    log_weights: Callable[[np.ndarray], np.ndarray],
    rows: np.ndarray,
    counts: np.ndarray,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """For each row r of `rows`, `counts` distinct columns drawn without replacement with
    probability proportional to exp(log_weights(rows)[r]) (the Gumbel top-k trick). Columns of
    weight 0 (log -inf) are never drawn. Returns flat (row, column) arrays."""
    out_rows, out_cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, len(rows), chunk):
        block = rows[start : start + chunk]
        keys = log_weights(block)
        keys = keys + rng.gumbel(size=keys.shape)
        order = np.argsort(-keys, axis=1, kind="stable")
        r, c = np.nonzero(np.arange(keys.shape[1]) < counts[start : start + chunk, None])
        cols = order[r, c]
        keep = np.isfinite(keys[r, cols])
        out_rows.append(block[r[keep]])
        out_cols.append(cols[keep])
    return np.concatenate(out_rows), np.concatenate(out_cols)


def _sample_in_windows(
    rng: np.random.Generator,
    created: np.ndarray,
    weights: np.ndarray,
    times: np.ndarray,
    windows: np.ndarray,
) -> np.ndarray:
    """For each time t, one item of a time-sorted pool created in [t - window, t), with probability
    proportional to its weight; -1 where that range holds no weight."""
    cum = np.concatenate([[0.0], np.cumsum(weights, dtype=np.float64)])
    lo = np.searchsorted(created, times - windows, side="left")
    hi = np.searchsorted(created, times, side="left")  # strictly before t
    target = cum[lo] + rng.random(len(times)) * (cum[hi] - cum[lo])
    pick = np.clip(np.searchsorted(cum, target, side="right") - 1, lo, np.maximum(hi - 1, lo))
    return np.where(cum[hi] > cum[lo], pick, -1)


def _choose_per_row(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One column per row of `weights` [R, C], drawn proportionally to the row."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cdf[:, -1] if len(weights) else np.zeros(0)
    return np.minimum((cdf < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def _unique_pairs(pairs: np.ndarray, n: int) -> np.ndarray:
    """Distinct (a, b) index pairs sorted by a then b."""
    codes = np.unique(pairs[:, 0].astype(np.int64) * n + pairs[:, 1])
    return np.stack([codes // n, codes % n], axis=1)


def _pairs_in(pairs: np.ndarray, existing: np.ndarray, n: int) -> np.ndarray:
    """Per row of `pairs`: is it one of the rows of `existing`?"""
    return np.isin(pairs[:, 0] * n + pairs[:, 1], existing[:, 0] * n + existing[:, 1])


def _adjacency(pairs: np.ndarray, n: int) -> list[np.ndarray]:
    """Per first index (0..n-1), the second indices of the sorted `pairs` that start with it."""
    bounds = np.searchsorted(pairs[:, 0], np.arange(n + 1))
    return [pairs[bounds[i] : bounds[i + 1], 1] for i in range(n)]
