"""Model configurations (DESIGN.md 4.7) as frozen, validated objects.

A `ModelConfig` fixes every shape in the ranker and both towers, so it is saved beside every
checkpoint and exported model. Invalid values are refused with a `ConfigError` that names the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from phoenix.actions import NUM_ACTIONS
from phoenix.errors import ConfigError

#: Rows 1..64 of the shared table are reserved; entity blocks start at row 65 (DESIGN.md 4.1).
RESERVED_ROWS = 64


class ModelConfig(BaseModel):
    """Geometry of the Phoenix ranker and the two retrieval towers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)

    name: str = Field(min_length=1, description="Short name, e.g. 'tiny'.")
    emb_dim: int = Field(ge=8, le=16384, description="D: model width.")
    num_layers: int = Field(ge=1, le=64, description="Transformer blocks.")
    num_q_heads: int = Field(ge=1, le=256, description="H_q: query heads.")
    num_kv_heads: int = Field(ge=1, le=256, description="H_kv: key/value heads (grouped-query).")
    key_size: int = Field(ge=2, le=1024, description="d_k: per-head size; even, for rotary.")
    hash_width: int = Field(ge=1, le=8192, description="W: width of the shared embedding table.")
    history_len: int = Field(ge=1, le=8192, description="S: history positions per viewer.")
    num_user_rows: int = Field(ge=2, description="N for users in the hash (block of N-1 rows).")
    num_post_rows: int = Field(ge=2, description="N for posts in the hash.")
    num_author_rows: int = Field(ge=2, description="N for authors in the hash.")
    num_surfaces: int = Field(default=16, ge=1, le=1024, description="Product surfaces.")
    num_actions: int = Field(default=NUM_ACTIONS, description="Actions in the taxonomy.")
    ffn_widening: float = Field(default=2.0, gt=0, le=16, description="FFN width / D.")
    gated_ffn: bool = Field(default=False, description="GELU-gated FFN instead of plain.")
    attn_logit_cap: float | None = Field(
        default=None, gt=0, description="Soft cap c in c*tanh(x/c) on attention logits; None = off."
    )
    post_sublayer_norm: bool = Field(
        default=False, description="Extra RMSNorm on each sub-layer's output before the residual."
    )
    rope_base: float = Field(default=10000.0, gt=1, description="Rotary embedding base.")
    norm_eps: float = Field(default=1e-5, gt=0, lt=1, description="RMSNorm epsilon.")
    max_candidates: int = Field(
        default=2800, ge=1, le=65536, description="Most candidates one ranker call accepts."
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelConfig:
        if self.num_actions != NUM_ACTIONS:
            raise ValueError(
                f"num_actions must equal the taxonomy size {NUM_ACTIONS}, got {self.num_actions}"
            )
        if self.num_q_heads % self.num_kv_heads:
            raise ValueError(
                f"num_q_heads ({self.num_q_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.key_size % 2:
            raise ValueError(f"key_size must be even for rotary embeddings, got {self.key_size}")
        return self

    # Derived sizes -------------------------------------------------------------------------
    @property
    def ffn_dim(self) -> int:
        """FFN hidden width, rounded up to a multiple of 32."""
        return math.ceil(self.ffn_widening * self.emb_dim / 32) * 32

    @property
    def user_offset(self) -> int:
        return RESERVED_ROWS

    @property
    def post_offset(self) -> int:
        return self.user_offset + self.num_user_rows - 1

    @property
    def author_offset(self) -> int:
        return self.post_offset + self.num_post_rows - 1

    @property
    def table_rows(self) -> int:
        """Rows of the shared embedding table: padding, reserved rows, then the three blocks."""
        return self.author_offset + self.num_author_rows

    @property
    def sequence_len(self) -> int:
        """User token plus history: the positions candidates attend to."""
        return 1 + self.history_len

    # Serialisation ---------------------------------------------------------------------------
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
        ModelConfig(
            name="tiny",
            emb_dim=128,
            num_layers=2,
            num_q_heads=4,
            num_kv_heads=2,
            key_size=32,
            hash_width=64,
            history_len=128,
            num_user_rows=8_192,
            num_post_rows=32_768,
            num_author_rows=4_096,
        ),
        ModelConfig(
            name="mini",
            emb_dim=256,
            num_layers=2,
            num_q_heads=4,
            num_kv_heads=4,
            key_size=64,
            hash_width=128,
            history_len=256,
            num_user_rows=50_000,
            num_post_rows=50_000,
            num_author_rows=15_000,
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
        ),
    )
}


def get_config(name_or_path: str | Path) -> ModelConfig:
    """A preset by name (tiny, mini, nano, prod) or a config JSON file by path."""
    key = str(name_or_path)
    if key in PRESETS:
        return PRESETS[key]
    path = Path(key)
    if path.suffix == ".json" or path.exists():
        return ModelConfig.from_json_file(path)
    raise ConfigError(
        f"unknown config {key!r}; presets: {', '.join(PRESETS)}, or a .json file path"
    )
