"""User profiles: what X's user-features token and context embeddings read about a viewer.

Every user lives in a region (a country with its main timezone and languages); location, timezone,
language, country and IP address follow from it, so they are correlated as in real data. Gender,
age and installed apps are drawn per user, apps partly from the user's topic taste. Codes are X's
proto enum numbers (`Timezone`, `CountryCode`, `LanguageCode`), so the world's features mean what
X's would; 0 means unknown everywhere.

The profile is drawn after every other stage, from the same generator, so adding it changed
nothing else a seed produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from phoenix.world.people import Users


class Region(NamedTuple):
    """A country (or a part of one with its own timezone) users can live in."""

    country: int  # X's CountryCode enum
    languages: tuple[int, int]  # X's LanguageCode enum: main, second (0 = none)
    second_language_share: float
    timezone: int  # X's Timezone enum
    latitude: float  # centre, degrees
    longitude: float
    spread_deg: float  # standard deviation of users' positions around the centre
    weight: float  # relative share of users
    ip_prefix: int  # first octet of the region's IPv4 addresses


# X's enum numbers of the countries, languages and timezones used below.
_US, _CA, _MX, _BR, _AR, _GB, _FR, _DE, _ES, _IT = 233, 38, 157, 31, 10, 77, 75, 57, 68, 110
_NL, _TR, _SA, _NG, _IN, _ID, _PH, _JP, _KR, _AU = 166, 225, 193, 164, 105, 101, 177, 114, 122, 13
_EN, _ES_L, _FR_L, _PT, _DE_L, _IT_L, _NL_L, _TR_L, _AR_L, _YO, _HI, _ID_L, _TL, _JA, _KO = (
    37, 39, 47, 130, 32, 72, 115, 164, 6, 180, 57, 65, 161, 74, 84,
)  # fmt: skip

REGIONS: tuple[Region, ...] = (
    #      country languages      2nd   tz   lat     lon   spread weight ip
    Region(_US, (_EN, _ES_L),    0.12,  1,  40.7,  -74.0,  3.0, 14.0,  23),
    Region(_US, (_EN, _ES_L),    0.15,  2,  41.9,  -87.6,  4.0,  8.0,  24),
    Region(_US, (_EN, _ES_L),    0.20,  3,  34.1, -118.2,  3.0,  8.0,  32),
    Region(_CA, (_EN, _FR_L),    0.20, 27,  43.7,  -79.4,  2.0,  3.0,  41),
    Region(_MX, (_ES_L, _EN),    0.05, 28,  19.4,  -99.1,  3.0,  4.0,  45),
    Region(_BR, (_PT, _EN),      0.05,  5, -23.5,  -46.6,  4.0,  7.0, 177),
    Region(_AR, (_ES_L, _EN),    0.05, 29, -34.6,  -58.4,  3.0,  2.0, 181),
    Region(_GB, (_EN, 0),        0.00,  6,  51.5,   -0.1,  2.0,  6.0,  81),
    Region(_FR, (_FR_L, _EN),    0.10,  7,  48.9,    2.4,  2.0,  4.0,  90),
    Region(_DE, (_DE_L, _EN),    0.15,  8,  52.5,   13.4,  2.0,  4.0,  84),
    Region(_ES, (_ES_L, _EN),    0.10,  9,  40.4,   -3.7,  2.0,  4.0,  88),
    Region(_IT, (_IT_L, _EN),    0.10, 10,  41.9,   12.5,  2.0,  2.0,  93),
    Region(_NL, (_NL_L, _EN),    0.30, 11,  52.4,    4.9,  1.0,  1.0,  94),
    Region(_TR, (_TR_L, _EN),    0.05, 12,  41.0,   29.0,  3.0,  3.0,  95),
    Region(_SA, (_AR_L, _EN),    0.10, 21,  24.7,   46.7,  3.0,  2.0,  37),
    Region(_NG, (_EN, _YO),      0.20, 30,   6.5,    3.4,  3.0,  2.0, 102),
    Region(_IN, (_EN, _HI),      0.40, 15,  19.1,   72.9,  5.0,  7.0, 106),
    Region(_ID, (_ID_L, _EN),    0.10, 18,  -6.2,  106.8,  3.0,  4.0, 110),
    Region(_PH, (_EN, _TL),      0.30, 22,  14.6,  121.0,  2.0,  2.0, 112),
    Region(_JP, (_JA, _EN),      0.03, 14,  35.7,  139.7,  2.0,  7.0, 126),
    Region(_KR, (_KO, _EN),      0.03, 17,  37.6,  127.0,  1.0,  2.0, 121),
    Region(_AU, (_EN, 0),        0.00, 24, -33.9,  151.2,  3.0,  2.0,   1),
)  # fmt: skip

#: Width of the installed-apps multi-hot (X's user features read 64 apps).
NUM_APPS = 64
#: Age brackets: bracket b (1..7) holds ages [AGE_BRACKET_STARTS[b-1], AGE_BRACKET_STARTS[b]).
AGE_BRACKET_STARTS = (13, 18, 25, 35, 45, 55, 65)
#: Profile gender codes (X's feature encoding) and inferred gender codes.
GENDER_UNKNOWN, GENDER_FEMALE, GENDER_MALE = 0, 1, 2
INFERRED_FEMALE, INFERRED_MALE = 0, 1

_UNKNOWN_LOCATION = 0.05  # share of users without a location (latitude = longitude = 0)
_UNKNOWN_TIMEZONE = 0.03
_UNKNOWN_LANGUAGE = 0.02
_GENDER_SHARES = (0.40, 0.28, 0.32)  # unknown, female, male
_INFERRED_AGREES = 0.9  # inferred gender matches a known profile gender this often
_NO_INFERENCE = 0.05  # share with no inferred gender (score 0)
_BRACKET_KNOWN, _AGE_KNOWN = 0.8, 0.6  # age known only for some of those with a bracket
_AGE_SHAPE, _AGE_SCALE = 2.0, 9.0  # age = 13 + gamma, clipped to 90
_APP_BASE_MAX, _APP_DECAY = 0.6, 12.0  # app i's base rate 0.6 * exp(-i / 12) + 0.02
_TOPIC_APPS_FROM = 8  # apps from this index on belong to a topic (i % num_topics) ...
_TOPIC_APP_GAIN = 4.0  # ... and are likelier for users with a taste for it
_SHARED_IP = 0.15  # share of users on another user's address (household, office)
_UNKNOWN_IP = 0.03


@dataclass
class Profiles:
    """Every user's profile, one row per user (the `Users` order)."""

    timezone: np.ndarray  # int8 [U]
    language: np.ndarray  # int16 [U]
    country: np.ndarray  # int16 [U]
    gender: np.ndarray  # int8 [U]
    age_bracket: np.ndarray  # int8 [U]
    age_years: np.ndarray  # int16 [U]
    inferred_gender: np.ndarray  # int8 [U]
    inferred_gender_score: np.ndarray  # float32 [U]
    latitude: np.ndarray  # float32 [U]
    longitude: np.ndarray  # float32 [U]
    installed_apps: np.ndarray  # int64 [U], bit i = app i
    ip_id: np.ndarray  # int64 [U]


