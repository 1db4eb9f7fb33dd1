"""The action taxonomy (docs/DESIGN.md §4.5) and `RankingConfig`'s August 2026 weights (§5)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from phoenix.actions import (
    ACTIONS,
    DWELL_TIME,
    DWELL_TIME_SCALE_S,
    NEGATIVE_ACTIONS,
    NUM_ACTIONS,
    Action,
    action_index,
)
from phoenix.errors import ConfigError
from phoenix.ranking_config import RankingConfig

# docs/DESIGN.md §4.5, in order.
DESIGN_ACTIONS = [
    "favorite",
    "reply",
    "repost",
    "photo_expand",
    "click",
    "profile_click",
    "vqv",
    "share",
    "share_via_dm",
    "share_via_copy_link",
    "dwell",
    "quote",
    "quoted_click",
    "follow_author",
    "not_interested",
    "block_author",
    "mute_author",
    "report",
    "video_open",
    "open_link",
    "quoted_vqv",
    "not_dwelled",
]

# docs/DESIGN.md §5, in the order written there.
DESIGN_WEIGHTS = {
    "favorite": 0.5,
    "reply": 5.0,
    "repost": 1.0,
    "photo_expand": 0.05,
    "video_open": 0.05,
    "click": 0.4,
    "open_link": 0.2,
    "profile_click": 0.0,
    "vqv": 0.05,
    "share": 2.0,
    "share_via_dm": 5.0,
    "share_via_copy_link": 20.0,
    "dwell": 0.0,
    "quote": 5.0,
    "quoted_click": 0.05,
    "quoted_vqv": 0.0,
    "follow_author": 4.0,
    "post_unexplored": 0.02,
    "dwell_time": 0.004,
    "not_interested": -43.2,
    "block_author": -31.2,
    "mute_author": -58.8,
    "report": -234.0,
    "not_dwelled": -0.02,
}


# Actions -------------------------------------------------------------------------------------
def test_taxonomy_has_22_actions_in_design_order() -> None:
    assert list(ACTIONS) == DESIGN_ACTIONS
    assert NUM_ACTIONS == 22 == len(set(ACTIONS))
    assert [a.value for a in Action] == list(range(22))
    assert [action_index(name) for name in DESIGN_ACTIONS] == list(range(22))


def test_unknown_action_name_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'like'"):
        action_index("like")


def test_negative_actions_are_exactly_those_with_negative_weights() -> None:
    negative = {name for name, w in DESIGN_WEIGHTS.items() if w < 0}
    assert {a.name.lower() for a in NEGATIVE_ACTIONS} == negative


def test_dwell_time_head_constants() -> None:
    assert DWELL_TIME == "dwell_time"
    assert DWELL_TIME_SCALE_S == 30.0


# Weights -------------------------------------------------------------------------------------
def test_default_weights_are_august_2026() -> None:
    weights = RankingConfig().weights
    assert weights == DESIGN_WEIGHTS
    assert set(weights) == {*DESIGN_ACTIONS, "post_unexplored", "dwell_time"}


def test_weight_sums() -> None:
    config = RankingConfig()
    # X's squash denominator: dwell_time (a weight per second) is not among the positive weights
    pos = math.fsum(w for k, w in DESIGN_WEIGHTS.items() if w > 0 and k != "dwell_time")
    neg = -math.fsum(w for w in DESIGN_WEIGHTS.values() if w < 0)
    assert config.positive_weight_sum == pytest.approx(pos, rel=1e-12)
    assert config.positive_weight_sum == pytest.approx(43.32, rel=1e-12)
    assert config.negative_weight_sum == pytest.approx(neg, rel=1e-12)
    assert config.negative_weight_sum == pytest.approx(367.22, rel=1e-12)


def test_other_factors_match_design() -> None:
    c = RankingConfig()
    assert c.mutual_follow_reply_bonus == 15.0
    assert (c.vqv_min_video_ms, c.vqv_max_viewer_followers) == (10_000, 10_000)
    assert c.post_unexplored_in_network_only
    assert c.score_offset == 0.001 and c.negative_score_scale == 0.001
    assert c.new_author_max_followers == 1000 and c.new_author_target_rank == 16
    assert (c.new_author_max_impressions, c.new_author_max_rank_ratio) == (1000, 0.85)
    assert (c.dpp_enabled, c.dpp_theta, c.dpp_pool, c.dpp_max_selected) == (True, 0.65, 150, 50)
    assert c.diversity_floor == 0.25 and c.diversity_decay == 0.5
    assert c.out_of_network_factor == 0.75
    assert (c.max_selected, c.max_returned) == (50, 35)


@pytest.mark.parametrize(("k", "want"), [(0, 1.0), (1, 0.625), (2, 0.4375), (3, 0.34375)])
def test_diversity_multipliers(k: int, want: float) -> None:
    assert RankingConfig().diversity_multiplier(k) == pytest.approx(want, abs=1e-15)


def test_diversity_follows_its_fields() -> None:
    c = RankingConfig(diversity_floor=0.5, diversity_decay=0.25)
    assert c.diversity_multiplier(1) == pytest.approx(0.5 * 0.25 + 0.5)


def test_missing_weights_weigh_zero() -> None:
    c = RankingConfig(weights={"favorite": 2.0})
    assert c.weights["favorite"] == 2.0
    assert all(c.weights[name] == 0.0 for name in (*DESIGN_ACTIONS[1:], "dwell_time"))
    assert c.positive_weight_sum == 2.0 and c.negative_weight_sum == 0.0


def test_unknown_action_in_weights_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="'like'"):
        RankingConfig(weights={"favorite": 1.0, "like": 2.0})


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="diversity_flor"):
        RankingConfig(diversity_flor=0.3)  # type: ignore[call-arg]


# Files ---------------------------------------------------------------------------------------
def test_from_json_file_round_trip(tmp_path: Path) -> None:
    c = RankingConfig(weights={**DESIGN_WEIGHTS, "reply": 13.5}, out_of_network_factor=0.5)
    path = tmp_path / "ranking.json"
    path.write_text(c.model_dump_json())
    back = RankingConfig.from_json_file(path)
    assert back == c
    assert back.weights["reply"] == 13.5
    assert RankingConfig.from_json_file(str(path)) == c


def test_partial_file_keeps_the_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "ranking.json"
    path.write_text(json.dumps({"max_returned": 20}))
    c = RankingConfig.from_json_file(path)
    assert c.max_returned == 20
    assert c.weights == DESIGN_WEIGHTS


def test_file_with_unknown_action_names_it(tmp_path: Path) -> None:
    path = tmp_path / "ranking.json"
    path.write_text(json.dumps({"weights": {"like": 1.0}}))
    with pytest.raises(ConfigError, match=r"^invalid ranking config in .*weights: .*'like'"):
        RankingConfig.from_json_file(path)


def test_file_with_bad_field_names_it(tmp_path: Path) -> None:
    path = tmp_path / "ranking.json"
    path.write_text(json.dumps({"diversity_floor": 2.0}))
    with pytest.raises(ConfigError, match=r"\bdiversity_floor\b"):
        RankingConfig.from_json_file(path)


def test_missing_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.json"):
        RankingConfig.from_json_file(tmp_path / "nope.json")


def test_bad_json_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"weights": ')
    with pytest.raises(ConfigError, match=r"broken\.json"):
        RankingConfig.from_json_file(path)


def test_non_utf8_file_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"binary\.json"):
        RankingConfig.from_json_file(path)


def test_a_directory_path_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        RankingConfig.from_json_file(tmp_path)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_weights_are_refused(value: float) -> None:
    with pytest.raises(ValidationError, match="favorite"):
        RankingConfig(weights={"favorite": value})
