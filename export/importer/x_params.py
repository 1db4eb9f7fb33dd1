"""X's parameter names and layouts -> the project's modules (docs/FIDELITY.md, "Checkpoints").

X (Haiku) stores every matrix as [in, out], the transformer layers stacked on axis 0, each hash
row's projection separately (`*_hash_0_proj`, `*_hash_1_proj`) and the attention's query, key and
value projections fused and grouped per kv head: for kv head g the last axis holds
[q_{gG}, ..., q_{gG+G-1}, k_g, v_g] (G = query heads per kv head). The project keeps PyTorch's
[out, in] `nn.Linear` weights, the two hash rows concatenated and separate q/k/v projections, so
the mapping below is pure re-layout: every imported value is bit-exact.

`ranker_config_from_params` recovers the geometry from the parameters' own shapes; what the
shapes cannot say (key size, table block sizes, semantic-id levels) comes from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from phoenix.config import ModelConfig
from phoenix.errors import CheckpointImportError

Params = Mapping[str, npt.NDArray[Any]]

LAYER = "transformer/layer_stack/decoder_layer_0/"
ATTN = LAYER + "multi_head_attention/"
HEADS = "recsys_aggregated_model/"
EMB_TABLE = "emb_table"

#: Our sequence module name -> X's prefix.
SEQUENCES = {"history": "hist", "candidates": "cand"}
#: Our per-sequence embeddings -> X's name after the prefix (all [rows, D], copied as they are).
SEQUENCE_EMBEDDINGS = {
    "surface": "product_surface_emb",
    "post_age": "post_age_emb",
    "timezone": "timezone_emb",
    "hour": "hour_of_day_emb",
    "followed_by_viewer": "is_author_followed_by_viewer_emb",
    "following_viewer": "is_author_following_viewer_emb",
}
USER_EMBEDDINGS = {
    "country": "user_feat_country_emb",
    "language": "user_feat_language_emb",
    "profile_gender": "user_feat_profile_gender_emb",
    "inferred_gender": "user_feat_inferred_gender_emb",
    "age_bracket": "user_feat_age_bracket_emb",
}
#: Block norms: ours -> X's.
BLOCK_NORMS = {
    "attn_norm": "pre_attn_norm",
    "ffn_norm": "pre_ffn_norm",
    "attn_out_norm": "post_attn_norm",
    "ffn_out_norm": "post_ffn_norm",
}


def get(params: Params, name: str) -> npt.NDArray[Any]:
    try:
        return np.asarray(params[name])
    except KeyError:
        raise CheckpointImportError(f"missing parameter {name!r}") from None


def hash_pair(params: Params, stem: str) -> npt.NDArray[Any]:
    """X's `<stem>_0_proj` and `<stem>_1_proj` [W, D] -> our Linear weight [D, 2W]."""
    return np.concatenate([get(params, f"~/{stem}_0_proj"), get(params, f"~/{stem}_1_proj")]).T


def split_qkv(qkv: npt.NDArray[Any], config: ModelConfig) -> tuple[npt.NDArray[Any], ...]:
    """One layer's fused [D, Hkv*(G+2)*dk] -> q [Hq*dk, D], k and v [Hkv*dk, D] (ours)."""
    d, hkv, dk = config.emb_dim, config.num_kv_heads, config.key_size
    g = config.num_q_heads // hkv
    fused = qkv.reshape(d, hkv, g + 2, dk)
    q = fused[:, :, :g].reshape(d, hkv * g * dk)  # query head order g*G + i, as X concatenates
    return q.T, fused[:, :, g].reshape(d, hkv * dk).T, fused[:, :, g + 1].reshape(d, hkv * dk).T


