"""The whole request path against the real stack: `tritonserver` serving a freshly exported tiny
repository, and the orchestrator's FastAPI app on uvicorn, called over HTTP.

One stack for the module. The feed invariants of docs/DESIGN.md §7 are checked on real feeds; posts
are created and deleted through the API; Triton is stopped and restarted under the running service.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from tiny_export import TinyExport

from export.checkpoint import Checkpoint
from export.onnx.wrappers import RANKER, model_io, wrap
from orchestrator.local_stack import LocalStack
from orchestrator.pipeline.candidate import THUNDER, Candidates, FeedQuery
from orchestrator.state.viewers import ViewerStore
from orchestrator.state.world_state import load_world_state
from phoenix.actions import (
    ACTIONS,
    DWELL_COLUMN,
    DWELL_TIME,
    POST_UNEXPLORED,
    POST_UNEXPLORED_COLUMN,
    from_columns,
)
from phoenix.snowflake import created_ms
from phoenix.world.generate import generate_world
from phoenix.world.io import load_world
from phoenix.world.spec import WorldSpec

pytestmark = pytest.mark.triton

MAX_AGE_MS = 48 * 3_600_000


#: A token bound to one ordinary viewer (the fixture's first): it acts as that user only.
USER_TOKEN = "token-of-one-ordinary-viewer"


class Stack:
    """The running stack and HTTP clients for the orchestrator: `http` with the stack's service
    token, `anonymous` with none, `user` with USER_TOKEN (acting as `user_id`)."""

    def __init__(self, local: LocalStack, user_id: int, checkpoint: Checkpoint) -> None:
        self.local = local
        self.checkpoint = checkpoint  # the weights the served models were exported from
        self.triton = local.triton
        self.service = local.service
        self.user_id = user_id
        self.http = httpx.Client(base_url=local.url, headers=local.headers, timeout=30.0)
        self.anonymous = httpx.Client(base_url=local.url, timeout=30.0)
        self.user = httpx.Client(
            base_url=local.url, headers={"Authorization": f"Bearer {USER_TOKEN}"}, timeout=30.0
        )

    def feed(self, viewer_id: int, **body: object) -> dict:
        response = self.http.post("/v1/feed", json={"viewer_id": viewer_id, **body})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_export: TinyExport) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("stack")
    world_dir = generate_world(
        WorldSpec(seed=5, num_users=300, num_authors=60), work / "world", progress=False
    )
    weights = tiny_export.weights()
    repository = tiny_export.copy_to(work)
    user_id = _ordinary(load_world_state(load_world(world_dir)).viewers, 1)[0]
    local = LocalStack(
        repository,
        data=work / "data",
        world=world_dir,
        tokens={USER_TOKEN: user_id},
        triton_timeout_s=5.0,
        reconnect_s=0.5,
    )
    with local:
        stack = Stack(local, user_id, weights)
        try:
            yield stack
        finally:
            for client in (stack.http, stack.anonymous, stack.user):
                client.close()


def _ordinary_viewers(stack: Stack, count: int) -> list[int]:
    """Viewers who follow several accounts and have a history: the common case."""
    return _ordinary(stack.service.viewers, count)


def _ordinary(viewers: ViewerStore, count: int) -> list[int]:
    chosen = []
    for user_id in viewers.user_ids():
        v = viewers.get(user_id)
        if v is not None and len(v.following) >= 8 and len(v.history) >= 5:
            chosen.append(user_id)
        if len(chosen) == count:
            break
    assert chosen, "the test world has no ordinary viewer"
    return chosen


def test_feeds_keep_every_invariant(stack: Stack) -> None:
    service = stack.service
    sources: set[str] = set()
    for viewer_id in _ordinary_viewers(stack, 5):
        viewer = service.viewers.get(viewer_id)
        assert viewer is not None
        body = stack.feed(viewer_id, limit=100)  # long: both sources show, whatever the scores
        assert body["degraded"] is False, body.get("degraded_reason")
        posts = body["posts"]
        assert 0 < len(posts) <= 100
        ids = [p["post_id"] for p in posts]
        assert len(ids) == len(set(ids)), "duplicates"
        scores = [p["score"] for p in posts]
        assert scores == sorted(scores, reverse=True)
        now = service.clock.now_ms()
        conversations = set()
        for p in posts:
            post = service.posts.get(p["post_id"])
            assert post is not None
            assert post.author_id != viewer_id, "own post"
            assert post.author_id not in viewer.blocked | viewer.muted | viewer.blocked_by
            assert now - int(created_ms(post.post_id)) <= MAX_AGE_MS, "older than 48 h"
            key = post.reposted_id if post.is_repost else post.thread_id
            assert key not in conversations, "two posts of one conversation"
            conversations.add(key)
            assert set(p["predictions"]) and all(0 <= v <= 1 for v in p["predictions"].values())
            if not p["in_network"]:
                assert post.is_original, "out-of-network reply or repost"
            sources.add(p["source"])
        for key in ("sources", "hydrate", "filters", "ranker", "select", "total"):
            assert key in body["timings_ms"]
    assert sources == {"thunder", "phoenix_retrieval"}, sources


def test_served_predictions_are_the_model_on_the_stores_features(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed's predictions are the exported weights run in process on the inputs
    `ModelFeatures` packs from the stores (tests/orchestrator/test_features.py checks those are
    phoenix.features' packing of the stores' facts): request building, X's output columns and
    the named-action mapping all agree with the model."""
    service = stack.service
    now = service.clock.now_ms()
    monkeypatch.setattr(service.clock, "now_ms", lambda: now)  # the same impression time twice
    viewer_id = _ordinary_viewers(stack, 1)[0]
    body = stack.feed(viewer_id, limit=20, explain=True)
    assert body["degraded"] is False, body.get("degraded_reason")
    posts = body["posts"]
    viewer = service.viewers.get(viewer_id)
    assert posts and viewer is not None
    query = FeedQuery(viewer=viewer, now_ms=now)
    batch = Candidates.of(THUNDER, [p["post_id"] for p in posts], in_network=True)
    service.pipeline.hydrator.hydrate(query, batch)
    assert service.keeper.current is not None
    served = service.keeper.current.models.served
    hasher = served.hasher_of(RANKER)
    features = service.pipeline.scorer.features
    candidates = features.candidates(hasher, query, batch)
    arrays = {
        **features.viewer(hasher, query),
        **{k: v[None] for k, v in candidates.items()},
    }
    inputs, _ = model_io(RANKER, served.config)
    with torch.no_grad():
        log_probs, continuous = wrap(RANKER, stack.checkpoint).eval()(
            *(torch.from_numpy(arrays[spec.name]) for spec in inputs)
        )
    probs = np.exp(log_probs.numpy()[0])
    named = from_columns(probs)
    for i, p in enumerate(posts):  # candidate isolation: alone or in the feed's batch, alike
        got = [p["predictions"][name] for name in ACTIONS]
        np.testing.assert_allclose(got, named[i], rtol=0, atol=1e-4)
        unexplored = p["explanation"]["probabilities"][POST_UNEXPLORED]
        assert unexplored == pytest.approx(probs[i, POST_UNEXPLORED_COLUMN], abs=1e-4)
        dwell_s = continuous.numpy()[0, i, DWELL_COLUMN]
        assert p["explanation"]["contributions"][DWELL_TIME] == pytest.approx(
            service.settings.ranking.weights[DWELL_TIME] * dwell_s, rel=1e-4, abs=1e-6
        )


