"""`phoenix.config.ModelConfig`: presets, derived sizes, table layout, validation, serialisation."""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from pathlib import Path

import pytest
from pydantic import ValidationError

from phoenix.config import PRESETS, ModelConfig, get_config
from phoenix.errors import CheckpointError, ConfigError, InputError, PhoenixError, WorldError

# Copied by hand: D, layers, H_q, H_kv, d_k, W, history S. x-nano is X's home_direct_packed_nano
# (emb_size 512, 4 layers, 4 query / 2 kv heads, table width 128, history_seq_len 1022); tiny and
# mini are the same architecture shrunk, nano is x-nano with the project's defaults, prod is X's
# production width with nano's vocabularies (docs/FIDELITY.md).
PRESET_TABLE = {
    "tiny": (128, 2, 4, 2, 32, 64, 126),
    "mini": (256, 2, 4, 4, 64, 128, 254),
    "nano": (512, 4, 4, 2, 128, 128, 1022),
    "x-nano": (512, 4, 4, 2, 128, 128, 1022),
    "prod": (2560, 8, 20, 4, 128, 1024, 1022),
}


@pytest.mark.parametrize("name", list(PRESET_TABLE))
def test_presets_match_the_table(name: str) -> None:
    c = PRESETS[name]
    got = (
        c.emb_dim,
        c.num_layers,
        c.num_q_heads,
        c.num_kv_heads,
        c.key_size,
        c.hash_width,
        c.history_len,
    )
    assert got == PRESET_TABLE[name]
    assert c.name == name
    assert get_config(name) is c
    # X's architecture in every preset (docs/FIDELITY.md)
    assert c.num_surfaces == 16
    assert (c.num_action_columns, c.num_continuous) == (64, 8)
    assert (c.sid_levels, c.sid_codes) == (6, 256)
    assert c.norm_eps == 1e-5
    assert c.rope_base == 10000.0
    assert c.attn_logit_cap is None
    assert c.qk_norm and not c.post_sublayer_norm and not c.gated_ffn
    assert c.max_candidates == (1024 if name == "x-nano" else 2800)
    assert c.sequence_len == 2 + c.history_len  # user token, user-features token, history
    assert c.sequence_len % 128 == 0  # prefix + history fill whole 128-blocks, as in X
    assert c.logit_scale == pytest.approx(math.sqrt(512 / c.emb_dim) * 2)
    assert c.attn_scale == pytest.approx(math.sqrt(128) / c.key_size)


def test_exactly_the_five_presets() -> None:
    assert list(PRESETS) == list(PRESET_TABLE)


def test_x_nano_is_xs_home_direct_packed_nano() -> None:
    c = PRESETS["x-nano"]
    sizes = (c.num_user_rows, c.num_post_rows, c.num_author_rows, c.num_ip_rows)
    assert sizes == (100_000, 100_000, 30_000, 10_000)
    assert c.sid_width == 1024  # X's sid_embed_dim
    assert c.logit_scale == 2.0 and c.attn_scale == pytest.approx(1 / math.sqrt(128))
    # X's input_vocab_size: U + I + A + IP + 64 + 1 rounded up to 512 = 240,065 -> 240,128.
    assert c.table_rows == 240_128


@pytest.mark.parametrize("name", ["nano", "x-nano", "prod"])
def test_nano_vocabularies(name: str) -> None:
    c = PRESETS[name]
    assert (c.num_user_rows, c.num_post_rows, c.num_author_rows, c.num_ip_rows) == (
        100_000,
        100_000,
        30_000,
        10_000,
    )


