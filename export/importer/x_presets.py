"""What X's named configs fix that a checkpoint's shapes do not say (X's `phoenix/xrex/configs`).

A checkpoint records every parameter's shape but not the key size that splits the attention
widths into heads, the block sizes of the hashed table (the table holds their rounded-up sum), the
number of semantic-id levels, nor the history length the model is served with. These come from
the preset X's trainer was run with, named by the checkpoint's config directory.
"""

from __future__ import annotations

from dataclasses import dataclass

from phoenix.errors import CheckpointImportError


@dataclass(frozen=True)
class XPreset:
    name: str
    key_size: int
    history_len: int
    #: Table blocks: users, posts (items), authors, IP addresses.
    table_blocks: tuple[int, int, int, int]
    #: Rows posts hash into when the table has no post block (X's item_hash_vocab_size).
    post_hash_rows: int = 0
    sid_levels: int = 6


_RANKER_PROD = (100_000_000, 100_000_000, 30_000_000, 10_000_000)
PRESETS: tuple[XPreset, ...] = (
    XPreset("home_direct_packed_nano", 128, 1022, (100_000, 100_000, 30_000, 10_000)),
    XPreset("home_direct_packed_gb300", 128, 1022, _RANKER_PROD),
    XPreset("home_direct_packed", 128, 1022, _RANKER_PROD),
    XPreset("xrecsys_seqpack", 128, 1022, _RANKER_PROD),
    XPreset("xrecsys_two_tower_nano", 128, 1022, (0, 0, 30_000, 0), post_hash_rows=100_000),
)


def find_preset(config_name: str) -> XPreset:
    """The preset a checkpoint's config directory is named after (the longest matching prefix:
    X's trainer appends the data source, e.g. `home_direct_packed_nano_offline_kafka_dump`)."""
    matches = [p for p in PRESETS if config_name == p.name or config_name.startswith(p.name + "_")]
    if not matches:
        known = ", ".join(p.name for p in PRESETS)
        raise CheckpointImportError(
            f"unknown config {config_name!r}: its key size, table blocks and history length are "
            f"not known (known: {known})"
        )
    return max(matches, key=lambda p: len(p.name))


#: X's command-line overrides that change the table blocks (the golden files record them).
OVERRIDE_KEYS = {
    "user_id_table_size": 0,
    "item_id_table_size": 1,
    "author_id_table_size": 2,
    "ip_id_table_size": 3,
}