def test_seen_and_served_ids_are_excluded(stack: Stack) -> None:
    viewer_id = _ordinary_viewers(stack, 1)[0]
    first = [p["post_id"] for p in stack.feed(viewer_id, limit=20)["posts"]]
    seen, served = first[:10], first[10:]
    second = [
        p["post_id"]
        for p in stack.feed(viewer_id, limit=20, seen_ids=seen, served_ids=served)["posts"]
    ]
    assert second and not set(second) & set(first)


def test_limit_and_in_network_only(stack: Stack) -> None:
    viewer_id = _ordinary_viewers(stack, 1)[0]
    assert len(stack.feed(viewer_id, limit=3)["posts"]) <= 3
    body = stack.feed(viewer_id, limit=50, in_network_only=True)
    assert body["posts"] and all(p["in_network"] for p in body["posts"])
    assert body["candidates"].get("phoenix_retrieval", 0) == 0


def reproduce(explanation: dict, constants: dict) -> float:
    """A post's score from its explanation alone, by docs/RANKING.md's arithmetic."""
    e = explanation
    raw = sum(e["contributions"].values()) + sum(e["adjustments"].values())
    assert raw == pytest.approx(e["raw"], abs=1e-9)
    pos, neg = constants["positive_weight_sum"], constants["negative_weight_sum"]
    if raw >= 0:
        squashed = raw + constants["score_offset"]
    else:
        squashed = (raw + neg) / (pos + neg) * constants["negative_score_scale"]
    assert squashed == pytest.approx(e["squashed"], abs=1e-9)
    lifted = e["new_author_lift"]
    assert lifted >= e["squashed"]  # the lift only raises a score
    floor, decay = constants["diversity_floor"], constants["diversity_decay"]
    multiplier = (1 - floor) * decay ** e["diversity_k"] + floor
    assert multiplier == pytest.approx(e["diversity_multiplier"], abs=1e-12)
    final = lifted * multiplier * e["oon_factor"] if e["dpp_kept"] else 0.0
    assert final == pytest.approx(e["final"], abs=1e-9)
    return final


