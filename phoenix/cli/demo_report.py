"""What `phoenix demo` prints: a viewer's feed beside the hidden taste the world gave them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phoenix.world.io import World

#: Topics of a viewer's taste shown, and counted as "on taste" in the summary line.
TOP_TOPICS = 3
#: Predicted actions shown per post.
TOP_ACTIONS = 3


@dataclass(frozen=True)
class WorldFacts:
    """The ground truth a feed is compared with: tastes and post topics."""

    topics: list[str]
    taste: dict[int, np.ndarray]  # user id -> topic preference (sums to 1)
    post_topic: dict[int, int]  # post id -> topic index

    @classmethod
    def of(cls, world: World) -> WorldFacts:
        users = world.users.to_pydict()
        posts = world.posts.to_pydict()
        return cls(
            topics=world.topics,
            taste={
                u: np.asarray(t, np.float64)
                for u, t in zip(users["user_id"], users["taste"], strict=True)
            },
            post_topic=dict(zip(posts["post_id"], posts["topic"], strict=True)),
        )

    def topic_share(self, topics: list[int]) -> float:
        """The share of the world's posts on `topics`: what a feed blind to taste would show."""
        if not self.post_topic:
            return 0.0
        return sum(t in topics for t in self.post_topic.values()) / len(self.post_topic)

    def favourite_topics(self, user_id: int) -> list[int]:
        return [int(i) for i in np.argsort(-self.taste[user_id])[:TOP_TOPICS]]


def format_feed(facts: WorldFacts, viewer_id: int, feed: dict, shown: int = 10) -> str:
    """A header with the viewer's hidden taste, a table of the first `shown` posts, and how much
    of the whole feed is on the viewer's favourite topics."""
    favourite = facts.favourite_topics(viewer_id)
    taste = ", ".join(f"{facts.topics[t]} {facts.taste[viewer_id][t]:.2f}" for t in favourite)
    posts = feed["posts"]
    lines = [
        f"viewer {viewer_id}: hidden taste {taste}"
        + ("  [DEGRADED: " + str(feed.get("degraded_reason")) + "]" if feed["degraded"] else ""),
        f"  {'#':>2}  {'post':>19}  {'author':>19}  {'source':<17} {'score':>8}  "
        f"{'topic':<11} top predicted actions",
    ]
    for rank, p in enumerate(posts[:shown], 1):
        topic = facts.post_topic.get(p["post_id"])
        name = facts.topics[topic] if topic is not None else "?"
        mark = "*" if topic in favourite else " "
        predictions = sorted(p["predictions"].items(), key=lambda kv: -kv[1])[:TOP_ACTIONS]
        actions = ", ".join(f"{a} {v:.2f}" for a, v in predictions) or "-"
        lines.append(
            f"  {rank:>2}  {p['post_id']:>19}  {p['author_id']:>19}  {p['source']:<17} "
            f"{p['score']:>8.4f}  {mark}{name:<10} {actions}"
        )
    on_taste = sum(facts.post_topic.get(p["post_id"]) in favourite for p in posts)
    lines.append(
        f"  {on_taste}/{len(posts)} posts on the viewer's top-{TOP_TOPICS} topics (*), against "
        f"{facts.topic_share(favourite):.0%} of all posts; "
        f"in-network {sum(p['in_network'] for p in posts)}, "
        f"ranked in {feed['timings_ms'].get('total', 0):.0f} ms"
    )
    return "\n".join(lines)
