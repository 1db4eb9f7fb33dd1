"""A new export under feed load: the orchestrator switches model sets with no failed request and
no feed that mixes two exports' models.

`phoenix export` publishes the three models of one export under one version with one set id; the
orchestrator keeps serving the set it has until the new one is complete in Triton and its post
index (the new candidate tower's embeddings) is built, then switches user tower, index and ranker
together. Each feed reports the versions it called (`model_versions`), recorded from the calls
themselves.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tiny_export import MAX_CANDIDATES, TinyExport

from export.checkpoint import Checkpoint, save_checkpoint
from export.repository.build import ExportSettings, export_repository
from orchestrator.local_stack import LocalStack
from phoenix.config import get_config
from phoenix.serving import MODEL_NAMES
from phoenix.world.generate import generate_world
from phoenix.world.spec import WorldSpec

pytestmark = pytest.mark.triton

SETTINGS = ExportSettings(max_candidates=MAX_CANDIDATES, verify=False)  # as the first set


class Deployed:
    def __init__(self, work: Path, stack: LocalStack) -> None:
        self.work = work
        self.stack = stack
        self.repository = work / "model_repository"


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory, tiny_export: TinyExport
) -> Iterator[Deployed]:
    work = tmp_path_factory.mktemp("model-sets")
    world = generate_world(
        WorldSpec(seed=4, num_users=150, num_authors=30), work / "world", progress=False
    )
    repository = tiny_export.copy_to(work)  # the first set
    with LocalStack(repository, data=work / "data", world=world, reconnect_s=0.5) as stack:
        yield Deployed(work, stack)


def _set_of(repository: Path, version: int) -> set[str]:
    return {
        json.loads((repository / name / str(version) / "provenance.json").read_text())["model_set"][
            "id"
        ]
        for name in MODEL_NAMES
    }


def test_a_new_export_mid_load_switches_sets_without_failures_or_mixing(
    deployed: Deployed,
) -> None:
    stack = deployed.stack
    viewers = [
        u
        for u in stack.service.viewers.user_ids()
        if len(stack.service.viewers.get(u).following) >= 3  # type: ignore[union-attr]
    ][:20]
    failures: list[str] = []
    seen: list[list[str]] = [[] for _ in range(2)]  # per thread: the version of each feed
    stop = threading.Event()

    def load(slot: int) -> None:
        with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=30.0) as client:
            i = slot
            while not stop.is_set():
                i += 1
                response = client.post("/v1/feed", json={"viewer_id": viewers[i % len(viewers)]})
                body = response.json()
                if response.status_code != 200 or body["degraded"]:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                versions = set(body["model_versions"].values())
                if len(versions) != 1 or "," in next(iter(versions)):
                    failures.append(f"mixed versions: {body['model_versions']}")
                    continue
                seen[slot].append(versions.pop())

    threads = [threading.Thread(target=load, args=(s,), daemon=True) for s in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        # A new retrieval (and ranking) checkpoint, exported while the feeds run.
        second = Checkpoint.initialise(get_config("tiny"), seed=2)
        export_repository(save_checkpoint(second, deployed.work / "ckpt-2"), deployed.repository,
                          SETTINGS)  # fmt: skip
        deadline = time.monotonic() + 120
        while not all(s and s[-1] == "2" for s in seen):
            assert time.monotonic() < deadline, f"not switched to set 2: {[s[-3:] for s in seen]}"
            assert not failures, failures[:3]
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:5]
    for versions in seen:
        assert versions[0] == "1" and versions[-1] == "2"
        switched = versions.index("2")
        assert set(versions[switched:]) == {"2"}, "a feed went back to the old set"
    assert len(_set_of(deployed.repository, 1)) == 1 and len(_set_of(deployed.repository, 2)) == 1
    assert _set_of(deployed.repository, 1) != _set_of(deployed.repository, 2)
