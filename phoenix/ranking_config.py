"""Ranking weights and factors (docs/DESIGN.md §5), as swappable configuration.

The ranker predicts probabilities; the feed order comes from a weighted sum of them followed by a
new-author boost, author diversity, an out-of-network discount and a diversity re-ranking (a
determinantal point process over post embeddings), as X's home-mixer does. Every number here is a
field so a deployment can load another weight set (`RankingConfig.from_json_file`), e.g. the 2023
one. docs/RANKING.md writes the arithmetic out.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from phoenix.actions import ACTIONS, DWELL_TIME
from phoenix.errors import ConfigError

#: X's "post unexplored" head (its column 59): weighted like an action, in-network posts only.
#: A model that does not predict it contributes 0.
POST_UNEXPLORED = "post_unexplored"

#: August 2026 defaults, one weight per predicted action (dwell_time is per second).
AUGUST_2026_WEIGHTS: dict[str, float] = {
    "favorite": 0.5,
    "reply": 5.0,
    "repost": 1.0,
    "photo_expand": 0.05,
    "click": 0.4,
    "profile_click": 0.0,
    "vqv": 0.05,
    "share": 2.0,
    "share_via_dm": 5.0,
    "share_via_copy_link": 20.0,
    "dwell": 0.0,
    "quote": 5.0,
    "quoted_click": 0.05,
    "follow_author": 4.0,
    "not_interested": -43.2,
    "block_author": -31.2,
    "mute_author": -58.8,
    "report": -234.0,
    "video_open": 0.05,
    "open_link": 0.2,
    "quoted_vqv": 0.0,
    "not_dwelled": -0.02,
    POST_UNEXPLORED: 0.02,
    DWELL_TIME: 0.004,
}

#: The 2023 release (twitter/the-algorithm-ml), mapped onto this taxonomy: "good click" -> click,
#: "good profile click" -> profile_click, "negative feedback" -> not_interested. Its "reply engaged
#: by author" (75.0) has no counterpart here and is left out.
WEIGHTS_2023: dict[str, float] = {
    **dict.fromkeys(ACTIONS, 0.0),
    POST_UNEXPLORED: 0.0,
    DWELL_TIME: 0.0,
    "favorite": 0.5,
    "repost": 1.0,
    "reply": 13.5,
    "profile_click": 12.0,
    "click": 11.0,
    "not_interested": -74.0,
    "report": -369.0,
}

#: Every weight name: the predicted actions, post_unexplored, then dwell_time (per second).
KNOWN_TARGETS = (*ACTIONS, POST_UNEXPLORED, DWELL_TIME)


class RankingConfig(BaseModel):
    """Weights and factors that turn predicted probabilities into the feed order."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    weights: dict[str, float] = Field(
        default_factory=lambda: dict(AUGUST_2026_WEIGHTS),
        description="Weight per action (and dwell_time per second); missing actions weigh 0.",
    )
    mutual_follow_reply_bonus: float = Field(
        default=15.0,
        description="Added to the reply weight of an original post whose author and viewer "
        "follow each other.",
    )
    vqv_min_video_ms: int = Field(
        default=10_000, ge=0, description="vqv counts only for videos longer than this (ms)."
    )
    vqv_max_viewer_followers: int = Field(
        default=10_000, ge=0, description="vqv counts only for viewers with fewer followers."
    )
    post_unexplored_in_network_only: bool = Field(
        default=True, description="post_unexplored counts for in-network posts only."
    )
    score_offset: float = Field(default=0.001, description="Added to non-negative raw scores.")
    negative_score_scale: float = Field(
        default=0.001, gt=0, description="Negative raw scores are squashed into [0, this)."
    )
    new_author_max_followers: int = Field(default=1000, ge=0)
    new_author_max_impressions: int = Field(
        default=1000, ge=0, description="The boosted post has fewer impressions than this."
    )
    new_author_max_rank_ratio: float = Field(
        default=0.85,
        ge=0,
        le=1,
        description="The boosted post already ranks within this top fraction of the non-zero "
        "scores.",
    )
    new_author_target_rank: int = Field(
        default=16, ge=1, description="The boosted post takes the score of this rank (1-based)."
    )
    diversity_floor: float = Field(default=0.25, ge=0, le=1)
    diversity_decay: float = Field(default=0.5, gt=0, le=1)
    out_of_network_factor: float = Field(default=0.75, ge=0, le=1)
    dpp_enabled: bool = Field(
        default=True, description="Diversity re-ranking over post embeddings (X's VM ranker)."
    )
    dpp_theta: float = Field(
        default=0.65, ge=0, lt=1, description="Quality vs diversity: higher favours score."
    )
    dpp_pool: int = Field(default=150, ge=1, description="The best-scored posts DPP chooses from.")
    dpp_max_selected: int = Field(
        default=50, ge=1, description="Posts DPP keeps at most; the others score 0."
    )
    max_selected: int = Field(default=50, ge=1, description="Top posts kept before dedup.")
    max_returned: int = Field(default=35, ge=1, description="Posts returned after dedup.")

    @field_validator("weights")
    @classmethod
    def _known_actions(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(KNOWN_TARGETS))
        if unknown:
            raise ValueError(f"unknown actions {unknown}; known: {', '.join(KNOWN_TARGETS)}")
        return {name: float(weights.get(name, 0.0)) for name in KNOWN_TARGETS}

    @property
    def positive_weight_sum(self) -> float:
        """The positive action weights, post_unexplored included and dwell_time (a weight per
        second, not per probability) left out, as X's squash denominator sums them."""
        return sum(w for name, w in self.weights.items() if w > 0 and name != DWELL_TIME)

    @property
    def negative_weight_sum(self) -> float:
        """Magnitude of the negative weights, `-(sum of negative weights)`."""
        return -sum(w for name, w in self.weights.items() if w < 0 and name != DWELL_TIME)

    def diversity_multiplier(self, k: int) -> float:
        """Multiplier for an author's k-th post in score order (k = 0, 1, ...)."""
        return (1 - self.diversity_floor) * self.diversity_decay**k + self.diversity_floor

    @classmethod
    def from_json_file(cls, path: str | Path) -> RankingConfig:
        path = Path(path)
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ConfigError(f"ranking config not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read ranking config {path}: {exc}") from exc
        except ValidationError as exc:
            fields = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid ranking config in {path}: {fields}") from exc
