"""Where the live documents of a segmented index generation are: one position space over all.

A generation is an ordered list of segments, each with a set of deleted ("tombstoned")
positions: documents deleted since the segment was written, or superseded by a newer copy in a
later segment. The generation numbers its live documents 0..n-1 in segment order, then local
order, so a generation of one segment without deletions numbers its documents as the segment
does. Everything that serves (doc ids, keyword and vector indexes, features) speaks these
positions; this map translates them to (segment, local position) and back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class LiveMap:
    def __init__(self, sizes: Sequence[int], deleted: Sequence[np.ndarray | None]):
        """``sizes[s]`` documents in segment s, of which the positions ``deleted[s]`` are not
        live (None or empty: none)."""
        self.sizes = [int(n) for n in sizes]
        self.live: list[np.ndarray | None] = []  # ascending live local positions; None: all
        self.to_global: list[np.ndarray | None] = []  # local -> generation position, -1: dead
        starts = [0]
        for n, dead in zip(self.sizes, deleted, strict=True):
            if dead is None or len(dead) == 0:
                self.live.append(None)
                self.to_global.append(None)
                starts.append(starts[-1] + n)
                continue
            alive = np.ones(n, dtype=bool)
            alive[np.asarray(dead, dtype=np.int64)] = False
            live = np.flatnonzero(alive)
            mapping = np.full(n, -1, dtype=np.int64)
            mapping[live] = np.arange(starts[-1], starts[-1] + len(live))
            self.live.append(live)
            self.to_global.append(mapping)
            starts.append(starts[-1] + len(live))
        self.starts = np.asarray(starts, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def segments(self) -> int:
        return len(self.sizes)

    @property
    def trivial(self) -> bool:
        """One segment, nothing deleted: generation positions are the segment's own."""
        return len(self.sizes) == 1 and self.live[0] is None

    def live_count(self, segment: int) -> int:
        return int(self.starts[segment + 1] - self.starts[segment])

    def deleted_count(self, segment: int) -> int:
        return self.sizes[segment] - self.live_count(segment)

    def globals_of(self, segment: int, local: np.ndarray) -> np.ndarray:
        """Generation positions of local positions of ``segment`` (-1 where deleted)."""
        local = np.asarray(local, dtype=np.int64)
        mapping = self.to_global[segment]
        return local + self.starts[segment] if mapping is None else mapping[local]

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment, local position) of each generation position."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= len(self)):
            raise IndexError(f"document positions outside 0..{len(self) - 1}")
        segment = np.searchsorted(self.starts, positions, side="right") - 1
        local = positions - self.starts[segment]
        for s in np.unique(segment):
            if self.live[s] is not None:
                at = segment == s
                local[at] = self.live[s][local[at]]
        return segment, local

    def gather(self, per_segment: Sequence[np.ndarray]) -> np.ndarray:
        """The values of the live documents, in generation order, from one array per segment."""
        pieces = [
            values if live is None else np.asarray(values)[live]
            for values, live in zip(per_segment, self.live, strict=True)
        ]
        if len(pieces) == 1:
            return np.asarray(pieces[0])
        return np.concatenate(pieces)

    def gather_list(self, per_segment: Sequence[list]) -> list:
        """``gather`` for Python lists (document ids, content hashes)."""
        out: list = []
        for values, live in zip(per_segment, self.live, strict=True):
            out.extend(values if live is None else [values[i] for i in live])
        return out
