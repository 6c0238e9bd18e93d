"""Query-biased snippets, on the real keyword analyzer (bm25s tokenizer, Snowball stemmer) and
the sample workspace."""

from __future__ import annotations

import numpy as np
import pytest

from brainrank.index.bm25 import BM25Index
from brainrank.ranker.retrieval.matches import WORD
from brainrank.ranker.retrieval.snippets import ELLIPSIS, best_window, make_snippet

FILLER = "Our stores open at nine and close at six on weekdays. " * 4
TEXT = (
    FILLER
    + "You can ask for a refund within 30 days of delivery.\n\n  Refunds reach the original card "
    "within a week, and delivery charges are refunded when an item arrives faulty. "
    + "Gardening tools are sold in the spring. "
    * 4
)


@pytest.fixture(scope="module")
def bm25():
    return BM25Index.build([TEXT, "gardening tools and hoses", "opening hours"])


def highlighted(snippet) -> list[str]:
    return [snippet.text[a:b] for a, b in snippet.highlights]


def test_the_window_with_the_most_query_terms_is_shown_with_its_matches(bm25):
    s = make_snippet(bm25, TEXT, "refund delivery", chars=160)
    # Every form of "refund" and "delivery" in the window lights up; the filler before it and
    # the gardening after it are cut, with an ellipsis on each side.
    assert highlighted(s) == ["refund", "delivery", "Refunds", "delivery", "refunded"]
    assert s.text.startswith(ELLIPSIS) and s.text.endswith(ELLIPSIS)
    assert len(s.text) <= 160 + 2 * len(ELLIPSIS)
    assert "\n" not in s.text and "  " not in s.text  # white space collapsed
    # Cut at word boundaries: the text between the ellipses is whole words of the document.
    inner, flat = s.text[len(ELLIPSIS) : -len(ELLIPSIS)], " ".join(TEXT.split())
    at = flat.index(inner)
    assert flat[at - 1] == " " and flat[at + len(inner)] == " "
    words = [m.group() for m in WORD.finditer(inner)]
    # Every word of the snippet that stems to a query term is highlighted, and only those.
    terms = set(bm25.tokenize("refund delivery"))
    stems = bm25.stem(words)
    assert sum(stem in terms for stem in stems) == len(s.highlights)


def test_distinct_terms_beat_repeats_of_one(bm25):
    # "gardening" repeats four times at the end; one window holding both "refund" and
    # "gardening" does not exist, so the window with two distinct terms must be refund's...
    s = make_snippet(bm25, TEXT, "refund faulty", chars=200)
    assert set(map(str.lower, highlighted(s))) >= {"refunded", "faulty"}
    # ...while a query of one term repeated in a cluster shows the cluster.
    s = make_snippet(bm25, TEXT, "gardening", chars=120)
    assert highlighted(s).count("Gardening") >= 2


def test_no_keyword_match_shows_the_beginning(bm25):
    s = make_snippet(bm25, TEXT, "business timetable", chars=80)  # matched on meaning only
    assert s.highlights == () and s.text.startswith("Our stores open at nine")
    assert s.text.endswith(ELLIPSIS) and len(s.text) <= 80 + len(ELLIPSIS)
    assert make_snippet(bm25, "Short text.", "refund").text == "Short text."
    assert make_snippet(bm25, "", "refund").text == ""


def test_folded_query_highlights_the_plain_word(bm25):
    s = make_snippet(bm25, TEXT, "ＲＥＦＵＮＤ", chars=100)
    assert "refund" in highlighted(s)
    with pytest.raises(ValueError, match="chars must be at least 1"):
        make_snippet(bm25, TEXT, "refund", chars=0)


def test_search_adds_snippets_only_when_asked(sample_config):
    import brainrank

    with brainrank.open(sample_config.workspace) as engine:
        plain = engine.search("refund for a broken toy", k=3, mode="bm25")
        assert plain.snippets is None and "snippet" not in plain.to_dict()["hits"][0]
        result = engine.search("refund for a broken toy", k=3, mode="bm25", snippets=True)
        assert [h.doc_id for h in result.hits] == [h.doc_id for h in plain.hits]
        terms = set(engine.searcher.generation.bm25.tokenize("refund for a broken toy"))
        for hit in result.to_dict()["hits"]:
            snippet = hit["snippet"]
            body = " ".join(result.documents[hit["id"]].text.split())
            assert snippet["text"].strip(ELLIPSIS) in body
            assert snippet["highlights"], hit  # a BM25 hit has a matching word
            words = [snippet["text"][a:b] for a, b in snippet["highlights"]]
            assert set(engine.searcher.generation.bm25.stem(words)) <= terms


def brute_force_window(matches, chars):
    """What ``best_window`` must return, by trying every anchor (quadratic)."""
    best, best_key = (0, 0), (0, 0)
    for j, (start, _, _) in enumerate(matches):
        inside = [k for k in range(j, len(matches)) if matches[k][1] <= start + chars]
        key = (len({matches[k][2] for k in inside}), len(inside))
        if inside and key > best_key:
            best, best_key = (j, inside[-1]), key
    return best


def test_the_window_is_the_best_of_every_anchor():
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(1, 60))
        lengths = rng.integers(2, 12, size=n)  # words in text order, a space or more apart
        starts = np.concatenate([[0], np.cumsum(lengths[:-1] + rng.integers(1, 20, size=n - 1))])
        terms = rng.choice(["a", "b", "c", "d"], size=n)
        matches = [
            (int(s), int(s + w), str(t)) for s, w, t in zip(starts, lengths, terms, strict=True)
        ]
        chars = int(rng.integers(5, 150))
        assert best_window(matches, chars) == brute_force_window(matches, chars), trial


def test_a_long_text_with_many_matches(bm25):
    text = "refund delivery " * 12_000  # 192,000 characters, 24,000 matches
    s = make_snippet(bm25, text, "refund delivery", chars=60)
    assert s.text.startswith("refund delivery") and s.text.endswith(ELLIPSIS)
    assert [s.text[a:b] for a, b in s.highlights] == s.text.removesuffix(ELLIPSIS).split()