def test_explained_feeds_reproduce_every_score(stack: Stack) -> None:
    for viewer_id in _ordinary_viewers(stack, 3):
        plain = stack.feed(viewer_id, limit=60)
        assert plain["explain"] is None and all(p["explanation"] is None for p in plain["posts"])
        body = stack.feed(viewer_id, limit=60, explain=True, explain_removed_ids=True)
        explain = body["explain"]
        assert explain["sources"] == body["candidates"]
        for name, count in explain["filters"].items():
            assert len(explain["removed_ids"][name]) == count, name
        assert body["posts"]
        for p in body["posts"]:
            e = p["explanation"]
            assert reproduce(e, explain["constants"]) == pytest.approx(p["score"], abs=1e-9)
            assert e["final"] == p["score"]
            assert set(e["probabilities"]) >= set(p["predictions"])
        kept = [p for p in body["posts"] if p["explanation"]["dpp_kept"]]
        assert 0 < len(kept) <= 50


def test_video_only_feeds_hold_videos(stack: Stack) -> None:
    viewer_id = _ordinary_viewers(stack, 1)[0]
    body = stack.feed(viewer_id, limit=50, video_only=True, explain=True)
    posts = body["posts"]
    assert all(stack.service.posts.get(p["post_id"]).is_video for p in posts)  # type: ignore[union-attr]
    assert body["explain"]["filters"]["video_only"] >= 0


def _scroll(stack: Stack, viewer_id: int, pages: int = 20) -> list[int]:
    """Every post the viewer is shown while scrolling: pages of 200, each passing the ids served
    so far as served_ids, until a page comes back empty. (Where a post ranks depends on the
    random model's scores; that it is reachable does not.)"""
    served: list[int] = []
    for _ in range(pages):
        page = [p["post_id"] for p in stack.feed(viewer_id, limit=200, served_ids=served)["posts"]]
        if not page:
            break
        served += page
    return served


def test_a_created_post_reaches_followers_and_a_deleted_one_never_returns(stack: Stack) -> None:
    service = stack.service
    viewer_id = _ordinary_viewers(stack, 1)[0]
    author_id = service.viewers.get(viewer_id).following[0]  # type: ignore[union-attr]
    created = stack.http.post("/v1/posts", json={"author_id": author_id, "text": "fresh words"})
    assert created.status_code == 201, created.text
    post_id = created.json()["post_id"]
    assert post_id in _scroll(stack, viewer_id), "not in the follower's feed"
    assert stack.http.delete(f"/v1/posts/{post_id}").status_code == 200
    assert post_id not in _scroll(stack, viewer_id)
    assert stack.http.delete(f"/v1/posts/{post_id}").status_code == 404


