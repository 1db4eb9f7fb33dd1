"""The environment variables through which `phoenix loadtest` configures the Locust process.

Kept apart from the Locust users: importing locust monkey-patches the standard library for
gevent, which the process that runs the stack must never do."""

MIX_ENV = "PHOENIX_LOADTEST_MIX"  # viewer mix JSON (feed target)
WRITES_ENV = "PHOENIX_LOADTEST_WRITES"  # share of write requests (feed target)
USER_RPS_ENV = "PHOENIX_LOADTEST_USER_RPS"  # requests per second per user
CANDIDATES_ENV = "PHOENIX_LOADTEST_CANDIDATES"  # candidates per ranker request (triton target)
SHAPE_ENV = "PHOENIX_LOAD_SHAPE"  # LoadShapeSpec JSON; unset: constant load
LOG_ENV = "PHOENIX_LOADTEST_REQUEST_LOG"  # where every request is logged (JSON lines)
TOKEN_ENV = "PHOENIX_LOADTEST_TOKEN"  # the feed service's bearer token (a service token)
