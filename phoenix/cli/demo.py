"""`phoenix demo`: the README's main job, end to end on this machine.

World -> training (both reused when already there) -> export (skipped when the served version came
from the same checkpoint) -> Triton -> the orchestrator -> feeds for a few viewers, printed beside
each viewer's hidden taste.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from phoenix.errors import PhoenixError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="world, training, export, Triton and the orchestrator, then feeds for a few viewers",
        description="The whole system on this machine: build a synthetic world (reused when "
        "RUNS/world exists), train the models (reused when RUNS/checkpoint-CONFIG exists), export "
        "them to a Triton model repository (skipped when its latest version came from that "
        "checkpoint), print the held-out evaluation, start the real tritonserver and the "
        "orchestrator's HTTP API (its durable state in RUNS/data, the world imported there when it "
        "is empty: posts, engagements and follows made through the API survive a restart), and "
        "print the For You feed of a few viewers beside the topics "
        "each one's hidden taste prefers (posts on those topics are marked *). With --serve the "
        "stack keeps running until Ctrl-C.",
    )
    p.add_argument("--runs", type=Path, default=Path("runs"), help="work directory (default runs)")
    p.add_argument(
        "--repository",
        type=Path,
        default=Path("model_repository"),
        help="model repository to export to and serve (default model_repository)",
    )
    p.add_argument("--config", default="tiny", help="model preset to train (default tiny)")
    p.add_argument(
        "--target",
        choices=("auto", "cpu", "pytorch"),
        default="auto",
        help="export target served by the bundled tritonserver: cpu (ONNX Runtime) or pytorch "
        "(PyTorch, bf16 with CUDA graphs on a GPU); auto = pytorch when PyTorch sees a CUDA "
        "device, else cpu (default auto)",
    )
    p.add_argument("--seed", type=int, default=7, help="world seed (default 7)")
    p.add_argument("--viewers", type=int, default=3, help="viewers whose feed is shown (default 3)")
    p.add_argument("--shown", type=int, default=10, help="posts shown per feed (default 10)")
    p.add_argument(
        "--serve",
        action="store_true",
        help="keep the stack running after the feeds are printed, until Ctrl-C",
    )
    p.add_argument("--port", type=int, default=8080, help="orchestrator port with --serve")
    p.add_argument("--skip-eval", action="store_true", help="do not print the held-out evaluation")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import httpx

    from orchestrator.local_stack import LocalStack
    from phoenix.cli.demo_report import WorldFacts, format_feed
    from phoenix.world.io import load_world

    if args.viewers < 1 or args.shown < 1:
        raise PhoenixError("--viewers and --shown must be at least 1")
    world_dir = args.runs / "world"
    checkpoint = args.runs / f"checkpoint-{args.config}"
    _step(
        (world_dir / "world.json").is_file(),
        f"reusing the world in {world_dir}",
        ["world", "--seed", str(args.seed), "--out", str(world_dir)],
    )
    _step(
        (checkpoint / "model.safetensors").is_file(),
        f"reusing the checkpoint {checkpoint}",
        ["train", "--world", str(world_dir), "--config", args.config, "--out", str(checkpoint)],
    )
    _step(
        args.skip_eval,
        "skipping evaluation",
        ["eval", "--world", str(world_dir), "--checkpoint", str(checkpoint)],
    )
    target = _target(args.target)
    _step(
        _served_from(args.repository, checkpoint, target),
        f"reusing the exported models in {args.repository} (same checkpoint, {target} target)",
        [
            "export",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(args.repository),
            *_target_options(target),
        ],
    )
    world = load_world(world_dir)
    facts = WorldFacts.of(world)
    log.info("starting Triton and the orchestrator")
    data_dir = args.runs / "data"
    stack = LocalStack(
        args.repository, data=data_dir, world=world_dir, port=args.port if args.serve else 0
    )
    with stack, httpx.Client(base_url=stack.url, headers=stack.headers, timeout=60.0) as client:
        for viewer_id in _viewers(stack, args.viewers):
            response = client.post("/v1/feed", json={"viewer_id": viewer_id})
            response.raise_for_status()
            print(format_feed(facts, viewer_id, response.json(), args.shown), end="\n\n")
        if args.serve:
            print(f"serving: {stack.url}/docs (API), {stack.url}/metrics; Ctrl-C stops", flush=True)
            print(f"service token (Authorization: Bearer ...): {stack.service_token}", flush=True)
            _wait_for_interrupt()
    return 0


def _step(done: bool, reuse_message: str, command: list[str]) -> None:
    """Run one `phoenix` subcommand unless its result is already there."""
    from phoenix.cli import main

    if done:
        log.info(reuse_message)
        return
    log.info("phoenix %s", " ".join(command))
    code = main(command)
    if code:
        raise PhoenixError(f"'phoenix {' '.join(command)}' failed (exit status {code})")


def _target(choice: str) -> str:
    """The export target: `auto` is the GPU path where PyTorch sees a CUDA device."""
    if choice != "auto":
        return choice
    import torch

    return "pytorch" if torch.cuda.is_available() else "cpu"


def _target_options(target: str) -> list[str]:
    """`phoenix export` options for the target; the pytorch target runs fp32 without a GPU."""
    options = ["--target", target]
    if target == "pytorch":
        import torch

        options += ["--precision", "bf16" if torch.cuda.is_available() else "fp32"]
    return options


def _served_from(repository: Path, checkpoint: Path, target: str) -> bool:
    """Whether the repository's latest ranker version was exported from this checkpoint for this
    target (by an exporter that writes the parameters the orchestrator reads)."""
    import json

    from export.repository.manifest import sha256_file
    from phoenix.serving import MODEL_CONFIG_PARAMETER, RANKER

    config = repository / RANKER / "config.pbtxt"
    if not config.is_file() or MODEL_CONFIG_PARAMETER not in config.read_text():
        return False

    versions = sorted(
        (int(d.name) for d in (repository / RANKER).glob("*") if d.name.isdigit()), reverse=True
    )
    weights = checkpoint / "model.safetensors"
    if not versions or not weights.is_file():
        return False
    provenance = repository / RANKER / str(versions[0]) / "provenance.json"
    try:
        recorded = json.loads(provenance.read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("target") == target and recorded.get("checkpoint_sha256") == sha256_file(
        weights
    )


def _viewers(stack, count: int) -> list[int]:  # type: ignore[no-untyped-def]
    """The first `count` viewers with a history and at least a few followed accounts."""
    chosen = []
    for user_id in stack.service.viewers.user_ids():
        viewer = stack.service.viewers.get(user_id)
        if viewer is not None and len(viewer.following) >= 5 and len(viewer.history) >= 10:
            chosen.append(user_id)
            if len(chosen) == count:
                break
    return chosen


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
