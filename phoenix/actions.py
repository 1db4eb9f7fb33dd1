"""The named actions of the ranking weights and the API, and where each sits in X's model.

The ranker predicts X's action columns: column i is X's proto `ActionName` number i (64 columns,
docs/FIDELITY.md). The project names 22 of them (the ones the ranking weights and the world use)
plus `post_unexplored`; `X_COLUMNS` is the one table that maps a name to its column, and
`to_columns` / `from_columns` move arrays between the two layouts. The order of `ACTIONS` is the
order of the API's and the world's action lists; it is not a model layout.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import numpy.typing as npt


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


#: X's proto `ActionName` number of each named action: its column in the ranker's inputs/outputs.
X_COLUMNS: dict[Action, int] = {
    Action.FAVORITE: 1,  # SERVER_TWEET_FAV
    Action.REPLY: 4,  # SERVER_TWEET_REPLY
    Action.REPOST: 6,  # SERVER_TWEET_RETWEET
    Action.PHOTO_EXPAND: 14,  # CLIENT_TWEET_PHOTO_EXPAND
    Action.CLICK: 29,  # CLIENT_TWEET_CLICK
    Action.PROFILE_CLICK: 30,  # CLIENT_TWEET_CLICK_PROFILE
    Action.VQV: 13,  # CLIENT_TWEET_VIDEO_QUALITY_VIEW
    Action.SHARE: 37,  # CLIENT_TWEET_SHARE
    Action.SHARE_VIA_DM: 33,  # CLIENT_TWEET_CLICK_SEND_VIA_DIRECT_MESSAGE
    Action.SHARE_VIA_COPY_LINK: 32,  # CLIENT_TWEET_SHARE_VIA_COPY_LINK
    Action.DWELL: 11,  # CLIENT_TWEET_RECAP_DWELLED
    Action.QUOTE: 5,  # SERVER_TWEET_QUOTE
    Action.QUOTED_CLICK: 38,  # CLIENT_QUOTED_TWEET_CLICK
    Action.FOLLOW_AUTHOR: 21,  # CLIENT_TWEET_FOLLOW_AUTHOR
    Action.NOT_INTERESTED: 17,  # CLIENT_TWEET_NOT_INTERESTED_IN
    Action.BLOCK_AUTHOR: 23,  # CLIENT_TWEET_BLOCK_AUTHOR
    Action.MUTE_AUTHOR: 25,  # CLIENT_TWEET_MUTE_AUTHOR
    Action.REPORT: 16,  # CLIENT_TWEET_REPORT
    Action.VIDEO_OPEN: 47,  # CLIENT_TWEET_VIDEO_OPEN
    Action.OPEN_LINK: 39,  # CLIENT_TWEET_OPEN_LINK
    Action.QUOTED_VQV: 48,  # CLIENT_QUOTED_TWEET_VIDEO_QUALITY_VIEW
    Action.NOT_DWELLED: 12,  # CLIENT_TWEET_RECAP_NOT_DWELLED
}
#: SERVER_TWEET_POST_UNEXPLORED: predicted by the ranker, weighted for in-network posts only.
POST_UNEXPLORED = "post_unexplored"
POST_UNEXPLORED_COLUMN = 59
#: Columns of the named actions, in `ACTIONS` order.
COLUMN_OF: tuple[int, ...] = tuple(X_COLUMNS[a] for a in Action)
#: X's continuous outputs: column 1 is the dwell time in seconds.
DWELL_COLUMN = 1


def to_columns(named: npt.ArrayLike, num_columns: int) -> npt.NDArray[np.float32]:
    """[..., NUM_ACTIONS] named multi-hot -> [..., num_columns] in X's columns (others 0)."""
    named = np.asarray(named)
    if named.shape[-1] != NUM_ACTIONS:
        raise ValueError(f"expected {NUM_ACTIONS} named actions, got {named.shape[-1]}")
    out = np.zeros((*named.shape[:-1], num_columns), dtype=np.float32)
    out[..., list(COLUMN_OF)] = named
    return out


def from_columns(columns: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """[..., num_columns] in X's columns -> [..., NUM_ACTIONS] named, in `ACTIONS` order."""
    return np.asarray(columns, dtype=np.float32)[..., list(COLUMN_OF)]


def action_index(name: str) -> int:
    """Column of the action called `name`; a clear error for an unknown name."""
    try:
        return ACTIONS.index(name)
    except ValueError:
        raise ValueError(f"unknown action {name!r}; known actions: {', '.join(ACTIONS)}") from None
