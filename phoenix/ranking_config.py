"""Ranking weights and factors (DESIGN.md 5), as swappable configuration.

The ranker predicts probabilities; the feed order comes from a weighted sum of them followed by a
new-author boost, author diversity and an out-of-network discount. Every number here is a field so a
deployment can load another weight set (`RankingConfig.from_json_file`), e.g. the 2023 one.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from phoenix.actions import ACTIONS, DWELL_TIME
from phoenix.errors import ConfigError

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
    DWELL_TIME: 0.004,
}

#: The 2023 release (twitter/the-algorithm-ml), mapped onto this taxonomy: "good click" -> click,
#: "good profile click" -> profile_click, "negative feedback" -> not_interested. Its "reply engaged
#: by author" (75.0) has no counterpart here and is left out.
WEIGHTS_2023: dict[str, float] = {
    **dict.fromkeys(ACTIONS, 0.0),
    DWELL_TIME: 0.0,
    "favorite": 0.5,
    "repost": 1.0,
    "reply": 13.5,
    "profile_click": 12.0,
    "click": 11.0,
    "not_interested": -74.0,
    "report": -369.0,
}

_KNOWN_TARGETS = (*ACTIONS, DWELL_TIME)


class RankingConfig(BaseModel):
    """Weights and factors that turn predicted probabilities into the feed order."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    weights: dict[str, float] = Field(
        default_factory=lambda: dict(AUGUST_2026_WEIGHTS),
        description="Weight per action (and dwell_time per second); missing actions weigh 0.",
    )
    reply_follow_back_bonus: float = Field(
        default=15.0,
        description="Added to the reply weight for an original post whose author "
        "follows the viewer back.",
    )
    vqv_min_video_s: float = Field(
        default=10.0, ge=0, description="vqv counts only for videos longer than this."
    )
    score_offset: float = Field(default=0.001, description="Added to non-negative raw scores.")
    negative_score_scale: float = Field(
        default=0.001, gt=0, description="Negative raw scores are squashed into [0, this)."
    )
    new_author_max_followers: int = Field(default=1000, ge=0)
    new_author_target_rank: int = Field(
        default=16, ge=1, description="The boosted post takes the score of this rank (1-based)."
    )
    diversity_floor: float = Field(default=0.25, ge=0, le=1)
    diversity_decay: float = Field(default=0.5, gt=0, le=1)
    out_of_network_factor: float = Field(default=0.75, ge=0, le=1)
    max_selected: int = Field(default=50, ge=1, description="Top posts kept before dedup.")
    max_returned: int = Field(default=35, ge=1, description="Posts returned after dedup.")

    @field_validator("weights")
    @classmethod
    def _known_actions(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(_KNOWN_TARGETS))
        if unknown:
            raise ValueError(f"unknown actions {unknown}; known: {', '.join(_KNOWN_TARGETS)}")
        return {name: float(weights.get(name, 0.0)) for name in _KNOWN_TARGETS}

    @property
    def positive_weight_sum(self) -> float:
        return sum(w for w in self.weights.values() if w > 0)

    @property
    def negative_weight_sum(self) -> float:
        """Magnitude of the negative weights, `-(sum of negative weights)`."""
        return -sum(w for w in self.weights.values() if w < 0)

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