def test_writes_change_the_next_feed(stack: Stack) -> None:
    viewer_id = _ordinary_viewers(stack, 1)[0]
    posts = stack.feed(viewer_id, limit=35)["posts"]
    blocked = posts[0]["author_id"]
    r = stack.http.post("/v1/blocks", json={"viewer_id": viewer_id, "target_id": blocked})
    assert r.status_code == 200 and r.json() == {"changed": True}
    assert blocked not in {p["author_id"] for p in stack.feed(viewer_id, limit=200)["posts"]}
    stack.http.request("DELETE", "/v1/blocks", json={"viewer_id": viewer_id, "target_id": blocked})
    engaged = posts[1]["post_id"]
    counts = stack.service.posts.counts(engaged)
    r = stack.http.post(
        "/v1/engagements",
        json={
            "viewer_id": viewer_id,
            "post_id": engaged,
            "actions": ["favorite", "reply"],
            "dwell_time_s": 9.5,
            "surface": 1,
        },
    )
    assert r.status_code == 201
    history = stack.service.viewers.get(viewer_id).history  # type: ignore[union-attr]
    assert history.post_ids[0] == engaged and history.actions[0].sum() == 2
    assert history.dwell_s[0] == 9.5 and history.surfaces[0] == 1
    assert (stack.service.posts.counts(engaged) - counts).tolist() == [1, 1, 0, 0, 1]
    body = stack.feed(viewer_id, limit=35)  # the ranker reads the new history entry
    assert body["degraded"] is False, body.get("degraded_reason")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/feed", {"viewer_id": 0}, "viewer_id"),
        ("POST", "/v1/feed", {"viewer_id": 1, "limit": 201}, "limit"),
        ("POST", "/v1/feed", {"viewer_id": "x"}, "viewer_id"),
        ("POST", "/v1/feed", {"viewer_id": 1, "seen_ids": list(range(10_001))}, "seen_ids"),
        ("POST", "/v1/feed", {"viewer_id": 1, "colour": "red"}, "colour"),
        ("POST", "/v1/engagements", {"viewer_id": 1, "post_id": 1, "actions": ["hug"]}, "actions"),
        (
            "POST",
            "/v1/engagements",
            {"viewer_id": 1, "post_id": 1, "actions": ["click"], "dwell_time_s": -1},
            "dwell_time_s",
        ),
        (
            "POST",
            "/v1/engagements",
            {"viewer_id": 1, "post_id": 1, "actions": ["click"], "surface": 16},
            "surface",
        ),
        ("POST", "/v1/posts", {"author_id": 1, "text": "x" * 1001}, "text"),
        ("POST", "/v1/muted_keywords", {"viewer_id": 1, "keyword": "   "}, "keyword"),
    ],
)
def test_malformed_requests_get_422_naming_the_field(
    stack: Stack, method: str, path: str, body: dict, field: str
) -> None:
    response = stack.http.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_unknown_ids_get_404_and_bad_json_a_4xx(stack: Stack) -> None:
    r = stack.http.post("/v1/feed", json={"viewer_id": 12345})
    assert r.status_code == 404 and "viewer_id" in r.text
    r = stack.http.post("/v1/posts", json={"author_id": 12345})
    assert r.status_code == 404 and "author_id" in r.text
    r = stack.http.post(
        "/v1/feed", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500
    r = stack.http.post(
        "/v1/feed", content=b"x" * (2 << 20), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


def test_metrics_and_openapi(stack: Stack) -> None:
    viewer_id = _ordinary_viewers(stack, 1)[0]
    stack.feed(viewer_id)
    text = stack.http.get("/metrics").text
    for name in (
        "phoenix_stage_seconds_bucket",
        "phoenix_candidates_bucket",
        "phoenix_triton_call_seconds_bucket",
        'phoenix_http_requests_total{route="/v1/feed",status="200"}',
    ):
        assert name in text
    schema = stack.http.get("/openapi.json").json()
    assert {"/v1/feed", "/v1/posts", "/v1/engagements", "/readyz"} <= set(schema["paths"])


_FEED = "/v1/feed"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (_FEED, b'{"viewer_id": NaN}', "viewer_id"),
        (_FEED, b'{"viewer_id": 1, "limit": Infinity}', "limit"),
        (_FEED, b'{"viewer_id": -Infinity}', "viewer_id"),
        (_FEED, b'{"viewer_id": 1e400}', "viewer_id"),
        (_FEED, b'{"viewer_id": 1, "seen_ids": [1, 9223372036854775808]}', "seen_ids.1"),
        (_FEED, b'{"viewer_id": 1, "served_ids": [-1]}', "served_ids.0"),
        (_FEED, b'{"viewer_id": 1, "served_ids": [1e400]}', "served_ids.0"),
        (_FEED, b'{"viewer_id": 1, "\\ud800": 1}', "\\ud800"),
        ("/v1/posts", b'{"author_id": 1, "text": "a\\udc00b"}', "text"),
        ("/v1/posts", b'{"author_id": 1, "video_duration_s": NaN}', "video_duration_s"),
        ("/v1/muted_keywords", b'{"viewer_id": 1, "keyword": "\\ud83d"}', "keyword"),
    ],
)
def test_values_json_cannot_carry_get_422_naming_the_field(
    stack: Stack, path: str, body: bytes, field: str
) -> None:
    response = stack.http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "invalid"
    assert field in [f["field"] for f in error["fields"]], error


