"""How two rankings differ: set and rank-biased overlap, rank moves, per-query metric deltas.

Pure functions on lists of document ids and dicts of numbers, so the Compare page only draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TIE = 1e-9  # |delta| at or below this counts as a tie


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """|A ∩ B| / |A ∪ B| of the two lists' sets; 1.0 for two empty lists."""
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def rbo(a: Sequence[str], b: Sequence[str], p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap (Webber, Moffat and Zobel 2010) of two rankings.

    Both lists are cut to the shorter one's length ``k``; with ``X_d`` the overlap of the top
    ``d``: ``RBO = (X_k / k) p^k + (1 - p) / p * sum_{d=1..k} (X_d / d) p^d``. 1.0 for
    identical lists, 0.0 for disjoint ones; ``p`` weights the top (0.9: top 10 carry ~86%).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p!r}: must be in (0, 1)")
    k = min(len(a), len(b))
    if k == 0:
        return 1.0 if len(a) == len(b) else 0.0
    seen_a: set[str] = set()
    seen_b: set[str] = set()
    overlap = 0
    total = 0.0
    for d in range(1, k + 1):
        x, y = a[d - 1], b[d - 1]
        if x == y:
            overlap += 1
        else:
            overlap += (x in seen_b) + (y in seen_a)
        seen_a.add(x)
        seen_b.add(y)
        total += overlap / d * p**d
    return overlap / k * p**k + (1 - p) / p * total


@dataclass(frozen=True)
class Move:
    doc_id: str
    rank_a: int | None  # None: not in A's top k
    rank_b: int | None

    @property
    def arrow(self) -> str:
        """How the document moves from A to B: ↑3 (up three), ↓2, =, new (only in B), out."""
        if self.rank_a is None:
            return "new"
        if self.rank_b is None:
            return "out"
        delta = self.rank_a - self.rank_b
        return "=" if delta == 0 else (f"↑{delta}" if delta > 0 else f"↓{-delta}")


def rank_moves(a: Sequence[str], b: Sequence[str]) -> list[Move]:
    """Every document of either list: B's order first, then what only A has, in A's order."""
    ra = {d: r for r, d in enumerate(a, start=1)}
    rb = {d: r for r, d in enumerate(b, start=1)}
    moves = [Move(d, ra.get(d), rb[d]) for d in b]
    moves += [Move(d, ra[d], None) for d in a if d not in rb]
    return moves


@dataclass(frozen=True)
class Deltas:
    """Per-query metric of rankings A and B, sorted by B - A (worst losses first)."""

    rows: list[tuple[str, float, float, float]]  # (query id, A, B, B - A)
    wins: int
    losses: int
    ties: int

    @property
    def mean_delta(self) -> float:
        return sum(r[3] for r in self.rows) / len(self.rows) if self.rows else 0.0


def deltas(a: dict[str, float], b: dict[str, float]) -> Deltas:
    """Compare per-query values of B against A over the queries both have."""
    common = [q for q in a if q in b]
    rows = sorted(((q, a[q], b[q], b[q] - a[q]) for q in common), key=lambda r: (r[3], r[0]))
    wins = sum(r[3] > TIE for r in rows)
    losses = sum(r[3] < -TIE for r in rows)
    return Deltas(rows, wins, losses, len(rows) - wins - losses)
