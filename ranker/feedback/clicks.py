"""Learning from clicks: read a click log, remove position bias, derive features and labels.

Clicks are explained with the position-based model (PBM): a shown document is clicked when the
user examines its position *and* finds it relevant, independently,

    P(click | q, d, position k) = theta[k] * gamma[q, d].

``theta`` (examination propensity per position, relative to position 1: ``theta[1] = 1``) and
``gamma`` (the chance that an examined document is clicked: its click relevance) are fitted in
two stages, each alternating closed-form updates as regression-EM does (Wang et al., WSDM 2018),
with one parameter per (query, document) pair in place of a regression model:

1. Propensities. ``gamma[p] = clicks[p] / sum(theta over p's impressions)`` and
   ``theta[k] = clicks at k / sum(gamma over impressions at k)`` until they settle: the maximum
   of the PBM's Poisson likelihood with a free relevance per pair. Its mean, ``theta * gamma``,
   is the PBM's; only the Bernoulli variance is dropped, because the Bernoulli fit (EM over
   the latent "examined"/"relevant" split) is biased when pairs have few impressions: each
   pair's own parameter overfits them (the incidental-parameter problem). On a synthetic log
   of 1M impressions with true ``theta[2] = 0.574`` Bernoulli EM settled at 0.709, this fit at
   0.574. Pairs never clicked or shown at a single position cannot tell positions apart and
   are left out. Each ``theta[k]`` is smoothed towards ``1/k`` with the weight of one expected
   click, which decides positions without data, and by default ``theta`` is non-increasing
   (see ``estimate_propensities``).
2. Relevance. With ``theta`` fixed, a pair's effective examinations are ``E = sum(theta)``
   over its impressions and its relevance the posterior mean ``(clicks + s*m) / (E + s)``
   (capped at 1) under a conjugate prior of ``s = prior_strength`` pseudo-examinations at the
   log's mean relevance ``m = all clicks / all E``, so rarely seen pairs stay near ``m``.

Queries are joined by ``normalise_query``; positions after ``max_position`` are ignored, clicks
on them included.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, repeat
from pathlib import Path

import numpy as np
import pandas as pd

from brainrank.index.errors import InputError
from brainrank.ranker.feedback.fields import normalise_query, parse_time

DEFAULT_PRIOR_STRENGTH = 2.0
_THETA_PSEUDO = 1.0  # expected clicks' worth of prior holding each propensity towards 1/k
_TOL = 1e-9  # the propensity fit stops once no position moves by more than this
_REQUIRED = ("impression_id", "time", "query", "shown", "clicks")


@dataclass(frozen=True)
class Impression:
    """One result list shown to a user: ``shown`` in display order, position 1 first."""

    impression_id: str
    time: datetime
    query: str
    query_id: str | None
    shown: tuple[str, ...]
    clicks: frozenset[str]


class ClickLog(list[Impression]):
    """The impressions read from a log, in file order; ``skipped`` has one message per bad line."""

    def __init__(self, impressions: Iterable[Impression] = (), skipped: Iterable[str] = ()):
        super().__init__(impressions)
        self.skipped: list[str] = list(skipped)


class _BadLine(Exception):
    pass


def read_click_log(path: Path | str, *, skip_bad: bool = False) -> ClickLog:
    """Read a JSONL click log (one impression per line; see ``data/README.md``).

    The first bad line raises ``InputError`` naming file, line and problem; with ``skip_bad``
    bad lines are left out and their messages collected in the result's ``skipped``. Blank lines
    are ignored. Times must carry a time zone and are converted to UTC.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"click log {path} does not exist or is not a file")
    log = ClickLog()
    first_line: dict[str, int] = {}
    try:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    imp = _parse_impression(raw)
                    seen = first_line.get(imp.impression_id)
                    if seen is not None:
                        raise _BadLine(
                            f"duplicate impression id {imp.impression_id!r} (first on line {seen})"
                        )
                except _BadLine as err:
                    message = f"{path.name} line {lineno}: {err}"
                    if not skip_bad:
                        raise InputError(message) from None
                    log.skipped.append(message)
                    continue
                first_line[imp.impression_id] = lineno
                log.append(imp)
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None
    return log