def trunk_state(params: Params, config: ModelConfig, prefix: str) -> dict[str, npt.NDArray[Any]]:
    """The stacked transformer layers and the final norm under `prefix` (e.g. 'trunk.')."""
    out: dict[str, npt.NDArray[Any]] = {}
    qkv = get(params, ATTN + "qkv/w")
    if qkv.shape[0] != config.num_layers:
        raise CheckpointImportError(
            f"{ATTN}qkv/w: {qkv.shape[0]} stacked layers, config has {config.num_layers}"
        )
    for i in range(config.num_layers):
        block = f"{prefix}blocks.{i}."
        q, k, v = split_qkv(qkv[i], config)
        out[block + "attn.q_proj.weight"] = q
        out[block + "attn.k_proj.weight"] = k
        out[block + "attn.v_proj.weight"] = v
        out[block + "attn.o_proj.weight"] = get(params, ATTN + "out/w")[i].T
        if config.qk_norm:
            out[block + "attn.q_norm.scale"] = get(params, ATTN + "q_norm/scale")[i]
            out[block + "attn.k_norm.scale"] = get(params, ATTN + "k_norm/scale")[i]
        out[block + "ffn.up.weight"] = get(params, LAYER + "up_proj/w")[i].T
        out[block + "ffn.down.weight"] = get(params, LAYER + "down_proj/w")[i].T
        norms = BLOCK_NORMS if config.post_sublayer_norm else dict(list(BLOCK_NORMS.items())[:2])
        for ours, theirs in norms.items():
            out[f"{block}{ours}.scale"] = get(params, f"{LAYER}{theirs}/scale")[i]
    out[prefix + "final_norm.scale"] = get(params, HEADS + "final_layer_norm/scale")
    return out


def ranker_state(params: Params, config: ModelConfig) -> dict[str, npt.NDArray[Any]]:
    """X's ranker parameters (and `emb_table`) -> `PhoenixRanker.state_dict()` names."""
    out = {
        "embed.table.weight": get(params, EMB_TABLE),
        "embed.user_proj.weight": hash_pair(params, "user_hash"),
        "embed.sids.table.weight": get(params, "~/feat_prep_post_sid_combined"),
        "embed.user_features.location.weight": get(params, "~/user_feat_location_proj").T,
        "embed.user_features.apps.weight": get(params, "~/user_feat_installed_apps_proj").T,
        "embed.user_features.age_years": get(params, "~/user_feat_age_years_vec"),
        "embed.history.actions.weight": get(params, "~/hist_action_emb").T,
        "embed.history.dwell": get(params, "~/hist_dwell_time_vec"),
        "embed.candidates.stale.weight": get(params, "~/cand_is_stale_post_14d_emb"),
        "unembed.weight": get(params, HEADS + "unembeddings").T,
        "continuous_head.weight": get(params, HEADS + "continuous_unembeddings").T,
    }
    if config.sid_width != config.emb_dim:
        out["embed.sids.proj.weight"] = get(params, "~/feat_prep_post_sid_proj").T
    if config.num_ip_rows:
        out["embed.ip_proj.weight"] = hash_pair(params, "user_ip_hash")
    for ours, theirs in USER_EMBEDDINGS.items():
        out[f"embed.user_features.{ours}.weight"] = get(params, f"~/{theirs}")
    for seq, x in SEQUENCES.items():
        base = f"embed.{seq}."
        out[base + "post_proj.weight"] = hash_pair(params, f"{x}_post_hash")
        out[base + "author_proj.weight"] = hash_pair(params, f"{x}_author_hash")
        out[base + "count_in.weight"] = get(params, f"~/{x}_count_lograw_mlp_in").T
        out[base + "count_out.weight"] = get(params, f"~/{x}_count_lograw_mlp_out").T
        for ours, theirs in SEQUENCE_EMBEDDINGS.items():
            out[f"{base}{ours}.weight"] = get(params, f"~/{x}_{theirs}")
    return out | trunk_state(params, config, "trunk.")


