"""The Locust user of the feed service: feed requests over the viewer mix, plus post creation and
engagement writes at `PHOENIX_LOADTEST_WRITES` of all requests, with the service token in
`PHOENIX_LOADTEST_TOKEN` (the users act for many viewers and authors, as a front end would).

Each user sends `PHOENIX_LOADTEST_USER_RPS` requests per second as a Poisson process, so the
offered load is users x that rate whatever the latency: a step load then finds the knee.
A degraded feed counts as a failure: it is not the feed the service exists to give.

The users are Locust's `FastHttpUser` (geventhttpclient): the load generator shares the machine's
cores with the service it measures, and Locust documents it as several times cheaper in CPU per
request than the `requests`-based `HttpUser`.
"""

from __future__ import annotations

import itertools
import os
import random
from typing import Any

from locust import FastHttpUser, task

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


class FeedUser(FastHttpUser):
    wait_time = poisson_throughput(float(os.environ.get(USER_RPS_ENV, "1")))

    def on_start(self) -> None:
        if _MIX is None:
            raise RuntimeError(f"{MIX_ENV} is not set: run the load test with phoenix loadtest")
        self.rng = random.Random()
        token = os.environ.get(TOKEN_ENV)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _post(self, path: str, body: dict[str, object]) -> Any:
        """A POST whose success this user decides (`catch_response`)."""
        return self.client.post(path, json=body, headers=self.headers, catch_response=True)

    def _viewer(self) -> int:
        return self.rng.choices(_MIX.viewers, cum_weights=_CUM_WEIGHTS)[0]  # type: ignore[union-attr]

    @task(_FEED_WEIGHT)
    def feed(self) -> None:
        body: dict[str, object] = {"viewer_id": self._viewer()}
        with self._post("/v1/feed", body) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            feed = response.json()
            if feed.get("degraded"):
                response.failure(f"degraded: {feed.get('degraded_reason')}")
            elif not feed.get("posts"):
                response.failure("empty feed")

    @task(_WRITE_WEIGHT)
    def create_post(self) -> None:
        body = {"author_id": self.rng.choice(_MIX.authors), "text": "load test post"}  # type: ignore[union-attr]
        with self._post("/v1/posts", body) as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")

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
        with self._post("/v1/engagements", body) as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
