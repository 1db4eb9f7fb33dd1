"""The synthetic world: determinism, the schema contract, the invariants every consumer relies on,
the ground truth being visible in the data, load_world's checks and the `phoenix world` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from phoenix import snowflake
from phoenix.actions import ACTIONS, NEGATIVE_ACTIONS, Action
from phoenix.cli import main
from phoenix.errors import WorldError
from phoenix.world.generate import generate_world
from phoenix.world.io import World, load_world, table_path
from phoenix.world.profiles import AGE_BRACKET_STARTS, REGIONS
from phoenix.world.schema import META_FILE, ORIGINAL, REPLY, REPOST, SID_CODES, SID_LEVELS, TABLES
from phoenix.world.spec import FILLER_WORDS, GROUND_TRUTH, TOPIC_WORDS, WorldSpec

HOUR_MS = 3_600_000
SMALL = {
    "num_users": 300,
    "num_authors": 60,
    "hours": 72,
    "impressions_per_user": 60.0,
    "blocks_per_user": 1.0,
    "mutes_per_user": 1.0,
    "muted_keywords_per_user": 1.0,
}


def small_spec(seed: int = 7, **changes) -> WorldSpec:
    return WorldSpec(seed=seed, **{**SMALL, **changes})


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_world(small_spec(), tmp_path_factory.mktemp("world") / "w", progress=False)


@pytest.fixture(scope="module")
def world(world_dir: Path) -> World:
    return load_world(world_dir)


def col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def impression_facts(world: World) -> dict[str, np.ndarray]:
    """Per engagement row: viewer and post rows, topic match, author and author follow flag."""
    user_ids, post_ids = col(world.users, "user_id"), col(world.posts, "post_id")
    viewer = np.searchsorted(user_ids, col(world.engagements, "viewer_id"))
    post = np.searchsorted(post_ids, col(world.engagements, "post_id"))
    taste = np.stack(col(world.users, "taste"))
    match = taste[viewer, col(world.posts, "topic")[post]] / taste[viewer].max(axis=1)
    return {"viewer": viewer, "post": post, "match": match}


def pair_set(table: pa.Table, a: str, b: str) -> set[tuple[int, int]]:
    return set(zip(col(table, a).tolist(), col(table, b).tolist(), strict=True))


# Determinism and the contract -------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(world_dir: Path, tmp_path: Path) -> None:
    again = generate_world(small_spec(), tmp_path / "again", progress=False)
    assert files(again) == files(world_dir)
    assert set(files(again)) == {f"{name}.parquet" for name in TABLES} | {META_FILE}


def test_different_seed_gives_a_different_world(world_dir: Path, tmp_path: Path) -> None:
    other = files(generate_world(small_spec(seed=8), tmp_path / "other", progress=False))
    mine = files(world_dir)
    for name in TABLES:
        assert other[f"{name}.parquet"] != mine[f"{name}.parquet"], name


def test_every_table_matches_its_schema(world_dir: Path) -> None:
    for name, expected in TABLES.items():
        assert pq.read_schema(table_path(world_dir, name)).remove_metadata().equals(expected), name


def test_world_json_describes_the_world(world: World) -> None:
    meta = world.meta
    spec = WorldSpec(**meta["spec"])
    assert spec == small_spec()
    assert world.now_ms == spec.now_ms == meta["now_ms"]
    assert meta["seed"] == spec.seed
    assert meta["num_topics"] == spec.num_topics == len(meta["topics"]) == len(world.topics)
    assert meta["topic_words"] == {t: list(TOPIC_WORDS[t]) for t in meta["topics"]}
    assert list(meta["ground_truth"]["actions"]) == list(ACTIONS)
    assert meta["ground_truth"]["actions"]["favorite"] == GROUND_TRUTH["favorite"]._asdict()
    assert isinstance(meta["schema_version"], int)
    assert meta["row_counts"] == {name: world.table(name).num_rows for name in TABLES}


def test_vocabulary_words_belong_to_one_list_only() -> None:
    words = [w for topic in TOPIC_WORDS.values() for w in topic] + list(FILLER_WORDS)
    assert len(words) == len(set(words))
    assert all(w == w.lower() and w.strip() == w for w in words)
    assert tuple(GROUND_TRUTH) == ACTIONS


# Users and the social graph ----------------------------------------------------------------------


def test_users_tastes_and_authors(world: World) -> None:
    spec = small_spec()
    ids = col(world.users, "user_id")
    assert len(ids) == spec.num_users and np.all(np.diff(ids) > 0) and np.all(ids > 0)
    taste = np.stack(col(world.users, "taste"))
    assert taste.shape == (spec.num_users, spec.num_topics)
    np.testing.assert_allclose(taste.sum(axis=1), 1.0, atol=1e-5)
    # Concentrated on a few topics: the top three carry most of every user's taste.
    assert np.median(np.sort(taste, axis=1)[:, -3:].sum(axis=1)) > 0.9
    is_author = col(world.users, "is_author")
    topic = col(world.users, "author_topic")
    assert is_author.sum() == spec.num_authors
    assert np.all((topic >= 0) == is_author) and np.all(topic < spec.num_topics)
    activity = col(world.users, "activity")
    assert np.all(activity > 0) and activity.std() > 0.1


def test_follower_counts_equal_the_follows_table(world: World) -> None:
    ids = col(world.users, "user_id")
    followees = np.searchsorted(ids, col(world.follows, "followee_id"))
    counts = np.bincount(followees, minlength=len(ids))
    np.testing.assert_array_equal(col(world.users, "follower_count"), counts)


def test_follow_graph(world: World) -> None:
    follower, followee = col(world.follows, "follower_id"), col(world.follows, "followee_id")
    pairs = pair_set(world.follows, "follower_id", "followee_id")
    assert len(pairs) == len(follower)  # no duplicates
    assert np.all(follower != followee)
    # Typical users follow tens of accounts; author follower counts are heavy-tailed.
    following = np.unique(follower, return_counts=True)[1]
    assert 10 <= np.median(following) <= 150
    fc = col(world.users, "follower_count")[col(world.users, "is_author")]
    assert fc.max() > 2 * np.median(fc) and fc.min() < np.median(fc) / 2
    # Some authors follow their followers back.
    authors = set(col(world.users, "user_id")[col(world.users, "is_author")].tolist())
    assert any(a in authors and (a, u) in pairs for u, a in pairs)


def test_follows_track_taste(world: World) -> None:
    ids = col(world.users, "user_id")
    taste = np.stack(col(world.users, "taste"))
    topic = col(world.users, "author_topic")
    follower = np.searchsorted(ids, col(world.follows, "follower_id"))
    followee = np.searchsorted(ids, col(world.follows, "followee_id"))
    is_author = topic[followee] >= 0
    followed_taste = taste[follower[is_author], topic[followee[is_author]]]
    random_taste = taste[
        follower[is_author], np.random.default_rng(0).permutation(topic[followee[is_author]])
    ]
    assert followed_taste.mean() > random_taste.mean() + 0.05


def test_blocks_mutes_and_keywords(world: World) -> None:
    ids = col(world.users, "user_id")
    for table, other in ((world.blocks, "blocked_id"), (world.mutes, "muted_id")):
        assert table.num_rows > 0
        assert np.all(col(table, "user_id") != col(table, other))
        assert np.all(np.isin(col(table, other), ids))
    # Users mute authors off their taste far more often than on it.
    taste = np.stack(col(world.users, "taste"))
    muter = np.searchsorted(ids, col(world.mutes, "user_id"))
    muted_topic = col(world.users, "author_topic")[
        np.searchsorted(ids, col(world.mutes, "muted_id"))
    ]
    match = taste[muter, muted_topic] / taste[muter].max(axis=1)
    assert np.mean(match < 0.5) > 0.8
    # Muted keywords are words or phrases of topics the user dislikes.
    topics = list(world.topics)
    topic_of = {w: topics.index(t) for t in topics for w in TOPIC_WORDS[t]}
    keywords = [k.lower() for k in col(world.muted_keywords, "keyword")]
    assert world.muted_keywords.num_rows > 0 and all(k in topic_of for k in keywords)
    assert any(" " in k for k in keywords)
    user = np.searchsorted(ids, col(world.muted_keywords, "user_id"))
    kw_match = taste[user, [topic_of[k] for k in keywords]] / taste[user].max(axis=1)
    assert np.mean(kw_match < 0.5) > 0.8


# Posts -------------------------------------------------------------------------------------------


def test_post_ids_and_times(world: World) -> None:
    ids = col(world.posts, "post_id")
    created = col(world.posts, "created_ms")
    assert len(np.unique(ids)) == len(ids)
    np.testing.assert_array_equal(created, snowflake.created_ms(ids))
    age = world.now_ms - created
    assert np.all(age > 0) and np.all(age < small_spec().hours * HOUR_MS)
    assert np.any(age > 48 * HOUR_MS) and np.any(age < 24 * HOUR_MS)
    authors = col(world.users, "user_id")[col(world.users, "is_author")]
    assert np.all(np.isin(col(world.posts, "author_id"), authors))


def test_replies_reposts_and_conversations(world: World) -> None:
    ids, kind = col(world.posts, "post_id"), col(world.posts, "kind")
    created, author = col(world.posts, "created_ms"), col(world.posts, "author_id")
    parent, reposted = col(world.posts, "parent_id"), col(world.posts, "reposted_id")
    conversation, topic = col(world.posts, "conversation_id"), col(world.posts, "topic")
    row = {p: i for i, p in enumerate(ids.tolist())}
    assert {ORIGINAL, REPLY, REPOST} <= set(kind.tolist())
    assert np.all((parent != 0) == (kind == REPLY))
    assert np.all((reposted != 0) == (kind == REPOST))
    replies_to_replies = 0
    for i in np.flatnonzero(kind == REPLY):
        p = row[parent[i]]
        assert created[p] < created[i] and kind[p] != REPOST
        assert conversation[i] == conversation[p]
        replies_to_replies += kind[p] == REPLY
    assert replies_to_replies > 0
    for i in np.flatnonzero(kind == REPOST):
        r = row[reposted[i]]
        assert kind[r] == ORIGINAL and created[r] < created[i] and author[r] != author[i]
        assert topic[r] == topic[i]
    roots = np.isin(kind, [ORIGINAL, REPOST])
    np.testing.assert_array_equal(conversation[roots], ids[roots])
    assert np.all(kind[[row[c] for c in conversation.tolist()]] != REPLY)


def test_videos_and_text(world: World) -> None:
    kind = col(world.posts, "kind")
    is_video, duration = col(world.posts, "is_video"), col(world.posts, "video_duration_s")
    assert np.all((duration > 0) == is_video)
    assert np.any(duration[is_video] < 10) and np.any(duration[is_video] > 10)
    assert not np.any(is_video & (kind == REPLY))
    text = col(world.posts, "text")
    assert all(t == "" for t in text[kind == REPOST])
    vocabulary = {w for words in TOPIC_WORDS.values() for p in words for w in p.split()}
    vocabulary |= set(FILLER_WORDS)
    for t, topic in zip(
        text[kind != REPOST][:200], col(world.posts, "topic")[kind != REPOST], strict=False
    ):
        words = t.lower().rstrip(".!?").split()
        assert len(words) >= 4 and set(words) <= vocabulary
        topic_words = {w for p in TOPIC_WORDS[world.topics[topic]] for w in p.split()}
        assert set(words) & topic_words


def test_semantic_ids_follow_the_content(world: World) -> None:
    sids = np.stack(col(world.posts, "semantic_ids")).astype(np.int64)
    assert sids.shape == (world.posts.num_rows, SID_LEVELS)
    missing = (sids == 0).all(axis=1)
    assert np.all((sids[~missing] >= 1) & (sids[~missing] <= SID_CODES))
    assert 0.01 < missing.mean() < 0.15  # a few posts have none (all zero), none half-filled
    assert np.all((sids == 0).any(axis=1) == missing)
    topic, kind = col(world.posts, "topic"), col(world.posts, "kind")
    present = ~missing
    # The first level is a function of the topic (a topic has at most two codes there) ...
    for t in np.unique(topic):
        assert len(np.unique(sids[present & (topic == t), 0])) <= 2
    # ... and separates topics: no first-level code is shared by many topics.
    per_code = [len(np.unique(topic[present & (sids[:, 0] == c)])) for c in np.unique(sids[:, 0])]
    assert np.mean(per_code) < 1.5
    # The deepest levels are nearly unique to the post (reposts aside, which copy them).
    own = present & (kind != REPOST)
    assert len(np.unique(sids[own][:, -3:], axis=0)) > 0.95 * own.sum()
    # A repost carries its original's codes.
    row = {p: i for i, p in enumerate(col(world.posts, "post_id").tolist())}
    for i in np.flatnonzero(kind == REPOST)[:50]:
        np.testing.assert_array_equal(sids[i], sids[row[col(world.posts, "reposted_id")[i]]])


# Profiles ----------------------------------------------------------------------------------------


def test_profiles_are_plausible(world: World) -> None:
    users = world.users
    tz, country, language = col(users, "timezone"), col(users, "country"), col(users, "language")
    assert tz.min() >= 0 and tz.max() <= 31 and len(np.unique(tz)) > 8
    assert (tz == 0).mean() < 0.1 and (language == 0).mean() < 0.1
    assert np.all(np.isin(country, [r.country for r in REGIONS]))
    lat, lon = col(users, "latitude"), col(users, "longitude")
    assert np.all(np.abs(lat) <= 90) and np.all(np.abs(lon) <= 180)
    unknown = (lat == 0) & (lon == 0)
    assert 0 < unknown.mean() < 0.15
    gender, age = col(users, "gender"), col(users, "age_years")
    assert set(np.unique(gender).tolist()) == {0, 1, 2}
    known_age = age > 0
    assert 0.3 < known_age.mean() < 0.8
    assert age[known_age].min() >= 13 and age[known_age].max() <= 90
    bracket = col(users, "age_bracket")
    assert bracket.min() >= 0 and bracket.max() <= len(AGE_BRACKET_STARTS)
    # A known age lies in its bracket; the bracket is known whenever the age is.
    np.testing.assert_array_equal(
        bracket[known_age], np.searchsorted(AGE_BRACKET_STARTS, age[known_age], side="right")
    )
    inferred, score = col(users, "inferred_gender"), col(users, "inferred_gender_score")
    assert np.all(np.isin(inferred, [0, 1])) and np.all((score == 0) | (score >= 0.5))
    assert np.all(score <= 1)
    both = (gender > 0) & (score > 0)
    assert (inferred[both] == (gender[both] == 2)).mean() > 0.8  # inference mostly agrees
    apps = col(users, "installed_apps").view(np.uint64)
    bits = (apps[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    per_user = bits.sum(axis=1)
    assert 3 < np.median(per_user) < 30 and bits.any(axis=0).sum() > 50


def test_profiles_are_correlated_with_the_region(world: World) -> None:
    users = world.users
    tz, country = col(users, "timezone"), col(users, "country")
    lat, lon = col(users, "latitude"), col(users, "longitude")
    located = (lat != 0) | (lon != 0)
    for region in REGIONS:
        mine = (tz == region.timezone) & located
        if mine.sum() < 5:
            continue
        # Users of a timezone live near its region and in its country.
        assert np.all(country[mine] == region.country)
        assert abs(np.median(lat[mine]) - region.latitude) < 2 * region.spread_deg
        assert abs(np.median(lon[mine]) - region.longitude) < 2 * region.spread_deg
    # Timezones run west to east with longitude: New York's users are west of Tokyo's.
    assert np.median(lon[(tz == 1) & located]) < np.median(lon[(tz == 14) & located])
    ip = col(users, "ip_id")
    known = ip > 0
    assert 0.9 < known.mean() < 1.0
    assert np.all(ip < 2**32)
    # Addresses of one country share their first octet; a few addresses are shared.
    for c in np.unique(country):
        assert len(np.unique(ip[known & (country == c)] >> 24)) <= 3
    assert 1 < known.sum() / len(np.unique(ip[known])) < 1.5


def test_installed_apps_follow_taste(world: World) -> None:
    taste = np.stack(col(world.users, "taste"))
    apps = col(world.users, "installed_apps").view(np.uint64)
    t = 0
    app = next(i for i in range(8, 64) if i % taste.shape[1] == t)
    has = ((apps >> np.uint64(app)) & np.uint64(1)).astype(bool)
    fans, others = taste[:, t] > 0.3, taste[:, t] < 0.05
    assert has[fans].mean() > 1.5 * has[others].mean()


# Engagements -------------------------------------------------------------------------------------


def test_impressions_respect_the_viewer(world: World) -> None:
    facts = impression_facts(world)
    viewer_ids = col(world.engagements, "viewer_id")
    author_ids = col(world.posts, "author_id")[facts["post"]]
    assert np.all(col(world.posts, "post_id")[facts["post"]] == col(world.engagements, "post_id"))
    assert not np.any(viewer_ids == author_ids)
    served = list(zip(viewer_ids.tolist(), author_ids.tolist(), strict=True))
    blocked = pair_set(world.blocks, "user_id", "blocked_id")
    muted = pair_set(world.mutes, "user_id", "muted_id")
    blockers = {(b, a) for a, b in blocked}
    assert not any(pair in blocked or pair in muted or pair in blockers for pair in served)
    pairs = pair_set(world.engagements, "viewer_id", "post_id")
    assert len(pairs) == world.engagements.num_rows  # a post is served to a viewer once


def test_served_times_and_surfaces(world: World) -> None:
    facts = impression_facts(world)
    served = col(world.engagements, "served_ms")
    assert np.all(served > col(world.posts, "created_ms")[facts["post"]])
    assert np.all(served < world.now_ms)
    surface = col(world.engagements, "surface")
    assert surface.min() >= 0 and surface.max() <= 15 and len(np.unique(surface)) > 4
    viewer = facts["viewer"]
    assert np.all(np.diff(viewer) >= 0)
    same = np.diff(viewer) == 0
    assert np.all(np.diff(served)[same] >= 0)
    # Every active viewer's impressions spread over the whole window.
    start = world.now_ms - small_spec().hours * HOUR_MS
    third = (served - start) * 3 // (world.now_ms - start)
    per_viewer = np.zeros((len(col(world.users, "user_id")), 3), dtype=int)
    np.add.at(per_viewer, (viewer, third), 1)
    active = per_viewer.sum(axis=1) >= 20
    assert active.sum() > 100 and np.all(per_viewer[active] > 0)


def test_in_network_and_out_of_network(world: World) -> None:
    facts = impression_facts(world)
    follows = pair_set(world.follows, "follower_id", "followee_id")
    viewer_ids = col(world.engagements, "viewer_id")
    author_ids = col(world.posts, "author_id")[facts["post"]]
    followed = np.array(
        [p in follows for p in zip(viewer_ids.tolist(), author_ids.tolist(), strict=True)]
    )
    assert 0.5 < followed.mean() < 0.9
    kind = col(world.posts, "kind")[facts["post"]]
    assert np.all(kind[~followed] == ORIGINAL)  # out-of-network candidates are originals
    assert not np.any(col(world.engagements, "follow_author") & followed)


def test_actions_are_consistent(world: World) -> None:
    facts = impression_facts(world)
    eng = world.engagements
    is_video = col(world.posts, "is_video")[facts["post"]]
    for name in ("vqv", "video_open", "quoted_vqv"):
        assert not np.any(col(eng, name) & ~is_video), name
    assert col(eng, "vqv").any()
    dwell, dwell_time = col(eng, "dwell"), col(eng, "dwell_time_s")
    assert np.all((dwell_time > 0) == dwell)
    assert not np.any(dwell & col(eng, "not_dwelled"))
    assert dwell_time[dwell].max() <= 30.0


def test_ground_truth_is_in_the_data(world: World) -> None:
    match = impression_facts(world)["match"]
    eng = world.engagements
    favorite = col(eng, "favorite")
    high, low = match >= 0.8, match < 0.2
    assert high.sum() > 1000 and low.sum() > 1000
    assert 0.05 < favorite.mean() < 0.3
    assert favorite[high].mean() > 4 * favorite[low].mean()
    dwell_time = col(eng, "dwell_time_s")
    assert dwell_time[high & (dwell_time > 0)].mean() > dwell_time[low & (dwell_time > 0)].mean()
    # Negative feedback is rare; not dwelling is commoner but still rarer than a favorite.
    for action in NEGATIVE_ACTIONS:
        rate = col(eng, action.name.lower()).mean()
        assert rate < favorite.mean() / (1 if action == Action.NOT_DWELLED else 5), action.name
    not_interested = col(eng, "not_interested")
    assert not_interested[low].mean() > not_interested[high].mean()


# load_world --------------------------------------------------------------------------------------


@pytest.fixture
def world_copy(world_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(world_dir, tmp_path / "copy"))


def test_load_world_rejects_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(WorldError, match="not found"):
        load_world(tmp_path / "nowhere")


def test_load_world_rejects_a_missing_table(world_copy: Path) -> None:
    table_path(world_copy, "mutes").unlink()
    with pytest.raises(WorldError, match=r"mutes\.parquet"):
        load_world(world_copy)


def test_load_world_rejects_a_wrong_column_type(world_copy: Path) -> None:
    path = table_path(world_copy, "posts")
    table = pq.read_table(path)
    index = table.schema.get_field_index("created_ms")
    table = table.set_column(index, "created_ms", table.column("created_ms").cast(pa.float64()))
    pq.write_table(table, path)
    with pytest.raises(WorldError, match=r"posts\.parquet.*'created_ms'.*double"):
        load_world(world_copy)


def test_load_world_rejects_a_missing_column(world_copy: Path) -> None:
    path = table_path(world_copy, "engagements")
    pq.write_table(pq.read_table(path).drop_columns(["report"]), path)
    with pytest.raises(WorldError, match=r"engagements\.parquet.*'report'"):
        load_world(world_copy)


def test_load_world_rejects_bad_json(world_copy: Path) -> None:
    (world_copy / META_FILE).write_text("{not json")
    with pytest.raises(WorldError, match=r"world\.json"):
        load_world(world_copy)
    (world_copy / META_FILE).write_text(json.dumps({"now_ms": 1}))
    with pytest.raises(WorldError, match="schema_version"):
        load_world(world_copy)


# Writing -----------------------------------------------------------------------------------------


def test_refuses_a_non_empty_directory_unless_told(world_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(WorldError, match="not empty"):
        generate_world(small_spec(), target, progress=False)
    assert (target / "keep.txt").read_text() == "mine"
    generate_world(small_spec(), target, progress=False, overwrite=True)
    assert files(target) == files(world_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]  # no temporary leftovers


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="num_authors"):
        WorldSpec(seed=1, num_users=50, num_authors=60)
    with pytest.raises(ValueError, match="extra"):
        WorldSpec(seed=1, num_viewers=5)
    assert WorldSpec(seed=1).now_ms == WorldSpec(seed=2).now_ms  # never the wall clock


# The command -------------------------------------------------------------------------------------


def small_options() -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()] + ["--no-progress"]


def test_cli_writes_a_world(world_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    assert main(["world", "--seed", "7", "--out", str(out), *small_options()]) == 0
    assert files(out) == files(world_dir)


@pytest.mark.parametrize(
    ("option", "value"), [("--num-users", "5"), ("--num-authors", "301"), ("--video-fraction", "2")]
)
def test_cli_names_an_invalid_option(
    option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["world", "--seed", "7", "--out", str(tmp_path / "w"), "--num-users", "300"]
    assert main([*args, option, value, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_cli_refuses_to_overwrite(world_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["world", "--seed", "7", "--out", str(world_dir), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
