"""The Locust user of the feed service: feed requests over the viewer mix, plus post creation and
engagement writes at `PHOENIX_LOADTEST_WRITES` of all requests, with the service token in
`PHOENIX_LOADTEST_TOKEN` (the users act for many viewers and authors, as a front end would).

Each user sends `PHOENIX_LOADTEST_USER_RPS` requests per second as a Poisson process, so the
offered load is users x that rate whatever the latency: a step load then finds the knee.
A degraded feed counts as a failure: it is not the feed the service exists to give.
"""

from __future__ import annotations

import itertools
import os
import random

from locust import HttpUser, task

from loadtest.arrivals import poisson_throughput
from loadtest.env import MIX_ENV, TOKEN_ENV, USER_RPS_ENV, WRITES_ENV
from loadtest.viewer_mix import ViewerMix

_MIX = ViewerMix.read(os.environ[MIX_ENV]) if os.environ.get(MIX_ENV) else None
_WRITES = float(os.environ.get(WRITES_ENV, "0.1"))
_FEED_WEIGHT = max(0, round(1000 * (1 - _WRITES)))
_WRITE_WEIGHT = round(500 * _WRITES)  # half posts, half engagements
#: Cumulative viewer weights, computed once (random.choices would redo it on every request).
_CUM_WEIGHTS = list(itertools.accumulate(_MIX.weights)) if _MIX is not None else []
#: Actions an engagement write carries: the common positive ones (names from phoenix.actions).
_ENGAGEMENTS = ("favorite", "click", "dwell", "repost", "reply")


class FeedUser(HttpUser):
    wait_time = poisson_throughput(float(os.environ.get(USER_RPS_ENV, "1")))

    def on_start(self) -> None:
        if _MIX is None:
            raise RuntimeError(f"{MIX_ENV} is not set: run the load test with phoenix loadtest")
        self.rng = random.Random()
        token = os.environ.get(TOKEN_ENV)
        if token:
            self.client.headers["Authorization"] = f"Bearer {token}"

    def _viewer(self) -> int:
        return self.rng.choices(_MIX.viewers, cum_weights=_CUM_WEIGHTS)[0]  # type: ignore[union-attr]

    @task(_FEED_WEIGHT)
    def feed(self) -> None:
        body = {"viewer_id": self._viewer()}
        with self.client.post("/v1/feed", json=body, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif response.json().get("degraded"):
                response.failure(f"degraded: {response.json().get('degraded_reason')}")
            elif not response.json().get("posts"):
                response.failure("empty feed")

    @task(_WRITE_WEIGHT)
    def create_post(self) -> None:
        body = {"author_id": self.rng.choice(_MIX.authors), "text": "load test post"}  # type: ignore[union-attr]
        with self.client.post("/v1/posts", json=body, catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")

    @task(_WRITE_WEIGHT)
    def engage(self) -> None:
        action = self.rng.choice(_ENGAGEMENTS)
        body: dict[str, object] = {
            "viewer_id": self._viewer(),
            "post_id": self.rng.choice(_MIX.posts),  # type: ignore[union-attr]
            "actions": [action],
        }
        if action == "dwell":  # the history's dwell input: seconds on the post
            body["dwell_time_s"] = round(self.rng.uniform(2.0, 30.0), 1)
        with self.client.post("/v1/engagements", json=body, catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
