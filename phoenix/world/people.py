"""Users and the social graph: users with hidden topic tastes, activity and traits; authors with
a main topic, popularity and quality; who follows whom; blocks, mutes and muted keywords.

Users are rows of `Users` (their ids increase with the index); authors are positions in
`Users.authors`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phoenix.snowflake import snowflake_id
from phoenix.world._sampling import choose_per_row, gumbel_top_k, pairs_in, unique_pairs
from phoenix.world.spec import TOPIC_WORDS, WorldSpec

_DAY_MS = 24 * 3_600_000

# Shapes of the hidden world (the sizes are in WorldSpec). --------------------------------------
_TOPIC_SKEW = 4.0  # Dirichlet concentration of topic popularity (smaller = more skewed)
_TASTE_BACKGROUND = 0.05  # Dirichlet alpha of the topics a user does not care about
_TASTE_FAVOURITE = 2.0  # alpha added for each of a user's 1-3 favourite topics
_ACTIVITY_SIGMA = 0.5  # lognormal spread of user activity
_POPULARITY_SIGMA = 2.5  # lognormal spread of author popularity: heavy-tailed follower counts
_FOLLOWS_MEDIAN, _FOLLOWS_SIGMA = 50.0, 0.6  # accounts a user follows (lognormal) ...
_FOLLOWS_MIN, _FOLLOWS_MAX = 10, 150  # ... clipped, and at most half of the authors
_FOLLOW_TASTE_POWER = 2.0  # follow weight = popularity * (topic match + 0.02) ** power
_DISLIKE_POWER = 2.0  # block/mute weight = (1 - topic match + 0.05) ** power
_AUTHOR_BLOCK_SHARE = 0.5  # authors block random non-followers at this share of blocks_per_user
_CAPITALISED_KEYWORDS = 0.25  # muted keywords written "Title Case" (matching ignores case)


@dataclass
class Users:
    """Every user's hidden tastes and traits, and which users are authors."""

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
class Graph:
    """Who follows, blocks and mutes whom, and the keywords users mute."""

    follows: np.ndarray  # int64 [F, 2] (follower, followee) user indices, sorted, unique
    blocks: np.ndarray  # int64 [B, 2] (user, blocked)
    mutes: np.ndarray  # int64 [M, 2] (user, muted author)
    keyword_users: np.ndarray  # int64 [K] user index of each muted keyword
    keywords: list[str]  # [K]


def make_users(rng: np.random.Generator, spec: WorldSpec) -> Users:
    """Users with tastes concentrated on a few topics; a random subset of them are authors."""
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
    return Users(
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


def make_follows(rng: np.random.Generator, spec: WorldSpec, users: Users) -> np.ndarray:
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

    follower, author = gumbel_top_k(rng, log_weights, np.arange(n), counts)
    followee = users.authors[author]
    back = rng.random(len(follower)) < spec.follow_back_rate
    pairs = np.concatenate(
        [np.stack([follower, followee], 1), np.stack([followee[back], follower[back]], 1)]
    )
    return unique_pairs(pairs, n)


def make_avoidance(
    rng: np.random.Generator, spec: WorldSpec, users: Users, follows: np.ndarray
) -> Graph:
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
    return Graph(
        follows=follows,
        blocks=unique_pairs(blocks, n),
        mutes=unique_pairs(mutes, n),
        keyword_users=keyword_users,
        keywords=keywords,
    )


def _pick_disliked_authors(
    rng: np.random.Generator, users: Users, follows: np.ndarray, rate: float
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
    user, author = gumbel_top_k(rng, log_weights, rows, counts[rows])
    pairs = np.stack([user, users.authors[author]], 1)
    return pairs[~pairs_in(pairs, follows, n)]


def _authors_block_strangers(
    rng: np.random.Generator, spec: WorldSpec, users: Users, follows: np.ndarray
) -> np.ndarray:
    """(author, user) pairs: authors block a few random users who do not follow them."""
    n = spec.num_users
    counts = rng.poisson(spec.blocks_per_user * _AUTHOR_BLOCK_SHARE, len(users.authors))
    blocker = np.repeat(users.authors, counts)
    blocked = rng.integers(0, n, len(blocker))
    pairs = np.stack([blocker, blocked], 1)
    keep = (blocker != blocked) & ~pairs_in(pairs[:, ::-1], follows, n)
    return pairs[keep]


def _make_muted_keywords(
    rng: np.random.Generator, spec: WorldSpec, users: Users
) -> tuple[np.ndarray, list[str]]:
    """Each user mutes Poisson(rate) words or phrases of topics they dislike."""
    n = spec.num_users
    user = np.repeat(np.arange(n), rng.poisson(spec.muted_keywords_per_user, n))
    topic = choose_per_row(rng, (1.0 - users.match[user]) ** 2 + 1e-3)
    pick = rng.random(len(user))
    capitalise = rng.random(len(user)) < _CAPITALISED_KEYWORDS
    chosen: dict[tuple[int, str], str] = {}
    for u, t, p, cap in zip(user.tolist(), topic.tolist(), pick, capitalise, strict=True):
        words = TOPIC_WORDS[spec.topics[t]]
        word = words[int(p * len(words))]
        chosen.setdefault((u, word), word.title() if cap else word)
    keys = sorted(chosen)
    return np.array([u for u, _ in keys], dtype=np.int64), [chosen[k] for k in keys]
