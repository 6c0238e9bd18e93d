"""The TOML config: defaults, the freshness-and-drift tables, and errors that name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from brainrank.index.errors import BrainrankError
from brainrank.ranker.config import (
    Config,
    MonitorConfig,
    OpsConfig,
    load_config,
)
from brainrank.ranker.durations import parse_duration, parse_schedule


def config_file(tmp_path, text: str) -> Path:
    path = tmp_path / "conf" / "brainrank.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path):
    cfg = load_config(workspace=tmp_path, env={})
    assert cfg.ops == OpsConfig() and cfg.ops.monitor == MonitorConfig()
    assert cfg.retrieval == Config().retrieval and cfg.source is None


def test_ops_tables_and_relative_paths(tmp_path):
    path = config_file(
        tmp_path,
        "[retrieval]\ndense_weight = 0.5\n"
        '[monitor]\nwindow = "24h"\npsi_threshold = 0.3\n'
        '[retrain]\nqueries = "q.jsonl"\nqrels = "/abs/qrels.txt"\nclick_margin = 0.02\n'
        "[promotion]\nmargin = -0.01\nmin_holdout_queries = 30\n"
        '[schedule]\nmonitor = "every 15m"\n'
        '[encoder]\npath = "models/mine"\n',
    )
    cfg = load_config(path, workspace=tmp_path, env={})
    assert cfg.retrieval.dense_weight == 0.5 and cfg.source == path
    ops = cfg.ops
    assert ops.monitor.window == "24h" and ops.monitor.psi_threshold == 0.3
    assert ops.monitor.k == MonitorConfig().k
    # [retrain] files are found beside the config file, the encoder from the working directory.
    assert ops.retrain.queries == path.parent / "q.jsonl"
    assert ops.retrain.qrels == Path("/abs/qrels.txt") and ops.retrain.click_margin == 0.02
    assert cfg.promotion.margin == -0.01 and cfg.promotion.min_holdout_queries == 30
    assert cfg.promotion.resamples == 1000 and cfg.promotion.confidence == 0.95
    assert cfg.encoder.path == Path("models/mine")
    assert ops.schedule.monitor == "every 15m" and ops.schedule.retrain == "30 3 * * *"
    assert cfg.to_dict()["ops"]["retrain"]["queries"] == str(path.parent / "q.jsonl")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[monitor]\nwindw = "7d"\n', r"unknown key\(s\) in config \[monitor\]: windw"),
        ('[monitor]\nwindow = "a week"\n', r"config \[monitor\]: window 'a week'"),
        ("[monitor]\nk = 2.5\n", r"config \[monitor\] k must be an integer"),
        ('[retrain]\nclick_margin = "small"\n', r"config \[retrain\] click_margin must be a"),
        ("[retrain]\nmargin = 0.01\n", r"config \[retrain\] margin has moved: .*\[promotion\]"),
        ("[promotion]\nmargin = 2.0\n", r"config \[promotion\]: margin must be in"),
        ("[promotion]\nmin_holdout_queries = 0\n", r"config \[promotion\]: min_holdout"),
        ("[promotion]\nconfidence = 0.1\n", r"config \[promotion\]: confidence must be"),
        ("[retrain]\nqueries = 3\n", r"config \[retrain\] queries must be a path"),
        ("[retrain]\nclick_holdout = 1.5\n", r"config \[retrain\]: click_holdout must be in"),
        ('[schedule]\nretrain = "nightly"\n', r"config \[schedule\] retrain 'nightly'"),
        ('schedule = "hourly"\n', r"config \[schedule\] must be a table"),
        ("[encoder]\npath = 3\n", r"config \[encoder\] path must be a path string"),
        ('[retrieval]\nfusion = "max"\n', r"config \[retrieval\] fusion 'max' is not one of"),
        ('[bm25]\nnormalize = "nfd"\n', r"config \[bm25\]: normalize 'nfd' is not one of"),
        ("colour = 1\n", r"unknown config key\(s\): colour; allowed .* monitor, retrain, sched"),
        ('[cluster]\nray_adress = "auto"\n', r"in config \[cluster\]: ray_adress; allowed: ray_"),
        ("[cluster]\nray_address = 6379\n", r"config \[cluster\] ray_address must be a string"),
        ("[cluster]\nactors = -1\n", r"config \[cluster\]: actors must be >= 0"),
    ],
)
def test_bad_config_names_the_field(tmp_path, text, message):
    with pytest.raises(BrainrankError, match=message):
        load_config(config_file(tmp_path, text), env={})


def test_cluster_table(tmp_path):
    assert load_config(workspace=tmp_path, env={}).cluster.ray_address == ""  # one process
    path = config_file(tmp_path, '[cluster]\nray_address = "auto"\nactors = 4\n')
    cluster = load_config(path, env={}).cluster
    assert (cluster.ray_address, cluster.actors, cluster.cpus_per_actor) == ("auto", 4, 1)


def test_missing_and_invalid_files_are_named(tmp_path):
    with pytest.raises(BrainrankError, match="config file .*nope.toml does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(BrainrankError, match="brainrank.toml is not valid TOML"):
        load_config(config_file(tmp_path, "[monitor\n"), env={})


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("2w", 1209600), (5, 5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["999999999d", "5300w", 1e300, float("nan")])
def test_a_duration_past_a_century_is_an_error_not_a_crash_later(text):
    with pytest.raises(ValueError, match="longer than 100 years"):
        parse_duration(text, "[monitor] window")
    with pytest.raises(BrainrankError, match="longer than 100 years"):
        parse_schedule(f"every {text}" if isinstance(text, str) else "every 999999999999d")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "tz", "fires"),
    [
        ("30 3 * * *", "UTC", ["2024-03-03 03:30", "2024-03-04 03:30"]),
        ("0 * * * *", "UTC", ["2024-03-02 13:00", "2024-03-02 14:00"]),
        # weekdays only: from Saturday noon to Monday midnight
        ("*/5 * * * mon-fri", "UTC", ["2024-03-04 00:00", "2024-03-04 00:05"]),
        # 03:30 in Berlin (UTC+1 in March) is 02:30 UTC
        ("30 3 * * *", "Europe/Berlin", ["2024-03-03 02:30", "2024-03-04 02:30"]),
    ],
)
def test_cron_schedules_fire_when_the_crontab_says(expr, tz, fires):
    trigger = parse_schedule(expr, timezone=tz)
    first = trigger.get_next_fire_time(None, utc("2024-03-02 12:07:30"))  # a Saturday
    second = trigger.get_next_fire_time(first, first)
    assert [first, second] == [utc(f) for f in fires]


@pytest.mark.parametrize(
    ("expr", "after", "fires"),
    [
        ("0 0 * * 1-5", "2024-03-02 12:07:30", "2024-03-04 00:00"),  # Sat -> Monday
        ("0 0 * * 0", "2024-03-04 12:00", "2024-03-10 00:00"),  # Mon -> Sunday
        ("0 0 * * 7", "2024-03-04 12:00", "2024-03-10 00:00"),  # 7 is Sunday too
        ("0 0 * * 5-7", "2024-03-04 12:00", "2024-03-08 00:00"),  # Mon -> Friday
        ("0 0 * * */2", "2024-03-04 12:00", "2024-03-05 00:00"),  # Mon -> Tuesday (0,2,4,6)
        ("0 0 * * sat", "2024-03-04 12:00", "2024-03-09 00:00"),
    ],
)
def test_crontab_weekday_numbers_count_from_sunday(expr, after, fires):
    """Crontab counts weekdays from 0 = Sunday; APScheduler 3 from 0 = Monday."""
    assert parse_schedule(expr).get_next_fire_time(None, utc(after)) == utc(fires)


@pytest.mark.parametrize(
    ("expr", "seconds"), [("every 90s", 90), ("every 10m", 600), ("every 2h", 7200)]
)
def test_interval_schedules_fire_every_interval(expr, seconds):
    trigger = parse_schedule(expr)
    first = trigger.get_next_fire_time(None, datetime.now(UTC))
    second = trigger.get_next_fire_time(first, first)
    assert (second - first).total_seconds() == seconds


@pytest.mark.parametrize("expr", ["30 3 * *", "61 * * * *", "every soon", "hourly", "every 0s"])
def test_bad_schedule_names_the_setting(expr):
    with pytest.raises(BrainrankError, match=r"config \[schedule\] retrain .* crontab"):
        parse_schedule(expr, where="[schedule] retrain")