@pytest.mark.parametrize(
    ("widening", "dim"),
    [(2.0, 128), (2.0, 2560), (1.3, 100), (8 / 3, 96), (0.5, 40), (4.0, 24), (1.0, 33)],
)
def test_ffn_dim_rounds_up_to_a_multiple_of_32(widening: float, dim: int) -> None:
    c = PRESETS["tiny"].with_overrides(ffn_widening=widening, emb_dim=dim)
    exact = Fraction(widening) * dim
    want = -(-exact // 32) * 32  # ceil in exact arithmetic
    assert c.ffn_dim == want
    assert c.ffn_dim % 32 == 0 and c.ffn_dim >= widening * dim


@pytest.mark.parametrize("name", list(PRESET_TABLE))
def test_preset_ffn_dim(name: str) -> None:
    c = PRESETS[name]
    assert c.ffn_dim == math.ceil(2 * c.emb_dim / 32) * 32


@pytest.mark.parametrize("name", list(PRESET_TABLE))
def test_table_layout_is_xs_reserved_rows_then_blocks_rounded_to_512(name: str) -> None:
    # docs/FIDELITY.md, "Hashing": row 0 padding, rows 1..64 reserved, blocks of N rows at
    # offsets 65 (users), then posts, authors, IPs; an entity hashes to offset+1 .. offset+N-1.
    c = PRESETS[name]
    n_u, n_p, n_a, n_ip = c.num_user_rows, c.num_post_rows, c.num_author_rows, c.num_ip_rows
    assert c.rows("user") == range(66, 65 + n_u)
    assert c.rows("post") == range(65 + n_u + 1, 65 + n_u + n_p)
    assert c.rows("author") == range(65 + n_u + n_p + 1, 65 + n_u + n_p + n_a)
    assert c.rows("ip") == range(65 + n_u + n_p + n_a + 1, 65 + n_u + n_p + n_a + n_ip)
    total = 65 + n_u + n_p + n_a + n_ip
    assert c.table_rows == -(-total // 512) * 512 and c.table_rows >= total
    assert c.hash_layout.rows("post") == c.rows("post")


def test_vocab_rows_sets_the_table_and_must_hold_the_blocks() -> None:
    tiny = PRESETS["tiny"]
    need = 65 + 8_192 + 32_768 + 4_096 + 256
    assert tiny.min_vocab_rows == need
    assert tiny.with_overrides(vocab_rows=need).table_rows == need
    assert tiny.with_overrides(vocab_rows=need + 1000).table_rows == need + 1000
    with pytest.raises(ConfigError, match=rf"vocab_rows \({need - 1}\) must hold"):
        tiny.with_overrides(vocab_rows=need - 1)


def test_entities_turned_off_as_x_does() -> None:
    # X's two-tower: no user, post or IP block; posts hash into item_hash_vocab_size buckets.
    c = PRESETS["tiny"].with_overrides(
        num_user_rows=0, num_post_rows=0, num_ip_rows=0, num_post_hash_rows=5_000
    )
    assert c.rows("user") == range(1, 2)  # a presence bit
    assert c.rows("ip") == range(0)
    assert c.rows("post") == range(66, 65 + 5_000)
    assert c.rows("author") == range(66, 65 + 4_096)  # overlaps the post buckets, as in X
    assert c.table_rows == 4_608  # 65 + 4,096 rounded up to 512


def test_retrieval_config_is_the_geometry_with_xs_two_tower_choices() -> None:
    for name in PRESETS:
        c = PRESETS[name]
        t = c.retrieval_config()
        assert t.post_sublayer_norm and t.sid_cross_attention and t.sid_dim is None
        assert t.sid_width == c.hash_width
        same = {"post_sublayer_norm", "sid_cross_attention", "sid_dim"}
        assert {k: v for k, v in t.model_dump().items() if k not in same} == {
            k: v for k, v in c.model_dump().items() if k not in same
        }


# Each case: overrides and the field its error must name.
INVALID = [
    ({"emb_dim": -1}, "emb_dim"),
    ({"emb_dim": 0}, "emb_dim"),
    ({"num_layers": 0}, "num_layers"),
    ({"num_q_heads": 6, "num_kv_heads": 4}, "num_q_heads"),
    ({"num_q_heads": 2, "num_kv_heads": 4}, "num_kv_heads"),
    ({"key_size": 33}, "key_size"),
    ({"key_size": 0}, "key_size"),
    ({"hash_width": 0}, "hash_width"),
    ({"history_len": 0}, "history_len"),
    ({"num_user_rows": 1}, "num_user_rows"),  # 0 (off, X's rule) or at least 2
    ({"num_user_rows": -1}, "num_user_rows"),
    ({"num_ip_rows": 1}, "num_ip_rows"),
    ({"num_post_hash_rows": 1}, "num_post_hash_rows"),
    ({"num_post_rows": 0}, "num_post_rows"),  # no post rows and no post buckets
    ({"num_post_rows": 1}, "num_post_rows"),
    ({"num_author_rows": -5}, "num_author_rows"),
    ({"num_author_rows": 1}, "num_author_rows"),
    ({"vocab_rows": 100}, "vocab_rows"),  # too small for the blocks
    ({"vocab_rows": 1}, "vocab_rows"),
    ({"num_surfaces": 0}, "num_surfaces"),
    ({"num_action_columns": 0}, "num_action_columns"),
    ({"num_continuous": 1}, "num_continuous"),  # column 1 is the dwell time
    ({"num_post_age_buckets": 1}, "num_post_age_buckets"),
    ({"post_age_bucket_s": 0}, "post_age_bucket_s"),
    ({"num_counts": 0}, "num_counts"),
    ({"count_mlp_dim": 0}, "count_mlp_dim"),
    ({"num_location_freqs": 31}, "num_location_freqs"),
    ({"num_apps": 0}, "num_apps"),
    ({"sid_levels": 0}, "sid_levels"),
    ({"sid_codes": 1}, "sid_codes"),
    ({"sid_dim": 0}, "sid_dim"),
    ({"candidate_hidden": 0}, "candidate_hidden"),
    ({"ctx_day_dim": 0}, "ctx_day_dim"),
    ({"qk_norm": "yes"}, "qk_norm"),
    ({"ffn_widening": 0.0}, "ffn_widening"),
    ({"attn_logit_cap": 0.0}, "attn_logit_cap"),
    ({"attn_logit_cap": -1.0}, "attn_logit_cap"),
    ({"rope_base": 1.0}, "rope_base"),
    ({"norm_eps": 0.0}, "norm_eps"),
    ({"max_candidates": 0}, "max_candidates"),
    ({"name": ""}, "name"),
    ({"emb_dim": "wide"}, "emb_dim"),
    ({"hidden_size": 64}, "hidden_size"),  # unknown field
    ({"num_actions": 22}, "num_actions"),  # the pre-X field is gone: refused, not ignored
]


@pytest.mark.parametrize(("changes", "field"), INVALID)
def test_invalid_values_raise_config_error_naming_the_field(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        PRESETS["tiny"].with_overrides(**changes)
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        ModelConfig.from_dict({**PRESETS["tiny"].model_dump(), **changes})


@pytest.mark.parametrize("field", ["attn_logit_cap", "ffn_widening", "rope_base", "norm_eps"])
@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_non_finite_floats_are_refused(field: str, value: float) -> None:
    # JSON as Python reads it accepts `Infinity` and `NaN`; a cap of inf makes every attention
    # logit inf * tanh(0) = NaN.
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        PRESETS["tiny"].with_overrides(**{field: value})


def test_a_missing_field_is_named() -> None:
    data = PRESETS["tiny"].model_dump()
    del data["history_len"]
    with pytest.raises(ConfigError, match=r"\bhistory_len\b"):
        ModelConfig.from_dict(data)


def test_from_dict_refuses_a_non_mapping() -> None:
    with pytest.raises(ConfigError, match="JSON object"):
        ModelConfig.from_dict([1, 2])


def test_errors_name_every_bad_field() -> None:
    with pytest.raises(ConfigError) as info:
        PRESETS["tiny"].with_overrides(emb_dim=-1, num_layers=0)
    assert "emb_dim" in str(info.value) and "num_layers" in str(info.value)


@pytest.mark.parametrize("name", list(PRESET_TABLE))
def test_to_json_round_trip(name: str) -> None:
    c = PRESETS[name].with_overrides(attn_logit_cap=30.0, gated_ffn=True, ffn_widening=8 / 3)
    back = ModelConfig.from_dict(json.loads(c.to_json()))
    assert back == c
    assert back.ffn_dim == c.ffn_dim
    assert ModelConfig.from_dict(json.loads(PRESETS[name].to_json())) == PRESETS[name]


def test_from_json_file_round_trip(tmp_path: Path) -> None:
    c = PRESETS["mini"].with_overrides(name="mini-cap", attn_logit_cap=50.0)
    path = tmp_path / "model.json"
    path.write_text(c.to_json())
    assert ModelConfig.from_json_file(path) == c
    assert ModelConfig.from_json_file(str(path)) == c
    assert get_config(path) == c
    assert get_config(str(path)) == c


def test_bad_json_file_raises_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "tiny", ')
    with pytest.raises(ConfigError, match=r"broken\.json"):
        ModelConfig.from_json_file(path)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"binary\.json"):
        ModelConfig.from_json_file(binary)


def test_json_file_with_a_bad_field_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**PRESETS["tiny"].model_dump(), "key_size": 31}))
    with pytest.raises(ConfigError, match=r"\bkey_size\b"):
        ModelConfig.from_json_file(path)
    path.write_text("[1, 2, 3]")
    with pytest.raises(ConfigError, match="JSON object"):
        ModelConfig.from_json_file(path)


