"""A ramp or a staircase of steps, as data (no Locust import: the runner builds it too)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LoadShapeSpec(BaseModel):
    """A ramp (from `start` users to `users` over `duration_s`) or steps (`start`, then `step`
    more users every `step_s` seconds, up to `users`, for `duration_s` in all)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["ramp", "steps"]
    users: int = Field(ge=1, le=10_000, description="users at the end")
    duration_s: float = Field(gt=0, le=86_400)
    spawn_rate: float = Field(default=10.0, gt=0)
    start: int = Field(default=1, ge=0)
    step: int = Field(default=5, ge=1)
    step_s: float = Field(default=30.0, gt=0)

    def users_at(self, t: float) -> int:
        """Users wanted `t` seconds into the run."""
        if self.kind == "ramp":
            fraction = min(1.0, t / self.duration_s)
            return max(1, round(self.start + (self.users - self.start) * fraction))
        return max(1, min(self.users, self.start + self.step * int(t // self.step_s)))
