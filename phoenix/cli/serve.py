"""`phoenix serve`: the orchestrator's HTTP API over a durable data directory, scoring through
Triton."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pydantic import ValidationError

from phoenix.cli.options import option_errors
from phoenix.errors import ConfigError

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Run the For You request path as an HTTP service (FastAPI on uvicorn): the viewer and post stores
and Thunder are rebuilt from the data directory --data (a SQLite file), out-of-network retrieval
embeds the recent posts through Triton's candidate tower into an ANN index, and every feed is
ranked by the Phoenix ranker on Triton over gRPC (--triton, e.g. a `phoenix triton` on the
exported repository).

Durable state: every accepted write (post, delete, engagement, follow, block, mute, muted
keyword) is committed to --data before the API answers, so a restart (a kill -9 included) brings
it all back and a deleted post stays deleted. When --data is empty and --world is given, that
world is imported first; a --world given with a data directory that holds data is ignored. An
empty --data without --world starts with no users (feeds answer 404 until data is loaded).

Several replicas: with --redis every replica (each with its own --data) sends its writes to one
Redis Stream and applies every replica's writes from it, in one order, to its own store and
memory; a write is answered once Redis holds it and this replica applied it. The first replica
given --world publishes that world into an empty stream; the others (and later replicas) import
it from there, waiting for it when the stream is empty. A restarted replica resumes where it
stopped. Run Redis with appendonly yes (appendfsync always: nothing acknowledged is lost).

The service starts without Triton too: it answers degraded feeds (in-network posts, newest first,
"degraded": true) and keeps retrying, then builds the index and serves full feeds once Triton
answers. GET /readyz is 200 only then.

Authentication: every /v1 route takes 'Authorization: Bearer TOKEN'. Tokens come from
--token-file (or PHOENIX_TOKEN_FILE), a JSON object mapping each token to "service" (acts for any
user) or to a user id (reads that user's feed, writes only as that user), and from PHOENIX_TOKENS
(the same object, inline). Without tokens the service does not start unless --insecure is given.

API: POST /v1/feed, POST /v1/posts, DELETE /v1/posts/{id}, POST /v1/engagements,
POST|DELETE /v1/follows, /v1/blocks, /v1/mutes, /v1/muted_keywords, GET /healthz, /readyz,
/metrics (Prometheus), /docs (OpenAPI)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="the orchestrator's HTTP API (feeds, posts, engagements, graph) over Triton",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        type=Path,
        default=Path("runs/data"),
        metavar="DIR",
        help="data directory: the durable state (default runs/data, created when missing)",
    )
    p.add_argument(
        "--world",
        type=Path,
        default=None,
        metavar="DIR",
        help="world directory (phoenix world) imported when --data is empty",
    )
    p.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="redis://HOST:PORT/DB shared by several replicas of the service: every write goes "
        "through its stream and each replica applies them all to its own --data (see README)",
    )
    p.add_argument(
        "--triton",
        default="127.0.0.1:8001",
        metavar="HOST:PORT",
        help="Triton's gRPC endpoint (default 127.0.0.1:8001)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument(
        "--ann-backend",
        default="auto",
        choices=("auto", "exact", "faiss", "cuvs"),
        help="retrieval index: auto picks cuvs on a GPU, else faiss (default auto)",
    )
    p.add_argument(
        "--retrieval-k", type=int, default=400, metavar="K", help="posts retrieved per feed"
    )
    p.add_argument(
        "--scoring-budget",
        type=int,
        default=None,
        metavar="N",
        help="send at most N candidates to the ranker: the newest in-network and the best "
        "retrieved (default: all survivors of the filters; a cap for few CPU cores)",
    )
    p.add_argument(
        "--triton-timeout",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="a Triton call slower than this counts as a failure (default 2)",
    )
    p.add_argument(
        "--ranking-config",
        type=Path,
        metavar="JSON",
        help="weights and factors (phoenix.ranking_config.RankingConfig fields) to replace the "
        "August 2026 defaults",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help='JSON object {token: "service" | user_id} of the API\'s bearer tokens '
        "(default: PHOENIX_TOKEN_FILE; PHOENIX_TOKENS adds tokens inline)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="run without authentication: anyone reads any feed and writes as any user",
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic_settings import SettingsError

    from orchestrator.app import KEEP_ALIVE_S, create_app
    from orchestrator.auth import Authenticator, AuthSettings
    from orchestrator.build import build_service
    from orchestrator.settings import OrchestratorSettings
    from phoenix.ranking_config import RankingConfig

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0-65535, not {args.port}")
    extra = {}
    if args.ranking_config is not None:
        extra["ranking"] = RankingConfig.from_json_file(args.ranking_config)
    try:
        settings = OrchestratorSettings(
            data=args.data,
            world=args.world,
            redis_url=args.redis,
            triton_url=args.triton,
            triton_timeout_s=args.triton_timeout,
            ann_backend=args.ann_backend,
            retrieval_k=args.retrieval_k,
            scoring_budget=args.scoring_budget,
            **extra,
        )
    except ValidationError as exc:
        raise ConfigError(
            option_errors(
                exc,
                {
                    "triton_url": "--triton",
                    "triton_timeout_s": "--triton-timeout",
                    "redis_url": "--redis",
                },
            )
        ) from exc
    overrides: dict[str, object] = {}
    if args.token_file is not None:
        overrides["token_file"] = args.token_file
    if args.insecure:
        overrides["insecure"] = True
    try:
        auth_settings = AuthSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError(
            option_errors(exc, {"token_file": "--token-file", "tokens": "PHOENIX_TOKENS"})
        ) from exc
    except SettingsError as exc:  # PHOENIX_TOKENS is not JSON
        raise ConfigError(f"PHOENIX_TOKENS: {exc}") from exc
    auth = Authenticator.from_settings(auth_settings)
    service = build_service(settings, progress=True)
    log.info("serving on http://%s:%d (Triton %s)", args.host, args.port, settings.triton_url)
    uvicorn.run(
        create_app(service, auth=auth),
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return 0
