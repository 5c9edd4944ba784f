"""The names of the people in the conversations searched that a query mentions (docs/recall.md, step 6).

Every stored turn is embedded as "<author>: <text>", so a query that names a participant ("Which cities did Dana
visit?") is, by meaning, near everything that person wrote, and less near the one turn about a city. Search takes
the named words' own vectors out of the query's vector (``selectors.UNNAMED_NAME_WEIGHT``), and each candidate's
similarity to what is left is one more feature of the learned ranking: meaning the words share without the speaker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# A word (letters, inner apostrophes: "Dana's", "don't") or a number.
_TOKEN = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*|\d+", re.UNICODE)


def name_words(names: Iterable[str]) -> set[str]:
    """Every word of every name, case-folded ("Dana Whitfield" gives "dana" and "whitfield")."""
    words: set[str] = set()
    for name in names:
        words.update(part.casefold() for part in _TOKEN.findall(name or ""))
    return words


def query_words(query: str) -> set[str]:
    """The query's words and numbers, case-folded, a possessive read as its name ("Dana's" gives "dana")."""
    return {token.casefold().removesuffix("'s").removesuffix("\u2019s") for token in _TOKEN.findall(query)}


def named_words(query: str, names: Iterable[str]) -> list[str]:
    """The words of ``names`` that the query mentions (possessives included), case-folded, each once, sorted."""
    return sorted(query_words(query) & name_words(names))
