"""`phoenix bench pipeline`: the orchestrator's own CPU time per feed, everything but Triton.

The whole feed service (stores, Thunder, the ANN index, hydration, filters, the ranking arithmetic,
selection) runs in process; Triton's three models are replaced by a fake that answers at once
with deterministic pseudo-random embeddings and probabilities, so what is measured is the
orchestrator alone. CPU time is the process's (`time.process_time`, all threads: the ANN search
runs on a worker thread), per feed, over the same viewers on each world. Each viewer's feed is
timed `--rounds` times and its fastest round counts: on a machine shared with other work, load
from outside inflates some rounds, never deflates one.

"Before" is another version of the code (a git ref, by default `main`): its tree is exported to a
temporary directory and this very file runs there as a script against it, so both columns come
from one command on one machine. The file therefore imports only what every version has.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_VIEWERS = 60
DEFAULT_ROUNDS = 3

_DESCRIPTION = """\
Time the feed service's own CPU work per feed (Triton replaced by an instant fake) on the demo
world and on a world ten times larger, for the code here ("after") and for a git ref ("before",
default main), side by side:

  phoenix bench pipeline --before main

Per world and version: median and p90 over --viewers viewers of each viewer's fastest feed in
--rounds rounds (CPU ms), and the speed-up; the two versions run one after the other on each
world. `--explain` adds a row with explanations on (their cost).
"""


class FakeTriton:
    """What the service calls on Triton, answered in process from hashes of the inputs."""

    def __init__(self, config_name: str = "tiny") -> None:
        from orchestrator.triton_client import ServedModels
        from phoenix.config import get_config
        from phoenix.serving import CANDIDATE_TOWER, RANKER, USER_TOWER

        config = get_config(config_name)
        towers = config.retrieval_config()
        self._served = ServedModels(
            config,
            4096,
            {RANKER: 8, USER_TOWER: 8, CANDIDATE_TOWER: 4096},
            configs={RANKER: config, USER_TOWER: towers, CANDIDATE_TOWER: towers},
        )
        self.calls_s = 0.0  # wall time spent inside the fake (subtracted from nothing: tiny)

    @property
    def served(self) -> Any:
        return self._served

    async def connect(self) -> Any:
        return self._served

    async def newest_set(self) -> Any:
        return self._served

    def pinned(self, served: Any) -> FakeTriton:
        return self  # one model set, always

    async def is_ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    def _vectors(self, seeds: np.ndarray) -> np.ndarray:
        dim = self._served.config_of("phoenix_user_tower").emb_dim
        rng = np.random.default_rng(int(np.asarray(seeds, np.int64).sum() % (1 << 31)))
        v = rng.standard_normal((len(seeds), dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    async def embed_users(self, history: dict[str, np.ndarray]) -> np.ndarray:
        first = next(iter(history.values()))
        return self._vectors(np.asarray(first).reshape(len(first), -1)[:, 0])

    async def embed_posts(self, posts: dict[str, np.ndarray]) -> np.ndarray:
        dim = self._served.config_of("phoenix_candidate_tower").emb_dim
        h = np.asarray(posts["post_hash"], np.int64)[:, 0]
        axes = (h[:, None] * (np.arange(dim) + 1)) % 1009
        v = np.cos(axes.astype(np.float32))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    async def rank(
        self, viewer: dict[str, np.ndarray], candidates: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        count = len(candidates["candidate_surface"])
        config = self._served.config
        rng = np.random.default_rng(count)
        probs = rng.random((count, config.num_action_columns), dtype=np.float32) * 0.2
        return probs, rng.random((count, config.num_continuous), dtype=np.float32) * 30


def measure(world: Path, viewers: int, rounds: int, explain: bool) -> dict[str, Any]:
    """CPU ms per feed for the `viewers` viewers with the most followed accounts: each viewer's
    fastest of `rounds` feeds, then their median and p90."""
    import shutil

    from orchestrator.build import build_service
    from orchestrator.settings import OrchestratorSettings

    data = Path(tempfile.mkdtemp(prefix="phoenix-bench-"))  # the world imported, then dropped
    settings = OrchestratorSettings(data=data, world=world, ann_backend="exact")
    keeper = None
    if "triton" in inspect.signature(build_service).parameters:  # the service as parts
        service = build_service(settings, triton=FakeTriton())  # type: ignore[arg-type]
        keeper = service.keeper
    else:  # older versions: one service object holds it all
        service = build_service(settings)
        service.triton = FakeTriton()  # type: ignore[assignment]

    async def run() -> list[float]:
        # connect and build the index, no background task
        if keeper is not None:
            await keeper.refresh(service.clock.now_ms())
        else:
            await service._refresh()
        ids = service.viewers.user_ids()
        ranked = sorted(ids, key=lambda v: -len(service.viewers.get(v).following))[:viewers]
        extra = {"explain": True} if explain else {}
        for v in ranked[:3]:  # warm up
            await service.feed(v, limit=35, **extra)
        fastest = dict.fromkeys(ranked, float("inf"))
        for _ in range(rounds):
            for v in ranked:
                start = time.process_time()
                result = await service.feed(v, limit=35, **extra)
                fastest[v] = min(fastest[v], (time.process_time() - start) * 1000)
                assert not result.degraded, result.degraded_reason
        return list(fastest.values())

    try:
        samples = asyncio.run(run())
    finally:
        if keeper is not None:
            asyncio.run(service.stop())  # the search threads and the store
        else:
            service._search_executor.shutdown(wait=False)
        shutil.rmtree(data, ignore_errors=True)
    samples.sort()
    return {
        "feeds": len(samples) * rounds,
        "median_ms": statistics.median(samples),
        "p90_ms": samples[int(0.9 * (len(samples) - 1))],
    }


def worlds(spec_scale: list[int], work: Path) -> list[tuple[str, Path]]:
    """The demo world and scaled copies (x users and authors), generated once into `work`."""
    from phoenix.world.generate import generate_world
    from phoenix.world.spec import WorldSpec

    out = []
    for scale in spec_scale:
        base = WorldSpec(seed=7)  # the demo's world (`phoenix demo`, seed 7)
        spec = WorldSpec(
            seed=7, num_users=base.num_users * scale, num_authors=base.num_authors * scale
        )
        path = work / f"world_x{scale}"
        if not (path / "world.json").exists():
            generate_world(spec, path, progress=False)
        out.append((f"demo x{scale}" if scale > 1 else "demo", path))
    return out


def _before(ref: str, world: tuple[str, Path], args: argparse.Namespace) -> dict:
    """Run this file against the tree of `ref` on one world, in a subprocess."""
    root = Path(
        subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    with tempfile.TemporaryDirectory(prefix="phoenix-before-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", ref], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        script = Path(tmp) / "_bench_pipeline.py"
        script.write_text(Path(__file__).read_text())
        name, path = world
        out = subprocess.run(
            [sys.executable, str(script), "--measure", str(path),
             "--viewers", str(args.viewers), "--rounds", str(args.rounds)],
            capture_output=True, text=True, cwd=tmp,
        )  # fmt: skip
        if out.returncode:
            raise RuntimeError(f"before ({ref}) on {name} failed:\n{out.stderr[-3000:]}")
        return {"world": name, **json.loads(out.stdout.strip().splitlines()[-1])}


def run(args: argparse.Namespace) -> int:
    from phoenix.machine import host_facts, host_line

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(host_line(host_facts()))
    chosen = worlds(args.scales, work)
    lines = [
        "| world | version | median CPU ms/feed | p90 | speed-up |",
        "|---|---|---:|---:|---:|",
    ]
    results = []
    for name, path in chosen:
        b = _before(args.before, (name, path), args) if args.before else None
        after = measure(path, args.viewers, args.rounds, explain=False)
        if b:
            lines.append(f"| {name} | before ({args.before}) | {b['median_ms']:.2f} | "
                         f"{b['p90_ms']:.2f} | 1.00 |")  # fmt: skip
        speed = f"{b['median_ms'] / after['median_ms']:.2f}" if b else ""
        lines.append(f"| {name} | after | {after['median_ms']:.2f} | {after['p90_ms']:.2f} | "
                     f"{speed} |")  # fmt: skip
        row = {"world": name, "before": b, "after": after}
        if args.explain:
            ex = measure(path, args.viewers, args.rounds, explain=True)
            lines.append(f"| {name} | after, explain on | {ex['median_ms']:.2f} | "
                         f"{ex['p90_ms']:.2f} | |")  # fmt: skip
            row["explain"] = ex
        results.append(row)
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def add_parser(benchmarks: argparse._SubParsersAction) -> None:
    """Register `pipeline` under `phoenix bench`."""
    p = benchmarks.add_parser(
        "pipeline",
        help="the orchestrator's own CPU time per feed (Triton faked), before and after",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--before", default="main", metavar="REF",
                   help="git ref measured as 'before' ('' to skip; default: main)")  # fmt: skip
    p.add_argument("--scales", nargs="+", type=int, default=[1, 10], metavar="X",
                   help="world sizes, as multiples of the demo world (default: 1 10)")  # fmt: skip
    p.add_argument("--viewers", type=int, default=DEFAULT_VIEWERS, metavar="N")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, metavar="N")
    p.add_argument("--explain", action="store_true", help="also time feeds with explanations")
    p.add_argument("--work", default="runs/bench_pipeline", help="where the worlds are kept")
    p.add_argument("--json", default=None, help="save the results here")
    p.set_defaults(handler=run)


if __name__ == "__main__":  # the "before" side: this file run against another tree
    parser = argparse.ArgumentParser()
    parser.add_argument("--measure", required=True)
    parser.add_argument("--viewers", type=int, default=DEFAULT_VIEWERS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    a = parser.parse_args()
    print(json.dumps(measure(Path(a.measure), a.viewers, a.rounds, explain=False)))
