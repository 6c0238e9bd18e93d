"""A comparison of two rankings over a judged query set, and its named snapshots on disk.

``SetComparison`` holds what the debugger's Compare page shows for a judged set: each query's
metric under rankings A and B, both rankings' top 10 with the grades of the documents in them,
and the paired statistics (``ranker.evaluation_stats``). A snapshot is one saved as JSON in
``WORKSPACE/snapshots/NAME.json`` (written to a temporary name and renamed into place), so it
reopens later, after models and judgments have moved on, without ranking anything again.
"""

from __future__ import annotations

import json
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from brainrank.index.atomic import write_text_atomic
from brainrank.index.errors import BrainrankError, InputError
from brainrank.index.jsontext import loads
from brainrank.index.validation import check_name, is_name
from brainrank.ranker.evaluation_stats import PairedTest, paired_t_test

SNAPSHOTS_DIR = "snapshots"
FORMAT = "brainrank.compare-snapshot"
FORMAT_VERSION = 1
TOP = 10

NAME_LENGTH = 100  # the longest snapshot name (also its file name)


class SnapshotError(BrainrankError):
    """A snapshot that cannot be read (missing, damaged, or of another format)."""


@dataclass(frozen=True)
class QueryOutcome:
    """One judged query under both rankings."""

    query_id: str
    text: str
    a: float  # the metric under A
    b: float
    top_a: tuple[str, ...]  # A's top 10 doc ids
    top_b: tuple[str, ...]
    grades: dict[str, int]  # the judged grades of the documents in either top 10

    @property
    def delta(self) -> float:
        return self.b - self.a

    def to_dict(self) -> dict:
        return {**vars(self), "top_a": list(self.top_a), "top_b": list(self.top_b)}

    @classmethod
    def from_dict(cls, d: dict) -> QueryOutcome:
        return cls(
            str(d["query_id"]),
            str(d["text"]),
            float(d["a"]),
            float(d["b"]),
            tuple(str(x) for x in d["top_a"]),
            tuple(str(x) for x in d["top_b"]),
            {str(k): int(v) for k, v in d["grades"].items()},
        )


@dataclass(frozen=True)
class SetComparison:
    """Rankings A and B (specs such as ``hybrid`` or ``learned:v0002``) over judged queries."""

    a: str
    b: str
    a_label: str
    b_label: str
    judgments: str  # where the grades came from, e.g. "set default"
    queries: tuple[QueryOutcome, ...]  # sorted by B - A, worst first
    stats: PairedTest
    metric: str = "nDCG@10"
    name: str | None = None  # set once saved
    created: float | None = None  # epoch seconds, once saved

    @classmethod
    def build(
        cls,
        a: str,
        b: str,
        values_a: Mapping[str, float],
        values_b: Mapping[str, float],
        top_a: Mapping[str, list[str]],
        top_b: Mapping[str, list[str]],
        texts: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        *,
        labels: tuple[str, str] | None = None,
        judgments: str = "",
        metric: str = "nDCG@10",
    ) -> SetComparison:
        """Pair the queries both rankings were scored on and test B against A."""
        outcomes = []
        for qid in (q for q in values_a if q in values_b):
            ta, tb = tuple(top_a.get(qid, ())[:TOP]), tuple(top_b.get(qid, ())[:TOP])
            graded = qrels.get(qid, {})
            grades = {d: int(graded[d]) for d in dict.fromkeys(ta + tb) if d in graded}
            outcomes.append(
                QueryOutcome(qid, texts.get(qid, ""), values_a[qid], values_b[qid], ta, tb, grades)
            )
        outcomes.sort(key=lambda o: (o.delta, o.query_id))
        stats = paired_t_test([o.a for o in outcomes], [o.b for o in outcomes])
        la, lb = labels or (a, b)
        return cls(a, b, la, lb, judgments, tuple(outcomes), stats, metric)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "created": self.created,
            "metric": self.metric,
            "judgments": self.judgments,
            "a": {"spec": self.a, "label": self.a_label},
            "b": {"spec": self.b, "label": self.b_label},
            "stats": self.stats.to_dict(),
            "queries": [o.to_dict() for o in self.queries],
        }

    @classmethod
    def from_dict(cls, d: dict) -> SetComparison:
        return cls(
            str(d["a"]["spec"]),
            str(d["b"]["spec"]),
            str(d["a"]["label"]),
            str(d["b"]["label"]),
            str(d["judgments"]),
            tuple(QueryOutcome.from_dict(o) for o in d["queries"]),
            PairedTest.from_dict(d["stats"]),
            str(d["metric"]),
            str(d["name"]),
            float(d["created"]),
        )


def check_snapshot_name(name: str) -> str:
    """``name`` if it can name a snapshot file, else ``InputError`` saying what is allowed."""
    return check_name(name, "snapshot name", NAME_LENGTH)


def snapshot_path(workspace_root: Path | str, name: str) -> Path:
    return Path(workspace_root) / SNAPSHOTS_DIR / f"{check_snapshot_name(name)}.json"


def snapshot_names(workspace_root: Path | str) -> list[str]:
    """Saved snapshots, newest first (names only: a damaged one shows up, and says so when
    opened)."""
    folder = Path(workspace_root) / SNAPSHOTS_DIR
    if not folder.is_dir():
        return []
    found = []
    for f in folder.glob("*.json"):
        try:
            if is_name(f.stem, NAME_LENGTH):
                found.append((-f.stat().st_mtime, f.stem))
        except OSError:  # deleted while listing
            continue
    return [name for _, name in sorted(found)]


def save_snapshot(
    workspace_root: Path | str, comparison: SetComparison, name: str, *, time: float | None = None
) -> Path:
    """Write ``comparison`` as snapshot ``name``; an existing name is refused, not replaced."""
    path = snapshot_path(workspace_root, name)
    if path.exists():
        raise InputError(f"a snapshot named {name!r} already exists ({path}); pick another name")
    created = _time.time() if time is None else time
    data = comparison.to_dict() | {"name": name, "created": created}
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=False) + "\n")
    return path


def load_snapshot(workspace_root: Path | str, name: str) -> SetComparison:
    """Snapshot ``name``; ``SnapshotError`` saying what is wrong when it cannot be read."""
    path = snapshot_path(workspace_root, name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SnapshotError(f"no snapshot named {name!r} in {path.parent}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"snapshot {path} cannot be read: {exc}") from None
    try:
        data = loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {data.get('version')!r}, expected {FORMAT_VERSION}")
        return SetComparison.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise SnapshotError(
            f"snapshot {path} is damaged ({what}); delete it and save the comparison again"
        ) from None