def _trunk_geometry(params: Params, key_size: int, d: int) -> dict[str, Any]:
    """Layers, heads, FFN width and norms from the stacked transformer's shapes."""
    qkv = get(params, ATTN + "qkv/w")
    q_width = get(params, ATTN + "out/w").shape[1]
    kv_width = (qkv.shape[2] - q_width) // 2
    for what, width in (("query", q_width), ("key/value", kv_width)):
        if width <= 0 or width % key_size:
            raise CheckpointImportError(
                f"{ATTN}qkv/w: {what} width {width} is not a multiple of key size {key_size}"
            )
    return {
        "emb_dim": int(d),
        "num_layers": int(qkv.shape[0]),
        "num_q_heads": q_width // key_size,
        "num_kv_heads": kv_width // key_size,
        "key_size": key_size,
        "ffn_widening": get(params, LAYER + "up_proj/w").shape[2] / d,
        "qk_norm": f"{ATTN}q_norm/scale" in params,
        "post_sublayer_norm": f"{LAYER}post_attn_norm/scale" in params,
    }


def _sid_geometry(sid: npt.NDArray[Any], name: str, sid_levels: int) -> dict[str, Any]:
    if sid.shape[0] % (sid_levels + 1):
        raise CheckpointImportError(
            f"{name}: {sid.shape[0]} rows do not split into {sid_levels} + 1 levels"
        )
    return {
        "sid_levels": sid_levels,
        "sid_codes": sid.shape[0] // (sid_levels + 1) - 1,
        "sid_dim": int(sid.shape[1]),
    }


def _config(fields: dict[str, Any]) -> ModelConfig:
    try:
        return ModelConfig.from_dict(fields)
    except Exception as exc:  # ConfigError names the field
        raise CheckpointImportError(f"the checkpoint's shapes give no valid config: {exc}") from exc


def ranker_config_from_params(
    params: Params,
    *,
    name: str,
    key_size: int,
    history_len: int,
    table_blocks: tuple[int, int, int, int],
    sid_levels: int,
    max_candidates: int = 2800,
) -> ModelConfig:
    """The ranker's geometry from its parameter shapes plus what shapes cannot tell."""
    unembed = get(params, HEADS + "unembeddings")
    table = get(params, EMB_TABLE)
    users, posts, authors, ips = table_blocks
    loc = get(params, "~/user_feat_location_proj")
    count_in = get(params, "~/hist_count_lograw_mlp_in")
    sid = get(params, "~/feat_prep_post_sid_combined")
    fields: dict[str, Any] = {
        "name": name,
        **_trunk_geometry(params, key_size, unembed.shape[0]),
        "hash_width": int(table.shape[1]),
        "num_user_rows": users,
        "num_post_rows": posts,
        "num_author_rows": authors,
        "num_ip_rows": ips if "~/user_ip_hash_0_proj" in params else 0,
        "vocab_rows": int(table.shape[0]),
        "history_len": history_len,
        "max_candidates": max_candidates,
        "num_surfaces": int(get(params, "~/cand_product_surface_emb").shape[0]),
        "num_post_age_buckets": int(get(params, "~/cand_post_age_emb").shape[0]),
        "num_timezones": int(get(params, "~/cand_timezone_emb").shape[0]),
        "num_hours": int(get(params, "~/cand_hour_of_day_emb").shape[0]),
        "num_counts": int(count_in.shape[0]) - 1,
        "count_mlp_dim": int(count_in.shape[1]),
        "num_countries": int(get(params, "~/user_feat_country_emb").shape[0]),
        "num_languages": int(get(params, "~/user_feat_language_emb").shape[0]),
        "num_location_freqs": int(loc.shape[0]) // 4,
        "num_apps": int(get(params, "~/user_feat_installed_apps_proj").shape[0]),
        "num_age_brackets": int(get(params, "~/user_feat_age_bracket_emb").shape[0]),
        **_sid_geometry(sid, "~/feat_prep_post_sid_combined", sid_levels),
        "num_action_columns": int(unembed.shape[1]),
        "num_continuous": int(get(params, HEADS + "continuous_unembeddings").shape[1]),
    }
    return _config(fields)


