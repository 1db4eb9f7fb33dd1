"""The HTTP API's request and response bodies (published in the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from phoenix.actions import ACTIONS

#: Ids are positive 64-bit integers (0 means "nothing" throughout the project).
INT64_MAX = 2**63 - 1
PositiveId = Field(gt=0, le=INT64_MAX)
#: A post id in a list: any id the service could have handed out (0 and negatives never are).
ListedId = Annotated[int, Field(gt=0, le=INT64_MAX)]
_MAX_IDS = 10_000  # seen_ids / served_ids per request
_MAX_TEXT = 1_000  # characters per post


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeedRequest(_Strict):
    viewer_id: int = PositiveId
    limit: int = Field(default=35, ge=1, le=200, description="posts to return")
    seen_ids: list[ListedId] = Field(default_factory=list, max_length=_MAX_IDS)
    served_ids: list[ListedId] = Field(default_factory=list, max_length=_MAX_IDS)
    in_network_only: bool = False
    video_only: bool = Field(default=False, description="only posts with a video")
    explain: bool = Field(
        default=False, description="explain every score and count what each stage did"
    )
    explain_removed_ids: bool = Field(
        default=False, description="with explain: also list the ids each filter removed"
    )


class Explanation(BaseModel):
    """One post's score, stage by stage (docs/RANKING.md has the arithmetic)."""

    probabilities: dict[str, float] = Field(description="action -> predicted probability")
    contributions: dict[str, float] = Field(description="action -> weight x probability")
    adjustments: dict[str, float] = Field(description="rule -> amount it added to raw")
    raw: float = Field(description="sum of contributions and adjustments")
    squashed: float
    new_author_lift: float = Field(description="the score after the new-author lift")
    diversity_k: int = Field(description="higher-scored posts of the same author")
    diversity_multiplier: float
    oon_factor: float
    dpp_kept: bool
    final: float = Field(description="the post's score")


class FeedExplain(BaseModel):
    """What the stages did to the whole feed."""

    sources: dict[str, int] = Field(description="source -> candidates it gave")
    filters: dict[str, int] = Field(description="filter -> candidates it removed")
    removed_ids: dict[str, list[int]] | None = Field(
        default=None, description="filter -> the ids it removed (explain_removed_ids)"
    )
    constants: dict[str, float] = Field(
        default_factory=dict, description="the configuration numbers the arithmetic uses"
    )


class FeedPost(BaseModel):
    post_id: int
    author_id: int
    score: float
    in_network: bool
    source: str
    predictions: dict[str, float] = Field(
        default_factory=dict, description="action probabilities (empty in a degraded feed)"
    )
    explanation: Explanation | None = None


class FeedResponse(BaseModel):
    posts: list[FeedPost]
    degraded: bool = Field(description="true when the ranker could not be used")
    degraded_reason: str | None = None
    timings_ms: dict[str, float]
    candidates: dict[str, int] = Field(description="candidates per source, before filters")
    model_versions: dict[str, str] = Field(
        default_factory=dict,
        description="the version of each model this feed used (one model set per feed), and of "
        "the post index's candidate tower",
    )
    explain: FeedExplain | None = None


class CreatePostRequest(_Strict):
    author_id: int = PositiveId
    text: str = Field(default="", max_length=_MAX_TEXT)
    parent_id: int = Field(default=0, ge=0, le=INT64_MAX, description="replied-to post, or 0")
    reposted_id: int = Field(default=0, ge=0, le=INT64_MAX, description="reposted post, or 0")
    is_video: bool = False
    video_duration_s: float = Field(default=0.0, ge=0, le=86_400, allow_inf_nan=False)
    quoted_id: int = Field(default=0, ge=0, le=2**63 - 1, description="quoted post, or 0")


class PostResponse(BaseModel):
    post_id: int
    author_id: int
    kind: str
    created_ms: int
    conversation_id: int


class EngagementRequest(_Strict):
    viewer_id: int = PositiveId
    post_id: int = PositiveId
    actions: list[str] = Field(min_length=1, max_length=len(ACTIONS), description="action names")
    dwell_time_s: float = Field(
        default=0.0,
        ge=0,
        le=86_400,
        allow_inf_nan=False,
        description="Seconds the viewer dwelled on the post (the ranker's history reads it).",
    )
    surface: int = Field(
        default=0, ge=0, le=15, description="Product surface the post was served on (0 = For You)."
    )

    @field_validator("actions")
    @classmethod
    def _known(cls, actions: list[str]) -> list[str]:
        unknown = sorted(set(actions) - set(ACTIONS))
        if unknown:
            raise ValueError(f"unknown actions {unknown}; known: {', '.join(ACTIONS)}")
        return actions


class RelationRequest(_Strict):
    viewer_id: int = PositiveId
    target_id: int = PositiveId


class MutedKeywordRequest(_Strict):
    viewer_id: int = PositiveId
    keyword: str = Field(min_length=1, max_length=100)

    @field_validator("keyword")
    @classmethod
    def _not_blank(cls, keyword: str) -> str:
        keyword = " ".join(keyword.split())
        if not keyword:
            raise ValueError("keyword must contain a word")
        return keyword


class Changed(BaseModel):
    changed: bool = Field(description="false when the state already was so")
