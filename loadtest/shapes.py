"""Load shapes for Locust: a ramp and a staircase of steps, as `LoadShapeSpec` describes them.

`phoenix loadtest --shape` passes the spec to the Locust process as JSON in PHOENIX_LOAD_SHAPE;
the locustfiles call `shape_from_env()` and expose the class it returns (Locust picks up a
shape class found in the locustfile; none means a constant load from --users and --spawn-rate).
"""

from __future__ import annotations

import json
import os

from locust import LoadTestShape

from loadtest.env import SHAPE_ENV
from loadtest.shape_spec import LoadShapeSpec


def shape_from_env() -> type[LoadTestShape] | None:
    """The shape class for the spec in PHOENIX_LOAD_SHAPE, or None for a constant load."""
    text = os.environ.get(SHAPE_ENV)
    if not text:
        return None
    spec = LoadShapeSpec.model_validate(json.loads(text))

    class Shape(LoadTestShape):
        def tick(self) -> tuple[int, float] | None:
            t = self.get_run_time()
            if t >= spec.duration_s:
                return None
            return spec.users_at(t), spec.spawn_rate

    Shape.__name__ = f"{spec.kind.title()}Shape"
    return Shape
