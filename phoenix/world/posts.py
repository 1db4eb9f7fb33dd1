"""Posts: originals, replies and reposts by authors over the spec's hours, with topics, videos and
text. Posts are rows of `Posts` in time order (their ids increase with the index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phoenix.errors import WorldError
from phoenix.snowflake import SEQUENCE_BITS, snowflake_id
from phoenix.world import schema
from phoenix.world._sampling import choose_per_row, sample_in_windows
from phoenix.world.people import Users
from phoenix.world.spec import FILLER_WORDS, TOPIC_WORDS, WorldSpec

_HOUR_MS = 3_600_000

_POSTING_SIGMA = 1.0  # lognormal spread of posting rates across authors
_ON_TOPIC_POSTS = 0.8  # share of an author's posts on their main topic
_REPOST_WINDOW_MS = 24 * _HOUR_MS  # a repost quotes an original at most this old
_REPLY_WINDOW_MS = 12 * _HOUR_MS  # a reply answers a post at most this old
_REPLY_CANDIDATES = 4  # a replier picks the best topic match among this many recent posts
_VIDEO_MEDIAN_S, _VIDEO_SIGMA = 15.0, 0.9  # video durations: about a third under 10 s
_WORDS_PER_POST = (4, 12)  # inclusive range of words (a phrase counts once) in a post's text
_TOPIC_WORD_SHARE = 0.5  # share of a post's words drawn from its topic's list


@dataclass
class Posts:
    """Every post, in time order."""

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


def make_posts(rng: np.random.Generator, spec: WorldSpec, users: Users) -> Posts:
    """Posts at each author's own rate over the spec's hours, linked into replies and reposts."""
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
    return Posts(
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


def _draw_topics(rng: np.random.Generator, users: Users, author: np.ndarray) -> np.ndarray:
    """Mostly the author's main topic, otherwise a topic drawn from the author's taste."""
    main = users.author_topic[author]
    other = choose_per_row(rng, users.taste[users.authors[author]].astype(np.float64))
    return np.where(rng.random(len(author)) < _ON_TOPIC_POSTS, main, other)


def _link_reposts(
    rng: np.random.Generator,
    users: Users,
    created: np.ndarray,
    author: np.ndarray,
    kind: np.ndarray,
) -> np.ndarray:
    """Each repost points at an earlier original by another author (popular ones likelier);
    a repost that finds none becomes an original (`kind` is updated in place)."""
    originals = np.flatnonzero(kind == schema.ORIGINAL)
    reposts = np.flatnonzero(kind == schema.REPOST)
    pick = sample_in_windows(
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
    users: Users,
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
            sample_in_windows(rng, created[pool], weights, created[replies], window)
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


# Semantic ids ------------------------------------------------------------------------------------

#: Branches per level of the code tree: level 0 splits each topic in two, level 1 in four (video
#: posts always take branch 0 there), level 2 in eight; deeper levels are post-specific noise.
_SID_BRANCHES = (2, 4, 8)
_SID_MISSING = 0.05  # share of posts without semantic ids (all codes 0), as for X's unmapped posts


def make_semantic_ids(rng: np.random.Generator, posts: Posts) -> np.ndarray:
    """[P, SID_LEVELS] int16 codes in 1..SID_CODES, 0 for a post without semantic ids.

    Like the codes of a residual quantiser, the first levels name ever finer clusters of content
    (topic, then video or not, then narrower), deeper levels are nearly unique to the post. Each
    level has its own random codebook, so equal codes at two levels mean nothing. A repost carries
    its original's codes (same content).
    """
    n = len(posts.ids)
    codes = np.zeros((n, schema.SID_LEVELS), dtype=np.int64)
    path = posts.topic.astype(np.int64)
    for level in range(schema.SID_LEVELS):
        if level < len(_SID_BRANCHES):
            branch = rng.integers(0, _SID_BRANCHES[level], n)
            if level == 1:
                branch = np.where(posts.is_video, 0, np.maximum(branch, 1))
            path = path * _SID_BRANCHES[level] + branch
            codebook = rng.permutation(schema.SID_CODES)
            codes[:, level] = codebook[path % schema.SID_CODES] + 1
        else:
            codes[:, level] = rng.integers(1, schema.SID_CODES + 1, n)
    codes[rng.random(n) < _SID_MISSING] = 0
    reposts = np.flatnonzero(posts.reposted >= 0)
    codes[reposts] = codes[posts.reposted[reposts]]
    return codes.astype(np.int16)