TWO_TOWER = "recsys_two_tower_model/"
CANDIDATE_TOWER = "candidate_tower/candidate_tower_projection_"


def retrieval_state(params: Params, config: ModelConfig) -> dict[str, npt.NDArray[Any]]:
    """X's two-tower parameters (and `emb_table`) -> `RetrievalModel.state_dict()` names."""
    out = {
        "table.weight": get(params, EMB_TABLE),
        "sids.table.weight": get(params, TWO_TOWER + "post_sid_combined"),
        "sids.cross.weight": get(params, TWO_TOWER + "post_sid_xattn_qkv").T,
        "actions.table": get(params, TWO_TOWER + "action_embedding_table"),
        "context.timezone.weight": get(params, TWO_TOWER + "ctx_cat_timezone_emb"),
        "context.hour.weight": get(params, TWO_TOWER + "ctx_cat_local_hour_of_day_emb"),
        "context.day.weight": get(params, TWO_TOWER + "ctx_cat_local_day_of_week_emb"),
        "context.proj.weight": get(params, TWO_TOWER + "unified_ctx_proj").T,
        "history_proj.weight": get(params, TWO_TOWER + "proj_mat_3").T,
        "candidate_mlp.0.weight": get(params, CANDIDATE_TOWER + "1/w").T,
        "candidate_mlp.2.weight": get(params, CANDIDATE_TOWER + "2/w").T,
    }
    if config.sid_width != config.hash_width:
        out["sids.proj.weight"] = get(params, TWO_TOWER + "post_sid_proj").T
    if config.hash_width != config.emb_dim:
        out["tfmr_proj.weight"] = get(params, TWO_TOWER + "tfmr_proj/w").T
    return out | trunk_state(params, config, "user_trunk.")


def retrieval_config_from_params(
    params: Params,
    *,
    name: str,
    key_size: int,
    history_len: int,
    table_blocks: tuple[int, int, int, int],
    post_hash_rows: int,
    sid_levels: int,
    num_action_columns: int = 64,
) -> ModelConfig:
    """The two-tower model's geometry from its parameter shapes plus what shapes cannot tell."""
    table = get(params, EMB_TABLE)
    users, posts, authors, ips = table_blocks
    width = int(table.shape[1])
    hidden = get(params, CANDIDATE_TOWER + "1/w")
    fields: dict[str, Any] = {
        "name": name,
        **_trunk_geometry(params, key_size, get(params, HEADS + "final_layer_norm/scale").shape[0]),
        "hash_width": width,
        "num_user_rows": users,
        "num_post_rows": posts,
        "num_post_hash_rows": post_hash_rows,
        "num_author_rows": authors,
        "num_ip_rows": ips,
        "vocab_rows": int(table.shape[0]),
        "history_len": history_len,
        "num_timezones": int(get(params, TWO_TOWER + "ctx_cat_timezone_emb").shape[0]),
        "num_hours": int(get(params, TWO_TOWER + "ctx_cat_local_hour_of_day_emb").shape[0]),
        "num_days_of_week": int(get(params, TWO_TOWER + "ctx_cat_local_day_of_week_emb").shape[0]),
        "ctx_timezone_dim": int(get(params, TWO_TOWER + "ctx_cat_timezone_emb").shape[1]),
        "ctx_hour_dim": int(get(params, TWO_TOWER + "ctx_cat_local_hour_of_day_emb").shape[1]),
        "ctx_day_dim": int(get(params, TWO_TOWER + "ctx_cat_local_day_of_week_emb").shape[1]),
        **_sid_geometry(
            get(params, TWO_TOWER + "post_sid_combined"), "post_sid_combined", sid_levels
        ),
        "sid_cross_attention": True,
        "candidate_hidden": int(hidden.shape[1]),
        # The signed action table is [1, W] whatever the columns: X's output vocabulary (64).
        "num_action_columns": num_action_columns,
    }
    return _config(fields)