def test_ids_beyond_int64_in_a_path_get_a_4xx(stack: Stack) -> None:
    for post_id in (2**63, 2**64, 10**30):
        response = stack.http.delete(f"/v1/posts/{post_id}")
        assert response.status_code == 422, response.text
        assert response.json()["fields"][0]["field"] == "post_id"


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(stack: Stack) -> None:
    """20 MB in chunks, without Content-Length: refused after the first MiB, in well under a
    second, while /healthz keeps answering."""
    url = httpx.URL(stack.local.url)
    sock = socket.create_connection((url.host, url.port), timeout=10)
    head = (
        f"POST /v1/feed HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {stack.local.service_token}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b'{"viewer_id": 1, "seen_ids": [' + b"1," * 32_000
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    total = 20 * 1024 * 1024

    def send() -> None:
        try:
            sock.sendall(head.encode())
            sent = 0
            while sent < total:
                sock.sendall(frame)
                sent += len(chunk)
            sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed the connection after refusing: expected
            pass

    sender = threading.Thread(target=send, daemon=True)
    start = time.perf_counter()
    sender.start()
    try:
        answer = sock.recv(4096)
        refused_s = time.perf_counter() - start
        health = [stack.anonymous.get("/healthz") for _ in range(3)]
    finally:
        sock.close()
        sender.join(10)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert refused_s < 1.0, f"refused after {refused_s:.2f} s"
    assert all(r.status_code == 200 for r in health)


def test_healthz_stays_fast_while_large_bodies_are_parsed(stack: Stack) -> None:
    """Large bodies refused (422) in a loop by four threads, just under the 1 MiB limit (too many
    ids) or wrong in every item (20,000 field errors): /healthz meanwhile answers as an idle
    service would, not after a stall."""
    ids = ",".join(str(2**62 + i) for i in range(50_000))
    too_many = ('{"viewer_id": 1, "seen_ids": [' + ids + "]}").encode()
    assert 0.9 * (1 << 20) < len(too_many) < (1 << 20)
    all_wrong = json.dumps({"viewer_id": 1, "seen_ids": ["x"] * 9999, "served_ids": [-1] * 9999})
    stop = threading.Event()
    answered: list[int] = []
    refusal_s: list[float] = []  # how long one large body takes to be refused, under this load

    def hammer(body: bytes) -> None:
        with httpx.Client(base_url=stack.local.url, headers=stack.local.headers) as client:
            while not stop.is_set():
                start = time.perf_counter()
                r = client.post(_FEED, content=body, headers={"content-type": "application/json"})
                refusal_s.append(time.perf_counter() - start)
                answered.append(r.status_code)

    bodies = [too_many, all_wrong.encode()] * 2
    threads = [threading.Thread(target=hammer, args=(b,), daemon=True) for b in bodies]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        latencies = []
        for _ in range(20):
            start = time.perf_counter()
            assert stack.anonymous.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert answered and set(answered) == {422}
    # A stalled event loop makes /healthz wait behind the parses queued on it: before parsing
    # moved off the loop its median was 0.43 s on 2 cores, with the four refusals serialised.
    # Now it answers in tens of ms (0.15 s at the median on a slow, busy 2-core machine, with
    # another test worker beside it). A stalled loop queues /healthz behind at least one whole
    # refusal, so the bound is half of one refusal of the same run (a busy machine slows both
    # sides alike), and never under 0.25 s, well below the stalled 0.43 s.
    refusal = statistics.median(refusal_s)
    assert statistics.median(latencies) < max(0.25, 0.5 * refusal), (
        f"/healthz: {sorted(latencies)}; one refusal: {refusal:.3f} s"
    )


def test_writes_need_a_token_and_act_only_as_its_user(stack: Stack) -> None:
    me = stack.user_id
    other = next(u for u in stack.service.viewers.user_ids() if u != me)
    follow = {"viewer_id": me, "target_id": other}
    missing = stack.anonymous.post("/v1/follows", json=follow)
    assert missing.status_code == 401 and "bearer token" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = stack.anonymous.post(
        "/v1/follows", json=follow, headers={"Authorization": "Bearer not-a-token-we-gave-out"}
    )
    assert wrong.status_code == 401 and "unknown" in wrong.json()["detail"]
    for method, path, body in [
        ("POST", "/v1/follows", {"viewer_id": other, "target_id": me}),
        ("POST", "/v1/blocks", {"viewer_id": other, "target_id": me}),
        ("DELETE", "/v1/mutes", {"viewer_id": other, "target_id": me}),
        ("POST", "/v1/posts", {"author_id": other, "text": "not mine to write"}),
        ("POST", "/v1/engagements", {"viewer_id": other, "post_id": 1, "actions": ["favorite"]}),
        ("POST", "/v1/muted_keywords", {"viewer_id": other, "keyword": "cats"}),
        ("POST", _FEED, {"viewer_id": other}),
    ]:
        refused = stack.user.request(method, path, json=body)
        assert refused.status_code == 403, (path, refused.text)
        assert f"user {me} only" in refused.json()["detail"]
    # As itself, the user's token works; another user's post it may not delete.
    assert stack.user.post(_FEED, json={"viewer_id": me}).status_code == 200
    mine = stack.user.post("/v1/posts", json={"author_id": me, "text": "mine"})
    assert mine.status_code == 201, mine.text
    theirs = stack.http.post("/v1/posts", json={"author_id": other, "text": "theirs"})
    assert stack.user.delete(f"/v1/posts/{theirs.json()['post_id']}").status_code == 403
    assert stack.user.delete(f"/v1/posts/{mine.json()['post_id']}").status_code == 200
    assert stack.http.delete(f"/v1/posts/{theirs.json()['post_id']}").status_code == 200
    assert stack.anonymous.get("/healthz").status_code == 200  # operations need no token


def test_triton_down_degrades_then_recovers(stack: Stack) -> None:
    """Runs last in the module: it stops and restarts Triton."""
    viewer_id = _ordinary_viewers(stack, 1)[0]
    stack.triton.stop()
    try:
        for _ in range(3):
            body = stack.feed(viewer_id, limit=20)
            assert body["degraded"] is True
            assert all(p["in_network"] for p in body["posts"])
            ids = [p["post_id"] for p in body["posts"]]
            assert ids == sorted(ids, reverse=True), "recency order"
        assert stack.http.get("/readyz").status_code == 503
    finally:
        stack.triton.start()
    deadline = time.monotonic() + 60
    while True:
        body = stack.feed(viewer_id, limit=20)
        if not body["degraded"]:
            break
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.5)
    assert body["posts"] and np.all([p["predictions"] for p in body["posts"]])
    stack.local.wait_ready(60)
