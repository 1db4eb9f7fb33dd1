"""Request bodies parsed as strict JSON, in a worker thread.

Python's `json` accepts `NaN`, `Infinity`, numbers beyond float range (`1e400` becomes inf) and
`\\ud800`-style lone surrogates, none of which is a value any field of the API takes, and which
an error body cannot echo back. They are parsed into `Invalid` markers instead, which no field
validates, so the client gets a 422 naming the field (orchestrator.body_route parses, and
validates, large bodies in a worker thread).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: Most keys one JSON object may have: the API's bodies have a handful of fields, and thousands of
#: unknown keys would only make thousands of validation errors.
MAX_KEYS = 64
#: A \\u escape of a UTF-16 surrogate: only such a text can carry a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class Invalid:
    """A JSON value no field accepts, kept so that validation names the field it is in."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Invalid({self.text!r})"


def describe_invalid(value: object) -> str | None:
    """The message for a field whose value is an `Invalid` marker (None for any other value)."""
    if isinstance(value, Invalid):
        return value.text
    return None


def _constant(name: str) -> Invalid:
    return Invalid(f"{name} is not a number this API accepts (finite numbers only)")


def _float(text: str) -> float | Invalid:
    value = float(text)
    if math.isfinite(value):
        return value
    return Invalid(f"{text[:40]} is beyond the range of a double")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > MAX_KEYS:
        raise json.JSONDecodeError(f"an object with more than {MAX_KEYS} keys", "", 0)
    return dict(pairs)


def parse_json(body: bytes) -> Any:
    """`body` as JSON, with non-finite numbers and lone surrogates replaced by `Invalid`; objects
    of more than MAX_KEYS keys are refused (JSONDecodeError)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"not UTF-8 ({exc.reason})", "", exc.start) from None
    value = json.loads(
        text, parse_constant=_constant, parse_float=_float, object_pairs_hook=_object
    )
    if _SURROGATE_ESCAPE.search(text):
        value = _replace_lone_surrogates(value)
    return value


def _bad_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _clean(value: Any) -> Any:
    if isinstance(value, str) and _bad_text(value):
        return Invalid("a string with a lone UTF-16 surrogate is not valid Unicode")
    return value


def _replace_lone_surrogates(root: Any) -> Any:
    """`root` with every string holding a lone surrogate replaced (iteratively: bodies may nest
    deeply); object keys holding one are escaped, so `extra="forbid"` names them."""
    root = _clean(root)
    pending = [root]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                node[i] = _clean(item)
                pending.append(node[i])
        elif isinstance(node, dict):
            for key in list(node):
                item = _clean(node.pop(key))
                if _bad_text(key):
                    key = key.encode("utf-8", "backslashreplace").decode("utf-8")
                node[key] = item
                pending.append(item)
    return root
