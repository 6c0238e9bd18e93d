"""The collections ``bench_scale.py`` measures: real documents plus real text recombined, and
their vectors (embedded by the real encoder, or derived from its vectors of real documents).

A collection of N documents holds every real document of SciFact (5,183, title + abstract) and
NFCorpus-preprocessed (3,395, no title, lowercased stop-worded text) under their own ids, so
the collections' test judgments still apply, followed by N - 8,578 synthetic documents
``syn-0000000``, ``syn-0000001``, ... Both collections are read in place.

Text units: a SciFact abstract is cut into sentences after ``.``, ``!`` or ``?`` followed by
white space; NFCorpus-preprocessed has no punctuation, so its text is cut into runs of 20
words. Units over 120 tokens are left out of the pool. Synthetic document j is drawn with
``numpy.random.default_rng([seed, j // BLOCK])`` (documents of a block in order, so a smaller
collection is a prefix of a larger one): its home collection is SciFact with probability
5,183/8,578, else NFCorpus; three source documents A, B, C of that collection are drawn
uniformly; the title is A's (SciFact) or empty (NFCorpus); a body length of 64 to
254 - title tokens is drawn uniformly; then units are appended, each from A, B or C with
probability 1/2, 1/4, 1/4, reading each source's units in order from a random start (wrapping
around), until three drawn units in a row do not fit in the length. Every synthetic document
is therefore one passage for the encoder (at most 256 tokens with [CLS] and [SEP]).

Vectors. Real documents' passages (``PassageSplitter``, as ingest splits them) are embedded
once by the real bulk encoder and cached by text. A synthetic document is either embedded by
the real encoder too (``real``; sizes up to ``--real-vectors-upto``) or gets a *derived*
vector: with u_X the real vector of source X's first passage (title + head of its abstract)
and w_X the tokens the document took from X (the title counts for A),
m = sum_X w_X u_X, v = normalise(m / |m| + sigma * g / |g|) with g ~ N(0, I) drawn from
``default_rng([seed, block, 1])``. sigma (default 0.55) was chosen on the 1,422 synthetic
documents of the 10k collection, embedded by the real encoder too, so that derived vectors are
as spread out as real ones: mean cosine of random pairs 0.176 real vs 0.177 derived, of the
best neighbour among the collection's documents 0.753 vs 0.78, of the ten nearest synthetic
documents 0.507 vs 0.46 (``bench_scale.py`` prints these per sigma at the real sizes). A
derived vector is not the real vector of its text (mean cosine to it 0.72): derived rows
measure how the index and serving scale, not retrieval quality.

``PrecomputedEncoder`` hands these vectors to the normal ingest path: it is the real bulk
encoder's identity (name, tokenizer, weights fingerprint) with vectors looked up by text, so
the vector index is built, recall-checked and served exactly as for embedded vectors, and the
SciFact model trained with that encoder serves on it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BLOCK = 4096
MAX_UNIT_TOKENS = 120
NF_WORDS = 20
MIN_BODY = 64
READ_ROWS = 65_536  # rows read at a time: the copy a lookup adds stays small
SOURCE_P = (0.5, 0.75)  # cumulative: A, B, C with probability 1/2, 1/4, 1/4
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def text_key(text: str) -> int:
    """A 64-bit key of a passage's text: what the precomputed vectors are looked up by."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SENTENCE.split(text)) if len(s.split()) >= 3]


def _chunks(text: str) -> list[str]:
    words = text.split()
    return [" ".join(words[i : i + NF_WORDS]) for i in range(0, len(words), NF_WORDS)]


def read_corpus(path: Path) -> list[dict]:
    with (path / "corpus.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@dataclass
class Pool:
    """One real collection cut into text units, with token counts."""

    name: str
    offset: int  # index of its first document among all real documents
    titles: list[str]
    title_tokens: np.ndarray
    unit_start: np.ndarray  # units of document i: unit_start[i]:unit_start[i + 1]
    units: list[str]
    unit_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.titles)


