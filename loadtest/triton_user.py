"""The Locust user that calls Triton directly: ranker requests through `tritonclient.http` (its
HTTP client is geventhttpclient, so it cooperates with Locust's gevent). `--host` is Triton's HTTP
address (host:port); each user sends `PHOENIX_LOADTEST_CANDIDATES` candidates per request at
`PHOENIX_LOADTEST_USER_RPS` requests per second. Requests are random viewers and candidates packed
as the orchestrator packs real ones (`phoenix.triton.requests`), hashed with the served ranker's
own config."""

from __future__ import annotations

import os
import time

import numpy as np
from locust import User, task

from loadtest.arrivals import poisson_throughput
from loadtest.env import CANDIDATES_ENV, USER_RPS_ENV
from phoenix.serving import RANKER
from phoenix.triton.requests import infer, random_ranker_request, served_ranker

#: Distinct requests each user cycles through (building one costs more than sending it).
_POOL = 8


class TritonRankerUser(User):
    wait_time = poisson_throughput(float(os.environ.get(USER_RPS_ENV, "1")))

    def on_start(self) -> None:
        import tritonclient.http as httpclient  # after locust's gevent patching

        self.protocol = httpclient
        url = (self.host or "127.0.0.1:8000").removeprefix("http://")
        self.client = httpclient.InferenceServerClient(url, network_timeout=60.0)
        config, limit = served_ranker(self.client, url)
        count = min(int(os.environ.get(CANDIDATES_ENV, "256")), limit)
        rng = np.random.default_rng()
        self.requests = [random_ranker_request(config, count, rng) for _ in range(_POOL)]
        self.sent = 0

    def on_stop(self) -> None:
        self.client.close()

    @task
    def rank(self) -> None:
        arrays = self.requests[self.sent % _POOL]
        self.sent += 1
        start = time.perf_counter()
        exception = None
        size = 0
        try:
            outputs = infer(self.client, self.protocol, RANKER, arrays)
            size = sum(o.nbytes for o in outputs.values())
        except Exception as exc:  # every client error is the request's failure, reported
            exception = exc
        self.environment.events.request.fire(
            request_type="infer",
            name=RANKER,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=size,
            exception=exception,
            context={},
        )
