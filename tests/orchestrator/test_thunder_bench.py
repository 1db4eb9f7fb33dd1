"""`orchestrator.benchmarks.thunder`: the synthetic store, the rows of a tiny run, the table and the
`thunder` subcommand's options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.benchmarks.thunder import (
    NOW_MS,
    IngestRow,
    LookupRow,
    add_parser,
    bench_thunder,
    format_table,
    run_thunder,
    synthetic_posts,
)
from phoenix.errors import ConfigError
from phoenix.world.schema import ORIGINAL, REPLY, REPOST

HOUR = 3_600_000


def test_synthetic_posts_are_a_consistent_72h_world() -> None:
    posts, authors = synthetic_posts(3_000, 100, seed=1)
    ids = np.array([p.post_id for p in posts])
    assert np.all(np.diff(ids) > 0)
    assert {p.author_id for p in posts} <= set(authors.tolist())
    created = np.array([p.created_ms for p in posts])
    assert created.min() >= NOW_MS - 72 * HOUR and created.max() <= NOW_MS
    by_id = {p.post_id: p for p in posts}
    kinds = np.array([p.kind for p in posts])
    assert 0.7 < np.mean(kinds == ORIGINAL) < 0.9 and np.mean(kinds == REPOST) > 0.02
    for p in posts:
        if p.kind == REPLY:
            parent = by_id[p.parent_id]
            assert parent.post_id < p.post_id and parent.kind != REPOST
            assert by_id[p.conversation_id].kind == ORIGINAL
            assert p.conversation_id == parent.thread_id
        elif p.kind == REPOST:
            assert by_id[p.reposted_id].kind == ORIGINAL
            assert p.is_video == by_id[p.reposted_id].is_video
    assert any(p.is_video for p in posts)


def test_a_tiny_run_gives_sane_rows_and_a_table() -> None:
    rows = bench_thunder(2_000, 150, (10, 60), lookups=5, seed=3, progress=False)
    lookups = [r for r in rows if isinstance(r, LookupRow)]
    writes = {r.operation: r for r in rows if isinstance(r, IngestRow)}
    assert [(r.store, r.following) for r in lookups] == [
        ("72 h held", 10),
        ("72 h held", 60),
        ("after expire", 10),
        ("after expire", 60),
    ]
    for r in lookups:
        assert r.lookups == 5
        assert 0 < r.p50_ms <= r.p99_ms and r.mean_ms > 0
        assert 0 < r.posts_mean <= r.posts_max
    assert lookups[1].posts_mean > lookups[0].posts_mean  # following more returns more
    assert writes["ingest_many"].posts + writes["ingest"].posts == 2_000
    assert 400 < writes["expire"].posts < 900  # about a third is past the 48 h retention
    assert all(r.seconds > 0 and r.posts_per_s > 0 for r in writes.values())

    table = format_table(rows)
    lines = table.splitlines()
    for column in ("store", "following", "p50 ms", "p99 ms", "mean ms", "posts returned"):
        assert column in lines[0]
    assert lines[0].count("|") == lines[2].count("|") == 8
    assert "| operation | posts | seconds | posts/s |" in lines
    assert sum(line.startswith("| ingest") or line.startswith("| expire") for line in lines) == 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phoenix bench")
    add_parser(parser.add_subparsers(dest="benchmark", required=True))
    return parser


def test_parser_accepts_the_options() -> None:
    argv = "thunder --posts 2000 --authors 100 --following 10 20 --lookups 3 --seed 7"
    args = _parser().parse_args([*argv.split(), "--json", "out.json", "--no-progress"])
    assert (args.posts, args.authors, args.following) == (2_000, 100, [10, 20])
    assert (args.lookups, args.seed, args.json, args.no_progress) == (3, 7, Path("out.json"), True)
    assert args.handler is run_thunder
    defaults = _parser().parse_args(["thunder"])
    assert (defaults.posts, defaults.authors) == (1_000_000, 100_000)
    assert defaults.following == [100, 1_000, 5_000] and defaults.json is None


def test_help_describes_the_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["thunder", "--help"])
    text = capsys.readouterr().out
    assert "retention" in text and "--following" in text and "p99" in text


def test_the_handler_prints_the_machine_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench" / "thunder.json"
    argv = "thunder --posts 1500 --authors 80 --following 20 --lookups 3 --no-progress"
    args = _parser().parse_args([*argv.split(), "--json", str(out)])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ") and "| p50 ms |" in printed
    saved = json.loads(out.read_text())
    assert saved["machine"]["nproc"] >= 1
    assert [r["store"] for r in saved["lookups"]] == ["72 h held", "after expire"]
    assert {w["operation"] for w in saved["writes"]} == {"ingest_many", "ingest", "expire"}


@pytest.mark.parametrize(
    ("option", "argv"),
    [
        ("--posts", ["--posts", "5"]),
        ("--authors", ["--authors", "0"]),
        ("--following", ["--following", "10", "0"]),
        ("--lookups", ["--lookups", "0"]),
    ],
)
def test_bad_options_name_themselves(option: str, argv: list[str]) -> None:
    args = _parser().parse_args(["thunder", *argv])
    with pytest.raises(ConfigError, match=rf"^{option}: "):
        run_thunder(args)
