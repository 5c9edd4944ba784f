"""A turn's sentences, each embedded on its own (docs/recall.md, step 7).

A turn is embedded whole ("<author>: <text>"), and a long turn's vector is the mean of everything it says: "Wow,
Caroline! That's great! I just signed up for a pottery class yesterday. It's like therapy for me." is, by meaning,
mostly pleasantries, and a question about someone's hobbies finds it far down. Each sentence of a turn of two or more
sentences is also embedded, with the same author prefix, and search reads a candidate's best sentence: what the turn
says about the topic, without what it says around it. A turn of one sentence stores nothing more (its sentence is the
turn).
"""

from __future__ import annotations

import re

# A sentence ends at ".", "!" or "?" followed by white space; a shared image's caption ("[shares a photo of ...]", what
# some channels append to a turn) is a sentence of its own.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*(?=\[shares )")


def sentences(text: str) -> list[str]:
    """The text's sentences, stripped, in order; [] when it has fewer than two (then the whole text is the one)."""
    parts = [part.strip() for part in _SENTENCE_END.split(text) if part and part.strip()]
    return parts if len(parts) > 1 else []


def sentence_texts(author: str, body: str) -> list[str]:
    """What each sentence of a turn is embedded as: "<author>: <sentence>", like the turn is."""
    return [f"{author}: {sentence}" if author else sentence for sentence in sentences(body)]
