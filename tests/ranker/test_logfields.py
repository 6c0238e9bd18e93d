"""Times and query keys as both logs read them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from brainrank.ranker.feedback.fields import normalise_query, parse_epoch_seconds, parse_time

T0 = datetime(2026, 10, 3, 14, 22, 5, tzinfo=UTC)


def test_iso_times_become_utc():
    assert parse_time("2026-10-03T14:22:05Z") == T0
    assert parse_time("2026-10-03T16:22:05+02:00") == T0
    assert parse_time("2026-10-03T16:22:05+02:00").utcoffset().total_seconds() == 0
    assert parse_epoch_seconds("2026-10-03T14:22:05Z") == T0.timestamp()


def test_epoch_seconds_only_where_allowed():
    assert parse_epoch_seconds(1010) == 1010.0 and parse_epoch_seconds(2.5) == 2.5
    with pytest.raises(ValueError, match=r"time must be an ISO 8601 string, got 1010"):
        parse_time(1010)
    with pytest.raises(ValueError, match=r"time must be ISO 8601 or epoch seconds, got True"):
        parse_epoch_seconds(True)


@pytest.mark.parametrize("parse", [parse_time, parse_epoch_seconds])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", r"bad time 'yesterday': expected ISO 8601 like 2026-10-03T14:22:05Z"),
        ("2026-10-03T14:22:05", r"time '2026-10-03T14:22:05' has no time zone: add Z for UTC"),
        (None, r"time must be .*, got None"),
    ],
)
def test_one_set_of_messages(parse, value, message):
    with pytest.raises(ValueError, match=message):
        parse(value)


def test_query_key():
    assert normalise_query("  Money\tBACK \n please ") == "money back please"
