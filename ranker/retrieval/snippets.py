"""Query-biased snippets: the stretch of a hit's text that shows why it matched.

A snippet is at most ``chars`` characters of the document's body, white space collapsed, cut at
word boundaries, with "…" where the text goes on. It is the window that holds the most distinct
query terms (then the most matches), found as BM25 finds them: a word matches when the keyword
index's analyzer (folding, lowercasing, stemming: ``bm25.stem``) turns it into one of the
query's terms, so "refunds" and "Refunded" both light up for "refund". ``highlights`` are the
matched words' character spans in the snippet's text. A hit that matched on meaning alone (the
dense retriever) shows its text's beginning, with no highlights.
"""

from __future__ import annotations

import re
from collections import Counter

from brainrank.ranker.retrieval.matches import WORD
from brainrank.ranker.retrieval.result import Snippet

SNIPPET_CHARS = 240
ELLIPSIS = "…"
_SPACE = re.compile(r"\s+")


def make_snippet(bm25, text: str, query: str, chars: int = SNIPPET_CHARS) -> Snippet:
    """The snippet of ``text`` for ``query`` (``bm25``: the generation's keyword index)."""
    if chars < 1:
        raise ValueError(f"chars must be at least 1, not {chars}")
    text = _SPACE.sub(" ", text).strip()
    spans = [(m.start(), m.end()) for m in WORD.finditer(text)]
    terms = frozenset(bm25.tokenize(query))
    matched: list[int] = []  # indexes into spans
    stems: dict[str, str] = {}
    if terms and spans:
        words = [text[a:b] for a, b in spans]
        unique = list(dict.fromkeys(words))
        stems = dict(zip(unique, bm25.stem(unique), strict=True))
        matched = [i for i, w in enumerate(words) if stems[w] in terms]
    if not matched:
        start, end = 0, _cut_end(text, 0, chars)
        return Snippet(_dress(text, start, end), ())

    found = [(*spans[m], stems[text[slice(*spans[m])]]) for m in matched]
    i, k = best_window(found, chars)
    left, right = found[i][0], found[k][1]
    # Context around the matches: a third of the room before them, the rest after.
    room = max(chars - (right - left), 0)
    start = _cut_start(text, max(left - room // 3, 0), left)
    end = _cut_end(text, start, chars)
    end = max(end, right)
    shift = len(ELLIPSIS) if start > 0 else 0
    highlights = tuple(
        (a - start + shift, b - start + shift)
        for a, b in (spans[m] for m in matched)
        if a >= start and b <= end
    )
    return Snippet(_dress(text, start, end), highlights)


def best_window(matches: list[tuple[int, int, str]], chars: int) -> tuple[int, int]:
    """The first and last of the ``matches`` ((start, end, term), in text order) that the best
    window holds: anchored at a match, every match ending within ``chars`` characters of its
    start; the most distinct terms win, then the most matches, then the earliest. Two pointers,
    so a long text with many matches costs linear time."""
    inside: Counter[str] = Counter()  # terms of matches[j:r]
    best, best_key, r = (0, 0), (0, 0), 0
    for j, (start, _, term) in enumerate(matches):
        r = max(r, j)
        while r < len(matches) and matches[r][1] <= start + chars:
            inside[matches[r][2]] += 1
            r += 1
        key = (len(inside), r - j)
        if key > best_key:
            best, best_key = (j, r - 1), key
        if r > j:  # matches[j] leaves the window
            inside[term] -= 1
            if not inside[term]:
                del inside[term]
    return best


def _cut_start(text: str, at: int, limit: int) -> int:
    """``at`` moved forward to the start of a word (never past ``limit``)."""
    if at == 0 or text[at - 1] == " ":
        return at
    space = text.find(" ", at, limit)
    return limit if space < 0 else space + 1


def _cut_end(text: str, start: int, chars: int) -> int:
    """The end of the last whole word within ``chars`` characters from ``start``."""
    end = start + chars
    if end >= len(text):
        return len(text)
    space = text.rfind(" ", start, end + 1)
    return end if space <= start else space


def _dress(text: str, start: int, end: int) -> str:
    return (ELLIPSIS if start > 0 else "") + text[start:end] + (ELLIPSIS if end < len(text) else "")