def make_profiles(rng: np.random.Generator, users: Users) -> Profiles:
    """Region-correlated location, timezone, language, country and IP; gender, age and apps."""
    n = len(users.ids)
    weights = np.array([r.weight for r in REGIONS])
    region = rng.choice(len(REGIONS), size=n, p=weights / weights.sum())

    def field(name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in REGIONS])[region]

    timezone = np.where(rng.random(n) < _UNKNOWN_TIMEZONE, 0, field("timezone"))
    languages = np.array([r.languages for r in REGIONS])[region]
    second = rng.random(n) < field("second_language_share")
    language = np.where(second & (languages[:, 1] > 0), languages[:, 1], languages[:, 0])
    language = np.where(rng.random(n) < _UNKNOWN_LANGUAGE, 0, language)
    lat = field("latitude") + field("spread_deg") * rng.standard_normal(n)
    lon = field("longitude") + field("spread_deg") * rng.standard_normal(n)
    located = rng.random(n) >= _UNKNOWN_LOCATION
    gender, inferred, score = _genders(rng, n)
    bracket, age = _ages(rng, n)
    return Profiles(
        timezone=timezone.astype(np.int8),
        language=language.astype(np.int16),
        country=field("country").astype(np.int16),
        gender=gender,
        age_bracket=bracket,
        age_years=age,
        inferred_gender=inferred,
        inferred_gender_score=score,
        latitude=np.where(located, np.clip(lat, -89.9, 89.9), 0.0).astype(np.float32),
        longitude=np.where(located, (lon + 180.0) % 360.0 - 180.0, 0.0).astype(np.float32),
        installed_apps=_apps(rng, users),
        ip_id=_ips(rng, region),
    )