def test_missing_file_raises_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=r"nope\.json"):
        ModelConfig.from_json_file(missing)
    with pytest.raises(ConfigError, match=r"nope\.json"):
        get_config(missing)


def test_unknown_preset_name_lists_the_presets() -> None:
    with pytest.raises(ConfigError, match="tiny, mini, nano, x-nano, prod"):
        get_config("huge")


def test_with_overrides_returns_a_new_validated_copy() -> None:
    tiny = PRESETS["tiny"]
    c = tiny.with_overrides(history_len=16, num_kv_heads=1)
    assert (c.history_len, c.num_kv_heads, c.sequence_len) == (16, 1, 18)
    assert c.emb_dim == tiny.emb_dim
    assert tiny.history_len == 126  # the preset is untouched


def test_model_config_is_frozen() -> None:
    c = PRESETS["tiny"]
    with pytest.raises(ValidationError, match="frozen"):
        c.emb_dim = 64  # type: ignore[misc]
    assert c.emb_dim == 128
    assert hash(c) == hash(ModelConfig.from_dict(c.model_dump()))


def test_error_hierarchy() -> None:
    for cls in (ConfigError, InputError, CheckpointError, WorldError):
        assert issubclass(cls, PhoenixError)
    assert issubclass(ConfigError, ValueError) and issubclass(InputError, ValueError)
    assert not issubclass(ConfigError, InputError) and not issubclass(InputError, ConfigError)


def test_a_directory_path_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        get_config(tmp_path)


@pytest.mark.parametrize(
    ("field", "value"), [("emb_dim", "128"), ("num_layers", True), ("gated_ffn", "yes")]
)
def test_values_of_the_wrong_type_are_not_coerced(field: str, value: object) -> None:
    data = PRESETS["tiny"].model_dump() | {field: value}
    with pytest.raises(ConfigError, match=field):
        ModelConfig.from_dict(data)