@dataclass
class Sources:
    """The real documents and the pools their text is recombined from."""

    documents: list  # Document, in collection order: SciFact, then NFCorpus
    pools: list[Pool]
    max_length: int
    home_p: float = field(init=False)

    def __post_init__(self) -> None:
        self.home_p = len(self.pools[0]) / sum(len(p) for p in self.pools)

    @classmethod
    def read(cls, scifact: Path, nfcorpus: Path, tokenizer, max_length: int) -> Sources:
        """``tokenizer``: the encoder's (``tokenizers.Tokenizer``); counted without truncation."""
        from tokenizers import Tokenizer

        from brainrank.index.records import Document

        tok = Tokenizer.from_str(tokenizer.to_str())
        tok.no_truncation()
        tok.no_padding()

        def count(texts: list[str]) -> np.ndarray:
            encoded = tok.encode_batch(texts, add_special_tokens=False)
            return np.array([len(e.ids) for e in encoded], dtype=np.int64)

        documents, pools = [], []
        for name, path, cut in (("scifact", scifact, _sentences), ("nfcorpus", nfcorpus, _chunks)):
            raw = read_corpus(path)
            titles = [d.get("title") or "" for d in raw]
            pieces = [cut(d.get("text") or "") for d in raw]
            flat = [u for units in pieces for u in units]
            tokens = count(flat)
            keep = tokens <= MAX_UNIT_TOKENS
            starts, units, kept = [0], [], []
            at = 0
            for doc_units in pieces:
                for u in doc_units:
                    if keep[at]:
                        units.append(u)
                        kept.append(tokens[at])
                    at += 1
                starts.append(len(units))
            pools.append(
                Pool(
                    name,
                    len(documents),
                    titles,
                    count(titles),
                    np.array(starts, dtype=np.int64),
                    units,
                    np.array(kept, dtype=np.int64),
                )
            )
            documents += [Document(str(d["_id"]), d.get("title") or "", d["text"]) for d in raw]
        return cls(documents, pools, max_length)

    def synthetic(self, seed: int, start: int, stop: int):
        """Synthetic documents ``start``..``stop - 1`` and their recipes: for each, the indexes
        of its three source documents among the real ones and the tokens taken from each."""
        docs, sources, weights = [], [], []
        for block in range(start // BLOCK, (stop - 1) // BLOCK + 1):
            d, s, w = self._block(seed, block)
            lo, hi = max(start - block * BLOCK, 0), min(stop - block * BLOCK, BLOCK)
            docs += d[lo:hi]
            sources.append(s[lo:hi])
            weights.append(w[lo:hi])
        return docs, np.vstack(sources), np.vstack(weights)

    def _block(self, seed: int, block: int):
        from brainrank.index.records import Document

        rng = np.random.default_rng([seed, block])
        docs = []
        sources = np.zeros((BLOCK, 3), dtype=np.int64)
        weights = np.zeros((BLOCK, 3), dtype=np.float64)
        for row in range(BLOCK):
            pool = self.pools[0] if rng.random() < self.home_p else self.pools[1]
            picked = rng.integers(len(pool), size=3)
            title = pool.titles[picked[0]]
            title_tokens = int(pool.title_tokens[picked[0]]) if title else 0
            limit = max(self.max_length - 2 - title_tokens, MIN_BODY)
            budget = int(rng.integers(MIN_BODY, limit + 1))
            first = pool.unit_start[picked]
            count = pool.unit_start[picked + 1] - first
            cursor = [int(rng.integers(c)) if c else 0 for c in count]
            taken = np.array([title_tokens, 0, 0], dtype=np.float64)
            parts, used, misses = [], 0, 0
            while misses < 3 or not parts:
                if misses > 50:
                    break
                r = rng.random()
                x = 0 if r < SOURCE_P[0] else (1 if r < SOURCE_P[1] else 2)
                if count[x] == 0:
                    misses += 1
                    continue
                unit = int(first[x]) + cursor[x]
                cursor[x] = (cursor[x] + 1) % int(count[x])
                size = int(pool.unit_tokens[unit])
                if used + size > budget:
                    misses += 1
                    continue
                misses = 0
                parts.append(pool.units[unit])
                used += size
                taken[x] += size
            j = block * BLOCK + row
            docs.append(Document(f"syn-{j:07d}", title, " ".join(parts)))
            sources[row] = picked + pool.offset
            weights[row] = taken
        return docs, sources, weights


def derived_vectors(
    real_first: np.ndarray, sources: np.ndarray, weights: np.ndarray, sigma: float, rng
) -> np.ndarray:
    """Unit vectors: the token-weighted mix of the sources' real vectors, plus noise of
    relative size ``sigma`` (see the module docstring)."""
    mix = np.einsum("nk,nkd->nd", weights, real_first[sources])
    mix /= np.linalg.norm(mix, axis=1, keepdims=True) + 1e-12
    noise = rng.standard_normal(mix.shape)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    out = mix + sigma * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def derived_for(sources_obj: Sources, real_first, seed: int, start: int, stop: int, sigma: float):
    """Synthetic documents ``start``..``stop - 1`` with their derived vectors, block by block
    so each block's noise is the same whatever range is asked for."""
    docs, out = [], []
    for block in range(start // BLOCK, (stop - 1) // BLOCK + 1):
        lo, hi = max(start, block * BLOCK), min(stop, (block + 1) * BLOCK)
        d, s, w = sources_obj.synthetic(seed, block * BLOCK, (block + 1) * BLOCK)
        v = derived_vectors(real_first, s, w, sigma, np.random.default_rng([seed, block, 1]))
        docs += d[lo - block * BLOCK : hi - block * BLOCK]
        out.append(v[lo - block * BLOCK : hi - block * BLOCK])
    return docs, np.vstack(out)


class VectorCache:
    """Vectors the real encoder computed, by text key, kept in one .npz file."""

    def __init__(self, path: Path, dim: int):
        self.path = path
        self.rows: dict[int, int] = {}
        self.vectors = np.zeros((0, dim), np.float32)
        self.embedded = 0  # passages embedded by this process
        self.seconds = 0.0
        self.meta = {"passages": 0, "seconds": 0.0}
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                keys, self.vectors = z["keys"], z["vectors"]
            self.rows = {int(k): i for i, k in enumerate(keys)}
            meta = path.with_suffix(".json")
            if meta.exists():
                self.meta = json.loads(meta.read_text())

    def add(self, keys: list[int], vectors: np.ndarray, seconds: float) -> None:
        base = len(self.vectors)
        self.vectors = np.vstack([self.vectors, vectors])
        for i, k in enumerate(keys):
            self.rows.setdefault(k, base + i)
        self.embedded += len(keys)
        self.seconds += seconds

    def save(self) -> None:
        if not self.embedded:
            return
        keys = np.zeros(len(self.vectors), np.uint64)
        for k, i in self.rows.items():
            keys[i] = k
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vectors=self.vectors)
        tmp.replace(self.path)
        self.meta["passages"] += self.embedded
        self.meta["seconds"] += self.seconds
        self.path.with_suffix(".json").write_text(json.dumps(self.meta))
        self.embedded, self.seconds = 0, 0.0

    @property
    def rate(self) -> float | None:
        """Passages per second the real encoder embedded at (all runs that filled the cache)."""
        p, s = self.meta["passages"] + self.embedded, self.meta["seconds"] + self.seconds
        return p / s if s else None


class SyntheticVectors:
    """Vectors of synthetic documents in an .npy file, looked up by text key and read on
    demand (explicit reads, so the lookup does not add mapped pages to the process's RSS)."""

    def __init__(self, path: Path, keys: np.ndarray):
        self.path = path
        order = np.argsort(keys, kind="stable")
        self._keys, self._rows = keys[order], order
        with path.open("rb") as fh:
            shape = _read_header(fh)
            self._offset = fh.tell()
        self.dim = shape[1]

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key, -1 where absent."""
        at = np.searchsorted(self._keys, keys)
        at = np.minimum(at, len(self._keys) - 1)
        found = self._keys[at] == keys
        return np.where(found, self._rows[at], -1)

    def read(self, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), self.dim), np.float32)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        with self.path.open("rb") as fh:
            start = 0
            while start < len(sorted_rows):
                end = start + 1
                while (
                    end < len(sorted_rows)
                    and sorted_rows[end] - sorted_rows[end - 1] <= 1
                    and end - start < READ_ROWS
                ):
                    end += 1
                lo, hi = int(sorted_rows[start]), int(sorted_rows[end - 1]) + 1
                fh.seek(self._offset + lo * self.dim * 4)
                block = np.fromfile(fh, np.float32, (hi - lo) * self.dim).reshape(-1, self.dim)
                out[order[start:end]] = block[sorted_rows[start:end] - lo]
                start = end
        return out


def write_npy(path: Path, shape: tuple[int, int]):
    """An .npy file of float32 zeros of ``shape``; returns (offset of row 0, row bytes)."""
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape).flush()
    with path.open("rb") as fh:
        _read_header(fh)
        return fh.tell(), shape[1] * 4


def _read_header(fh) -> tuple:
    """The shape of the float32 .npy array whose file ``fh`` is at its start; leaves ``fh`` at
    the first row."""
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read(fh)
    if fortran or dtype != np.float32 or len(shape) != 2:
        raise ValueError(f"expected a C-order float32 matrix, got {shape} {dtype}")
    return shape


def make_precomputed_encoder(real, cache: VectorCache, synthetic=None, embed: bool = True):
    """The real bulk encoder's identity over precomputed vectors (see the module docstring).

    ``real`` is the encoder ``load_bulk_encoder`` returns. Texts found in ``synthetic`` or the
    cache are looked up; others are embedded by ``real`` and cached when ``embed``, else an
    error (a derived collection must never be embedded behind the table's back).
    """
    from brainrank.ranker.encoding.runtime import OnnxEncoder

    class PrecomputedEncoder(OnnxEncoder):
        # An OnnxEncoder so that ingest runs it without TensorFlow's precision context.
        def __init__(self):
            super().__init__(
                name=real.name,
                session=None,
                tokenizer=real.tokenizer,
                dim=real.dim,
                max_length=real.max_length,
                max_positions=real._max_positions,
                fingerprint=real.fingerprint,
            )
            self.precision = real.precision
            self.synthetic = synthetic
            self.looked_up = 0
            self.seconds = 0.0  # spent in encode, embedding included

        def encode(self, texts, *, batch_size: int = 32, progress=None) -> np.ndarray:
            t0 = time.perf_counter()
            texts = [texts] if isinstance(texts, str) else list(texts)
            keys = np.array([text_key(t) for t in texts], dtype=np.uint64)
            out = np.zeros((len(texts), self.dim), np.float32)
            todo = np.ones(len(texts), dtype=bool)
            if self.synthetic is not None and len(texts):
                rows = self.synthetic.find(keys)
                hit = rows >= 0
                out[hit] = self.synthetic.read(rows[hit])
                todo &= ~hit
            for i in np.flatnonzero(todo):
                row = cache.rows.get(int(keys[i]))
                if row is not None:
                    out[i] = cache.vectors[row]
                    todo[i] = False
            missing = np.flatnonzero(todo)
            if len(missing):
                if not embed:
                    raise RuntimeError(
                        f"{len(missing)} passages have no precomputed vector (first: "
                        f"{texts[missing[0]][:80]!r}); a derived collection is never embedded"
                    )
                t = time.perf_counter()
                vectors = real.encode([texts[i] for i in missing], batch_size=batch_size)
                cache.add([int(keys[i]) for i in missing], vectors, time.perf_counter() - t)
                out[missing] = vectors
            self.looked_up += len(texts) - len(missing)
            self.seconds += time.perf_counter() - t0
            if progress is not None:
                progress(len(texts))
            return out

    return PrecomputedEncoder()