def _genders(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Profile gender (often unknown) and an inferred gender with its confidence, which agrees
    with a known profile gender most of the time."""
    gender = rng.choice(3, size=n, p=_GENDER_SHARES)
    guess = rng.integers(INFERRED_FEMALE, INFERRED_MALE + 1, n)
    from_profile = np.where(gender == GENDER_MALE, INFERRED_MALE, INFERRED_FEMALE)
    agrees = rng.random(n) < _INFERRED_AGREES
    inferred = np.where((gender != GENDER_UNKNOWN) & agrees, from_profile, guess)
    score = np.round(rng.uniform(0.5, 1.0, n), 3)
    none = rng.random(n) < _NO_INFERENCE
    return (
        gender.astype(np.int8),
        np.where(none, 0, inferred).astype(np.int8),
        np.where(none, 0.0, score).astype(np.float32),
    )


def _ages(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Age in years (13..90) and its bracket; the bracket is known more often than the age."""
    years = np.minimum(13 + np.floor(rng.gamma(_AGE_SHAPE, _AGE_SCALE, n)), 90).astype(np.int64)
    bracket = np.searchsorted(AGE_BRACKET_STARTS, years, side="right")
    u = rng.random(n)
    bracket = np.where(u < _BRACKET_KNOWN, bracket, 0)
    age = np.where(u < _BRACKET_KNOWN * _AGE_KNOWN, years, 0)
    return bracket.astype(np.int8), age.astype(np.int16)


def _apps(rng: np.random.Generator, users: Users) -> np.ndarray:
    """Installed apps as a 64-bit mask: popular apps for everyone, topic apps by taste."""
    n, topics = users.taste.shape
    app = np.arange(NUM_APPS)
    rate = np.broadcast_to(_APP_BASE_MAX * np.exp(-app / _APP_DECAY) + 0.02, (n, NUM_APPS))
    topic_app = app >= _TOPIC_APPS_FROM
    boost = 1.0 + _TOPIC_APP_GAIN * users.taste[:, app[topic_app] % topics]
    rate = rate.copy()
    rate[:, topic_app] = np.minimum(rate[:, topic_app] * boost, 0.95)
    installed = rng.random((n, NUM_APPS)) < rate
    bits = np.uint64(1) << app.astype(np.uint64)
    return (installed.astype(np.uint64) * bits).sum(axis=1, dtype=np.uint64).view(np.int64)


def _ips(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """IPv4 addresses as integers under the region's first octet; some users share another
    user's address from the same region; a few are unknown (0)."""
    n = len(region)
    prefix = np.array([r.ip_prefix for r in REGIONS], dtype=np.int64)[region]
    ip = (prefix << 24) | rng.integers(1, 1 << 24, n)
    shared = np.flatnonzero(rng.random(n) < _SHARED_IP)
    pick = rng.integers(0, n, len(shared))
    same_region = region[pick] == region[shared]
    ip[shared[same_region]] = ip[pick[same_region]]
    return np.where(rng.random(n) < _UNKNOWN_IP, 0, ip)
