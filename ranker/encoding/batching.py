"""Batched inference for the text encoders: batches of similar length, results in input order.

``encoding.encoder`` (BERT) and ``encoding.two_tower`` share this loop: texts are tokenised once,
sorted longest first so each batch holds texts of similar length (little padding, and a batch
too large for memory fails at once rather than at the end), each batch is zero-padded to its
longest text rounded up to ``bucket`` tokens, and the vectors are written back in input order.
Arrays in, arrays out; no TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError

TOKENIZER_FILE = "tokenizer.json"


def load_tokenizer(model_dir: Path, max_length: int):
    """The folder's ``tokenizer.json``, truncating at ``max_length`` and never padding (both
    encoders pad per batch), so TensorFlow and ONNX Runtime see the same token ids."""
    from tokenizers import Tokenizer

    path = Path(model_dir) / TOKENIZER_FILE
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a plain Exception subclass
        raise BrainrankError(f"cannot read tokenizer {path}: {exc}") from exc
    # The shipped tokenizer.json pads to a fixed 128; we pad per batch ourselves.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def pad(rows: Sequence[Sequence[int]], width: int | None = None, height: int | None = None):
    """(ids, mask) int32 [height, width]: ``rows`` left-aligned, zeros after and below them.

    ``width`` defaults to the longest row and ``height`` to the number of rows; rows added
    below are all padding (mask 0).
    """
    width = max(len(r) for r in rows) if width is None else width
    height = len(rows) if height is None else height
    ids = np.zeros((height, width), dtype=np.int32)
    mask = np.zeros((height, width), dtype=np.int32)
    for j, seq in enumerate(rows):
        ids[j, : len(seq)] = seq
        mask[j, : len(seq)] = 1
    return ids, mask


def encode_batched(
    texts: Sequence[str],
    tokenize: Callable[[Sequence[str]], list[list[int]]],
    infer: Callable[[np.ndarray, np.ndarray], np.ndarray],
    dim: int,
    *,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
    bucket: int = 1,
    max_width: int | None = None,
    pow2_height: bool = False,
) -> np.ndarray:
    """Embed ``texts`` as float32 [n, dim], row i for ``texts[i]``.

    ``tokenize(texts)`` gives token ids per text; ``infer(ids, mask)`` the vectors of one padded
    batch, a row per batch row. Widths are rounded up to a multiple of ``bucket`` (fewer
    distinct shapes) and capped at ``max_width``. With ``pow2_height`` a partial batch gets
    all-padding rows up to a power of two (at most ``batch_size``), so a compiler that works
    per shape (XLA) reuses its compiled shapes. ``progress(k)`` runs after each batch of k.
    """
    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of strings, not a single string")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = np.zeros((len(texts), dim), dtype=np.float32)
    if not len(texts):
        return out
    for rows, input_ids, mask in padded_batches(
        texts, tokenize, batch_size, bucket=bucket, max_width=max_width, pow2_height=pow2_height
    ):
        out[rows] = infer(input_ids, mask)[: len(rows)]
        if progress is not None:
            progress(len(rows))
    return out


def padded_batches(
    texts: Sequence[str],
    tokenize: Callable[[Sequence[str]], list[list[int]]],
    batch_size: int,
    *,
    bucket: int = 1,
    max_width: int | None = None,
    pow2_height: bool = False,
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """(rows, ids, mask) per batch of ``encode_batched``: the input positions of the batch's
    texts, longest first within each window of ``SORT_WINDOW`` texts, and their padded token
    ids and attention mask. Tokenizing a window at a time bounds memory: the token ids of a
    million passages would take tens of gigabytes as Python lists."""
    window = max(SORT_WINDOW, batch_size)
    for lo in range(0, len(texts), window):
        ids = tokenize(texts[lo : lo + window])
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            longest = len(ids[rows[0]])
            width = max(-(-longest // bucket), 1) * bucket
            if max_width is not None:
                width = min(width, max_width)
            height = len(rows)
            if pow2_height:
                height = min(1 << (height - 1).bit_length(), batch_size)
            input_ids, mask = pad([ids[i] for i in rows], width, height)
            yield [lo + i for i in rows], input_ids, mask


SORT_WINDOW = 16_384
