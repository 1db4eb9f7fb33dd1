"""Post text as X's muted-keyword filter sees it: a sequence of tokens, case- and accent-free.

A token is a run of word characters, optionally led by `#` (hashtag), `@` (mention) or `$`
(cashtag); everything else separates tokens. Text is folded before splitting: Unicode NFKD with
the combining marks dropped, then case-folded, so "Café" and "CAFE" both read "cafe".

A muted keyword is tokenised the same way and matches a post whose tokens contain the keyword's
tokens consecutively. A keyword token without a sign matches the word whatever sign it carries in
the post ("widget" mutes "#widget" and "@widget"); a keyword token with a sign matches only that
sign ("#launch" mutes "#LAUNCH" but not "launch"). These are the cases of X's filter tests.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_TOKEN = re.compile(r"[#@$]?\w+")


def fold(text: str) -> str:
    """Case- and accent-free text."""
    if text.isascii():
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def tokens(text: str) -> list[str]:
    """The folded tokens of `text`, signs kept."""
    return _TOKEN.findall(fold(text))


@functools.lru_cache(maxsize=1 << 18)
def token_line(text: str) -> str:
    """The tokens joined by single spaces, with a space at each end: the form `muted_pattern`
    searches (a token's boundaries are then always spaces). Cached: a post's text never changes
    and the same posts come back feed after feed."""
    return " " + " ".join(tokens(text)) + " "


@functools.lru_cache(maxsize=4096)
def muted_pattern(keywords: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex over `token_line`s matching any of `keywords`; None when no keyword has a token.
    A match starts at the space before the keyword's first token. Cached: a viewer's keywords
    rarely change between requests."""
    alternatives = []
    for keyword in keywords:
        words = tokens(keyword)
        if words:
            alternatives.append(" ".join(_token_regex(w) for w in words))
    if not alternatives:
        return None
    return re.compile(r" (?:" + "|".join(alternatives) + r")(?= )")


@functools.lru_cache(maxsize=4096)
def muted_words(keywords: tuple[str, ...]) -> tuple[str, ...]:
    """The first token of each keyword, without its sign: a token line that `muted_pattern`
    matches contains one of them, so a plain substring search finds every line worth matching."""
    firsts = {words[0].lstrip("#@$") for words in map(tokens, keywords) if words}
    return tuple(sorted(firsts))


def _token_regex(token: str) -> str:
    if token[0] in "#@$":
        return re.escape(token)
    return "[#@$]?" + re.escape(token)