def _parse_impression(raw: bytes) -> Impression:
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise _BadLine("not valid UTF-8") from None
    except ValueError as exc:
        raise _BadLine(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _BadLine(f"expected a JSON object, got {type(obj).__name__}")
    missing = [f for f in _REQUIRED if obj.get(f) is None]
    if missing:
        raise _BadLine(f"missing field(s) {', '.join(missing)}; required: {', '.join(_REQUIRED)}")
    iid, query, query_id = obj["impression_id"], obj["query"], obj.get("query_id")
    if not isinstance(iid, str) or not iid:
        raise _BadLine(f"impression_id must be a non-empty string, got {iid!r}")
    if not isinstance(query, str) or not query.strip():
        raise _BadLine(f"query must be a non-empty string, got {query!r}")
    if query_id is not None and not isinstance(query_id, str):
        raise _BadLine(f"query_id must be a string or null, got {query_id!r}")
    shown, clicks = obj["shown"], obj["clicks"]
    for name, ids in (("shown", shown), ("clicks", clicks)):
        if not isinstance(ids, list) or not all(map(isinstance, ids, repeat(str))):
            raise _BadLine(f"{name} must be a list of document id strings, got {ids!r}")
    if not shown:
        raise _BadLine("shown is empty: an impression must show at least one document")
    if len(set(shown)) != len(shown):
        dup = next(d for i, d in enumerate(shown) if d in shown[:i])
        where = [i + 1 for i, d in enumerate(shown) if d == dup]
        raise _BadLine(f"document {dup!r} is shown twice (positions {where[0]} and {where[1]})")
    stray = [d for d in clicks if d not in shown]
    if stray:
        raise _BadLine(f"clicked id {stray[0]!r} is not in shown")
    try:
        when = parse_time(obj["time"])
    except ValueError as exc:
        raise _BadLine(str(exc)) from None
    return Impression(
        impression_id=iid,
        time=when,
        query=query,
        query_id=query_id,
        shown=tuple(shown),
        clicks=frozenset(clicks),
    )


# ---------------------------------------------------------------------------------------------
# Columnar observations and the PBM fit


@dataclass
class _Cells:
    """The log reduced to (pair, position) cells with impression and click counts."""

    queries: np.ndarray  # normalised query text per query code
    docs: np.ndarray  # doc id per doc code
    pair_query: np.ndarray  # query code per pair
    pair_doc: np.ndarray  # doc code per pair
    pair: np.ndarray  # pair per cell
    pos: np.ndarray  # position (0-based) per cell
    n: np.ndarray  # impressions per cell
    c: np.ndarray  # clicks per cell


def _cells(impressions: Iterable[Impression], max_position: int) -> _Cells:
    if not isinstance(max_position, int) or max_position < 1:
        raise ValueError(f"max_position must be a positive integer, got {max_position!r}")
    imps = list(impressions)
    shown = [imp.shown[:max_position] for imp in imps]
    lens = np.fromiter(map(len, shown), dtype=np.int64, count=len(shown))
    starts = np.cumsum(lens) - lens
    docs = np.fromiter(chain.from_iterable(shown), dtype=object, count=int(lens.sum()))
    clicked = np.zeros(len(docs))
    clicked_at = [
        start + row.index(d)
        for imp, row, start in zip(imps, shown, starts.tolist(), strict=True)
        if imp.clicks
        for d in imp.clicks
        if d in row  # clicks after max_position are dropped with their positions
    ]
    clicked[np.asarray(clicked_at, dtype=np.int64)] = 1.0
    # Normalise each distinct raw query once.
    raw_code, raw = pd.factorize(
        np.fromiter((i.query for i in imps), dtype=object, count=len(imps))
    )
    norm_code, quniq = pd.factorize(np.asarray([normalise_query(q) for q in raw], dtype=object))
    qcode = norm_code[raw_code].astype(np.int64)
    dcode, duniq = pd.factorize(docs)
    pos = np.arange(len(docs), dtype=np.int64) - np.repeat(starts, lens)
    ndocs = max(len(duniq), 1)
    cell_code, cells = pd.factorize((np.repeat(qcode, lens) * ndocs + dcode) * max_position + pos)
    pair, pairs = pd.factorize(cells // max_position)
    return _Cells(
        queries=np.asarray(quniq, dtype=object),
        docs=np.asarray(duniq, dtype=object),
        pair_query=pairs // ndocs,
        pair_doc=pairs % ndocs,
        pair=pair.astype(np.int64),
        pos=cells % max_position,
        n=np.bincount(cell_code, minlength=len(cells)).astype(np.float64),
        c=np.bincount(cell_code, weights=clicked, minlength=len(cells)),
    )


def _non_increasing(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares fit of a non-increasing sequence (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks[-1]
            blocks[-1] = [(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2]
    return np.concatenate([np.full(n, m) for m, _, n in blocks])


def _fit_propensities(
    cells: _Cells, max_position: int, iterations: int, monotone: bool
) -> np.ndarray:
    """Stage 1 of the module docstring: propensities from pairs seen at several positions."""
    if not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
    k = max_position
    prior = 1.0 / np.arange(1, k + 1)
    npairs = len(cells.pair_doc)
    positions = np.bincount(cells.pair, minlength=npairs)  # cells are distinct (pair, position)
    informative = (np.bincount(cells.pair, weights=cells.c, minlength=npairs) > 0) & (positions > 1)
    keep = informative[cells.pair]
    if not keep.any():
        return prior
    pair = (np.cumsum(informative) - 1)[cells.pair[keep]]
    pos, n, c = cells.pos[keep], cells.n[keep], cells.c[keep]
    clicks_pos = np.bincount(pos, weights=c, minlength=k)
    clicks_pair = np.bincount(pair, weights=c)
    theta = prior
    for _ in range(iterations):
        gamma = clicks_pair / np.bincount(pair, weights=n * theta[pos])
        exposure = np.bincount(pos, weights=n * gamma[pair], minlength=k)
        new = (clicks_pos + _THETA_PSEUDO * prior) / (exposure + _THETA_PSEUDO)
        if monotone:
            # For Poisson rates, weighted isotonic regression is the constrained maximum.
            new = _non_increasing(new, exposure + _THETA_PSEUDO)
        new = new / new[0]  # the PBM fixes only theta * gamma: anchor position 1 at 1
        moved = np.abs(new - theta).max()
        theta = new
        if moved < _TOL:
            break
    return theta


def estimate_propensities(
    impressions: Iterable[Impression],
    max_position: int = 10,
    *,
    iterations: int = 50,
    monotone: bool = True,
) -> np.ndarray:
    """Examination probability of positions 1..max_position (index 0 is position 1, = 1.0).

    Fitted as in stage 1 of the module docstring, which also says why this is not Bernoulli
    EM. Position effects are told apart from relevance only through (query, document) pairs
    shown at several positions across impressions; with none, the result is the ``1/k`` prior.
    ``iterations`` caps the alternating updates (they usually settle within 20).

    ``monotone`` (the default) constrains the propensities to be non-increasing, the usual
    assumption for a vertical result list: it steadies sparse low positions, where noise
    otherwise produces bumps (on the 400-impression sample log, position 10 comes out at
    0.21 unconstrained, above positions 7-9). Pass ``monotone=False`` for grids or carousels,
    where a lower slot can draw more attention; values above 1 are then possible.
    """
    return _fit_propensities(_cells(impressions, max_position), max_position, iterations, monotone)


# ---------------------------------------------------------------------------------------------
# Statistics for features and labels


@dataclass
class ClickStats:
    """Position-debiased click statistics of one log, for ranking features and training labels.

    Build with ``click_stats``. Queries passed to the methods are normalised here, so raw query
    text works. ``relevance_prior`` is the prior mean of the debiased relevance (the average
    relevance of an examined result) and ``prior_strength`` its weight in pseudo-examinations.
    """

    propensities: np.ndarray
    queries: set[str]
    relevance_prior: float
    prior_strength: float
    _query_code: dict[str, int] = field(repr=False)
    _doc_code: dict[str, int] = field(repr=False)
    _query_names: np.ndarray = field(repr=False)  # per query code
    _doc_names: np.ndarray = field(repr=False)  # per doc code
    _ndocs: int = field(repr=False)
    _pair_key: np.ndarray = field(repr=False)  # sorted query_code * _ndocs + doc_code
    _gamma: np.ndarray = field(repr=False)  # per pair, aligned with _pair_key
    _weight: np.ndarray = field(repr=False)
    _pair_clicks: np.ndarray = field(repr=False)
    _pair_expected: np.ndarray = field(repr=False)
    _doc_ctr: np.ndarray = field(repr=False)  # per doc code
    _ctr_prior: float = field(repr=False)  # pseudo expected clicks in every COEC

    def _pair(self, query: str, doc_id: str) -> int | None:
        q = self._query_code.get(normalise_query(query))
        d = self._doc_code.get(doc_id)
        if q is None or d is None:
            return None
        key = q * self._ndocs + d
        i = int(np.searchsorted(self._pair_key, key))
        return i if i < len(self._pair_key) and self._pair_key[i] == key else None

    def query_doc_relevance(self, query: str, doc_id: str) -> tuple[float, float]:
        """(debiased relevance in [0, 1], evidence weight) of a pair.

        Relevance is the PBM's P(click | examined), shrunk towards ``relevance_prior``; the
        weight is the effective number of examinations (the sum of the propensities of the
        positions where the pair was shown). Unseen pairs get ``(relevance_prior, 0.0)``.
        """
        i = self._pair(query, doc_id)
        if i is None:
            return self.relevance_prior, 0.0
        return float(self._gamma[i]), float(self._weight[i])

    def doc_ctr(self, doc_id: str) -> float:
        """Clicks over expected clicks (COEC) of a document over all queries, shrunk to 1.0.

        Expected clicks add up the log's average click rate of each position the document was
        shown at, so 1.0 means "clicked as often as an average result in the same slots".
        Unseen documents get 1.0.
        """
        d = self._doc_code.get(doc_id)
        return 1.0 if d is None else float(self._doc_ctr[d])

    def query_doc_ctr(self, query: str, doc_id: str) -> float:
        """COEC of a (query, document) pair, shrunk towards the document's ``doc_ctr``."""
        prior = self.doc_ctr(doc_id)
        i = self._pair(query, doc_id)
        if i is None:
            return prior
        a = self._ctr_prior
        denominator = self._pair_expected[i] + a
        if denominator <= 0:  # shown only where nothing is ever clicked, and no prior
            return prior
        return float((self._pair_clicks[i] + a * prior) / denominator)

    def labels(self, *, min_weight: float = 1.0) -> dict[str, dict[str, float]]:
        """Normalised query -> {doc_id: label in [0, 3]} for pairs with evidence >= min_weight.

        The label is ``3 * relevance``: linear in the debiased click relevance, so 3 would be
        a document every user who examines it clicks and 0 one nobody clicks. It is graded
        (real-valued), not rounded, so nDCG gains keep the estimate's resolution.
        """
        out: dict[str, dict[str, float]] = {}
        keep = np.flatnonzero(self._weight >= min_weight)
        queries = self._query_names[self._pair_key[keep] // self._ndocs].tolist()
        docs = self._doc_names[self._pair_key[keep] % self._ndocs].tolist()
        for q, d, g in zip(queries, docs, (3.0 * self._gamma[keep]).tolist(), strict=True):
            out.setdefault(q, {})[d] = g
        return out


def click_stats(
    impressions: Iterable[Impression],
    *,
    max_position: int = 10,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
    iterations: int = 50,
    monotone: bool = True,
) -> ClickStats:
    """Fit the PBM to a log once and keep what features and labels need.

    ``prior_strength`` counts pseudo-observations: examinations at the log's mean relevance
    for the debiased relevance, and impressions at the log's mean click rate for the COEC
    features. ``iterations`` and ``monotone`` are passed to the propensity fit.
    """
    if not prior_strength >= 0:
        raise ValueError(f"prior_strength must be >= 0, got {prior_strength!r}")
    cells = _cells(impressions, max_position)
    theta = _fit_propensities(cells, max_position, iterations, monotone)
    npairs, ndocs = len(cells.pair_doc), len(cells.docs)
    clicks = np.bincount(cells.pair, weights=cells.c, minlength=npairs)
    examinations = np.bincount(cells.pair, weights=cells.n * theta[cells.pos], minlength=npairs)
    mean = float(min(clicks.sum() / examinations.sum(), 1.0)) if npairs else 0.0
    gamma = np.minimum((clicks + prior_strength * mean) / (examinations + prior_strength), 1.0)

    # COEC: expected clicks from the log's click rate per position, whatever the document.
    slot_clicks = np.bincount(cells.pos, weights=cells.c, minlength=max_position)
    slot_shown = np.bincount(cells.pos, weights=cells.n, minlength=max_position)
    slot_ctr = slot_clicks / np.maximum(slot_shown, 1.0)
    expected = np.bincount(cells.pair, weights=cells.n * slot_ctr[cells.pos], minlength=npairs)
    ctr_prior = prior_strength * slot_clicks.sum() / max(slot_shown.sum(), 1.0)
    doc_clicks = np.bincount(cells.pair_doc, weights=clicks, minlength=ndocs)
    doc_expected = np.bincount(cells.pair_doc, weights=expected, minlength=ndocs)
    denominator = doc_expected + ctr_prior
    doc_ctr = np.ones(ndocs)
    np.divide(doc_clicks + ctr_prior, denominator, out=doc_ctr, where=denominator > 0)

    key = cells.pair_query * max(ndocs, 1) + cells.pair_doc
    order = np.argsort(key)
    queries = cells.queries.tolist()
    return ClickStats(
        propensities=theta,
        queries=set(queries),
        relevance_prior=mean,
        prior_strength=float(prior_strength),
        _query_code=dict(zip(queries, range(len(queries)), strict=True)),
        _doc_code=dict(zip(cells.docs.tolist(), range(ndocs), strict=True)),
        _query_names=cells.queries,
        _doc_names=cells.docs,
        _ndocs=max(ndocs, 1),
        _pair_key=key[order],
        _gamma=gamma[order],
        _weight=examinations[order],
        _pair_clicks=clicks[order],
        _pair_expected=expected[order],
        _doc_ctr=doc_ctr,
        _ctr_prior=float(ctr_prior),
    )


# ---------------------------------------------------------------------------------------------
# Combining click labels with human judgments


def key_by_query_text(
    judgments: Mapping[str, Mapping[str, int]], queries: Mapping[str, str]
) -> dict[str, dict[str, int]]:
    """Re-key judgments from query id to ``normalise_query(text)``, to meet click labels.

    Judged query ids missing from ``queries`` are dropped. Two ids whose texts normalise alike
    are merged; a document they grade differently raises ``InputError``.
    """
    out: dict[str, dict[str, int]] = {}
    source: dict[str, str] = {}
    for qid, grades in judgments.items():
        if qid not in queries:
            continue
        key = normalise_query(queries[qid])
        merged = out.setdefault(key, {})
        for doc, grade in grades.items():
            if doc in merged and merged[doc] != grade:
                raise InputError(
                    f"queries {source[key]!r} and {qid!r} have the same text {key!r} but grade "
                    f"{doc!r} differently ({merged[doc]} vs {grade})"
                )
            merged[doc] = grade
        source.setdefault(key, qid)
    return out


def merge_labels(
    judgments: Mapping[str, Mapping[str, int]],
    click_labels: Mapping[str, Mapping[str, float]],
    *,
    click_weight: float = 0.5,
    nudge: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Training labels from human judgments plus click labels, both keyed by the same query key.

    Judgments are usually keyed by query id and click labels by normalised text: re-key one
    side first (``key_by_query_text`` maps judgments to text). A judged pair keeps its grade,
    moved ``nudge`` of the way (0 = not at all, the default) towards its click label when it
    has one. A pair only clicks know about gets ``click_weight * click label``, so click-only
    evidence counts for less than a judge's grade.
    """
    if not 0.0 <= click_weight <= 1.0:
        raise ValueError(f"click_weight must be in [0, 1], got {click_weight}")
    if not 0.0 <= nudge <= 1.0:
        raise ValueError(f"nudge must be in [0, 1], got {nudge}")
    out: dict[str, dict[str, float]] = {}
    for q, grades in judgments.items():
        clicked = click_labels.get(q, {})
        out[q] = {
            d: float(g) + (nudge * (clicked[d] - g) if d in clicked else 0.0)
            for d, g in grades.items()
        }
    for q, labels in click_labels.items():
        judged = judgments.get(q, {})
        row = out.setdefault(q, {})
        for d, label in labels.items():
            if d not in judged:
                row[d] = click_weight * float(label)
    return out
