import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from brainrank.index.bm25 import BM25Index
from brainrank.index.params import BM25Params

TEXTS = [
    "Automotive components store: brake pads and spark plugs",
    "Refund policy: money back within thirty days",
    "Garden hoses and watering cans for lawns",
    "Brake discs, brake pads and brake fluid for cars",
    "Shipping times for international orders",
    "The the the of and",  # stopwords only
]


def naive_bm25(index: BM25Index, texts, query, k1=1.5, b=0.75):
    """Lucene BM25 written out term by term, the oracle for the sparse implementation.

    Lucene (and so bm25s "lucene") drops the constant (k1 + 1) factor of the textbook formula;
    it does not change any ranking.
    """
    docs = [index.tokenize(t) for t in texts]
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    scores = []
    for d in docs:
        s = 0.0
        for term in index.tokenize(query):
            df = sum(term in x for x in docs)
            if df == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = d.count(term)
            s += idf * tf / (tf + k1 * (1 - b + b * len(d) / avgdl))
        scores.append(s)
    return np.array(scores)


def test_scores_match_naive_formula():
    index = BM25Index.build(TEXTS)
    for query in ["brake pads", "refunds money", "watering the garden", "shipping brake"]:
        np.testing.assert_allclose(
            index.scores(query), naive_bm25(index, TEXTS, query), rtol=1e-5, atol=1e-6
        )


def test_stemming_and_stopwords():
    index = BM25Index.build(TEXTS)
    assert index.tokenize("The refunds of brakes") == ["refund", "brake"]
    assert index.scores("refunds")[1] > 0


def test_query_without_known_terms_scores_zero():
    index = BM25Index.build(TEXTS)
    assert not index.scores("zyxxy qwerty").any()
    assert not index.scores("the of and").any()


def test_save_load_identical(tmp_path):
    index = BM25Index.build(TEXTS, BM25Params(k1=1.2, b=0.6))
    index.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    assert loaded.params == index.params
    for q in ["brake pads", "money back", "orders"]:
        np.testing.assert_array_equal(loaded.scores(q), index.scores(q))


def test_corrupt_index_names_the_fix(tmp_path):
    import pytest

    from brainrank.index.errors import BrainrankError

    index = BM25Index.build(TEXTS)
    index.save(tmp_path / "bm25")
    (tmp_path / "bm25" / "params.index.json").write_text("{not json")
    with pytest.raises(BrainrankError, match="reindex"):
        BM25Index.load(tmp_path / "bm25")


words = st.sampled_from(["brake", "pad", "refund", "garden", "hose", "ship", "order", "car"])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(words, min_size=1, max_size=12).map(" ".join), min_size=2, max_size=8),
    st.lists(words, min_size=1, max_size=3).map(" ".join),
)
def test_property_matches_oracle(texts, query):
    index = BM25Index.build(texts)
    np.testing.assert_allclose(
        index.scores(query), naive_bm25(index, texts, query), rtol=1e-5, atol=1e-6
    )


def test_loading_the_keyword_index_code_skips_numba_and_leaves_it_importable():
    """bm25s would import numba (0.3-1 s of every cold start) for a backend never used."""
    import subprocess
    import sys

    code = (
        "import sys, brainrank.index.bm25 as b; print('numba' in sys.modules, "
        "b.bm25s.NUMBA_AVAILABLE); import numba; print('numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]
