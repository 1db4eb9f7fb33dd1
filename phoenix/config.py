"""Model configurations (docs/DESIGN.md §4.7) as frozen, validated objects.

A `ModelConfig` fixes every shape in the ranker and both towers, so it is saved beside every
checkpoint and exported model. Invalid values are refused with a `ConfigError` that names the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from phoenix.errors import ConfigError

if TYPE_CHECKING:
    from phoenix.hashing import HashLayout

#: X's table layout: rows 0..65 are padding and reserved; the user block starts after row 65
#: (docs/FIDELITY.md, "Hashing").
RESERVED_ROWS = 65

#: X rounds its table's rows up to a multiple of this (INPUT_VOCAB_K).
VOCAB_ROUNDING = 512

#: Tokens before the history: the user-hash token and the user-features token.
PREFIX_LEN = 2

#: Product surface id of X's GALLERY surface, whose dwell time is not capped at 30 s.
GALLERY_SURFACE = 10


class ModelConfig(BaseModel):
    """Geometry of the Phoenix ranker and the two retrieval towers (X's architecture).

    The fields mirror X's `home_direct_packed_*` ranker config (and its two-tower sibling): the
    transformer, the shared hashed embedding table, the context features and the heads. Every
    shape in a checkpoint follows from these fields, so `phoenix import` can recover them from an
    X checkpoint's own shapes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)

    name: str = Field(min_length=1, description="Short name, e.g. 'tiny'.")
    # Transformer -------------------------------------------------------------------------------
    emb_dim: int = Field(ge=8, le=16384, description="D: model width.")
    num_layers: int = Field(ge=1, le=64, description="Transformer blocks.")
    num_q_heads: int = Field(ge=1, le=256, description="H_q: query heads.")
    num_kv_heads: int = Field(ge=1, le=256, description="H_kv: key/value heads (grouped-query).")
    key_size: int = Field(ge=2, le=1024, description="d_k: per-head size; even, for rotary.")
    ffn_widening: float = Field(default=2.0, gt=0, le=16, description="FFN width / D.")
    gated_ffn: bool = Field(default=False, description="GELU-gated FFN instead of plain.")
    qk_norm: bool = Field(
        default=True, description="RMSNorm over all query (key) heads jointly, before rotary."
    )
    attn_logit_cap: float | None = Field(
        default=None, gt=0, description="Soft cap c in c*tanh(x/c) on attention logits; None = off."
    )
    post_sublayer_norm: bool = Field(
        default=False, description="Extra RMSNorm on each sub-layer's output before the residual."
    )
    rope_base: float = Field(default=10000.0, gt=1, description="Rotary embedding base.")
    norm_eps: float = Field(default=1e-5, gt=0, lt=1, description="RMSNorm epsilon.")
    # Hashed embedding table --------------------------------------------------------------------
    hash_width: int = Field(ge=1, le=8192, description="W: width of the shared embedding table.")
    num_user_rows: int = Field(
        ge=0, description="U: user block size (U-1 rows are hashed to); 0 = no user block."
    )
    num_post_rows: int = Field(ge=0, description="I: post (item) block size in the table.")
    num_post_hash_rows: int = Field(
        default=0,
        ge=0,
        description=(
            "Rows posts hash into when the table holds no post block (X's item_hash_vocab_size: "
            "the two-tower uses post rows only as a mask and a semantic-id hash); 0 = I."
        ),
    )
    num_author_rows: int = Field(ge=2, description="A: author block size.")
    num_ip_rows: int = Field(
        default=0, ge=0, description="IP block size; 0 = no IP hashes on the user token."
    )
    vocab_rows: int | None = Field(
        default=None, ge=2, description="Rows of the table (X's input_vocab_size); None = just fit."
    )
    # Sequence ----------------------------------------------------------------------------------
    history_len: int = Field(ge=1, le=8192, description="S: history positions per viewer.")
    max_candidates: int = Field(
        default=2800, ge=1, le=65536, description="Most candidates one ranker call accepts."
    )
    # Context features (X's feature prep) -------------------------------------------------------
    num_surfaces: int = Field(default=16, ge=1, le=1024, description="Product surfaces.")
    num_post_age_buckets: int = Field(
        default=82, ge=2, le=100_000, description="Post-age buckets (bucket 0 = unknown)."
    )
    post_age_bucket_s: int = Field(default=3600, ge=1, description="Width of a post-age bucket.")
    num_timezones: int = Field(default=32, ge=1, description="Timezone vocabulary.")
    num_hours: int = Field(default=25, ge=1, description="Local hour vocabulary (0 = unknown).")
    num_days_of_week: int = Field(default=8, ge=1, description="Day-of-week vocabulary.")
    num_counts: int = Field(default=5, ge=1, description="Engagement counts per post.")
    count_mlp_dim: int = Field(default=64, ge=1, description="Hidden width of the count MLP.")
    # User features token -----------------------------------------------------------------------
    num_countries: int = Field(default=250, ge=1, description="Country vocabulary.")
    num_languages: int = Field(default=200, ge=1, description="Language vocabulary.")
    num_location_freqs: int = Field(default=8, ge=1, le=30, description="Lat/lon frequencies.")
    num_apps: int = Field(default=64, ge=1, description="Installed-apps multi-hot width.")
    num_age_brackets: int = Field(default=10, ge=1, description="Age-bracket vocabulary.")
    # Semantic ids ------------------------------------------------------------------------------
    sid_levels: int = Field(default=6, ge=1, le=64, description="Semantic-id levels per post.")
    sid_codes: int = Field(default=256, ge=2, description="Codes per semantic-id level.")
    sid_dim: int | None = Field(
        default=None, ge=1, description="Width of the semantic-id table; None = W."
    )
    sid_cross_attention: bool = Field(
        default=False,
        description="Self-attention across the semantic-id levels (X's two-tower sid_cross_attn).",
    )
    # Two-tower only ----------------------------------------------------------------------------
    ctx_timezone_dim: int = Field(default=16, ge=1, description="Tower history: timezone width.")
    ctx_hour_dim: int = Field(default=16, ge=1, description="Tower history: local-hour width.")
    ctx_day_dim: int = Field(default=8, ge=1, description="Tower history: day-of-week width.")
    candidate_hidden: int | None = Field(
        default=None, ge=1, description="Candidate tower MLP width; None = 2 * D."
    )
    # Heads -------------------------------------------------------------------------------------
    num_action_columns: int = Field(
        default=64, ge=1, le=4096, description="Action logits: column i = X's ActionName i."
    )
    num_continuous: int = Field(
        default=8, ge=2, le=64, description="Continuous outputs; column 1 is the dwell time."
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelConfig:
        if self.num_q_heads % self.num_kv_heads:
            raise ValueError(
                f"num_q_heads ({self.num_q_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.key_size % 2:
            raise ValueError(f"key_size must be even for rotary embeddings, got {self.key_size}")
        for name in ("num_user_rows", "num_post_hash_rows", "num_ip_rows"):
            if getattr(self, name) == 1:
                raise ValueError(f"{name} must be 0 (off) or at least 2, got 1")
        if max(self.num_post_rows, self.num_post_hash_rows) < 2:
            raise ValueError("posts need at least 2 rows (num_post_rows or num_post_hash_rows)")
        if self.vocab_rows is not None and self.vocab_rows < self.min_vocab_rows:
            raise ValueError(
                f"vocab_rows ({self.vocab_rows}) must hold the hashed blocks "
                f"({self.min_vocab_rows} rows)"
            )
        return self

    # Derived sizes -------------------------------------------------------------------------
    @property
    def ffn_dim(self) -> int:
        """FFN hidden width, rounded up to a multiple of 32."""
        return math.ceil(self.ffn_widening * self.emb_dim / 32) * 32

    @property
    def hash_layout(self) -> HashLayout:
        """X's table layout for this config's blocks (`phoenix.hashing`)."""
        from phoenix.hashing import HashLayout

        return HashLayout(
            user_rows=self.num_user_rows,
            item_rows=self.num_post_rows,
            author_rows=self.num_author_rows,
            ip_rows=self.num_ip_rows,
            item_hash_rows=self.num_post_hash_rows,
        )

    def rows(self, entity: str) -> range:
        """The table rows that non-zero ids of `entity` (user, post, author, ip) hash to."""
        return self.hash_layout.rows(entity)

    @property
    def user_offset(self) -> int:
        return RESERVED_ROWS

    @property
    def post_offset(self) -> int:
        return self.user_offset + self.num_user_rows

    @property
    def author_offset(self) -> int:
        return self.post_offset + self.num_post_rows

    @property
    def ip_offset(self) -> int:
        return self.author_offset + self.num_author_rows

    @property
    def min_vocab_rows(self) -> int:
        return self.ip_offset + self.num_ip_rows

    @property
    def table_rows(self) -> int:
        """Rows of the shared table: reserved rows, then the blocks, rounded up as X does."""
        if self.vocab_rows is not None:
            return self.vocab_rows
        return math.ceil(self.min_vocab_rows / VOCAB_ROUNDING) * VOCAB_ROUNDING

    @property
    def sid_width(self) -> int:
        return self.sid_dim if self.sid_dim is not None else self.hash_width

    @property
    def candidate_hidden_dim(self) -> int:
        return self.candidate_hidden if self.candidate_hidden is not None else 2 * self.emb_dim

    def retrieval_config(self) -> ModelConfig:
        """The two towers' config for a preset: the same geometry with X's two-tower choices
        (post-sublayer norms, cross-attention over the semantic-id levels, the table's width for
        the semantic ids)."""
        return self.with_overrides(post_sublayer_norm=True, sid_cross_attention=True, sid_dim=None)

    @property
    def sequence_len(self) -> int:
        """Prefix tokens plus history: the positions candidates attend to."""
        return PREFIX_LEN + self.history_len

    @property
    def logit_scale(self) -> float:
        """X's output scale on the action logits, sqrt(512 / D) * 2."""
        return math.sqrt(512 / self.emb_dim) * 2.0

    @property
    def attn_scale(self) -> float:
        """X's attention logit scale, sqrt(128) / key_size (1/sqrt(d_k) only at d_k = 128)."""
        return math.sqrt(128) / self.key_size

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """Validate a mapping; every problem is reported with its field name."""
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from exc

    @classmethod
    def from_json_file(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        return cls.from_dict(data)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def with_overrides(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed, validated like a fresh config."""
        return ModelConfig.from_dict({**self.model_dump(), **changes})


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{field}: {err['msg']}")
    return "invalid model config: " + "; ".join(parts)


PRESETS: dict[str, ModelConfig] = {
    c.name: c
    for c in (
        # CPU presets: X's architecture shrunk; prefix + history fill whole 128-blocks, as in X.
        ModelConfig(
            name="tiny",
            emb_dim=128,
            num_layers=2,
            num_q_heads=4,
            num_kv_heads=2,
            key_size=32,
            hash_width=64,
            history_len=126,
            num_user_rows=8_192,
            num_post_rows=32_768,
            num_author_rows=4_096,
            num_ip_rows=256,
        ),
        ModelConfig(
            name="mini",
            emb_dim=256,
            num_layers=2,
            num_q_heads=4,
            num_kv_heads=4,
            key_size=64,
            hash_width=128,
            history_len=254,
            num_user_rows=50_000,
            num_post_rows=50_000,
            num_author_rows=15_000,
            num_ip_rows=1_000,
        ),
        ModelConfig(
            name="nano",
            emb_dim=512,
            num_layers=4,
            num_q_heads=4,
            num_kv_heads=2,
            key_size=128,
            hash_width=128,
            history_len=1022,
            num_user_rows=100_000,
            num_post_rows=100_000,
            num_author_rows=30_000,
            num_ip_rows=10_000,
        ),
        # X's home_direct_packed_nano exactly (phoenix/xrex/configs/xrecsys.py, August 2026).
        ModelConfig(
            name="x-nano",
            emb_dim=512,
            num_layers=4,
            num_q_heads=4,
            num_kv_heads=2,
            key_size=128,
            hash_width=128,
            history_len=1022,
            max_candidates=1024,
            num_user_rows=100_000,
            num_post_rows=100_000,
            num_author_rows=30_000,
            num_ip_rows=10_000,
            sid_dim=1024,
        ),
        # X's production geometry with nano's vocabularies: 100M-row tables do not fit an engine.
        ModelConfig(
            name="prod",
            emb_dim=2560,
            num_layers=8,
            num_q_heads=20,
            num_kv_heads=4,
            key_size=128,
            hash_width=1024,
            history_len=1022,
            num_user_rows=100_000,
            num_post_rows=100_000,
            num_author_rows=30_000,
            num_ip_rows=10_000,
        ),
    )
}


def get_config(name_or_path: str | Path) -> ModelConfig:
    """A preset by name (tiny, mini, nano, x-nano, prod) or a config JSON file by path."""
    key = str(name_or_path)
    if key in PRESETS:
        return PRESETS[key]
    path = Path(key)
    if path.suffix == ".json" or path.exists():
        return ModelConfig.from_json_file(path)
    raise ConfigError(
        f"unknown config {key!r}; presets: {', '.join(PRESETS)}, or a .json file path"
    )
