"""X's feature prep: turning hashed rows and context features into tokens (docs/FIDELITY.md).

One shared table of width W holds users, posts, authors and IPs. Every token is a sum of
projected rows and context embeddings, and the whole sequence `[user | user features | history |
candidates]` is multiplied by sqrt(D). No biases anywhere. Padded history slots are not zeroed:
they carry the index-0 context embeddings, as in X (only X's serving kernel ever reads them).

Categorical lookups clip their index into the vocabulary, as X's do, so an unknown code lands on
the last row instead of failing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from export.models.inputs import (
    CREATION_TS,
    FOLLOWED_BY_VIEWER,
    FOLLOWING_VIEWER,
    IMPRESSION_TS,
    LOCAL_HOUR,
    TIMEZONE,
    USER_AGE_BRACKET,
    USER_AGE_YEARS,
    USER_COUNTRY,
    USER_GENDER,
    USER_INFERRED_GENDER,
    USER_INFERRED_GENDER_SCORE,
    USER_LANGUAGE,
    USER_LATITUDE,
    USER_LONGITUDE,
    CandidateInputs,
    HistoryInputs,
    UserInputs,
)
from phoenix.config import ModelConfig

#: X's multiplier for the semantic-id hash level (a MurmurHash constant).
SID_HASH_MULTIPLIER = 1540483477
#: Dwell times are clipped to this many seconds and scaled to [0, 1] on the history token.
DWELL_NORM_S = 30.0
#: Profile genders in X's user features (unknown, and two values).
NUM_PROFILE_GENDERS = 3
NUM_INFERRED_GENDERS = 2


class Categorical(nn.Embedding):
    """An embedding whose index is clipped into [0, rows - 1] (X's `_embed_categorical`)."""

    def forward(self, index: Tensor) -> Tensor:
        return super().forward(index.clamp(0, self.num_embeddings - 1))


def hash_projection(width: int, emb_dim: int) -> nn.Linear:
    """Two hashed rows concatenated -> D: X's `*_hash_0_proj` and `*_hash_1_proj` side by side."""
    return nn.Linear(2 * width, emb_dim, bias=False)


class SemanticIds(nn.Module):
    """Semantic-id embedding: one row per level plus X's hash level, combined, projected.

    Level l's code c reads row l * (codes + 1) + c. Code 0 (missing) and codes past the codebook
    contribute nothing whatever the table holds there, as in X (which zeroes those rows when it
    reads the table, so an imported table keeps its stored values bit for bit). The levels are
    summed (the ranker) or, with `config.sid_cross_attention` (the two-tower), attend to each
    other and give mean(attended) + mean(levels). The projection to `out_dim` exists only when
    the table's width differs from it, as in X.
    """

    def __init__(self, config: ModelConfig, out_dim: int) -> None:
        super().__init__()
        self.levels = config.sid_levels
        self.codes = config.sid_codes
        width = config.sid_width
        self.table = nn.Embedding((self.levels + 1) * (self.codes + 1), width)
        self.cross = nn.Linear(width, 3 * width, bias=False) if config.sid_cross_attention else None
        self.proj = nn.Linear(width, out_dim, bias=False) if width != out_dim else nn.Identity()

    def hash_level(self, post_row: Tensor, sids: Tensor) -> Tensor:
        """X's extra level: a 32-bit mix of the post's first table row; 0 when the post has no ids.

        X computes `m = int32(row * 1540483477)`, `m ^= m >> 16` (arithmetic shift), `|m| % codes
        + 1`. Emulated in int64 with masks and shifts of non-negative numbers only: the ONNX
        exporter lowers integer division through float (off by one for large values), while
        masks, shifts and `Mod` are exact on every runtime. A shift of a negative number is built
        from the unsigned 32 bits and their sign.
        """
        low32 = (1 << 32) - 1
        u = torch.bitwise_and(
            torch.bitwise_and(post_row.long(), low32) * SID_HASH_MULTIPLIER, low32
        )
        sign = u >> 31  # 1 when the int32 is negative
        m = u - (sign << 32)  # the int32 value
        shifted = (u >> 16) - (sign << 16)  # m >> 16, arithmetic
        code = torch.remainder(torch.bitwise_xor(m, shifted).abs(), self.codes) + 1
        return torch.where(sids[..., 0] != 0, code, torch.zeros_like(code))

    def forward(self, post_hash: Tensor, sids: Tensor) -> Tensor:
        """[B, L, 2] rows, [B, L, K] codes -> [B, L, out_dim]."""
        codes = torch.cat([sids.long(), self.hash_level(post_hash[..., 0], sids)[..., None]], -1)
        offsets = torch.arange(self.levels + 1, device=codes.device) * (self.codes + 1)
        present = (codes > 0) & (codes <= self.codes)
        rows = torch.where(present, codes + offsets, torch.zeros_like(codes))  # [B, L, K+1]
        levels = self.table(rows) * present[..., None].to(self.table.weight.dtype)
        if self.cross is None:
            return self.proj(levels.sum(-2))
        q, k, v = self.cross(levels).chunk(3, dim=-1)  # [B, L, K+1, width] each
        weights = (q @ k.transpose(-1, -2)).float() / math.sqrt(q.shape[-1])
        attended = weights.softmax(-1).to(v.dtype) @ v
        return self.proj(attended.mean(-2) + levels.mean(-2))


class UserFeatures(nn.Module):
    """The user-features token: country, language, location, apps, gender, age."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.emb_dim
        self.freqs = config.num_location_freqs
        self.country = Categorical(config.num_countries, d)
        self.language = Categorical(config.num_languages, d)
        self.location = nn.Linear(4 * self.freqs, d, bias=False)
        self.apps = nn.Linear(config.num_apps, d, bias=False)
        self.profile_gender = Categorical(NUM_PROFILE_GENDERS, d)
        self.inferred_gender = Categorical(NUM_INFERRED_GENDERS, d)
        self.age_bracket = Categorical(config.num_age_brackets, d)
        self.age_years = nn.Parameter(torch.zeros(d))

    def forward(self, user: UserInputs) -> Tensor:
        """-> [B, D]"""
        cat, flt = user.user_categorical, user.user_float.float()
        # One constant multiply each (not pi * x / 90): every runtime then rounds the same way,
        # which matters because the top frequency scales the angle by 128.
        lat = flt[:, USER_LATITUDE] * (math.pi / 90.0)
        lon = flt[:, USER_LONGITUDE] * (math.pi / 180.0)
        bands = 2.0 ** torch.arange(self.freqs, device=flt.device, dtype=torch.float32)
        lat_b, lon_b = lat[:, None] * bands, lon[:, None] * bands  # [B, F]
        geo = torch.cat([lat_b.sin(), lat_b.cos(), lon_b.sin(), lon_b.cos()], -1)  # [B, 4F]
        dtype = self.age_years.dtype
        score = flt[:, USER_INFERRED_GENDER_SCORE, None].to(dtype)
        log_age = torch.log1p(flt[:, USER_AGE_YEARS])[:, None].to(dtype)
        return (
            self.country(cat[:, USER_COUNTRY])
            + self.language(cat[:, USER_LANGUAGE])
            + self.location(geo.to(dtype))
            + self.apps(user.user_apps.to(dtype))
            + self.profile_gender(cat[:, USER_GENDER])
            + score * self.inferred_gender(cat[:, USER_INFERRED_GENDER])
            + self.age_bracket(cat[:, USER_AGE_BRACKET])
            + log_age * self.age_years
        )


class SequenceFeatures(nn.Module):
    """Context embeddings of a post sequence (history or candidates): X's `hist_*` / `cand_*`."""

    def __init__(self, config: ModelConfig, *, history: bool) -> None:
        super().__init__()
        d, w = config.emb_dim, config.hash_width
        self.post_age_bucket_s = config.post_age_bucket_s
        self.post_proj = hash_projection(w, d)
        self.author_proj = hash_projection(w, d)
        self.surface = Categorical(config.num_surfaces, d)
        self.post_age = Categorical(config.num_post_age_buckets, d)
        self.timezone = Categorical(config.num_timezones, d)
        self.hour = Categorical(config.num_hours, d)
        self.followed_by_viewer = Categorical(2, d)
        self.following_viewer = Categorical(2, d)
        self.count_in = nn.Linear(config.num_counts + 1, config.count_mlp_dim, bias=False)
        self.count_out = nn.Linear(config.count_mlp_dim, d, bias=False)
        if history:
            self.actions = nn.Linear(config.num_action_columns, d, bias=False)
            self.dwell = nn.Parameter(torch.zeros(d))
        else:
            self.stale = Categorical(2, d)

    def post_age_bucket(self, time: Tensor) -> Tensor:
        """Whole buckets since creation, plus one; 0 when unknown or negative (X's linear age)."""
        impression, created = time[..., IMPRESSION_TS].long(), time[..., CREATION_TS].long()
        age = impression - created
        known = (impression != 0) & (created != 0) & (age >= 0)
        # Clamped first so the division is exact even where an exporter lowers it through float32.
        limit = self.post_age.num_embeddings * self.post_age_bucket_s
        bucket = torch.div(age.clamp(0, limit), self.post_age_bucket_s, rounding_mode="floor") + 1
        return torch.where(known, bucket, torch.zeros_like(bucket))

    def counts(self, counts: Tensor) -> Tensor:
        """log2(count + 1) / 32 for each count, and a constant 1, through a GELU MLP."""
        dtype = self.count_in.weight.dtype
        scaled = torch.log2(counts.float().clamp_min(0) + 1.0) / 32.0
        v = torch.cat([scaled, torch.ones_like(scaled[..., :1])], -1).to(dtype)
        return self.count_out(F.gelu(self.count_in(v), approximate="tanh"))

    def forward(
        self,
        rows: tuple[Tensor, Tensor],
        surface: Tensor,
        time: Tensor,
        context: Tensor,
        follow: Tensor,
        counts: Tensor,
    ) -> Tensor:
        """rows: the post's and the author's two table rows [B, L, 2, W] each -> [B, L, D].

        Without the semantic ids (shared by both sequences) and before the ×sqrt(D).
        """
        post_rows, author_rows = rows
        return (
            self.post_proj(post_rows.flatten(-2))
            + self.author_proj(author_rows.flatten(-2))
            + self.surface(surface)
            + self.post_age(self.post_age_bucket(time))
            + self.timezone(context[..., TIMEZONE])
            + self.hour(context[..., LOCAL_HOUR])
            + self.followed_by_viewer(follow[..., FOLLOWED_BY_VIEWER])
            + self.following_viewer(follow[..., FOLLOWING_VIEWER])
            + self.counts(counts)
        )


class TokenEmbedder(nn.Module):
    """The ranker's feature prep: prefix tokens, history tokens and candidate tokens."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, w = config.emb_dim, config.hash_width
        self.scale = math.sqrt(d)
        self.table = nn.Embedding(config.table_rows, w)
        self.user_proj = hash_projection(w, d)
        self.ip_proj = hash_projection(w, d) if config.num_ip_rows else None
        self.user_features = UserFeatures(config)
        self.sids = SemanticIds(config, config.emb_dim)
        self.history = SequenceFeatures(config, history=True)
        self.candidates = SequenceFeatures(config, history=False)
        self._init_weights(config)

    def _init_weights(self, config: ModelConfig) -> None:
        # Unit-variance table rows; every projection scaled by its fan-in and sqrt(D), every
        # context embedding small, so a token has roughly unit variance after the ×sqrt(D).
        d = config.emb_dim
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=1.0 / math.sqrt(module.in_features * d))
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.1 / math.sqrt(d))
        for vector in (self.user_features.age_years, self.history.dwell):
            nn.init.normal_(vector, std=0.1 / math.sqrt(d))
        nn.init.normal_(self.table.weight, std=1.0)
        nn.init.normal_(self.sids.table.weight, std=1.0)
        with torch.no_grad():
            self.table.weight[0].zero_()

    def _rows(self, hashes: Tensor) -> Tensor:
        return self.table(hashes.long())  # [..., 2, W]

    def prefix(self, user: UserInputs) -> tuple[Tensor, Tensor]:
        """The user-hash token and the user-features token [B, 2, D] and their mask [B, 2]."""
        token = self.user_proj(self._rows(user.user_hash).flatten(-2))
        if self.ip_proj is not None:
            token = token + self.ip_proj(self._rows(user.user_ip_hash).flatten(-2))
        features = self.user_features(user)
        valid = torch.stack(
            [user.user_hash[:, 0] != 0, torch.ones_like(user.user_hash[:, 0], dtype=torch.bool)], 1
        )
        return torch.stack([token, features], 1), valid

    def history_tokens(self, h: HistoryInputs) -> tuple[Tensor, Tensor]:
        """[B, S, D] tokens (before ×√D) and the valid mask [B, S]."""
        seq = self.history
        tokens = seq(
            (self._rows(h.history_post_hash), self._rows(h.history_author_hash)),
            h.history_surface,
            h.history_time,
            h.history_context,
            h.history_follow,
            h.history_counts,
        ) + self.sids(h.history_post_hash, h.history_sids)
        actions = h.history_actions.to(tokens.dtype)
        has_action = (actions != 0).any(-1, keepdim=True).to(tokens.dtype)
        dwell = h.history_dwell.float().clamp(0.0, DWELL_NORM_S) / DWELL_NORM_S
        tokens = tokens + seq.actions(actions) * has_action
        tokens = tokens + dwell[..., None].to(tokens.dtype) * seq.dwell
        return tokens, h.history_post_hash[..., 0] != 0

    def candidate_tokens(self, c: CandidateInputs) -> Tensor:
        """[B, C, D] tokens, already ×√D."""
        seq = self.candidates
        tokens = (
            seq(
                (self._rows(c.candidate_post_hash), self._rows(c.candidate_author_hash)),
                c.candidate_surface,
                c.candidate_time,
                c.candidate_context,
                c.candidate_follow,
                c.candidate_counts,
            )
            + self.sids(c.candidate_post_hash, c.candidate_sids)
            + seq.stale(c.candidate_stale)
        )
        return tokens * self.scale

    def context(self, user: UserInputs, history: HistoryInputs) -> tuple[Tensor, Tensor]:
        """The `[user | user features | history]` tokens [B, 2+S, D], ×√D, and their mask."""
        prefix, prefix_valid = self.prefix(user)
        hist, hist_valid = self.history_tokens(history)
        tokens = torch.cat([prefix, hist], 1) * self.scale
        return tokens, torch.cat([prefix_valid, hist_valid], 1)
