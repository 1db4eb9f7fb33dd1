"""The orchestrator's settings: one validated object, from the CLI or the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.thunder import ThunderSettings
from phoenix.ranking_config import RankingConfig


class OrchestratorSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    data: Path = Field(
        default=Path("runs/data"),
        description="data directory: the durable store every accepted write is in",
    )
    world: Path | None = Field(
        default=None,
        description="world directory (`phoenix world`) imported into an empty data directory",
    )
    redis_url: str | None = Field(
        default=None,
        description="redis://HOST:PORT/DB of the Redis shared by several replicas (None: alone)",
    )
    redis_stream: str = Field(
        default="phoenix:events", min_length=1, description="the shared log's Redis Stream key"
    )
    triton_url: str = Field(default="127.0.0.1:8001", description="Triton's gRPC endpoint")
    triton_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="per Triton call; slower counts as down"
    )
    ann_backend: str = Field(default="auto", description="auto, exact, faiss or cuvs")
    ann_threads: int = Field(
        default=1, ge=1, le=256, description="CPU threads per ANN search (faiss OpenMP)"
    )
    retrieval_k: int = Field(default=400, ge=1, le=5000, description="posts retrieved per feed")
    scoring_budget: int | None = Field(
        default=None,
        ge=1,
        description="most candidates sent to the ranker (None: every survivor, docs/DESIGN.md §2)",
    )
    max_history: int = Field(default=1024, ge=1, description="engagements kept per viewer")
    reconnect_s: float = Field(
        default=2.0, gt=0, description="how often to retry Triton and refresh the index"
    )
    circuit_failures: int = Field(
        default=3, ge=1, le=1000, description="Triton failures in a row that open the circuit"
    )
    circuit_open_s: float = Field(
        default=2.0, gt=0, le=600, description="how long an open circuit fails calls at once"
    )
    expire_interval_s: float = Field(
        default=60.0, gt=0, description="how often posts past the retention window are dropped"
    )
    ranking: RankingConfig = Field(default_factory=RankingConfig)
    thunder: ThunderSettings = Field(default_factory=ThunderSettings)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://HOST:PORT/DB (or rediss://, unix://) URL")
        return url

    @property
    def retention_hours(self) -> float:
        return float(self.thunder.retention_hours)
