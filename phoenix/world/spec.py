"""What a synthetic world is made of: its sizes (`WorldSpec`), its vocabulary, and the hidden
ground-truth model that decides which actions a viewer takes on an impression.

Everything here is written into `world.json`, so evaluation can report how close a trained ranker
gets to the truth and a world can be regenerated from its own description.
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from phoenix.actions import ACTIONS

#: 2026-08-01T00:00:00Z: the default "now" of a world. Fixed so that a seed gives the same bytes.
DEFAULT_NOW_MS = 1_785_542_400_000
_MIN_NOW_MS = 1_420_070_400_000  # 2015-01-01: accounts join up to ten years before now
_MAX_NOW_MS = 3_155_760_000_000  # 2070-01-01: well inside the 41-bit snowflake time range

#: Per-topic vocabulary: plain lowercase words plus a few two-word phrases (so muted phrases match
#: real text). No word appears in two topics or in FILLER_WORDS; tests check this.
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "football": (
        "goal", "striker", "midfielder", "goalkeeper", "penalty", "offside", "referee", "tackle",
        "dribble", "header", "stadium", "derby", "transfer", "winger", "defender", "pitch",
        "crossbar", "fixture", "relegation", "kickoff", "ultras",
        "free kick", "world cup", "clean sheet", "hat trick",
    ),
    "basketball": (
        "dunk", "rebound", "layup", "hoop", "buzzer", "assist", "playoffs", "rookie", "backboard",
        "crossover", "jumpshot", "fadeaway", "courtside", "rim", "draft", "mvp", "nba",
        "overtime", "franchise", "tipoff",
        "alley oop", "free throw", "point guard", "triple double", "shot clock",
    ),
    "technology": (
        "smartphone", "laptop", "software", "hardware", "startup", "gadget", "battery", "chip",
        "processor", "keyboard", "browser", "firmware", "bluetooth", "headphones", "router",
        "cloud", "server", "developer", "app", "tablet", "ssd",
        "open source", "operating system", "product launch", "screen protector",
    ),
    "ai": (
        "neural", "chatbot", "transformer", "training", "dataset", "benchmark", "inference",
        "gpu", "prompt", "agent", "alignment", "reasoning", "embedding", "tokens", "finetuning",
        "hallucination", "robotics", "autonomous", "algorithm", "parameters",
        "machine learning", "language model", "deep learning", "reinforcement learning",
        "context window",
    ),
    "crypto": (
        "bitcoin", "ethereum", "blockchain", "wallet", "altcoin", "mining", "halving", "defi",
        "nft", "stablecoin", "exchange", "ledger", "satoshi", "hodl", "airdrop", "memecoin",
        "validator", "staking", "whale", "rugpull", "solana",
        "bull run", "bear market", "smart contract", "gas fees",
    ),
    "politics": (
        "election", "senate", "congress", "ballot", "campaign", "candidate", "policy", "debate",
        "parliament", "governor", "legislation", "veto", "poll", "senator", "referendum",
        "coalition", "lobbyist", "filibuster", "mayor", "diplomat", "minister",
        "supreme court", "prime minister", "town hall", "swing state",
    ),
    "music": (
        "album", "guitar", "concert", "melody", "lyrics", "drummer", "chorus", "vinyl",
        "playlist", "singer", "bassist", "encore", "rapper", "remix", "songwriter", "orchestra",
        "piano", "violin", "synth", "setlist", "acoustic", "duet",
        "record label", "world tour", "music festival",
    ),
    "movies": (
        "cinema", "director", "trailer", "sequel", "actor", "actress", "screenplay",
        "blockbuster", "premiere", "oscar", "hollywood", "producer", "cameo", "villain",
        "prequel", "remake", "documentary", "screenwriter", "cinematography", "popcorn",
        "box office", "red carpet", "plot twist", "post credits", "film festival",
    ),
    "gaming": (
        "console", "controller", "multiplayer", "speedrun", "esports", "respawn", "loot",
        "quest", "gamer", "playstation", "xbox", "nintendo", "patch", "dlc", "rpg", "streamer",
        "twitch", "leaderboard", "checkpoint", "sandbox",
        "boss fight", "open world", "battle royale", "game pass", "save file",
    ),
    "cooking": (
        "recipe", "oven", "garlic", "pasta", "sourdough", "chef", "knife", "skillet", "broth",
        "roast", "bake", "spice", "flour", "butter", "onion", "simmer", "marinade", "dumplings",
        "ramen", "curry", "brunch", "dessert",
        "cast iron", "meal prep", "olive oil",
    ),
    "science": (
        "telescope", "physics", "chemistry", "experiment", "molecule", "galaxy", "quantum",
        "fossil", "genome", "neutron", "laboratory", "hypothesis", "microscope", "asteroid",
        "enzyme", "particle", "climate", "vaccine", "evolution", "astronomy",
        "black hole", "peer review", "dark matter", "periodic table", "mars rover",
    ),
    "travel": (
        "passport", "airport", "flight", "hotel", "backpacking", "itinerary", "luggage", "beach",
        "hostel", "visa", "layover", "cruise", "roadtrip", "souvenir", "tourist", "resort",
        "jetlag", "island", "hiking", "train",
        "boarding pass", "carry on", "window seat", "travel tips", "bucket list",
    ),
}  # fmt: skip

#: Common words mixed into every post's text.
FILLER_WORDS: tuple[str, ...] = (
    "the", "a", "just", "really", "so", "this", "that", "today", "tonight", "new", "great",
    "best", "honestly", "what", "amazing", "think", "love", "week", "my", "our", "your", "about",
    "finally", "still", "again", "watching", "anyone", "more", "here", "thread", "big", "wow",
    "never", "always", "every", "with", "and", "for", "not", "is",
)  # fmt: skip


class ActionTruth(NamedTuple):
    """Coefficients of one action's ground truth: P(action) = sigmoid(bias + sum(coef * feature)).

    Features of an impression: topic_match = taste[post topic] / max(taste) in [0, 1];
    author_affinity = 1 when the viewer follows the author, else 0; author_quality and
    viewer_propensity are hidden standard-normal traits of the author and the viewer; interest is
    standard-normal noise shared by all actions of one impression (it correlates them); video,
    reply and repost are 0/1 post-type flags.
    """

    bias: float
    topic_match: float
    author_affinity: float
    author_quality: float
    viewer_propensity: float
    interest: float
    video: float
    reply: float
    repost: float


#: The hidden model every engagement is drawn from. Positive actions rise with topic match,
#: negative ones (NEGATIVE_ACTIONS) with mismatch and are rare. Favorite is the strongest signal.
GROUND_TRUTH: dict[str, ActionTruth] = {
    #                              bias  match  affin  qual  prop  inter video reply repost
    "favorite":            ActionTruth(-6.5,  6.5,  0.5,  0.6,  0.5,  0.4,  0.0, -0.4, -0.3),
    "reply":               ActionTruth(-6.5,  2.5,  1.0,  0.3,  0.4,  0.4,  0.0,  0.6, -1.0),
    "repost":              ActionTruth(-6.0,  2.5,  0.4,  0.6,  0.4,  0.4,  0.0, -0.5, -0.5),
    "photo_expand":        ActionTruth(-4.5,  1.0,  0.2,  0.3,  0.2,  0.3, -4.0, -0.5, -0.5),
    "click":               ActionTruth(-3.8,  1.5,  0.2,  0.3,  0.3,  0.3,  0.0,  0.0,  0.0),
    "profile_click":       ActionTruth(-5.0,  1.2, -0.8,  0.5,  0.2,  0.3,  0.0,  0.0,  0.3),
    "vqv":                 ActionTruth(-2.0,  2.0,  0.3,  0.5,  0.3,  0.4,  0.0,  0.0,  0.0),
    "share":               ActionTruth(-6.5,  2.0,  0.3,  0.6,  0.3,  0.4,  0.3,  0.0,  0.0),
    "share_via_dm":        ActionTruth(-6.8,  2.0,  0.5,  0.5,  0.3,  0.4,  0.3,  0.0,  0.0),
    "share_via_copy_link": ActionTruth(-7.5,  1.5,  0.3,  0.5,  0.3,  0.4,  0.0,  0.0,  0.0),
    "dwell":               ActionTruth(-2.4,  3.0,  0.3,  0.4,  0.3,  0.5,  0.3,  0.0,  0.0),
    "quote":               ActionTruth(-7.5,  2.0,  0.3,  0.4,  0.3,  0.4,  0.0,  0.0, -0.5),
    "quoted_click":        ActionTruth(-7.0,  1.0,  0.2,  0.3,  0.2,  0.3,  0.0,  0.0,  0.0),
    "follow_author":       ActionTruth(-6.5,  3.0,  0.0,  1.0,  0.3,  0.4,  0.0,  0.0,  0.0),
    "not_interested":      ActionTruth(-4.5, -3.0, -0.5, -0.3,  0.0, -0.4,  0.0,  0.0,  0.0),
    "block_author":        ActionTruth(-7.5, -2.5, -1.0, -0.8,  0.0, -0.4,  0.0,  0.0,  0.0),
    "mute_author":         ActionTruth(-7.0, -2.5, -0.5, -0.5,  0.0, -0.4,  0.0,  0.0,  0.0),
    "report":              ActionTruth(-8.5, -2.0, -1.0, -1.0,  0.0, -0.4,  0.0,  0.0,  0.0),
    "video_open":          ActionTruth(-2.5,  1.5,  0.2,  0.3,  0.3,  0.3,  0.0,  0.0,  0.0),
    "open_link":           ActionTruth(-5.0,  1.0,  0.2,  0.3,  0.2,  0.3,  0.0,  0.0,  0.0),
    "quoted_vqv":          ActionTruth(-6.0,  1.0,  0.2,  0.3,  0.2,  0.3,  0.0,  0.0,  0.0),
    "not_dwelled":         ActionTruth(-3.0, -2.5, -0.3, -0.3,  0.0, -0.4,  0.0,  0.0,  0.0),
}  # fmt: skip
if tuple(GROUND_TRUTH) != ACTIONS:  # pragma: no cover - a programming error caught at import
    raise RuntimeError("GROUND_TRUTH must list every action of phoenix.actions.ACTIONS in order")

#: Actions that only exist on video posts (and reposts of them).
VIDEO_ONLY_ACTIONS = frozenset({"vqv", "video_open", "quoted_vqv"})
#: Actions impossible when the viewer already follows the author.
OUT_OF_NETWORK_ONLY_ACTIONS = frozenset({"follow_author"})
#: Dwell time when dwelled: lognormal with median `base * (1 + gain * topic_match)` seconds.
DWELL_TIME_MEDIAN_S = 3.0
DWELL_TIME_MATCH_GAIN = 2.0
DWELL_TIME_SIGMA = 0.6


class WorldSpec(BaseModel):
    """Seed and sizes of a synthetic world. The same spec always produces the same bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(ge=0, le=2**63 - 1, description="Seed of the only random generator used.")
    num_users: int = Field(default=2000, ge=10, le=1_000_000, description="Users (viewers).")
    num_authors: int = Field(
        default=300, ge=2, le=100_000, description="Users who post originals (<= num_users)."
    )
    num_topics: int = Field(
        default=12, ge=2, le=len(TOPIC_WORDS), description="Topics posts and tastes range over."
    )
    hours: int = Field(
        default=72, ge=1, le=24 * 30, description="Posts and impressions span the last HOURS."
    )
    posts_per_author_per_day: float = Field(
        default=6.0, gt=0, le=1000, description="Mean posts a day per author (heavy-tailed)."
    )
    impressions_per_user: float = Field(
        default=120.0,
        gt=0,
        le=100_000,
        description="Mean impressions drawn per user, scaled by activity (repeats of a post and "
        "impressions with nothing to show are dropped).",
    )
    in_network_fraction: float = Field(
        default=0.7, ge=0, le=1, description="Share of impressions from followed accounts."
    )
    reply_fraction: float = Field(default=0.2, ge=0, le=0.9, description="Share of replies.")
    repost_fraction: float = Field(default=0.1, ge=0, le=0.9, description="Share of reposts.")
    video_fraction: float = Field(
        default=0.15, ge=0, le=1, description="Share of original posts that are videos."
    )
    follow_back_rate: float = Field(
        default=0.1, ge=0, le=1, description="Chance an author follows a follower back."
    )
    blocks_per_user: float = Field(
        default=0.4, ge=0, le=100, description="Mean accounts each user blocks."
    )
    mutes_per_user: float = Field(
        default=0.6, ge=0, le=100, description="Mean authors each user mutes."
    )
    muted_keywords_per_user: float = Field(
        default=0.5, ge=0, le=100, description="Mean muted keywords per user."
    )
    now_ms: int = Field(
        default=DEFAULT_NOW_MS,
        ge=_MIN_NOW_MS,
        le=_MAX_NOW_MS,
        description="The world's 'now' in Unix ms (fixed, never the wall clock).",
    )

    @field_validator("num_authors")
    @classmethod
    def _authors_are_users(cls, value: int, info: ValidationInfo) -> int:
        users = info.data.get("num_users")
        if users is not None and value > users:
            raise ValueError(f"must be at most num_users ({users}), got {value}")
        return value

    @field_validator("repost_fraction")
    @classmethod
    def _room_for_originals(cls, value: float, info: ValidationInfo) -> float:
        replies = info.data.get("reply_fraction")
        if replies is not None and replies + value > 0.95:
            raise ValueError(
                f"reply_fraction + repost_fraction must be <= 0.95, got {replies + value}"
            )
        return value

    @property
    def topics(self) -> tuple[str, ...]:
        """Names of the topics in use, in topic-id order."""
        return tuple(TOPIC_WORDS)[: self.num_topics]
