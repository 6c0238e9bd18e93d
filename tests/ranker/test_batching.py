"""The encoders' batching: similar lengths together, bucketed widths, results in input order."""

from __future__ import annotations

import numpy as np
import pytest

from brainrank.ranker.encoding.batching import encode_batched, pad


def tokenize(texts):
    return [[len(w) for w in t.split()] for t in texts]


def run(texts, **options):
    shapes = []

    def infer(ids, mask):
        shapes.append(ids.shape)
        # Row "vector": [number of tokens, sum of ids], from the unpadded part only.
        return np.stack([mask.sum(axis=1), (ids * mask).sum(axis=1)], axis=1).astype(np.float32)

    done = []
    out = encode_batched(texts, tokenize, infer, 2, progress=done.append, **options)
    return out, shapes, done


def test_rows_come_back_in_input_order():
    texts = ["a bb", "ccc", "a bb ccc dddd e", "", "ff gg hh"]
    out, shapes, done = run(texts, batch_size=2)
    assert out.dtype == np.float32 and out.shape == (5, 2)
    expected = [[len(ids), sum(ids)] for ids in tokenize(texts)]
    np.testing.assert_array_equal(out, expected)
    # Longest first: (5, 3 tokens), (2, 1), (0): widths are each batch's longest text.
    assert shapes == [(2, 5), (2, 2), (1, 1)] and done == [2, 2, 1]


def test_widths_round_up_to_the_bucket_and_stop_at_the_cap():
    texts = ["w " * 20, "w " * 3, "w"]
    _, shapes, _ = run(texts, batch_size=1, bucket=16, max_width=24)
    assert shapes == [(1, 24), (1, 16), (1, 16)]


def test_power_of_two_heights_pad_the_last_batch():
    out, shapes, _ = run(["a b c"] * 11, batch_size=8, pow2_height=True)
    assert shapes == [(8, 3), (4, 3)]  # 3 rows padded to 4
    np.testing.assert_array_equal(out, [[3, 3]] * 11)


def test_bad_arguments():
    with pytest.raises(TypeError, match="not a single string"):
        run("one text", batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        run(["a"], batch_size=0)
    assert run([], batch_size=4)[0].shape == (0, 2)


def test_pad():
    ids, mask = pad([[5, 6, 7], [8]], height=3)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    assert ids.dtype == mask.dtype == np.int32


def test_windows_bound_what_is_tokenized_at_once_and_keep_input_order(monkeypatch):
    from brainrank.ranker.encoding import batching

    monkeypatch.setattr(batching, "SORT_WINDOW", 3)
    seen = []

    def counting(texts):
        seen.append(len(texts))
        return tokenize(texts)

    texts = [" ".join("w" * (j + 1) for j in range(n)) for n in (1, 7, 2, 5, 3, 9, 4, 6)]
    out = encode_batched(
        texts,
        counting,
        lambda ids, mask: np.stack([mask.sum(1), (ids * mask).sum(1)], 1).astype(np.float32),
        2,
        batch_size=2,
    )
    assert seen == [3, 3, 2]  # never more than a window of texts tokenized at once
    expected = [[len(ids), sum(ids)] for ids in tokenize(texts)]
    np.testing.assert_array_equal(out, expected)
