"""The action taxonomy the ranker predicts (DESIGN.md 4.5), in head order.

The position of an action in `ACTIONS` is its column in `history_actions`, in the ranker's
`action_probs` output and in the unembedding matrix, so this order is part of every checkpoint and
exported model: never reorder it, only append (which changes the model's shape and is refused when
an old checkpoint is loaded).
"""

from __future__ import annotations

from enum import IntEnum


class Action(IntEnum):
    FAVORITE = 0
    REPLY = 1
    REPOST = 2
    PHOTO_EXPAND = 3
    CLICK = 4
    PROFILE_CLICK = 5
    VQV = 6  # video quality view
    SHARE = 7
    SHARE_VIA_DM = 8
    SHARE_VIA_COPY_LINK = 9
    DWELL = 10
    QUOTE = 11
    QUOTED_CLICK = 12
    FOLLOW_AUTHOR = 13
    NOT_INTERESTED = 14
    BLOCK_AUTHOR = 15
    MUTE_AUTHOR = 16
    REPORT = 17
    VIDEO_OPEN = 18
    OPEN_LINK = 19
    QUOTED_VQV = 20
    NOT_DWELLED = 21


ACTIONS: tuple[str, ...] = tuple(a.name.lower() for a in Action)
NUM_ACTIONS: int = len(ACTIONS)

#: The continuous target predicted by the second head, in seconds.
DWELL_TIME = "dwell_time"
#: Dwell-time head output is `DWELL_TIME_SCALE_S * sigmoid(x)` seconds.
DWELL_TIME_SCALE_S = 30.0

NEGATIVE_ACTIONS: frozenset[Action] = frozenset(
    {
        Action.NOT_INTERESTED,
        Action.BLOCK_AUTHOR,
        Action.MUTE_AUTHOR,
        Action.REPORT,
        Action.NOT_DWELLED,
    }
)


def action_index(name: str) -> int:
    """Column of the action called `name`; a clear error for an unknown name."""
    try:
        return ACTIONS.index(name)
    except ValueError:
        raise ValueError(f"unknown action {name!r}; known actions: {', '.join(ACTIONS)}") from None
